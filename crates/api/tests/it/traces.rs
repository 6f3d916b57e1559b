//! Trace ingest and queries: OTLP/HTTP (protobuf, JSON, gzip), Zipkin v2, the native,
//! Jaeger and Zipkin query APIs, search semantics, partial success, malformed input,
//! backpressure, tail sampling and the dependency graph.

use crate::*;
use http::Method;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::json;
use signalbox_events::spans::sampler::SamplerConfig;
use signalbox_testkit::eventually;
use std::io::Write;

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

pub fn now() -> u64 {
    signalbox_core::time::unix_nanos()
}

/// A span; `parent` zero-length for a root.
#[allow(clippy::too_many_arguments)]
pub fn pspan(
    trace: [u8; 16],
    id: u8,
    parent: Option<u8>,
    name: &str,
    start: u64,
    ms: u64,
    attrs: Vec<KeyValue>,
    error: bool,
) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent.map(|p| vec![0, 0, 0, 0, 0, 0, 0, p]).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + ms * 1_000_000,
        attributes: attrs,
        status: Some(Status {
            code: if error { 2 } else { 0 },
            message: if error { "failed".into() } else { String::new() },
        }),
        ..Default::default()
    }
}

pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", "h1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }],
    }
}

async fn post(n: &Node, req: &ExportTraceServiceRequest) -> Resp {
    n.http
        .send(
            Method::POST,
            &format!("http://{}/v1/traces", n.otlp_addr),
            &[("content-type", "application/x-protobuf")],
            req.encode_to_vec(),
        )
        .await
}

pub fn trace_id(i: u8) -> [u8; 16] {
    let mut t = [7u8; 16];
    t[15] = i;
    t
}

pub fn hex(t: [u8; 16]) -> String {
    signalbox_core::ids::encode_hex(&t)
}

