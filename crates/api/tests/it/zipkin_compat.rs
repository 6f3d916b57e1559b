//! The Zipkin v2 API as Zipkin answers it: both halves of a shared span, 64-bit trace ids,
//! local endpoints and `debug` kept, `traceMany`, autocompletion, `annotationQuery` terms
//! matched across a service's spans, and the protobuf format from the OpenTelemetry Python
//! SDK's Zipkin exporter.

use crate::traces::now;
use crate::*;
use http::Method;
use serde_json::{Value, json};
use signalbox_events::spans::sampler::SamplerConfig;
use std::process::Command;

async fn post(n: &Node, body: Value) {
    let r = n.call(Method::POST, "/zipkin/api/v2/spans", None, Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text());
}

fn by(list: &Value, f: impl Fn(&Value) -> bool) -> &Value {
    list.as_array().unwrap().iter().find(|x| f(x)).unwrap_or_else(|| panic!("not in {list}"))
}

#[tokio::test]
async fn both_halves_of_a_shared_span_are_kept() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let ts = now() / 1000 - 2_000_000;
    let t = "5af7183fb1d4cf5f5af7183fb1d4cf5f";
    let id = "6b221d5bc9e6496c";
    // The client half arrives first, in its own request; then the server half (shared,
    // failed) and the server's own child.
    post(
        &n,
        json!([{"traceId": t, "id": id, "name": "post /pay", "kind": "CLIENT", "timestamp": ts, "duration": 3000,
        "localEndpoint": {"serviceName": "shop"}, "remoteEndpoint": {"serviceName": "pay", "ipv4": "10.1.2.3", "port": 8443}}]),
    )
    .await;
    post(&n, json!([
        {"traceId": t, "id": id, "name": "post /pay", "kind": "SERVER", "shared": true, "timestamp": ts + 500, "duration": 2000,
         "localEndpoint": {"serviceName": "pay", "ipv4": "10.1.2.3", "port": 8443},
         "tags": {"http.status_code": "500", "error": "card service down"}},
        {"traceId": t, "id": "7c221d5bc9e6496c", "parentId": id, "name": "charge", "timestamp": ts + 700, "duration": 100,
         "localEndpoint": {"serviceName": "pay"}}]))
    .await;
    assert!(traces.sync(ms(10_000)).await);
    for sealed in [false, true] {
        if sealed {
            traces.flush().await;
        }
        let z = n.get(&format!("/zipkin/api/v2/trace/{t}")).await.json();
        assert_eq!(z.as_array().unwrap().len(), 3, "sealed={sealed} {z}");
        let server = by(&z, |s| s["kind"] == "SERVER");
        assert_eq!(server["id"], id);
        assert_eq!(server["shared"], true);
        assert_eq!(server["tags"]["error"], "card service down");
        assert_eq!(server["tags"]["http.status_code"], "500");
        assert_eq!(server["localEndpoint"], json!({"serviceName": "pay", "ipv4": "10.1.2.3", "port": 8443}));
        let client = by(&z, |s| s["kind"] == "CLIENT");
        assert_eq!((client["id"].as_str(), client.get("shared")), (Some(id), None));
        assert_eq!(client["localEndpoint"], json!({"serviceName": "shop"}));
        assert_eq!(client["remoteEndpoint"], json!({"serviceName": "pay", "ipv4": "10.1.2.3", "port": 8443}));
        assert_eq!(client["tags"], json!({"peer.service": "pay"}), "the peer's address is not a tag: {client}");

        let native = n.get(&format!("/api/traces/{t}")).await.json();
        let halves: Vec<&Value> = native["spans"].as_array().unwrap().iter().filter(|s| s["span_id"] == id).collect();
        assert_eq!(halves.len(), 2, "{native}");
        assert!(halves.iter().any(|s| s["status"] == "error" && s["service"] == "pay" && s["shared"] == true));
        assert!(halves.iter().any(|s| s["service"] == "shop" && s.get("shared").is_none()));

        // Jaeger gives the server half its own id, a child of the client half, and moves the
        // server's children under it (Jaeger's own handling of Zipkin shared spans).
        let j = &n.get(&format!("/jaeger/api/traces/{t}")).await.json()["data"][0];
        let spans = &j["spans"];
        assert_eq!(spans.as_array().unwrap().len(), 3);
        let jc = by(spans, |s| s["tags"].as_array().unwrap().iter().any(|t| t["value"] == "client"));
        let js = by(spans, |s| s["tags"].as_array().unwrap().iter().any(|t| t["value"] == "server"));
        assert_eq!(jc["spanID"], id);
        assert_ne!(js["spanID"], id);
        assert_eq!(js["references"], json!([{"refType": "CHILD_OF", "traceID": t, "spanID": id}]));
        assert_eq!(by(spans, |s| s["operationName"] == "charge")["references"][0]["spanID"], js["spanID"]);
        assert!(js["tags"].as_array().unwrap().iter().any(|t| t["key"] == "error" && t["value"] == true));
    }
}

