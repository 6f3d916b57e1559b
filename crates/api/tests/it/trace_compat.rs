//! Trace model and protocol shapes: span links, resources and scopes kept apart (OTLP/gRPC
//! and OTLP/JSON in, native and Jaeger out, before and after sealing), OTLP/HTTP answers,
//! and the Jaeger query API's shapes (trace id lists, errors, orphan warnings, span kinds).

use crate::traces::{hex, kv, now, pspan, request, trace_id};
use crate::*;
use http::Method;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::trace::v1::span::Link;
use serde_json::{Value, json};
use signalbox_events::spans::sampler::SamplerConfig;

fn find<'a>(list: &'a Value, field: &str, value: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|x| x[field] == value).unwrap_or_else(|| panic!("{field}={value} in {list}"))
}

async fn post_json(n: &Node, body: &Value) -> signalbox_testkit::client::Resp {
    let url = format!("http://{}/v1/traces", n.otlp_addr);
    n.http.send(Method::POST, &url, &[("content-type", "application/json")], body.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_resources_and_scopes_are_kept_apart_and_returned_by_every_api() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let (t, other) = (trace_id(41), trace_id(42));
    let start = now() - 2_000_000_000;
    // OTLP/gRPC: a batch consumer span linked to two producer spans of another trace.
    let mut consumer = pspan(t, 1, None, "process batch", start, 50, vec![kv("messaging.batch", "7")], false);
    consumer.links = vec![
        Link {
            trace_id: other.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 9],
            attributes: vec![kv("link.n", "1")],
            ..Default::default()
        },
        Link { trace_id: other.to_vec(), span_id: vec![0, 0, 0, 0, 0, 0, 0, 10], ..Default::default() },
    ];
    let mut req =
        request("worker", vec![consumer, pspan(t, 2, Some(1), "store", start + 1_000_000, 10, vec![], false)]);
    let rs = &mut req.resource_spans[0];
    rs.resource.as_mut().unwrap().attributes.extend([kv("process.pid", "4242"), kv("telemetry.sdk.language", "rust")]);
    rs.scope_spans[0].scope =
        Some(InstrumentationScope { name: "io.queue".into(), version: "3.1".into(), ..Default::default() });
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", n.grpc_addr)).unwrap().connect().await.unwrap();
    let resp = TraceServiceClient::new(channel).export(req).await.unwrap().into_inner();
    assert!(resp.partial_success.is_none());
    // OTLP/JSON: a span of another service with a link; the answer is `{}`.
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "api"}},
            {"key": "host.name", "value": {"stringValue": "api-7"}}]},
        "scopeSpans": [{"scope": {"name": "http.server", "version": "0.9"}, "spans": [{
            "traceId": hex(t), "spanId": "0000000000000003", "parentSpanId": "0000000000000001", "name": "GET /x", "kind": 2,
            "startTimeUnixNano": (start + 2_000_000).to_string(), "endTimeUnixNano": (start + 9_000_000).to_string(),
            "links": [{"traceId": hex(other), "spanId": "000000000000000b", "traceState": "v=1"}]}]}]}]});
    let r = post_json(&n, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "{}", "nothing refused: an empty response, not partialSuccess: null");
    assert!(traces.sync(ms(10_000)).await);

    for sealed in [false, true] {
        if sealed {
            traces.flush().await;
        }
        let native = n.get(&format!("/api/traces/{}", hex(t))).await.json();
        let spans = &native["spans"];
        let c = find(spans, "name", "process batch");
        assert_eq!(c["links"].as_array().unwrap().len(), 2, "sealed={sealed} {c}");
        assert_eq!(c["links"][0]["trace_id"], hex(other));
        assert_eq!(c["links"][0]["span_id"], "0000000000000009");
        assert_eq!(c["links"][0]["attributes"]["link.n"], "1");
        assert_eq!(c["resource"], json!({"host.name": "h1", "process.pid": "4242", "telemetry.sdk.language": "rust"}));
        assert_eq!(c["scope"], json!({"name": "io.queue", "version": "3.1"}));
        assert_eq!(c["attributes"], json!({"messaging.batch": "7"}), "no resource or scope in the attributes");
        let g = find(spans, "name", "GET /x");
        assert_eq!(g["links"][0]["trace_state"], "v=1");
        assert_eq!(g["resource"], json!({"host.name": "api-7"}));
        assert_eq!(g["scope"]["name"], "http.server");

        let j = &n.get(&format!("/jaeger/api/traces/{}", hex(t))).await.json()["data"][0];
        let js = find(&j["spans"], "operationName", "process batch");
        let refs = js["references"].as_array().unwrap();
        assert_eq!(refs.len(), 2, "{js}");
        assert!(refs.iter().all(|r| r["refType"] == "FOLLOWS_FROM" && r["traceID"] == hex(other)), "{js}");
        let tags = js["tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["key"] == "otel.scope.name" && t["value"] == "io.queue"), "{js}");
        assert!(!tags.iter().any(|t| t["key"] == "process.pid"), "{js}");
        let p = &j["processes"][js["processID"].as_str().unwrap()];
        assert_eq!(p["serviceName"], "worker");
        let ptags = p["tags"].as_array().unwrap();
        assert!(ptags.iter().any(|t| t["key"] == "process.pid" && t["value"] == "4242"), "{p}");
        assert!(!ptags.iter().any(|t| t["key"].as_str().unwrap().starts_with("otel.scope")), "{p}");
        let x = find(&j["spans"], "operationName", "GET /x");
        assert_eq!(x["references"][0]["refType"], "CHILD_OF");
        assert_eq!(x["references"][1]["refType"], "FOLLOWS_FROM");
        assert_eq!(j["processes"][x["processID"].as_str().unwrap()]["tags"][0]["value"], "api-7");
        // Zipkin has neither: the resource and the scope are tags there, as OpenTelemetry's
        // Zipkin exporters write them.
        let z = n.get(&format!("/zipkin/api/v2/trace/{}", hex(t))).await.json();
        let zc = z.as_array().unwrap().iter().find(|s| s["name"] == "process batch").unwrap();
        assert_eq!(zc["tags"]["process.pid"], "4242", "{zc}");
        assert_eq!(zc["tags"]["otel.scope.name"], "io.queue");
        assert_eq!(zc["tags"]["messaging.batch"], "7");
        assert_eq!(zc["localEndpoint"], json!({"serviceName": "worker"}));

        // Resource attributes are still searchable.
        let found = n.get("/api/traces?tag=process.pid=4242&lookback=1h").await.json();
        assert_eq!(found["traces"].as_array().unwrap().len(), 1, "sealed={sealed} {found}");
        let found = n.get("/api/traces?service=api&tag=host.name=api-7&lookback=1h").await.json();
        assert_eq!(found["traces"][0]["trace_id"], hex(t), "sealed={sealed} {found}");
        let none = n.get("/api/traces?service=api&tag=process.pid=4242&lookback=1h").await.json();
        assert_eq!(none["traces"], json!([]), "another service's resource does not match");
    }
}