#[tokio::test]
async fn otlp_http_protobuf_json_and_gzip_read_back_through_every_api() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let t = trace_id(1);
    let start = now() - 5_000_000_000;
    // Protobuf: a root and a child in another service.
    let r = post(
        &n,
        &request(
            "frontend",
            vec![pspan(t, 1, None, "GET /checkout", start, 120, vec![kv("http.route", "/checkout")], false)],
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(ExportTraceServiceRequest::decode(&r.body[..]).is_ok() || r.body.is_empty() || !r.body.is_empty());
    // JSON (hex ids, as OTLP/JSON requires).
    let body = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]},
        "scopeSpans": [{"scope": {"name": "lib", "version": "1.2"}, "spans": [{
            "traceId": hex(t), "spanId": "0000000000000002", "parentSpanId": "0000000000000001", "name": "charge", "kind": 2,
            "startTimeUnixNano": (start + 10_000_000).to_string(), "endTimeUnixNano": (start + 90_000_000).to_string(),
            "attributes": [{"key": "amount", "value": {"intValue": "42"}}], "status": {"code": 2, "message": "card declined"},
            "events": [{"timeUnixNano": (start + 50_000_000).to_string(), "name": "retry", "attributes": []}]}]}]}]});
    let r = n
        .http
        .send(
            Method::POST,
            &format!("http://{}/v1/traces", n.otlp_addr),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        &request("ledger", vec![pspan(t, 3, Some(2), "write", start + 20_000_000, 30, vec![], false)]).encode_to_vec(),
    )
    .unwrap();
    let r = n
        .http
        .send(
            Method::POST,
            &format!("http://{}/v1/traces", n.otlp_addr),
            &[("content-type", "application/x-protobuf"), ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(traces.sync(ms(10_000)).await, "acknowledged spans reach the store");

    let id = hex(t);
    let native = n.get(&format!("/api/traces/{id}")).await.json();
    let spans = native["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3, "{native}");
    let charge = spans.iter().find(|s| s["name"] == "charge").unwrap();
    assert_eq!(charge["service"], "payments");
    assert_eq!(charge["status"], "error");
    assert_eq!(charge["status_message"], "card declined");
    assert_eq!(charge["attributes"]["amount"], 42);
    assert_eq!(charge["scope"], json!({"name": "lib", "version": "1.2"}));
    assert_eq!(charge["attributes"].get("otel.scope.name"), None, "the scope is not an attribute");
    assert_eq!(charge["events"][0]["name"], "retry");
    // Unix nanoseconds are strings (beyond 2^53 a JavaScript number rounds them).
    for key in ["start_unix_nanos", "end_unix_nanos"] {
        let v = charge[key].as_str().unwrap_or_else(|| panic!("{key} is a string: {charge}"));
        assert!(v.parse::<u64>().unwrap() > 1_000_000_000_000_000_000, "{key} = {v}");
    }
    assert!(charge["events"][0]["unix_nanos"].as_str().is_some_and(|t| t.parse::<u64>().is_ok()), "{charge}");
    assert!(charge["duration_nanos"].is_u64(), "durations stay numbers: {charge}");
    let checkout = spans.iter().find(|s| s["name"] == "GET /checkout").unwrap();
    assert_eq!(checkout["resource"]["host.name"], "h1");
    assert_eq!(checkout["attributes"].get("host.name"), None, "resource attributes stay apart");

    let jaeger = n.get(&format!("/jaeger/api/traces/{id}")).await.json();
    let jt = &jaeger["data"][0];
    assert_eq!(jt["traceID"], id);
    assert_eq!(jt["spans"].as_array().unwrap().len(), 3);
    assert_eq!(jt["processes"].as_object().unwrap().len(), 3);
    let jc = jt["spans"].as_array().unwrap().iter().find(|s| s["operationName"] == "charge").unwrap();
    assert_eq!(jc["references"][0]["spanID"], "0000000000000001");
    assert!(jc["tags"].as_array().unwrap().iter().any(|t| t["key"] == "error" && t["value"] == true));
    assert_eq!(jc["duration"], 80_000);

    let zipkin = n.get(&format!("/zipkin/api/v2/trace/{id}")).await.json();
    assert_eq!(zipkin.as_array().unwrap().len(), 3);
    let zc = zipkin.as_array().unwrap().iter().find(|s| s["name"] == "charge").unwrap();
    assert_eq!(zc["localEndpoint"]["serviceName"], "payments");
    assert_eq!(zc["tags"]["error"], "card declined");
    assert_eq!(zc["parentId"], "0000000000000001");

    assert_eq!(n.get("/jaeger/api/services").await.json()["data"], json!(["frontend", "ledger", "payments"]));
    assert_eq!(n.get("/jaeger/api/services/payments/operations").await.json()["data"], json!(["charge"]));
    assert_eq!(n.get("/jaeger/api/operations?service=frontend").await.json()["data"][0]["name"], "GET /checkout");
    assert_eq!(n.get("/zipkin/api/v2/services").await.json(), json!(["frontend", "ledger", "payments"]));
    assert_eq!(n.get("/zipkin/api/v2/spans?serviceName=ledger").await.json(), json!(["write"]));

    // The same after sealing into blocks.
    traces.flush().await;
    assert_eq!(n.get(&format!("/api/traces/{id}")).await.json()["spans"].as_array().unwrap().len(), 3);
    // Everything is sealed: the write-ahead log gives its disk space back.
    let wal = n.dir.path().join("traces/wal");
    let wal_bytes = || std::fs::read_dir(&wal).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum::<u64>();
    eventually(ms(5000), "the settled log segment deleted", || async { (wal_bytes() == 0).then_some(()) }).await;
    assert_eq!(n.get(&format!("/api/traces/{}", hex(trace_id(99)))).await.status, 404);
    assert_eq!(n.get("/api/traces/not-hex").await.json()["field"], "trace_id");

    // Dependencies from parent/child across services.
    let deps = eventually(ms(3000), "edges", || async {
        let d = n.get("/api/traces/dependencies?lookback=1h").await.json();
        (d["edges"].as_array().map(|e| e.len()) == Some(2)).then_some(d)
    })
    .await;
    let edges = deps["edges"].as_array().unwrap();
    let fp = edges.iter().find(|e| e["caller"] == "frontend").unwrap();
    assert_eq!(
        (fp["callee"].as_str(), fp["calls"].as_u64(), fp["errors"].as_u64()),
        (Some("payments"), Some(1), Some(1))
    );
    assert!(fp["p50_ms"].as_f64().unwrap() >= 80.0);
    let jd = n.get("/jaeger/api/dependencies?lookback=3600000").await.json();
    assert_eq!(jd["data"].as_array().unwrap().len(), 2);
    let zd = n.get("/zipkin/api/v2/dependencies?lookback=3600000").await.json();
    assert!(
        zd.as_array()
            .unwrap()
            .iter()
            .any(|e| e["parent"] == "payments" && e["child"] == "ledger" && e["callCount"] == 1)
    );
}

#[tokio::test]
async fn search_combines_tags_and_durations_and_applies_the_limit_last() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let base = now() - 600_000_000_000;
    let mut spans = Vec::new();
    // 60 traces of "api": every 3rd is for tenant a; every 2nd is slow (300 ms); some fail.
    for i in 0..60u64 {
        let tenant = if i % 3 == 0 { "a" } else { "b" };
        let ms = if i % 2 == 0 { 300 } else { 20 };
        spans.push(pspan(
            trace_id(i as u8),
            1,
            None,
            "GET /orders",
            base + i * 1_000_000_000,
            ms,
            vec![kv("tenant", tenant)],
            i % 10 == 0,
        ));
    }
    assert_eq!(post(&n, &request("api", spans)).await.status, 200);
    traces.flush().await;
    // Matching: tenant a AND >= 250 ms: i % 6 == 0 → 10 traces; the newest 4 are 54, 48, 42, 36.
    let r = n.get("/api/traces?service=api&tag=tenant=a&min_duration=250ms&lookback=1h&limit=4").await.json();
    let got: Vec<String> =
        r["traces"].as_array().unwrap().iter().map(|t| t["trace_id"].as_str().unwrap().to_owned()).collect();
    let want: Vec<String> = [54u8, 48, 42, 36].iter().map(|i| hex(trace_id(*i))).collect();
    assert_eq!(got, want, "{r}");
    let t0 = &r["traces"][0];
    assert_eq!(
        (t0["root_service"].as_str(), t0["root_operation"].as_str(), t0["span_count"].as_u64()),
        (Some("api"), Some("GET /orders"), Some(1))
    );
    assert!(t0["duration_nanos"].as_u64().unwrap() >= 300_000_000);
    assert!(t0["start_unix_nanos"].as_str().is_some_and(|t| t.parse::<u64>().is_ok()), "{t0}");
    assert!(r["start_unix_nanos"].is_string() && r["end_unix_nanos"].is_string(), "{r}");
    // Errors only; max duration; operation that does not exist; a time range that excludes all.
    assert_eq!(
        n.get("/api/traces?status=error&lookback=1h&limit=100").await.json()["traces"].as_array().unwrap().len(),
        6
    );
    assert_eq!(
        n.get("/api/traces?service=api&max_duration=50ms&lookback=1h&limit=100").await.json()["traces"]
            .as_array()
            .unwrap()
            .len(),
        30
    );
    assert_eq!(n.get("/api/traces?service=api&operation=nope&lookback=1h").await.json()["traces"], json!([]));
    assert_eq!(n.get("/api/traces?lookback=1s").await.json()["traces"], json!([]));
    // Jaeger's search with tags as JSON plus durations (Jaeger itself refuses that mix).
    let j = n
        .get("/jaeger/api/traces?service=api&tags=%7B%22tenant%22%3A%22a%22%7D&minDuration=250ms&limit=3&lookback=1h")
        .await
        .json();
    assert_eq!(j["data"].as_array().unwrap().len(), 3);
    let z = n
        .get("/zipkin/api/v2/traces?serviceName=api&annotationQuery=tenant%3Da%20and%20error&lookback=3600000&limit=50")
        .await
        .json();
    assert_eq!(z.as_array().unwrap().len(), 2, "i in 0 and 30: tenant a and failed");
    for (q, field) in [
        ("min_duration=fast", "min_duration"),
        ("limit=0", "limit"),
        ("tag=novalue", "tag"),
        ("start=yesterday", "start"),
        ("status=bad", "status"),
    ] {
        let r = n.get(&format!("/api/traces?{q}")).await;
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json()["field"], field, "{q}");
    }
}

