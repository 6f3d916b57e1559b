//! The registry API and the health control loop, against real servers.

use crate::*;
use http::Method;
use serde_json::json;
use signalbox_gateway::config::{GatewayConfig, RetryConfig, RouteConfig, ServiceConfig};
use signalbox_testkit::upstream::{echo, serve, status};
use signalbox_testkit::{eventually, sse};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

async fn register(n: &Node, body: serde_json::Value) -> Resp {
    n.call(Method::POST, "/api/registry/instances", None, Some(body)).await
}

async fn status_of(n: &Node, id: &str) -> String {
    n.get(&format!("/api/registry/instances/{id}")).await.json()["status"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn register_list_and_deregister() {
    let n = Node::start().await;
    let r = register(
        &n,
        json!({"service": "orders", "address": "127.0.0.1", "port": 9001, "tags": ["v1"], "meta": {"zone": "a"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["id"], "orders-127.0.0.1-9001");
    assert_eq!(r.json()["status"], "passing", "no checks: passing");
    register(&n, json!({"service": "orders", "id": "o2", "address": "127.0.0.1", "port": 9002})).await;
    let services = n.get("/api/registry/services").await;
    assert!(services.header("x-signalbox-index").is_some());
    assert_eq!(services.json()[0]["name"], "orders");
    assert_eq!(services.json()[0]["instances"], 2);
    assert_eq!(services.json()[0]["tags"], json!(["v1"]));
    let list = n.get("/api/registry/services/orders").await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(n.call(Method::DELETE, "/api/registry/instances/o2", None, None).await.status, 204);
    assert_eq!(n.call(Method::DELETE, "/api/registry/instances/o2", None, None).await.status, 404);
    assert_eq!(n.get("/api/registry/services/orders").await.json().as_array().unwrap().len(), 1);
    assert_eq!(n.get("/api/registry/instances/nope").await.status, 404);
}

#[tokio::test]
async fn bad_registrations_name_the_field() {
    let n = Node::start().await;
    let cases = [
        (json!({"service": "a b", "address": "127.0.0.1", "port": 1}), "service"),
        (json!({"service": "s", "address": "not an address", "port": 1}), "address"),
        (json!({"service": "s", "address": "127.0.0.1", "port": 0}), "port"),
        (json!({"service": "s", "address": "127.0.0.1", "port": "eighty"}), "port"),
        (json!({"service": "s", "address": "127.0.0.1"}), "port"),
        (json!({"service": "s", "address": "127.0.0.1", "port": 1, "colour": "red"}), "colour"),
        (
            json!({"service": "s", "address": "127.0.0.1", "port": 1, "checks": [{"http": "/h", "interval": "soon"}]}),
            "checks[0].interval",
        ),
        (
            json!({"service": "s", "address": "127.0.0.1", "port": 1, "checks": [{"http": "/h", "tcp": ""}]}),
            "checks[0]",
        ),
        (json!({"service": "s", "address": "127.0.0.1", "port": 1, "checks": [{"ttl": "1ms"}]}), "checks[0].ttl"),
        (json!({"service": "s", "address": "127.0.0.1", "port": 1, "tags": vec!["t"; 65]}), "tags"),
    ];
    for (body, field) in cases {
        let r = register(&n, body.clone()).await;
        assert!(r.status == 400 || r.status == 422, "{body}: {} {}", r.status, r.text());
        assert_eq!(r.json()["field"], field, "{body}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap().contains(field), "{}", r.text());
    }
    let r = n
        .http
        .send(Method::POST, &n.url("/api/registry/instances"), &[("content-type", "application/json")], "{broken")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_json");
    let r = n.http.send(Method::POST, &n.url("/api/registry/instances"), &[("content-type", "text/plain")], "{}").await;
    assert_eq!(r.status, 415);
    assert!(n.get("/api/registry/services").await.json().as_array().unwrap().is_empty(), "nothing was stored");
}

/// A gateway (in-process) whose service follows the registry, with outlier ejection off.
async fn gateway_for(
    n: &Node,
    service: &str,
) -> (Arc<signalbox_gateway::Gateway>, SocketAddr, signalbox_core::shutdown::ShutdownTrigger) {
    let mut svc = ServiceConfig { name: service.into(), ..Default::default() };
    svc.outlier.consecutive_gateway_failures = 0;
    svc.outlier.consecutive_5xx = 0;
    gateway_following(n, svc).await
}

/// A gateway (in-process) routing `/` to `svc`, whose endpoints come from the registry.
async fn gateway_following(
    n: &Node,
    svc: ServiceConfig,
) -> (Arc<signalbox_gateway::Gateway>, SocketAddr, signalbox_core::shutdown::ShutdownTrigger) {
    let mut route = RouteConfig {
        service: svc.name.clone(),
        retry: Some(RetryConfig { attempts: 1, ..Default::default() }),
        ..Default::default()
    };
    route.matcher.path_prefix = Some("/".into());
    let mut cfg = GatewayConfig {
        listen: "127.0.0.1:0".into(),
        workers: 1,
        services: vec![svc],
        routes: vec![route],
        ..Default::default()
    };
    cfg.telemetry.access_log = "off".into();
    let discovery: Arc<dyn signalbox_core::discovery::EndpointSource> = n.control.registry.clone();
    let gw = signalbox_gateway::Gateway::new(
        cfg,
        signalbox_gateway::Deps {
            registry: Registry::new(),
            spans: Arc::new(signalbox_core::telemetry::DroppingSink),
            discovery: Some(discovery),
            logs: None,
        },
    )
    .unwrap();
    let l = gw.bind().await.unwrap();
    let addr = l.plain_addr().unwrap();
    let (trigger, shutdown) = signalbox_core::shutdown::channel();
    let g = gw.clone();
    tokio::spawn(async move { g.serve(l, shutdown).await });
    (gw, addr, trigger)
}

#[tokio::test]
async fn a_failing_instance_leaves_the_gateway_within_one_interval_and_comes_back() {
    let n = Node::start().await;
    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    let handler = move |req: http::Request<bytes::Bytes>| {
        let ok = h.load(Ordering::SeqCst);
        async move {
            if req.uri().path() == "/health" {
                status(if ok { 200 } else { 503 })
            } else {
                signalbox_testkit::upstream::echo_response("a", &req)
            }
        }
    };
    let a = serve(handler.clone()).await;
    let b = serve(echo("b")).await;
    let interval = 200u64;
    for (id, up) in [("a", &a), ("b", &b)] {
        let r = register(
            &n,
            json!({"service": "shop", "id": id, "address": "127.0.0.1", "port": up.addr.port(),
            "checks": [{"http": "/health", "interval": format!("{interval}ms"), "timeout": "100ms"}]}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    eventually(ms(3000), "both passing", || async {
        (status_of(&n, "a").await == "passing" && status_of(&n, "b").await == "passing").then_some(())
    })
    .await;
    let (_gw, addr, _stop) = gateway_for(&n, "shop").await;
    let http = Http::new();
    let url = format!("http://{addr}/x");
    let reaches_a = |http: Http, url: String| async move {
        for _ in 0..10 {
            if http.get(&url).await.json()["server"] == "a" {
                return Some(());
            }
        }
        None
    };
    eventually(ms(3000), "traffic to a", || reaches_a(http.clone(), url.clone())).await;

    // a fails its check: it is out of the gateway within one interval plus 1 s.
    healthy.store(false, Ordering::SeqCst);
    let t = Instant::now();
    eventually(ms(interval + 1000), "a critical", || async { (status_of(&n, "a").await == "critical").then_some(()) })
        .await;
    let detected = t.elapsed();
    assert!(detected <= ms(interval + 1000), "detected in {detected:?}");
    let a_hits = a.hits();
    for _ in 0..20 {
        let r = http.get(&url).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["server"], "b", "a gets no traffic once critical");
    }
    // Only health checks reach a now.
    assert!(a.hits() - a_hits <= 3, "a got {} requests", a.hits() - a_hits);
    let check = &n.get("/api/registry/instances/a").await.json()["checks"][0];
    assert!(check["output"].as_str().unwrap().contains("503"), "{check}");

    // Healthy again: back in.
    healthy.store(true, Ordering::SeqCst);
    eventually(ms(interval + 1000), "a passing again", || async {
        (status_of(&n, "a").await == "passing").then_some(())
    })
    .await;
    eventually(ms(2000), "traffic to a again", || reaches_a(http.clone(), url.clone())).await;
}

#[tokio::test]
async fn tcp_grpc_and_ttl_checks() {
    let n = Node::start().await;
    let up = serve(echo("x")).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let g = signalbox_testkit::grpc::serve().await;
    for (id, port, check) in [
        ("tcp-open", up.addr.port(), json!({"tcp": "", "interval": "100ms"})),
        ("tcp-closed", closed, json!({"tcp": "", "interval": "100ms", "initial_status": "passing"})),
        ("grpc", g.addr.port(), json!({"grpc": "", "interval": "100ms"})),
        ("ttl", 1, json!({"ttl": "400ms"})),
    ] {
        let r = register(
            &n,
            json!({"service": "mixed", "id": id, "address": "127.0.0.1", "port": port, "checks": [check]}),
        )
        .await;
        assert_eq!(r.status, 201, "{id}: {}", r.text());
    }
    eventually(ms(3000), "tcp and grpc results", || async {
        (status_of(&n, "tcp-open").await == "passing"
            && status_of(&n, "tcp-closed").await == "critical"
            && status_of(&n, "grpc").await == "passing")
            .then_some(())
    })
    .await;
    g.serving.store(false, Ordering::SeqCst);
    eventually(ms(2000), "grpc NOT_SERVING", || async { (status_of(&n, "grpc").await == "critical").then_some(()) })
        .await;
    let out = n.get("/api/registry/instances/grpc").await.json()["checks"][0]["output"].clone();
    assert!(out.as_str().unwrap().contains("NOT_SERVING"), "{out}");

    assert_eq!(status_of(&n, "ttl").await, "critical", "TTL starts critical until reported");
    assert_eq!(
        n.call(
            Method::PUT,
            "/api/registry/instances/ttl/ttl",
            None,
            Some(json!({"status": "passing", "note": "all good"}))
        )
        .await
        .status,
        204
    );
    assert_eq!(status_of(&n, "ttl").await, "passing");
    for _ in 0..4 {
        tokio::time::sleep(ms(150)).await;
        n.call(Method::PUT, "/api/registry/instances/ttl/ttl", None, None).await;
        assert_eq!(status_of(&n, "ttl").await, "passing", "refreshed in time");
    }
    eventually(ms(1500), "TTL expiry", || async { (status_of(&n, "ttl").await == "critical").then_some(()) }).await;
    let r = n.call(Method::PUT, "/api/registry/instances/tcp-open/ttl", None, None).await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn https_checks_verify_the_certificate_unless_told_not_to() {
    let n = Node::start().await;
    let up = signalbox_testkit::upstream::serve_tls(|_| async { status(200) }).await;
    let url = format!("{}/health", up.url());
    for (id, skip) in [("verified", None), ("skipped", Some(true))] {
        let mut check = json!({"http": url, "interval": "200ms", "timeout": "200ms"});
        if let Some(skip) = skip {
            check["tls_skip_verify"] = json!(skip);
        }
        let r = register(
            &n,
            json!({"service": "tls", "id": id, "address": "127.0.0.1", "port": up.addr.port(), "checks": [check]}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    eventually(ms(3000), "the skipping check passes", || async {
        (status_of(&n, "skipped").await == "passing").then_some(())
    })
    .await;
    // The self-signed certificate is not in the Mozilla roots: the verified check fails, and
    // says why.
    let v = eventually(ms(3000), "the verified check's result", || async {
        let v = n.get("/api/registry/instances/verified").await.json();
        let output = v["checks"][0]["output"].as_str().unwrap_or("").to_ascii_lowercase();
        output.contains("certificate").then_some(v)
    })
    .await;
    assert_eq!(v["status"], "critical", "{v}");
    assert!(up.hits() > 0, "the skipping check reached the server");
}

#[tokio::test]
async fn thresholds_deregistration_and_flap_damping() {
    let n = Node::start().await;
    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    let up = serve(move |_| {
        let ok = h.load(Ordering::SeqCst);
        async move { status(if ok { 200 } else { 500 }) }
    })
    .await;
    let r = register(&n, json!({"service": "t", "id": "th", "address": "127.0.0.1", "port": up.addr.port(),
        "checks": [{"http": "/", "interval": "100ms", "success_threshold": 2, "failure_threshold": 3, "deregister_after": "1s"}]})).await;
    assert_eq!(r.status, 201);
    eventually(ms(2000), "passing after 2 successes", || async {
        (status_of(&n, "th").await == "passing").then_some(())
    })
    .await;
    healthy.store(false, Ordering::SeqCst);
    tokio::time::sleep(ms(150)).await;
    assert_eq!(status_of(&n, "th").await, "passing", "one failure is not enough");
    eventually(ms(2000), "critical after 3 failures", || async {
        (status_of(&n, "th").await == "critical").then_some(())
    })
    .await;
    eventually(ms(3000), "deregistered after 1s critical", || async {
        (n.get("/api/registry/instances/th").await.status == 404).then_some(())
    })
    .await;

    // Flapping: a check that keeps changing state needs more successes to pass again.
    let r = register(
        &n,
        json!({"service": "t", "id": "flap", "address": "127.0.0.1", "port": up.addr.port(),
        "checks": [{"http": "/", "interval": "60ms"}]}),
    )
    .await;
    assert_eq!(r.status, 201);
    for _ in 0..3 {
        healthy.store(true, Ordering::SeqCst);
        eventually(ms(2000), "passing", || async { (status_of(&n, "flap").await == "passing").then_some(()) }).await;
        healthy.store(false, Ordering::SeqCst);
        eventually(ms(2000), "critical", || async { (status_of(&n, "flap").await == "critical").then_some(()) }).await;
    }
    let v = n.get("/api/registry/instances/flap").await.json();
    assert_eq!(v["checks"][0]["flapping"], true, "{v}");
    healthy.store(true, Ordering::SeqCst);
    let t = Instant::now();
    eventually(ms(3000), "passing after damping", || async {
        (status_of(&n, "flap").await == "passing").then_some(())
    })
    .await;
    assert!(t.elapsed() >= ms(100), "damping asked for more than one success: {:?}", t.elapsed());
}

#[tokio::test]
async fn blocking_queries_return_on_change_or_after_the_wait() {
    let n = Node::start().await;
    let r = n.get("/api/registry/services/pay").await;
    let idx: u64 = r.header("x-signalbox-index").unwrap().parse().unwrap();
    let t = Instant::now();
    let r = n.get(&format!("/api/registry/services/pay?index={idx}&wait=300ms")).await;
    assert!(t.elapsed() >= ms(280), "waited: {:?}", t.elapsed());
    assert_eq!(r.header("x-signalbox-index").unwrap().parse::<u64>().unwrap(), idx);
    let url = n.url(&format!("/api/registry/services/pay?index={idx}&wait=10s"));
    let http = n.http.clone();
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        let r = http.get(&url).await;
        (t.elapsed(), r)
    });
    tokio::time::sleep(ms(200)).await;
    // A change to another service does not wake a per-service query.
    register(&n, json!({"service": "other", "address": "127.0.0.1", "port": 1})).await;
    tokio::time::sleep(ms(100)).await;
    assert!(!waiter.is_finished());
    register(&n, json!({"service": "pay", "address": "127.0.0.1", "port": 2})).await;
    let (took, r) = waiter.await.unwrap();
    assert!(took < ms(2000), "{took:?}");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert!(r.header("x-signalbox-index").unwrap().parse::<u64>().unwrap() > idx);
    let r = n.get(&format!("/api/registry/services/pay/endpoints?index={idx}&wait=1s")).await.json();
    assert_eq!(r["endpoints"][0]["address"], "127.0.0.1:2");
    assert_eq!(n.get("/api/registry/services?index=1&wait=never").await.json()["field"], "wait");
}

#[tokio::test]
async fn the_event_stream_sends_a_snapshot_then_changes() {
    let n = Node::start().await;
    register(&n, json!({"service": "a", "id": "a1", "address": "127.0.0.1", "port": 1})).await;
    let mut rx = sse::connect(&n.url("/api/registry/events"), &[]).await;
    let (ev, data) = tokio::time::timeout(ms(2000), rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev, "snapshot");
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["instances"][0]["id"], "a1");
    let t = Instant::now();
    register(&n, json!({"service": "a", "id": "a2", "address": "127.0.0.1", "port": 2, "checks": [{"ttl": "10s"}]}))
        .await;
    let (ev, data) = tokio::time::timeout(ms(2000), rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev, "change");
    assert!(t.elapsed() < ms(500), "{:?}", t.elapsed());
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["instances"][0]["id"], "a2");
    assert_eq!(v["instances"][0]["status"], "critical");
    n.call(Method::PUT, "/api/registry/instances/a2/ttl", None, None).await;
    let (ev, data) = tokio::time::timeout(ms(2000), rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev, "change");
    assert!(data.contains("\"passing\""), "{data}");
    n.call(Method::DELETE, "/api/registry/instances/a1", None, None).await;
    let (_, data) = tokio::time::timeout(ms(2000), rx.recv()).await.unwrap().unwrap();
    assert!(data.contains("\"removed\":[\"a1\"]"), "{data}");
}

#[tokio::test]
async fn gateway_ejections_show_in_the_registry() {
    let n0 = Node::start().await;
    let bad = serve(|_| async { status(500) }).await;
    let good = serve(echo("good")).await;
    for (id, up) in [("bad", &bad), ("good", &good)] {
        register(&n0, json!({"service": "ej", "id": id, "address": "127.0.0.1", "port": up.addr.port()})).await;
    }
    let mut svc = ServiceConfig { name: "ej".into(), ..Default::default() };
    svc.balancer.kind = "round_robin".into();
    svc.outlier.consecutive_5xx = 2;
    svc.outlier.base_ejection_time = signalbox_core::config::Dur::secs(30);
    let (gw, addr, _t) = gateway_following(&n0, svc).await;
    // Serve the API with the gateway's view joined in.
    let n = Node::serve(n0.control.clone(), Some(gw.clone()), tempfile::tempdir().unwrap()).await;
    let http = Http::new();
    for _ in 0..6 {
        http.get(&format!("http://{addr}/")).await;
    }
    let v = n.get("/api/registry/instances/bad").await.json();
    assert_eq!(v["gateway"]["ejected"], true, "{v}");
    assert_eq!(n.get("/api/registry/instances/good").await.json()["gateway"]["ejected"], false);
}