#[tokio::test]
async fn zipkin_ids_endpoints_debug_trace_many_and_autocomplete() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let ts = now() / 1000 - 2_000_000;
    post(
        &n,
        json!([
        {"traceId": "463ac35c9f6413ad", "id": "463ac35c9f6413ad", "name": "get /", "kind": "SERVER", "timestamp": ts,
         "duration": 900, "debug": true, "localEndpoint": {"serviceName": "edge", "ipv6": "2001:db8::1", "port": 80},
         "tags": {"http.method": "GET"}},
        {"traceId": "00000000000000010000000000000002", "id": "0000000000000003", "name": "post /", "timestamp": ts + 1,
         "duration": 900, "localEndpoint": {"serviceName": "edge"}, "tags": {"http.method": "POST"}}]),
    )
    .await;
    assert!(traces.sync(ms(10_000)).await);
    for sealed in [false, true] {
        if sealed {
            traces.flush().await;
        }
        let z = n.get("/zipkin/api/v2/trace/463ac35c9f6413ad").await.json();
        assert_eq!(z[0]["traceId"], "463ac35c9f6413ad", "a 64-bit id is answered as sent: {z}");
        assert_eq!(z[0]["debug"], true);
        assert_eq!(z[0]["localEndpoint"], json!({"serviceName": "edge", "ipv6": "2001:db8::1", "port": 80}));
        let many = n
            .get("/zipkin/api/v2/traceMany?traceIds=463ac35c9f6413ad,00000000000000010000000000000002,0000000000000009")
            .await;
        assert_eq!(many.status, 200);
        let many = many.json();
        assert_eq!(many.as_array().unwrap().len(), 2, "{many}");
        assert_eq!(many[1][0]["traceId"], "00000000000000010000000000000002");
        assert_eq!(many[1][0].get("debug"), None);
        let found = n.get("/zipkin/api/v2/traces?serviceName=edge&spanName=get%20%2F").await.json();
        assert_eq!(found[0][0]["traceId"], "463ac35c9f6413ad");
        let keys = n.get("/zipkin/api/v2/autocompleteKeys").await;
        assert_eq!((keys.status, keys.header("content-type")), (200, Some("application/json")));
        assert_eq!(keys.json(), json!(["http.method"]));
        let values = n.get("/zipkin/api/v2/autocompleteValues?key=http.method").await;
        assert_eq!(values.json(), json!(["GET", "POST"]), "sealed={sealed}");
        assert_eq!(n.get("/zipkin/api/v2/autocompleteValues?key=nope").await.json(), json!([]));
    }
    let r = n.get("/zipkin/api/v2/autocompleteValues").await;
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("key")));
    let r = n.get("/zipkin/api/v2/traceMany").await;
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("traceIds")));
    let r = n.get("/zipkin/api/v2/traceMany?traceIds=zz").await;
    assert_eq!(r.status, 400);
    let r = n
        .call(
            Method::POST,
            "/zipkin/api/v2/spans",
            None,
            Some(json!([{"traceId": "463ac35c9f6413ad",
        "id": "463ac35c9f6413ad", "timestamp": ts, "localEndpoint": {"serviceName": "x", "ipv4": "300.1.1.1"}}])),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("localEndpoint.ipv4"), "{}", r.text());
}

