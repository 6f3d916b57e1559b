use super::*;
use signalbox_core::log::Severity;

const NOW: u64 = 1_796_205_600_000_000_000;

fn attr<'a>(r: &'a LogRecord, k: &str) -> Option<&'a AttrValue> {
    r.attributes.iter().find(|kv| kv.key == k).map(|kv| &kv.value)
}

#[test]
fn native_ndjson_in_the_agents_shape_and_common_spellings() {
    let body = br#"{"timestamp":"2026-12-02T10:00:00.123456789Z","severity":"ERROR","body":"payment declined","service":"payments","instance":"payments-1","host":"node-7","attributes":{"order_id":"o-42","http":{"status":502}},"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"}

{"@timestamp":1764669600123,"level":"warning","msg":"slow query","app":"orders","duration_ms":812.5}
not json
[1,2]
{"time":"yesterday","msg":"x"}
"#;
    let d = native::decode(body, NOW).unwrap();
    assert_eq!(d.records.len(), 2, "{:?}", d.rejected);
    let r = &d.records[0];
    assert_eq!(r.unix_nanos, 1_796_205_600_123_456_789);
    assert_eq!(
        (r.severity, r.body.as_str(), r.service.as_str(), r.instance.as_str()),
        (Severity::ERROR, "payment declined", "payments", "payments-1")
    );
    assert_eq!(r.resource, vec![KeyValue::str("host.name", "node-7")]);
    assert_eq!(attr(r, "order_id"), Some(&AttrValue::Str("o-42".into())));
    assert_eq!(attr(r, "http.status"), Some(&AttrValue::Int(502)));
    assert_eq!(r.trace_id.unwrap().to_hex(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(r.span_id.unwrap().to_hex(), "b7ad6b7169203331");
    let r = &d.records[1];
    assert_eq!(r.unix_nanos, 1_764_669_600_123_000_000);
    assert_eq!((r.severity, r.service.as_str()), (Severity::WARN, "orders"));
    assert_eq!(attr(r, "duration_ms"), Some(&AttrValue::Float(812.5)));
    let lines: Vec<usize> = d.rejected.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![4, 5, 6], "refused lines are named by number: {:?}", d.rejected);
    assert!(d.rejected[2].1.contains("timestamp"), "{:?}", d.rejected);
}

#[test]
fn loki_json_push_as_the_docs_give_it() {
    // The example from Loki's HTTP API documentation, plus structured metadata.
    let body = br#"{"streams": [{ "stream": { "foo": "bar2", "service_name": "web", "level": "error" }, "values": [ [ "1570818238000000000", "fizzbuzz" ], [ "1570818238000000001", "with meta", {"trace_id": "0af7651916cd43dd8448eb211c80319c", "user": "u1"} ] ] }]}"#;
    let d = loki::decode_json(body, NOW).unwrap();
    assert_eq!(d.records.len(), 2, "{:?}", d.rejected);
    let r = &d.records[0];
    assert_eq!(
        (r.unix_nanos, r.body.as_str(), r.service.as_str(), r.severity),
        (1_570_818_238_000_000_000, "fizzbuzz", "web", Severity::ERROR)
    );
    assert!(r.resource.contains(&KeyValue::str("foo", "bar2")));
    let r = &d.records[1];
    assert_eq!(r.trace_id.unwrap().to_hex(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(attr(r, "user"), Some(&AttrValue::Str("u1".into())));
    let bad = loki::decode_json(br#"{"streams":[{"stream":{},"values":[["x","y"],[1,"z"]]}]}"#, NOW).unwrap();
    assert_eq!(bad.records.len(), 0);
    assert_eq!(bad.rejected.len(), 2);
    assert!(loki::decode_json(b"{}", NOW).is_err());
}

#[test]
fn loki_protobuf_push_with_snappy_block_compression() {
    use prost::Message;
    let req = loki::PushRequest {
        streams: vec![loki::StreamAdapter {
            labels: r#"{job="varlogs", host="node-7", note="a \"quoted\" value"}"#.into(),
            entries: vec![loki::EntryAdapter {
                timestamp: Some(loki::Timestamp { seconds: 1_570_818_238, nanos: 5 }),
                line: "level=info msg=started".into(),
                structured_metadata: vec![loki::LabelPair { name: "span_id".into(), value: "b7ad6b7169203331".into() }],
            }],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    let d = loki::decode_protobuf(&body, NOW).unwrap();
    assert_eq!(d.records.len(), 1);
    let r = &d.records[0];
    assert_eq!(
        (r.unix_nanos, r.service.as_str(), r.instance.as_str()),
        (1_570_818_238_000_000_005, "varlogs", "node-7")
    );
    assert!(r.resource.contains(&KeyValue::str("note", "a \"quoted\" value")));
    assert_eq!(r.span_id.unwrap().to_hex(), "b7ad6b7169203331");
    // The framed snappy format and plain protobuf are refused with a clear message.
    let framed = {
        use std::io::Write;
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(&req.encode_to_vec()).unwrap();
        w.into_inner().unwrap()
    };
    assert!(loki::decode_protobuf(&framed, NOW).is_err());
    assert!(loki::parse_labels("{a=b}").is_err());
    assert_eq!(loki::parse_labels("{}").unwrap(), vec![]);
}

#[test]
fn elasticsearch_bulk_as_fluent_bit_and_the_docs_send_it() {
    let body = br#"{"create":{"_index":"checkout"}}
{"@timestamp":"2026-12-02T10:00:00.000Z","log":"order placed","stream":"stdout","kubernetes":{"pod_name":"checkout-7d9","labels":{"app":"checkout"}},"trace_id":"0af7651916cd43dd8448eb211c80319c"}
{"index":{"_index":"test","_id":"1"}}
{"field1":"value1","level":"error","message":"boom"}
{"delete":{"_index":"test","_id":"2"}}
{"update":{"_id":"1","_index":"test"}}
{"doc":{"field2":"value2"}}
{"index":{}}
{"message":"no index"}
"#;
    let b = elasticsearch::decode_bulk(body, None, NOW).unwrap();
    assert_eq!(b.items.len(), 5);
    assert_eq!(b.decoded.records.len(), 2);
    let r = &b.decoded.records[0];
    assert_eq!((r.body.as_str(), r.service.as_str()), ("order placed", "checkout"));
    assert_eq!(attr(r, "kubernetes.pod_name"), Some(&AttrValue::Str("checkout-7d9".into())));
    assert!(r.trace_id.is_some());
    assert_eq!(b.decoded.records[1].severity, Severity::ERROR);
    let answer = elasticsearch::bulk_answer(&b.items, 3, 0);
    assert_eq!(answer["errors"], true);
    assert_eq!(answer["items"][0]["create"]["status"], 201);
    assert_eq!(answer["items"][1]["index"]["_id"], "1");
    assert_eq!(answer["items"][2]["delete"]["status"], 400);
    assert_eq!(answer["items"][3]["update"]["error"]["type"], "action_request_validation_exception");
    assert_eq!(answer["items"][4]["index"]["status"], 400, "no index anywhere");
    // `{index}/_bulk` supplies the index.
    let b = elasticsearch::decode_bulk(b"{\"index\":{}}\n{\"message\":\"x\"}\n", Some("logs-app"), NOW).unwrap();
    assert_eq!(b.decoded.records[0].service, "logs-app");
    assert!(elasticsearch::decode_bulk(b"{\"index\":{}}\n", Some("a"), NOW).is_err(), "an action without its document");
    assert!(elasticsearch::decode_bulk(b"{\"frob\":{}}\n{}\n", Some("a"), NOW).is_err());
    assert_eq!(elasticsearch::info("n")["version"]["number"], elasticsearch::VERSION);
}

#[test]
fn otlp_logs_keep_resource_scope_and_ids() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue as PKv, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord as PLog, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;
    let s = |v: &str| Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) });
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    PKv { key: "service.name".into(), value: s("checkout"), ..Default::default() },
                    PKv { key: "service.instance.id".into(), value: s("c-1"), ..Default::default() },
                    PKv { key: "host.name".into(), value: s("node-7"), ..Default::default() },
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "app.logger".into(), ..Default::default() }),
                log_records: vec![PLog {
                    time_unix_nano: 5,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: s("card declined"),
                    attributes: vec![PKv { key: "order_id".into(), value: s("o-1"), ..Default::default() }],
                    trace_id: vec![7; 16],
                    span_id: vec![8; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let d = otlp::decode(&req.encode_to_vec(), false, NOW).unwrap();
    let r = &d.records[0];
    assert_eq!(
        (r.service.as_str(), r.instance.as_str(), r.body.as_str(), r.severity),
        ("checkout", "c-1", "card declined", Severity::ERROR)
    );
    assert_eq!(r.resource, vec![KeyValue::str("host.name", "node-7")]);
    assert_eq!(attr(r, "otel.scope.name"), Some(&AttrValue::Str("app.logger".into())));
    assert_eq!(r.trace_id.unwrap().0, [7; 16]);
    let json = serde_json::to_vec(&req).unwrap();
    assert_eq!(otlp::decode(&json, true, NOW).unwrap().records[0].body, "card declined");
    assert!(otlp::decode(b"\xff\xff", false, NOW).is_err());
}

#[test]
fn every_decoder_survives_mutated_bodies() {
    use prost::Message;
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("native", br#"{"timestamp":"2026-12-02T10:00:00Z","severity":"ERROR","body":"x","attributes":{"a":{"b":[1,2]}},"trace_id":"0af7651916cd43dd8448eb211c80319c"}"#.to_vec()),
        ("loki-json", br#"{"streams":[{"stream":{"job":"a"},"values":[["1570818238000000000","x",{"trace_id":"0af7651916cd43dd8448eb211c80319c"}]]}]}"#.to_vec()),
        (
            "loki-proto",
            snap::raw::Encoder::new()
                .compress_vec(
                    &loki::PushRequest {
                        streams: vec![loki::StreamAdapter {
                            labels: r#"{job="a", b="c\"d"}"#.into(),
                            entries: vec![loki::EntryAdapter { timestamp: Some(loki::Timestamp { seconds: 5, nanos: 1 }), line: "l".into(), structured_metadata: vec![] }],
                            hash: 0,
                        }],
                    }
                    .encode_to_vec(),
                )
                .unwrap(),
        ),
        ("bulk", b"{\"index\":{\"_index\":\"a\"}}\n{\"message\":\"m\",\"@timestamp\":1700000000}\n{\"create\":{}}\n{\"log\":\"x\"}\n".to_vec()),
    ];
    let mut state = 0x0123_4567_89ab_cdefu64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, good) in &seeds {
        for _ in 0..3_000 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 3 {
                if b.is_empty() {
                    break;
                }
                let at = (next() as usize) % b.len();
                match next() % 4 {
                    0 => b[at] ^= 1 << (next() % 8),
                    1 => b.truncate(at),
                    2 => b.insert(at, next() as u8),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            let _ = native::decode(&b, NOW);
            let _ = loki::decode_json(&b, NOW);
            let _ = loki::decode_protobuf(&b, NOW);
            let _ = elasticsearch::decode_bulk(&b, Some("i"), NOW);
            let _ = otlp::decode(&b, false, NOW);
            let _ = otlp::decode(&b, true, NOW);
        }
        let _ = name;
    }
}
