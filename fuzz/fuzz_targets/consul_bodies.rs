//! Consul JSON request bodies (service and check definitions, check updates, transactions),
//! field names in any case: decoding never panics; a refusal is a 4xx naming the field.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for r in signalbox_api::consul::decode_bodies(data) {
        if let Err(e) = r {
            assert!(e.status.is_client_error());
        }
    }
});
