//! The decoders of untrusted bodies (OTLP protobuf and JSON, Zipkin JSON, Consul's JSON
//! request bodies) under thousands of deterministic mutations of valid bodies: never a
//! panic, and what decodes converts to spans with consistent ids; a refused Consul body is
//! a 400 that names its field. (The same decoders have cargo-fuzz targets in `fuzz/`.)

use prost::Message;
use signalbox_api::{otlp, zipkin};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{KeyValue, Span, SpanEvent, SpanKind, StatusCode};

fn sample(i: u64) -> Span {
    Span {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        parent_span_id: i.is_multiple_of(2).then(SpanId::random),
        trace_state: "k=v".into(),
        service: format!("svc-{}", i % 3),
        name: format!("GET /items/{i}"),
        kind: SpanKind::Server,
        start_unix_nanos: 1_700_000_000_000_000_000 + i,
        end_unix_nanos: 1_700_000_000_000_500_000 + i,
        status: if i == 3 { StatusCode::Error } else { StatusCode::Unset },
        status_message: "boom".into(),
        attributes: vec![KeyValue::str("http.route", "/items/{id}"), KeyValue::int("n", i as i64)],
        events: vec![SpanEvent { unix_nanos: 1_700_000_000_000_100_000, name: "retry".into(), attributes: vec![] }],
    }
}

/// A xorshift stream, so every run mutates the same way.
pub struct Mutator(pub u64);

impl Mutator {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn mutate(&mut self, good: &[u8]) -> Vec<u8> {
        let mut b = good.to_vec();
        for _ in 0..1 + self.next() % 4 {
            if b.is_empty() {
                break;
            }
            let at = (self.next() as usize) % b.len();
            match self.next() % 6 {
                0 => b[at] ^= 1 << (self.next() % 8),
                1 => b[at] = self.next() as u8,
                2 => b.truncate(at),
                3 => b.insert(at, self.next() as u8),
                4 => {
                    let end = (at + 1 + (self.next() as usize) % 16).min(b.len());
                    let chunk = b[at..end].to_vec();
                    b.splice(at..at, chunk);
                }
                _ => {
                    b.remove(at);
                }
            }
        }
        b
    }
}

fn check(spans: &[Span]) {
    for s in spans {
        assert_ne!(s.trace_id, TraceId([0; 16]), "a converted span has a trace id");
        assert_ne!(s.span_id, SpanId([0; 8]), "a converted span has a span id");
    }
}

#[test]
fn otlp_protobuf_and_json_survive_mutation() {
    let req = otlp::to_request((0..6).map(sample).collect());
    let proto = req.encode_to_vec();
    let json = serde_json::to_vec(&req).unwrap();
    assert_eq!(otlp::decode(&proto, false).unwrap().spans.len(), 6);
    assert_eq!(otlp::decode(&json, true).unwrap().spans.len(), 6);
    let mut m = Mutator(0x2545_f491_4f6c_dd1d);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..4000 {
        for (body, is_json) in [(m.mutate(&proto), false), (m.mutate(&json), true)] {
            match otlp::decode(&body, is_json) {
                Ok(c) => {
                    check(&c.spans);
                    ok += 1;
                }
                Err(message) => {
                    assert!(message.starts_with("invalid OTLP"), "{message}");
                    refused += 1;
                }
            }
        }
    }
    assert!(ok > 100 && refused > 100, "mutations reach both outcomes: {ok} decoded, {refused} refused");
}

#[test]
fn zipkin_json_survives_mutation() {
    let good = serde_json::to_vec(&serde_json::json!([
        {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312", "name": "get /api", "kind": "SERVER",
         "timestamp": 1_700_000_000_000_000u64, "duration": 2000, "localEndpoint": {"serviceName": "web"}, "tags": {"error": "boom"}},
        {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "b2fb4a1d1a96d312", "parentId": "a2fb4a1d1a96d312", "name": "select",
         "kind": "CLIENT", "timestamp": 1_700_000_000_000_100u64, "duration": 500, "localEndpoint": {"serviceName": "web"},
         "remoteEndpoint": {"serviceName": "postgres"}, "annotations": [{"timestamp": 1_700_000_000_000_200u64, "value": "sent"}]}
    ]))
    .unwrap();
    assert_eq!(zipkin::decode(&good).unwrap().len(), 2);
    let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..6000 {
        match zipkin::decode(&m.mutate(&good)) {
            Ok(spans) => {
                check(&spans);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.status, 400, "{e:?}");
                assert!(!e.message.is_empty(), "{e:?}");
                refused += 1;
            }
        }
    }
    assert!(ok > 50 && refused > 100, "mutations reach both outcomes: {ok} decoded, {refused} refused");
}

#[test]
fn consul_bodies_survive_mutation() {
    let seeds = [
        // py-consul's register, lowercase.
        r#"{"name": "web", "id": "web-1", "address": "127.0.0.1", "port": 8080, "tags": ["v1"], "meta": {"version": "1"}, "checks": [{"ttl": "15s"}, {"http": "http://127.0.0.1/h", "interval": "10s", "deregister_critical_service_after": "1m"}]}"#,
        // Spring Cloud Consul's, PascalCase with nulls.
        r#"{"ID": "o-1", "Name": "orders", "Tags": null, "Port": 80, "Check": {"TTL": "30s", "HTTP": null, "Status": "passing"}, "Weights": {"Passing": 3}}"#,
        r#"{"Name": "disk", "ServiceID": "web-1", "CheckID": "d", "TCP": "127.0.0.1:9", "Interval": "5s", "Timeout": "1s"}"#,
        r#"{"Status": "warning", "Output": "disk 80%"}"#,
        r#"[{"KV": {"Verb": "cas", "Key": "a/b", "Value": "aGk=", "Index": 3, "Flags": 1}}, {"kv": {"verb": "get-tree", "key": "a/"}}]"#,
        r#"{"Node": "n", "Address": "127.0.0.1", "service": {"service": "ext", "id": "e", "port": 1, "meta": {"a": "b"}}, "ServiceID": "e"}"#,
    ];
    let mut m = Mutator(0x5eed_c0de_1234_5678);
    let mut decoded = 0;
    for seed in seeds {
        assert!(signalbox_api::consul::decode_bodies(seed.as_bytes()).iter().any(Result::is_ok), "{seed}");
        for _ in 0..4_000 {
            let body = m.mutate(seed.as_bytes());
            for r in signalbox_api::consul::decode_bodies(&body) {
                match r {
                    Ok(()) => decoded += 1,
                    Err(e) => {
                        assert!(e.status.is_client_error(), "{}: {}", e.status, e.message);
                        assert!(!e.message.is_empty());
                        assert!(e.code == "invalid_json" || e.field.is_some(), "{} names no field", e.message);
                    }
                }
            }
        }
    }
    assert!(decoded > 100, "mutations that still decode: {decoded}");
}
