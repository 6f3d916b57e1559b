//! Every metrics ingest decoder on untrusted bytes: the Prometheus text and OpenMetrics
//! formats scrapes read, remote_write (snappy protobuf), and OTLP metrics (protobuf and
//! JSON) through the OpenTelemetry-to-Prometheus translation. Never a panic.
#![no_main]
use signalbox_api::metrics::push;
use signalbox_metrics::{exposition, remote_write};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = exposition::parse(text, false, exposition::Limits::default());
        let _ = exposition::parse(text, true, exposition::Limits::default());
    }
    let _ = remote_write::decode(data);
    for json in [false, true] {
        if let Ok(req) = push::decode_otlp(data, json) {
            let mut deltas = signalbox_otlp::metrics::Cumulative::new(1000);
            let _ = signalbox_otlp::metrics::convert(&req, &mut deltas, 10_000);
        }
    }
});