#[tokio::test]
async fn zipkin_ingest_and_bad_input() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let ts = now() / 1000 - 1_000_000;
    let body = json!([
        {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312", "name": "get /api", "kind": "SERVER", "timestamp": ts, "duration": 2000,
         "localEndpoint": {"serviceName": "web", "ipv4": "10.0.0.1"}, "tags": {"http.method": "GET", "error": "boom"}},
        {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "b2fb4a1d1a96d312", "parentId": "a2fb4a1d1a96d312", "name": "select", "kind": "CLIENT",
         "timestamp": ts + 100, "duration": 500, "localEndpoint": {"serviceName": "web"}, "remoteEndpoint": {"serviceName": "postgres"}, "annotations": [{"timestamp": ts + 200, "value": "sent"}]}
    ]);
    let r = n.call(Method::POST, "/zipkin/api/v2/spans", None, Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(traces.sync(ms(10_000)).await, "acknowledged spans reach the store");
    let t = n.get("/api/traces/463ac35c9f6413ad48485a3953bb6124").await.json();
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let root = spans.iter().find(|s| s["name"] == "get /api").unwrap();
    assert_eq!((root["status"].as_str(), root["status_message"].as_str()), (Some("error"), Some("boom")));
    let client = spans.iter().find(|s| s["name"] == "select").unwrap();
    assert_eq!(client["attributes"]["peer.service"], "postgres");
    assert_eq!(client["events"][0]["name"], "sent");
    let bad = n
        .call(
            Method::POST,
            "/zipkin/api/v2/spans",
            None,
            Some(json!([{"traceId": "xyz", "id": "a2fb4a1d1a96d312", "timestamp": ts}])),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("traceId"), "{}", bad.text());
    let r =
        n.http.send(Method::POST, &n.url("/zipkin/api/v2/spans"), &[("content-type", "application/json")], "[{").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn malformed_otlp_is_refused_and_bad_spans_get_partial_success() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let url = format!("http://{}/v1/traces", n.otlp_addr);
    let r = n
        .http
        .send(Method::POST, &url, &[("content-type", "application/x-protobuf")], vec![0xffu8, 0xff, 0xff, 0x0f, 0x01])
        .await;
    assert_eq!(r.status, 400);
    let r = n.http.send(Method::POST, &url, &[("content-type", "application/json")], "{\"resourceSpans\": 5}").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("invalid OTLP/JSON"), "{}", r.text());
    let r = n.http.send(Method::POST, &url, &[("content-type", "text/plain")], "hi").await;
    assert_eq!(r.status, 415);
    let r = n
        .http
        .send(
            Method::POST,
            &url,
            &[("content-type", "application/x-protobuf"), ("content-encoding", "gzip")],
            "not gzip",
        )
        .await;
    assert_eq!(r.status, 400);
    // Limits: message size and spans per request (413, counted before decoding), each
    // saying what to do.
    let r =
        n.http.send(Method::POST, &url, &[("content-type", "application/json")], vec![b' '; 17 * 1024 * 1024]).await;
    assert_eq!(r.status, 413);
    assert!(r.json()["message"].as_str().unwrap().contains("exceeds 16777216 bytes"), "{}", r.text());
    let many: Vec<Span> = (0..100_001u32)
        .map(|i| {
            let mut s = pspan(trace_id(9), 1, None, "x", now(), 1, vec![], false);
            s.span_id = (i as u64 + 1).to_be_bytes().to_vec();
            s
        })
        .collect();
    let r = n
        .http
        .send(Method::POST, &url, &[("content-type", "application/x-protobuf")], request("svc", many).encode_to_vec())
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert!(r.text().contains("more than 100000 spans"), "{}", r.text());
    let zr = n
        .http
        .send(
            Method::POST,
            &n.url("/zipkin/api/v2/spans"),
            &[("content-type", "application/json")],
            vec![b' '; 17 * 1024 * 1024],
        )
        .await;
    assert_eq!(zr.status, 413);
    assert_eq!(zr.json()["code"], "too_large");
    // One good span, one with a bad trace id, one with an oversized attribute.
    let t = trace_id(5);
    let mut bad_id = pspan(t, 2, None, "x", now(), 1, vec![], false);
    bad_id.trace_id = vec![1, 2, 3];
    let huge = pspan(t, 3, None, "y", now(), 1, vec![kv("blob", &"z".repeat(70_000))], false);
    let req = request("svc", vec![pspan(t, 1, None, "ok", now(), 1, vec![], false), bad_id, huge]);
    let r = n
        .http
        .send(Method::POST, &url, &[("content-type", "application/json")], serde_json::to_vec(&req).unwrap())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["partialSuccess"]["rejectedSpans"].to_string().trim_matches('"'), "2", "{v}");
    assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains("trace_id"), "{v}");
    traces.flush().await;
    assert_eq!(
        n.get(&format!("/api/traces/{}", hex(t))).await.json()["spans"].as_array().unwrap().len(),
        1,
        "the good span was kept"
    );
}

