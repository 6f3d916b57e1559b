use super::*;

#[test]
fn timestamps_have_nine_fraction_digits() {
    assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(rfc3339_nanos(1_709_210_096_000_000_001), "2024-02-29T12:34:56.000000001Z");
}

#[test]
fn severities_are_normalised() {
    assert_eq!(normalize_severity("warning"), "WARN");
    assert_eq!(normalize_severity(" Err "), "ERROR");
    assert_eq!(normalize_severity("CRITICAL"), "FATAL");
    assert_eq!(normalize_severity("notice"), "INFO");
    assert_eq!(normalize_severity("audit"), "AUDIT");
    assert_eq!(severity_number("ERROR"), 17);
    assert_eq!(severity_number("AUDIT"), 0);
}

#[test]
fn ndjson_line_follows_the_contract() {
    let r = Record {
        timestamp_ns: 1_709_210_096_123_456_789,
        observed_ns: 0,
        severity: "ERROR".into(),
        body: "line \"one\"\nline two".into(),
        labels: Arc::new(Labels {
            service: "orders".into(),
            instance: "orders-1".into(),
            host: "h".into(),
            static_labels: vec![("team".into(), "a".into()), ("env".into(), "prod".into())],
        }),
        path: Arc::from("/var/log/x.log"),
        attributes: vec![("team".into(), "b".into()), ("user".into(), "ana".into())],
        trace_id: Some([0xab; 16]),
        span_id: None,
    };
    let mut out = Vec::new();
    r.write_ndjson(&mut out);
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line per record");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["timestamp"], "2024-02-29T12:34:56.123456789Z");
    assert_eq!(v["body"], "line \"one\"\nline two");
    assert_eq!(v["trace_id"], "ab".repeat(16));
    assert!(v.get("span_id").is_none());
    // A parsed field overrides a static label of the same name; each key appears once.
    let attrs = v["attributes"].as_object().unwrap();
    assert_eq!(attrs.len(), 4);
    assert_eq!(attrs["team"], "b");
    assert_eq!(attrs["log.file.path"], "/var/log/x.log");
}