#[tokio::test]
async fn otlp_http_answers_empty_or_a_proper_partial_success() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let t = hex(trace_id(43));
    let span =
        |id: &str| json!({"traceId": t, "spanId": id, "name": "op", "startTimeUnixNano": "1", "endTimeUnixNano": "2"});
    let body = |spans: Vec<Value>| json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]});
    let r = post_json(&n, &body(vec![span("0000000000000001"), span("0000000000000000")])).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains("span_id"), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1);
    let r = post_json(&n, &body(vec![span("0000000000000002")])).await;
    assert_eq!((r.status, r.text()), (200, "{}".to_owned()));
    // Protobuf: an empty message when everything was accepted.
    let r = n
        .http
        .send(
            Method::POST,
            &format!("http://{}/v1/traces", n.otlp_addr),
            &[("content-type", "application/x-protobuf")],
            prost::Message::encode_to_vec(&request(
                "p",
                vec![pspan(trace_id(44), 1, None, "x", now(), 1, vec![], false)],
            )),
        )
        .await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(traces.sync(ms(10_000)).await);
}

#[tokio::test]
async fn the_jaeger_api_answers_in_jaegers_shapes() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let start = now() - 3_000_000_000;
    for i in 0..3u8 {
        let spans = vec![
            pspan(trace_id(50 + i), 1, None, "GET /a", start, 20, vec![], false),
            // A child whose parent (id 7) never arrives.
            pspan(trace_id(50 + i), 2, Some(7), "orphan", start + 1_000_000, 5, vec![], false),
        ];
        let mut req = request("front", spans);
        req.resource_spans[0].scope_spans[0].spans[1].kind = 3;
        let r = n
            .http
            .send(
                Method::POST,
                &format!("http://{}/v1/traces", n.otlp_addr),
                &[("content-type", "application/x-protobuf")],
                prost::Message::encode_to_vec(&req),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    assert!(traces.sync(ms(10_000)).await);
    let (a, b) = (hex(trace_id(50)), hex(trace_id(52)));
    // Repeated traceID parameters: exactly those traces.
    let v = n.get(&format!("/jaeger/api/traces?traceID={a}&traceID={b}")).await.json();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![a.as_str(), b.as_str()], "{v}");
    assert_eq!((v["total"].as_u64(), v["errors"].is_null()), (Some(2), true));
    let missing = hex(trace_id(99));
    let v = n.get(&format!("/jaeger/api/traces?traceID={a}&traceID={missing}")).await.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["errors"], json!([{"msg": "trace not found", "traceID": missing}]));
    // A search needs a service; errors come in Jaeger's envelope.
    let r = n.get("/jaeger/api/traces?lookback=1h").await;
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!((&e["data"], &e["total"], &e["limit"], &e["offset"]), (&Value::Null, &json!(0), &json!(0), &json!(0)));
    assert_eq!(e["errors"][0]["code"], 400);
    assert_eq!(e["errors"][0]["msg"], "parameter 'service' is required", "{e}");
    let r = n.get("/jaeger/api/operations").await;
    assert_eq!((r.status, &r.json()["errors"][0]["msg"]), (400, &json!("parameter 'service' is required")));
    let r = n.get(&format!("/jaeger/api/traces/{missing}")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errors"], json!([{"code": 404, "msg": "trace not found"}]));
    let r = n.get("/jaeger/api/traces/xyz").await;
    assert_eq!((r.status, r.json()["errors"][0]["code"].as_u64()), (400, Some(400)));
    let r = n.get("/jaeger/api/dependencies?endTs=soon").await;
    assert_eq!((r.status, r.json()["errors"][0]["code"].as_u64()), (400, Some(400)), "{}", r.text());
    let r = n.get("/jaeger/api/operations?service=front&spanKind=sideways").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["errors"][0]["msg"].as_str().unwrap().contains("spanKind"));
    // Orphans get Jaeger's warning; the root does not.
    let t = &n.get(&format!("/jaeger/api/traces/{a}")).await.json()["data"][0];
    assert_eq!(
        find(&t["spans"], "operationName", "orphan")["warnings"],
        json!(["invalid parent span IDs=0000000000000007; skipping clock skew adjustment"])
    );
    assert!(find(&t["spans"], "operationName", "GET /a")["warnings"].is_null());
    // Operations by span kind, before and after sealing.
    for _ in 0..2 {
        let ops = n.get("/jaeger/api/operations?service=front&spanKind=server").await.json();
        assert_eq!(ops["data"], json!([{"name": "GET /a", "spanKind": "server"}]), "{ops}");
        let ops = n.get("/jaeger/api/operations?service=front").await.json();
        assert_eq!(
            ops["data"],
            json!([{"name": "GET /a", "spanKind": "server"}, {"name": "orphan", "spanKind": "client"}])
        );
        traces.flush().await;
    }
    let found = n.get("/jaeger/api/traces?service=front&lookback=1h&limit=10").await.json();
    assert_eq!(found["data"].as_array().unwrap().len(), 3);
}