#[tokio::test]
async fn a_full_pipeline_answers_429_and_never_loses_acknowledged_spans() {
    let (n, traces, reg) = Node::with_traces(SamplerConfig::default(), 1).await;
    let url = format!("http://{}/v1/traces", n.otlp_addr);
    let mut tasks = Vec::new();
    for i in 0..64u8 {
        let (http, url) = (n.http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let t = trace_id(i);
            let spans: Vec<Span> = (0..200u8)
                .map(|j| pspan(t, j.max(1), None, "load", now(), 1, vec![kv("k", &"v".repeat(200))], false))
                .collect();
            let r = http
                .send(
                    Method::POST,
                    &url,
                    &[("content-type", "application/x-protobuf")],
                    request("load", spans).encode_to_vec(),
                )
                .await;
            (i, r.status, r.header("retry-after").map(str::to_owned))
        }));
    }
    let mut accepted = Vec::new();
    let mut busy = 0;
    for t in tasks {
        let (i, status, retry) = t.await.unwrap();
        match status {
            200 => accepted.push(i),
            429 => {
                busy += 1;
                assert_eq!(retry.as_deref(), Some("1"));
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(busy > 0, "some requests were told to back off");
    assert!(!accepted.is_empty());
    traces.flush().await;
    for i in accepted {
        let spans = n.get(&format!("/api/traces/{}", hex(trace_id(i)))).await.json()["spans"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0);
        // Span ids 1..199 are distinct (0 was mapped to 1 and deduplicated within the trace).
        assert_eq!(spans, 199, "trace {i} was acknowledged and must be whole");
    }
    assert!(reg.value("signalbox_traces_spans_refused_total", &[]).unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_answers_grpc_resource_exhausted_with_retry_after() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 1).await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", n.grpc_addr)).unwrap().connect().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..64u8 {
        let mut client = TraceServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let t = trace_id(100 + i);
            let spans: Vec<Span> = (1..=100u8)
                .map(|j| pspan(t, j, None, "load", now(), 1, vec![kv("k", &"v".repeat(200))], false))
                .collect();
            (i, client.export(request("load", spans)).await)
        }));
    }
    let (mut accepted, mut busy) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(r)) => {
                assert!(r.into_inner().partial_success.is_none());
                accepted.push(i);
            }
            (_, Err(s)) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("retry"), "{s:?}");
                assert_eq!(s.metadata().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
                busy += 1;
            }
        }
    }
    assert!(busy > 0 && !accepted.is_empty(), "{busy} refused, {} accepted", accepted.len());
    traces.flush().await;
    for i in accepted {
        let got = n.get(&format!("/api/traces/{}", hex(trace_id(100 + i)))).await.json();
        assert_eq!(got["spans"].as_array().map(Vec::len), Some(100), "trace {i} was acknowledged and must be whole");
    }
}

