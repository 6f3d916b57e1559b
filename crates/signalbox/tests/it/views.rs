//! The console's joined views (`/api/overview`, `/api/service-map`, `/api/service-map/edge`,
//! `/api/services/{name}/summary`) over real traffic: a node with two upstream services
//! behind its gateway, registry instances, spans over Zipkin, and requests through the
//! gateway that continue a caller's trace.

use super::Node;
use serde_json::Value;
use signalbox_testkit::client::Http;
use signalbox_testkit::eventually;
use signalbox_testkit::upstream::{echo_response, serve, status};
use std::time::Duration;

fn hex16(i: u64) -> String {
    format!("{:016x}", 0x1000_0000_0000_0000u64 + i)
}

fn now_us() -> u64 {
    signalbox_core::time::unix_nanos() / 1000
}

async fn post_zipkin(http: &Http, node: &Node, spans: Value) {
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/v2/spans", node.zipkin),
            &[("content-type", "application/json")],
            spans.to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|x| x[key] == value)
}

fn in_range(v: &Value, lo: f64, hi: f64) -> bool {
    v.as_f64().is_some_and(|x| x >= lo && x <= hi)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_and_the_service_map_show_gateway_traffic_and_trace_edges() {
    let orders = serve(|req| async move { echo_response("orders", &req) }).await;
    let payments = serve(|req| async move {
        if req.uri().path().ends_with("/fail") { status(500) } else { echo_response("payments", &req) }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway.telemetry]\naccess_log = \"off\"\n\n[traces.sampling]\ndecision_wait = \"1s\"\n\n[metrics]\nself_interval = \"1s\"\n\n\
             [[gateway.services]]\nname = \"orders\"\nendpoints = [\"{}\"]\n\n[[gateway.services]]\nname = \"payments\"\nendpoints = [\"{}\"]\n\n\
             [[gateway.routes]]\nname = \"orders-api\"\nservice = \"orders\"\n[gateway.routes.match]\npath_prefix = \"/orders\"\n\n\
             [[gateway.routes]]\nname = \"payments-api\"\nservice = \"payments\"\n[gateway.routes.match]\npath_prefix = \"/payments\"\n",
            orders.url(),
            payments.url()
        ),
    )
    .unwrap();
    let node = Node::start(&["--config", cfg.to_str().unwrap()], &[]).await;
    let http = Http::new();
    let api = |p: &str| format!("http://{}{p}", node.console);

    // Registry instances for both services.
    for (svc, up) in [("orders", &orders), ("payments", &payments)] {
        let body = serde_json::json!({ "service": svc, "address": "127.0.0.1", "port": up.addr.port(),
            "checks": [{ "ttl": "60s", "initial_status": "passing" }] });
        let r = http
            .send(
                http::Method::POST,
                &api("/api/registry/instances"),
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // Two versions of the payments application's config.
    for v in ["3s", "5s"] {
        let body = serde_json::json!({ "value": v, "comment": format!("timeout {v}") });
        let r = http
            .send(
                http::Method::PUT,
                &api("/api/config/payments/default/timeout"),
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
    }

    // The gateway's series are stored (at zero) before any traffic, as they are on a node
    // that has been up a while: a rate needs a sample from before the requests.
    eventually(Duration::from_secs(20), "the gateway's request counters in the TSDB", || {
        let u = api("/prometheus/api/v1/query?query=signalbox_gateway_requests_total%7Bservice%3D%22payments%22%7D");
        let http = http.clone();
        async move { http.get(&u).await.json()["data"]["result"].as_array().is_some_and(|r| !r.is_empty()).then_some(()) }
    })
    .await;

    // web calls orders through the gateway: web's client span first, then the request that
    // continues it.
    let t0 = now_us();
    let web_spans: Vec<Value> = (0..20u64)
        .map(|i| {
            serde_json::json!({ "traceId": format!("{}{}", hex16(i), hex16(i)), "id": hex16(i), "name": "get /orders",
                "kind": "CLIENT", "timestamp": t0 + i, "duration": 3000, "localEndpoint": { "serviceName": "web" } })
        })
        .collect();
    post_zipkin(&http, &node, Value::Array(web_spans)).await;
    for i in 0..20u64 {
        let tp = format!("00-{}{}-{}-01", hex16(i), hex16(i), hex16(i));
        let r = http
            .send(
                http::Method::GET,
                &format!("http://{}/orders/{i}", node.gateway),
                &[("traceparent", &tp)],
                bytes::Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Callers from outside reach payments; half of the calls fail.
    for i in 0..20 {
        let path = if i % 2 == 0 { "fail" } else { "ok" };
        let r = http.get(&format!("http://{}/payments/{path}", node.gateway)).await;
        assert_eq!(r.status, if i % 2 == 0 { 500 } else { 200 });
    }
    // orders calls db directly (both instrumented); one call of four fails.
    let direct: Vec<Value> = (0..4u64)
        .flat_map(|i| {
            let tid = format!("{}{}", hex16(100 + i), hex16(100 + i));
            let mut db = serde_json::json!({ "traceId": tid, "id": hex16(200 + i), "parentId": hex16(100 + i), "name": "select",
                "kind": "SERVER", "timestamp": t0 + 10, "duration": 2000, "localEndpoint": { "serviceName": "db" } });
            if i == 0 {
                db["tags"] = serde_json::json!({ "error": "timeout" });
            }
            [
                serde_json::json!({ "traceId": tid, "id": hex16(100 + i), "name": "checkout", "kind": "SERVER",
                    "timestamp": t0, "duration": 5000, "localEndpoint": { "serviceName": "orders" } }),
                db,
            ]
        })
        .collect();
    post_zipkin(&http, &node, Value::Array(direct)).await;

    // The map: web -> orders through the gateway, gateway -> payments from outside, orders -> db.
    let map = eventually(Duration::from_secs(40), "the service map's three edges with traffic", || {
        let (http, u) = (http.clone(), api("/api/service-map?since=5m"));
        async move {
            let m = http.get(&u).await.json();
            let edges = &m["edges"];
            let ok = find(edges, "id", "web>orders").is_some_and(|e| e["rate_rps"].as_f64() > Some(0.0))
                && find(edges, "id", "signalbox-gateway>payments").is_some_and(|e| in_range(&e["error_ratio"], 0.3, 0.7))
                && find(edges, "id", "orders>db").is_some()
                // The gateway's metrics are stored every second: wait until they are joined.
                && find(edges, "id", "web>orders").is_some_and(|e| e["source"] == "traces+gateway")
                && find(&m["nodes"], "id", "payments").is_some_and(|n| n["status"] == "fail");
            ok.then_some(m)
        }
    })
    .await;
    let edges = &map["edges"];
    let web_orders = find(edges, "id", "web>orders").unwrap();
    assert_eq!(web_orders["via"], "gateway", "{web_orders}");
    assert_eq!(web_orders["error_ratio"], 0.0, "{web_orders}");
    assert!(in_range(&web_orders["p99_ms"], 0.0, 5000.0), "{web_orders}");
    // 20 calls in a 5-minute window.
    assert!(in_range(&web_orders["rate_rps"], 10.0 / 300.0, 40.0 / 300.0), "{web_orders}");
    assert_eq!(web_orders["health"], "ok");
    let pay = find(edges, "id", "signalbox-gateway>payments").unwrap();
    assert_eq!(pay["health"], "fail", "{pay}");
    assert!(in_range(&pay["p99_ms"], 0.0, 5000.0), "{pay}");
    assert!(in_range(&pay["rate_rps"], 10.0 / 300.0, 40.0 / 300.0), "{pay}");
    let db = find(edges, "id", "orders>db").unwrap();
    assert_eq!(
        (db["via"].as_str(), db["calls"].as_f64(), db["error_ratio"].as_f64()),
        (Some("direct"), Some(4.0), Some(0.25))
    );
    assert!(find(edges, "id", "web>signalbox-gateway").is_none(), "the gateway hop is seen through: {edges}");
    let nodes = &map["nodes"];
    assert_eq!(find(nodes, "id", "signalbox-gateway").unwrap()["kind"], "gateway");
    for n in ["web", "orders", "payments", "db"] {
        assert_eq!(find(nodes, "id", n).unwrap_or_else(|| panic!("node {n}: {nodes}"))["kind"], "service");
    }
    assert_eq!(find(nodes, "id", "payments").unwrap()["status"], "fail");
    assert!(map["window"]["start_unix_nanos"].is_string());

    // The overview: payments first (half its requests fail), then orders.
    let o = eventually(Duration::from_secs(20), "the overview's rates", || {
        let (http, u) = (http.clone(), api("/api/overview?since=5m"));
        async move {
            let o = http.get(&u).await.json();
            let rate = |n: &str| find(&o["services"], "name", n).and_then(|s| s["rate_rps"].as_f64()).unwrap_or(0.0);
            (rate("orders") > 0.0 && rate("payments") > 0.0).then_some(o)
        }
    })
    .await;
    let services = &o["services"];
    assert_eq!(services[0]["name"], "payments", "{services}");
    let p = &services[0];
    assert!(in_range(&p["error_ratio"], 0.3, 0.7), "{p}");
    assert!(in_range(&p["rate_rps"], 10.0 / 300.0, 40.0 / 300.0), "{p}");
    assert!(in_range(&p["p99_ms"], 0.0, 5000.0), "{p}");
    assert_eq!(p["status"], "fail");
    assert!(p["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("% errors")), "{p}");
    assert_eq!(p["instances"]["total"], 1);
    assert!(p["spark"]["rate"].as_array().unwrap().iter().any(|v| v.as_f64().is_some_and(|x| x > 0.0)), "{p}");
    let orders_row = find(services, "name", "orders").unwrap();
    assert_eq!(orders_row["error_ratio"], 0.0);
    assert_eq!(orders_row["status"], "ok", "{orders_row}");
    assert!(find(services, "name", "signalbox-gateway").is_none(), "the gateway is not a service row");
    assert_eq!(o["problems"].as_array().unwrap().len(), 0, "{o}");

    // One edge's traces: the failing calls from outside into payments.
    let e = http.get(&api("/api/service-map/edge?from=signalbox-gateway&to=payments&since=5m")).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let e = e.json();
    let failing = e["failing_traces"].as_array().unwrap();
    assert!(!failing.is_empty() && failing.iter().all(|t| t["call_error"] == true), "{e}");
    assert!(failing[0]["start_unix_nanos"].is_string() && failing[0]["trace_id"].is_string());

    // The service page's summary.
    let s = http.get(&api("/api/services/payments/summary?since=5m")).await;
    assert_eq!(s.status, 200, "{}", s.text());
    let s = s.json();
    assert_eq!(s["routes"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["routes"][0]["name"], "payments-api");
    assert_eq!(s["instances"].as_array().unwrap().len(), 1);
    let cfg = s["config"].as_array().unwrap();
    assert_eq!(cfg.len(), 2, "{s}");
    assert_eq!((cfg[0]["version"].as_u64(), cfg[0]["comment"].as_str()), (Some(2), Some("timeout 5s")));
    assert!(cfg[0]["index"].is_string());
    assert!(in_range(&s["red"]["error_ratio"], 0.3, 0.7), "{s}");
    assert!(!s["failing_traces"].as_array().unwrap().is_empty(), "{s}");
    assert!(s["circuit_history"].is_array());
    assert!(s["queries"]["rate"].as_str().unwrap().contains("signalbox_gateway_requests_total"));

    // Bad input is named.
    let bad = http.get(&api("/api/overview?since=soon")).await;
    assert_eq!((bad.status, bad.json()["field"].as_str()), (400, Some("since")));
    let bad = http.get(&api("/api/service-map?window=1h")).await;
    assert_eq!((bad.status, bad.json()["field"].as_str()), (400, Some("window")));
    let bad = http.get(&api("/api/service-map/edge?from=a")).await;
    assert_eq!((bad.status, bad.json()["field"].as_str()), (400, Some("to")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_circuit_shows_on_the_overview_and_in_the_service_history() {
    let flaky = serve(|_req| async move { status(500) }).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway.telemetry]\naccess_log = \"off\"\n\n[metrics]\nself_interval = \"1s\"\n\n\
             [[gateway.services]]\nname = \"flaky\"\nendpoints = [\"{}\"]\n\
             [gateway.services.circuit_breaker]\nwindow_size = 10\nminimum_calls = 5\nfailure_rate_threshold = 50.0\nwait_in_open = \"60s\"\n\n\
             [[gateway.routes]]\nname = \"flaky-api\"\nservice = \"flaky\"\n[gateway.routes.match]\npath_prefix = \"/flaky\"\n",
            flaky.url()
        ),
    )
    .unwrap();
    let node = Node::start(&["--config", cfg.to_str().unwrap()], &[]).await;
    let http = Http::new();
    let api = |p: &str| format!("http://{}{p}", node.console);
    // The closed circuit is stored before it opens.
    eventually(Duration::from_secs(20), "the circuit gauge in the TSDB", || {
        let u = api("/prometheus/api/v1/query?query=signalbox_gateway_circuit_state%7Bservice%3D%22flaky%22%7D");
        let http = http.clone();
        async move { http.get(&u).await.json()["data"]["result"].as_array().is_some_and(|r| !r.is_empty()).then_some(()) }
    })
    .await;
    for _ in 0..10 {
        let r = http.get(&format!("http://{}/flaky/x", node.gateway)).await;
        assert!(r.status == 500 || r.status == 503, "{}", r.status);
    }
    let s = eventually(Duration::from_secs(20), "the circuit's opening in the service history", || {
        let (http, u) = (http.clone(), api("/api/services/flaky/summary?since=5m"));
        async move {
            let s = http.get(&u).await.json();
            let opened = s["circuit_history"].as_array()?.iter().any(|t| {
                t["kind"] == "circuit" && t["scope"] == "service" && t["from"] == "closed" && t["to"] == "open"
            });
            opened.then_some(s)
        }
    })
    .await;
    assert_eq!(s["gateway"]["circuit"], "open", "{s}");
    assert!(s["circuit_history"][0]["t_ms"].as_i64().is_some_and(|t| t > 0));
    let o = http.get(&api("/api/overview?since=5m")).await.json();
    let row = find(&o["services"], "name", "flaky").unwrap();
    assert_eq!((row["status"].as_str(), row["circuits_open"].as_u64()), (Some("fail"), Some(1)), "{row}");
    assert!(row["reasons"].as_array().unwrap().iter().any(|r| r == "1 circuit open"), "{row}");
    assert_eq!(o["totals"]["circuits_open"], 1);
}
