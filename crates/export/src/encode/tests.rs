use super::*;
use signalbox_core::span::KeyValue;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn remote_write_groups_series_sorts_labels_and_samples() {
    let a = labels(&[("__name__", "up"), ("job", "api")]);
    let b = labels(&[("job", "db"), ("__name__", "up")]);
    let body = remote_write(vec![(a.clone(), 2000, 1.0), (b, 1000, 0.0), (a, 1000, 0.5)]);
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let req = WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(req.timeseries.len(), 2);
    let first = &req.timeseries[0];
    assert_eq!(
        first.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect::<Vec<_>>(),
        vec![("__name__", "up"), ("job", "api")]
    );
    assert_eq!(first.samples, vec![RwSample { value: 0.5, timestamp: 1000 }, RwSample { value: 1.0, timestamp: 2000 }]);
    assert_eq!(req.timeseries[1].labels[1].value, "db");
}

#[test]
fn loki_streams_carry_labels_and_structured_metadata() {
    let r = LogRecord {
        unix_nanos: 1_700_000_000_000_000_001,
        observed_unix_nanos: 0,
        severity: Severity::WARN,
        severity_text: "warning".into(),
        body: "disk 91% full".into(),
        service: "store".into(),
        instance: "store-2".into(),
        resource: vec![KeyValue::str("k8s.namespace", "prod")],
        attributes: vec![KeyValue::int("disk", 2)],
        trace_id: Some(signalbox_core::ids::TraceId([1; 16])),
        span_id: None,
    };
    let v: serde_json::Value = serde_json::from_slice(&loki(vec![r])).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"streams": [{
            "stream": {"instance": "store-2", "k8s_namespace": "prod", "level": "warn", "service_name": "store"},
            "values": [["1700000000000000001", "disk 91% full", {"disk": "2", "trace_id": "01010101010101010101010101010101"}]]
        }]})
    );
}
