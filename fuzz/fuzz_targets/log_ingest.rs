//! Every log ingest decoder on untrusted bodies: NDJSON, Loki push (JSON and snappy
//! protobuf), Elasticsearch `_bulk`, OTLP logs (protobuf and JSON). Never a panic.
#![no_main]
use signalbox_api::logs::{elasticsearch, loki, native, otlp};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = native::decode(data, 1);
    let _ = loki::decode_json(data, 1);
    let _ = loki::decode_protobuf(data, 1);
    let _ = elasticsearch::decode_bulk(data, Some("i"), 1);
    let _ = otlp::decode(data, false, 1);
    let _ = otlp::decode(data, true, 1);
});
