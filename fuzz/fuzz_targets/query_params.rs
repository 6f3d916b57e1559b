//! Query-parameter and path parsers: times, durations, Jaeger microseconds, request-path
//! normalisation. None may panic, and accepted times stay in range.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = signalbox_api::traces::parse_time("start", s) {
        assert!(n <= signalbox_api::traces::MAX_NANOS);
    }
    let _ = signalbox_api::traces::micros_param("start", s);
    let _ = signalbox_api::consul::go_duration(s);
    let _ = signalbox_core::config::parse_duration(s);
    let rules = signalbox_gateway::path::PathRules {
        dot_segments: signalbox_gateway::path::DotSegments::Normalize,
        merge_slashes: true,
    };
    let _ = signalbox_gateway::path::normalize(&format!("/{s}"), rules);
});