#[tokio::test]
async fn annotation_queries_match_terms_across_a_services_spans() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let ts = now() / 1000 - 2_000_000;
    let span = |t: &str, id: &str, svc: &str, tags: Value, ann: &[&str]| {
        json!({"traceId": t, "id": id, "name": "op", "timestamp": ts, "duration": 10, "localEndpoint": {"serviceName": svc},
            "tags": tags, "annotations": ann.iter().map(|a| json!({"timestamp": ts + 1, "value": a})).collect::<Vec<_>>()})
    };
    let (a, b) = ("000000000000000000000000000000a1", "000000000000000000000000000000b1");
    post(
        &n,
        json!([
            // Trace a: web's tag and web's annotation are on different spans.
            span(a, "0000000000000001", "web", json!({"http.method": "GET", "http.url": "https://shop?q=1"}), &[]),
            span(a, "0000000000000002", "web", json!({}), &["retried"]),
            // Trace b: the annotation is on another service's span.
            span(b, "0000000000000001", "web", json!({"http.method": "GET"}), &[]),
            span(b, "0000000000000002", "db", json!({"error": "deadlock"}), &["retried"]),
        ]),
    )
    .await;
    assert!(traces.sync(ms(10_000)).await);
    let ids = |v: Value| -> Vec<String> {
        let mut ids: Vec<String> =
            v.as_array().unwrap().iter().map(|t| t[0]["traceId"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    for sealed in [false, true] {
        if sealed {
            traces.flush().await;
        }
        let q = |svc: &str, aq: &str| {
            let aq = aq.replace(' ', "%20").replace('=', "%3D");
            format!("/zipkin/api/v2/traces?serviceName={svc}&annotationQuery={aq}")
        };
        assert_eq!(ids(n.get(&q("web", "http.method=GET and retried")).await.json()), vec![a], "sealed={sealed}");
        assert_eq!(ids(n.get(&q("web", "retried")).await.json()), vec![a]);
        assert_eq!(ids(n.get(&q("web", "http.method")).await.json()), vec![a, b]);
        assert_eq!(ids(n.get(&q("web", "nosuchkey")).await.json()), Vec::<String>::new(), "unknown keys match nothing");
        assert_eq!(ids(n.get(&q("web", "http.method=POST")).await.json()), Vec::<String>::new());
        assert_eq!(ids(n.get(&q("web", "error")).await.json()), Vec::<String>::new());
        assert_eq!(ids(n.get(&q("db", "error=deadlock and retried")).await.json()), vec![b]);
        // Any escape decodes (the Zipkin UI encodes with encodeURIComponent).
        let url = "/zipkin/api/v2/traces?serviceName=web&annotationQuery=http.url%3Dhttps%3A%2F%2Fshop%3Fq%3D1";
        assert_eq!(ids(n.get(url).await.json()), vec![a]);
        assert_eq!(ids(n.get("/zipkin/api/v2/traces?annotationQuery=retried").await.json()), vec![a, b]);
    }
    let r = n.get("/zipkin/api/v2/traces?annotationQuery=%3Dx").await;
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("annotationQuery")));
}

/// The Python SDK's Zipkin exporter needs protobuf 3, so it lives in its own virtualenv
/// (scripts/test-deps.sh makes it; `SIGNALBOX_ZIPKIN_PYTHON` names another interpreter).
fn zipkin_python() -> String {
    std::env::var("SIGNALBOX_ZIPKIN_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/signalbox/zipkin-venv/bin/python", std::env::var("HOME").unwrap_or_default())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_python_zipkin_protobuf_exporter() {
    let (n, traces, _) = Node::with_traces(SamplerConfig::default(), 64).await;
    let script = format!("{}/tests/python/zipkin_proto_send.py", env!("CARGO_MANIFEST_DIR"));
    let url = n.url("/zipkin/api/v2/spans");
    let out = tokio::task::spawn_blocking(move || Command::new(zipkin_python()).args([script, url]).output())
        .await
        .unwrap()
        .expect("the Zipkin exporter's Python runs (scripts/test-deps.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "zipkin_proto_send.py failed: {stderr}");
    let tid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(tid.len(), 32, "{tid:?} {stderr}");
    assert!(traces.sync(ms(10_000)).await);
    let z = n.get(&format!("/zipkin/api/v2/trace/{tid}")).await.json();
    assert_eq!(z.as_array().map(Vec::len), Some(2), "{z}");
    let root = by(&z, |s| s["name"] == "GET /cart");
    let child = by(&z, |s| s["name"] == "load cart");
    assert_eq!(root["kind"], "SERVER");
    assert_eq!(root["localEndpoint"], json!({"serviceName": "py-zipkin", "ipv4": "10.0.0.5", "port": 8080}));
    assert_eq!(root["tags"]["http.method"], "GET");
    assert_eq!(child["parentId"], root["id"]);
    assert_eq!(child["kind"], "CLIENT");
    assert_eq!(child["tags"]["db.system"], "redis");
    // The exporter encodes an event as a JSON annotation value.
    assert_eq!(child["annotations"][0]["value"], r#"{"cache miss": {}}"#);
    let native = n.get(&format!("/api/traces/{tid}")).await.json();
    let c = by(&native["spans"], |s| s["name"] == "load cart");
    assert_eq!(c["status"], "error", "{c}");
    assert_eq!(c["resource"], json!({"net.host.ip": "10.0.0.5", "net.host.port": 8080}));
}
