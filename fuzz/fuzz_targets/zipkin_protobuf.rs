//! Zipkin protobuf bodies (zipkin.proto3 ListOfSpans): decoding never panics; an error
//! always names a field or says why.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = signalbox_api::zipkin::decode_proto(data);
});
