use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use std::io::Write;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

#[test]
fn the_scan_counts_what_prost_would_build() {
    let span = Span {
        name: "s".into(),
        attributes: vec![
            kv("a", any_value::Value::StringValue("x".into())),
            kv(
                "arr",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue { value: Some(any_value::Value::IntValue(1)) }; 3],
                }),
            ),
        ],
        events: vec![span::Event { name: "e".into(), ..Default::default() }],
        links: vec![span::Link { trace_id: vec![1; 16], ..Default::default() }],
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span; 5], ..Default::default() }],
            ..Default::default()
        }],
    };
    let c = scan_otlp_traces(&req.encode_to_vec()).unwrap();
    assert_eq!(c.spans, 5);
    // Per span: itself, 2 KeyValues + 2 AnyValues, 1 ArrayValue + 3 AnyValues, 1 event,
    // 1 link = 11; plus ResourceSpans and ScopeSpans.
    assert_eq!(c.items, 5 * 11 + 2);
    assert!(c.check().is_ok());
}

#[test]
fn a_small_gzip_bomb_of_empty_spans_is_refused_before_decoding() {
    // ~16 MB of empty spans (two bytes each) compresses to a few KB.
    let mut scope = Vec::new();
    for _ in 0..8_000_000 {
        scope.extend_from_slice(&[0x12, 0x00]);
    }
    let mut rs = vec![0x12];
    put_len(&mut rs, scope.len());
    rs.extend_from_slice(&scope);
    let mut req = vec![0x0a];
    put_len(&mut req, rs.len());
    req.extend_from_slice(&rs);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&req).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 64 * 1024, "{}", gz.len());
    let inflated = inflate_gzip(&gz, MAX_INFLATED).unwrap();
    let c = scan_otlp_traces(&inflated).unwrap();
    assert!(matches!(c.check(), Err(Refused::TooLarge(m)) if m.contains("spans")));
    assert!(matches!(inflate_gzip(&gz, 1024 * 1024), Err(Refused::TooLarge(_))));
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[test]
fn malformed_wire_data_and_deep_nesting_are_invalid() {
    assert!(matches!(scan_otlp_traces(&[0x0a, 0x05, 0x01]), Err(Refused::Invalid(_))));
    assert!(matches!(scan_otlp_traces(&[0x0f]), Err(Refused::Invalid(_))));
    // AnyValue { array_value: ArrayValue { values: [AnyValue { array_value: ... }] } }, 100 deep.
    let mut v = vec![];
    for _ in 0..100 {
        let mut inner = vec![0x0a];
        put_len(&mut inner, v.len());
        inner.extend_from_slice(&v);
        let mut any = vec![0x2a];
        put_len(&mut any, inner.len());
        any.extend_from_slice(&inner);
        v = any;
    }
    let mut kv = vec![0x12];
    put_len(&mut kv, v.len());
    kv.extend_from_slice(&v);
    let mut sp = vec![0x4a];
    put_len(&mut sp, kv.len());
    sp.extend_from_slice(&kv);
    let mut ss = vec![0x12];
    put_len(&mut ss, sp.len());
    ss.extend_from_slice(&sp);
    let mut rs = vec![0x12];
    put_len(&mut rs, ss.len());
    rs.extend_from_slice(&ss);
    let mut req = vec![0x0a];
    put_len(&mut req, rs.len());
    req.extend_from_slice(&rs);
    assert!(matches!(scan_otlp_traces(&req), Err(Refused::Invalid(m)) if m.contains("deeply")));
}

#[test]
fn json_items_skip_strings() {
    assert_eq!(json_items(br#"{"a":[{"b":"{[\"{"},{}]}"#), 4);
    assert_eq!(json_items(b"[]"), 1);
}

#[test]
fn the_budget_is_shared_and_released() {
    let a = reserve(DECODE_BUDGET - 2048).unwrap();
    assert_eq!(reserve(4096).err(), Some(Refused::Busy));
    drop(a);
    assert!(reserve(4096).is_ok());
    assert!(matches!(reserve(DECODE_BUDGET * 2), Err(Refused::TooLarge(_))));
}
