//! OTLP/HTTP JSON bodies: decoding and conversion never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = signalbox_api::otlp::decode(data, true);
});