#[tokio::test]
async fn tail_sampling_keeps_every_error_and_slow_trace_whole() {
    let mut slow = std::collections::HashMap::new();
    slow.insert("db".to_string(), std::time::Duration::from_millis(100));
    let sampler = SamplerConfig { keep_rate: 0.0, decision_wait: ms(300), slow_by_service: slow, ..Default::default() };
    let (n, traces, reg) = Node::with_traces(sampler, 64).await;
    let start = now() - 10_000_000_000;
    let mut reqs = Vec::new();
    for i in 0..30u8 {
        let t = trace_id(i);
        let (error, db_ms) = match i % 3 {
            0 => (true, 10),
            1 => (false, 150),
            _ => (false, 10),
        };
        reqs.push(request("api", vec![pspan(t, 1, None, "GET /", start, 200, vec![], false)]));
        reqs.push(request("db", vec![pspan(t, 2, Some(1), "query", start + 1_000_000, db_ms, vec![], error)]));
    }
    // Deliver each trace's spans in two requests, as separate services would.
    for r in &reqs {
        assert_eq!(post(&n, r).await.status, 200);
    }
    tokio::time::sleep(ms(900)).await;
    traces.flush().await;
    for i in 0..30u8 {
        let got = n.get(&format!("/api/traces/{}", hex(trace_id(i)))).await;
        let count = got.json()["spans"].as_array().map(|a| a.len()).unwrap_or(0);
        match i % 3 {
            0 | 1 => assert_eq!(count, 2, "trace {i} (error or slow) kept whole"),
            _ => assert_eq!(got.status, 404, "trace {i} dropped"),
        }
    }
    let kept_error = reg.value("signalbox_traces_sampled_total", &[("decision", "kept"), ("reason", "error")]).unwrap();
    let kept_slow = reg.value("signalbox_traces_sampled_total", &[("decision", "kept"), ("reason", "slow")]).unwrap();
    let dropped = reg.value("signalbox_traces_sampled_total", &[("decision", "dropped"), ("reason", "rate")]).unwrap();
    assert_eq!((kept_error, kept_slow, dropped), (10.0, 10.0, 10.0));
}
