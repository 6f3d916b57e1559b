//! Rollouts on a running node: the API's validation and conflicts, the weights written to
//! the traffic policy, the commands, the CLI, the annotations, and a node killed (SIGKILL)
//! mid-rollout that resumes from its recorded state.

use super::{BIN, Node};
use serde_json::{Value, json};
use signalbox_testkit::client::Http;
use std::sync::Arc;
use std::time::Duration;

async fn post(http: &Http, node: &Node, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}{path}", node.console),
            &[("content-type", "application/json")],
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
        .await;
    (r.status, serde_json::from_str(&r.text()).unwrap_or(Value::Null))
}

async fn get(http: &Http, node: &Node, path: &str) -> (u16, Value) {
    let r = http.get(&format!("http://{}{path}", node.console)).await;
    (r.status, serde_json::from_str(&r.text()).unwrap_or(Value::Null))
}

async fn register(http: &Http, node: &Node, service: &str, version: &str, port: u16) {
    let body = json!({ "service": service, "address": "127.0.0.1", "port": port, "meta": {"version": version},
        "checks": [{ "ttl": "600s", "initial_status": "passing" }] });
    let (status, v) = post(http, node, "/api/registry/instances", Some(body)).await;
    assert_eq!(status, 201, "{v}");
}

async fn policy_weights(http: &Http, node: &Node, service: &str) -> Value {
    let (status, v) = get(http, node, &format!("/api/config/gateway/traffic/{service}")).await;
    assert_eq!(status, 200, "{v}");
    serde_json::from_str::<Value>(v["value"].as_str().unwrap()).unwrap()["weights"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_api_validates_starts_commands_and_resumes_after_a_kill() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    register(&http, &node, "cart", "v1", 9101).await;

    // No healthy canary: refused, naming `to`.
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart", Some(json!({"to": "v2"}))).await;
    assert_eq!(
        (status, v["code"].as_str(), v["field"].as_str()),
        (409, Some("no_healthy_instance"), Some("to")),
        "{v}"
    );

    register(&http, &node, "cart", "v2", 9102).await;
    // Bad input names the field.
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart", Some(json!({"to": "v2", "steps": [50, 10]}))).await;
    assert_eq!((status, v["field"].as_str()), (400, Some("steps")), "{v}");
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart", Some(json!({"to": "v2", "max_p99": "soon"}))).await;
    assert_eq!((status, v["field"].as_str()), (400, Some("max_p99")), "{v}");
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart", Some(json!({"too": "v2"}))).await;
    assert_eq!((status, v["code"].as_str()), (400, Some("invalid_field")), "{v}");
    let body = json!({"to": "v2", "steps": [10, 50, 100], "interval": "pause"});
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart", Some(body.clone())).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!((v["phase"].as_str(), v["spec"]["stable"].as_str()), (Some("progressing"), Some("v1")));
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v1": 90, "v2": 10}));
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart", Some(body)).await;
    assert_eq!((status, v["code"].as_str()), (409, Some("rollout_conflict")), "{v}");

    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart/promote", None).await;
    assert_eq!((status, v["canary_percent"].as_u64()), (200, Some(50)), "{v}");
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart/pause", None).await;
    assert_eq!((status, v["phase"].as_str()), (200, Some("paused")), "{v}");
    let (status, _) = post(&http, &node, "/api/v1/rollouts/cart/pause", None).await;
    assert_eq!(status, 409);

    // SIGKILL mid-rollout: the restarted node has the rollout where it was.
    let node = node.restart_kill9(&[], &[], Duration::from_millis(200)).await;
    let (status, v) = get(&http, &node, "/api/v1/rollouts/cart").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["phase"].as_str(), v["step"].as_u64(), v["canary_percent"].as_u64()),
        (Some("paused"), Some(1), Some(50))
    );
    let decisions: Vec<&str> =
        v["history"].as_array().unwrap().iter().map(|e| e["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["started", "promoted", "paused"]);
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v1": 50, "v2": 50}));
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart/resume", None).await;
    assert_eq!((status, v["phase"].as_str()), (200, Some("progressing")), "{v}");

    // The CLI reads and acts on the same rollout.
    let out = std::process::Command::new(BIN)
        .args(["rollout", "--url", &format!("http://{}", node.console), "abort", "cart"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("aborted") && text.contains("v1=100%"), "{text}");
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v1": 100}));

    // Every decision is a marker for the service's charts.
    let (status, v) = get(&http, &node, "/api/v1/annotations?service=cart").await;
    assert_eq!(status, 200, "{v}");
    let marks: Vec<&str> =
        v["annotations"].as_array().unwrap().iter().map(|a| a["decision"].as_str().unwrap()).collect();
    assert_eq!(marks, ["started", "promoted", "paused", "resumed", "aborted"]);

    // Blue-green: a switch, then back.
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart/switch", Some(json!({"to": "v2"}))).await;
    assert_eq!((status, v["phase"].as_str()), (200, Some("succeeded")), "{v}");
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v2": 100}));
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart/switch", Some(json!({"back": true}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v1": 100}));
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart/switch", Some(json!({"to": "v9"}))).await;
    assert_eq!((status, v["field"].as_str()), (409, Some("to")), "{v}");

    let (status, v) = get(&http, &node, "/api/v1/rollouts").await;
    assert_eq!((status, v["rollouts"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    let (status, v) = get(&http, &node, "/api/v1/rollouts/nothing-here").await;
    assert_eq!((status, v["code"].as_str()), (404, Some("not_found")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_rollout_keeps_judging_after_a_kill() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    register(&http, &node, "shelf", "v1", 9201).await;
    register(&http, &node, "shelf", "v2", 9202).await;
    // No traffic: every analysis holds; the holds are the controller's visible work.
    let body = json!({"to": "v2", "interval": "1s", "max_holds": 1000});
    let (status, v) = post(&http, &node, "/api/v1/rollouts/shelf", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    let held_reason = |v: &Value| {
        v["history"].as_array().unwrap().iter().rev().find(|e| e["decision"] == "held").map(|e| e["reason"].to_string())
    };
    signalbox_testkit::eventually(Duration::from_secs(10), "a hold before the kill", || async {
        held_reason(&get(&http, &node, "/api/v1/rollouts/shelf").await.1)
    })
    .await;
    let node = node.restart_kill9(&[], &[], Duration::from_millis(200)).await;
    let restarted = signalbox_core::time::unix_nanos() / 1_000_000;
    signalbox_testkit::eventually(Duration::from_secs(10), "a hold after the restart", || async {
        let v = get(&http, &node, "/api/v1/rollouts/shelf").await.1;
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["decision"] == "held" && e["t_ms"].as_u64() > Some(restarted))
            .then_some(())
    })
    .await;
    let v = get(&http, &node, "/api/v1/rollouts/shelf").await.1;
    assert_eq!(v["phase"], "progressing");
    assert!(held_reason(&v).unwrap().contains("too few requests"), "{v}");
}

/// What the load saw: answers by kind, and when.
#[derive(Default)]
struct Seen {
    ok: std::sync::atomic::AtomicU64,
    /// The canary's own failures (its 500s reach the client: they are answers, not drops).
    canary_errors: std::sync::atomic::AtomicU64,
    /// Anything else: a gateway error or no answer at all.
    dropped: std::sync::atomic::AtomicU64,
}

/// Requests to `url` from `workers` loops until `stop`.
fn load(
    url: String,
    workers: usize,
    seen: Arc<Seen>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use std::sync::atomic::Ordering::Relaxed;
    (0..workers)
        .map(|_| {
            let (url, seen, stop) = (url.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                let http = Http::new();
                while !stop.load(Relaxed) {
                    match http.try_send(http::Method::GET, &url, &[], bytes::Bytes::new()).await {
                        Ok(r) if r.status == 200 => seen.ok.fetch_add(1, Relaxed),
                        Ok(r) if r.status == 500 && r.text() == "canary failure" => {
                            seen.canary_errors.fetch_add(1, Relaxed)
                        }
                        _ => seen.dropped.fetch_add(1, Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect()
}

/// An upstream answering 200, or (with `fail_every`) a 500 `canary failure` on every n-th
/// request; it records when it first failed and when it was last asked anything.
struct Version {
    upstream: signalbox_testkit::upstream::Upstream,
    first_error: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    last_request: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

async fn version(name: &'static str, fail_every: Option<u64>) -> Version {
    let first_error = Arc::new(std::sync::Mutex::new(None));
    let last_request = Arc::new(std::sync::Mutex::new(None));
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (fe, lr) = (first_error.clone(), last_request.clone());
    let upstream = signalbox_testkit::upstream::serve(move |req| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let now = std::time::Instant::now();
        *lr.lock().unwrap() = Some(now);
        let fail = fail_every.is_some_and(|k| n.is_multiple_of(k));
        if fail {
            fe.lock().unwrap().get_or_insert(now);
        }
        async move {
            if fail {
                http::Response::builder()
                    .status(500)
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"canary failure")))
                    .unwrap()
            } else {
                signalbox_testkit::upstream::echo_response(name, &req)
            }
        }
    })
    .await;
    Version { upstream, first_error, last_request }
}

async fn node_with_shop() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        "[gateway.telemetry]\naccess_log = \"off\"\n[metrics]\nself_interval = \"1s\"\n\
         [[gateway.services]]\nname = \"shop\"\n[[gateway.routes]]\nname = \"shop\"\nservice = \"shop\"\n[gateway.routes.match]\npath_prefix = \"/\"\n",
    )
    .unwrap();
    (Node::start(&["-c", cfg.to_str().unwrap()], &[]).await, dir)
}

async fn wait_phase(http: &Http, node: &Node, service: &str, phase: &str, within: Duration) -> Value {
    signalbox_testkit::eventually(within, phase, || async {
        let v = get(http, node, &format!("/api/v1/rollouts/{service}")).await.1;
        (v["phase"] == phase).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_through_the_gateway_with_no_request_dropped() {
    use std::sync::atomic::Ordering::Relaxed;
    let (v1, v2) = (version("v1", None).await, version("v2", Some(20)).await);
    let (node, _config) = node_with_shop().await;
    let http = Http::new();
    register(&http, &node, "shop", "v1", v1.upstream.addr.port()).await;
    register(&http, &node, "shop", "v2", v2.upstream.addr.port()).await;
    // Every request on v1 before the rollout.
    let (status, v) = post(&http, &node, "/api/v1/rollouts/shop/switch", Some(json!({"to": "v1"}))).await;
    assert_eq!(status, 200, "{v}");
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = load(format!("http://{}/x", node.gateway), 4, seen.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(v2.first_error.lock().unwrap().is_none(), "no request reached v2 before the rollout");

    let interval = Duration::from_secs(2);
    let body =
        json!({"to": "v2", "steps": [20, 50, 100], "interval": "2s", "max_error_rate": "1%", "min_requests": 20});
    let (status, v) = post(&http, &node, "/api/v1/rollouts/shop", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    let v = wait_phase(&http, &node, "shop", "rolled_back", Duration::from_secs(20)).await;
    // Once rolled back, nothing reaches v2 any more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last_v2 = v2.last_request.lock().unwrap().unwrap();
    assert!(last_v2.elapsed() >= Duration::from_millis(1000), "v2 still gets requests after the rollback");
    stop.store(true, Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let first_error = v2.first_error.lock().unwrap().expect("the canary failed at least once");
    let to_rollback = last_v2.duration_since(first_error);
    eprintln!(
        "bad canary: first error to its last request (every request back on v1): {} ms; {} ok, {} canary errors, {} dropped",
        to_rollback.as_millis(),
        seen.ok.load(Relaxed),
        seen.canary_errors.load(Relaxed),
        seen.dropped.load(Relaxed)
    );
    // Judged over at most one interval, plus the controller's tick and the metrics' sample.
    assert!(to_rollback <= 2 * interval + Duration::from_secs(1), "rollback took {to_rollback:?}");
    let last = v["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["decision"], "rolled_back", "{v}");
    assert!(last["reason"].as_str().unwrap().contains("above the limit 1.00%"), "{last}");
    assert!(last["measurements"]["canary"]["errors"].as_f64().unwrap() >= 1.0, "{last}");
    assert_eq!(seen.dropped.load(Relaxed), 0, "requests without an answer while the weights changed");
    assert_eq!(policy_weights(&http, &node, "shop").await, json!({"v1": 100}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_to_every_request_with_no_request_dropped() {
    use std::sync::atomic::Ordering::Relaxed;
    let (v1, v2) = (version("v1", None).await, version("v2", None).await);
    let (node, _config) = node_with_shop().await;
    let http = Http::new();
    register(&http, &node, "shop", "v1", v1.upstream.addr.port()).await;
    register(&http, &node, "shop", "v2", v2.upstream.addr.port()).await;
    let (status, v) = post(&http, &node, "/api/v1/rollouts/shop/switch", Some(json!({"to": "v1"}))).await;
    assert_eq!(status, 200, "{v}");
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = load(format!("http://{}/x", node.gateway), 4, seen.clone(), stop.clone());
    let body = json!({"to": "v2", "steps": [20, 50, 100], "interval": "2s", "min_requests": 10, "max_p99": "+200%"});
    let (status, v) = post(&http, &node, "/api/v1/rollouts/shop", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    let v = wait_phase(&http, &node, "shop", "succeeded", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v1_hits = v1.upstream.hits();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(v1.upstream.hits(), v1_hits, "v1 gets nothing once the canary has every request");
    let decisions: Vec<&str> =
        v["history"].as_array().unwrap().iter().map(|e| e["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions.first(), Some(&"started"), "{v}");
    assert_eq!(decisions.last(), Some(&"succeeded"), "{v}");
    assert!(decisions.contains(&"promoted"), "{v}");
    assert_eq!(policy_weights(&http, &node, "shop").await, json!({"v2": 100}));
    assert_eq!(seen.dropped.load(Relaxed), 0, "requests without an answer while the weights changed");
    assert_eq!(seen.canary_errors.load(Relaxed), 0);
    assert!(seen.ok.load(Relaxed) > 100, "the load ran: {}", seen.ok.load(Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_reaches_the_alert_receivers() {
    let received: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let hook = signalbox_testkit::upstream::serve(move |req| {
        if let Ok(v) = serde_json::from_slice::<Value>(req.body()) {
            sink.lock().unwrap().push(v);
        }
        std::future::ready(signalbox_testkit::upstream::status(200))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!("[metrics.rules]\nwebhooks = [\"{}/hook\"]\nexternal_url = \"http://console.example\"\n", hook.url()),
    )
    .unwrap();
    let node = Node::start(&["-c", cfg.to_str().unwrap()], &[]).await;
    let http = Http::new();
    register(&http, &node, "cart", "v1", 9401).await;
    register(&http, &node, "cart", "v2", 9402).await;
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart", Some(json!({"to": "v2", "interval": "pause"}))).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = post(&http, &node, "/api/v1/rollouts/cart/abort", None).await;
    assert_eq!(status, 200, "{v}");
    let alerts =
        signalbox_testkit::eventually(Duration::from_secs(20), "two RolloutDecision notifications", || async {
            let got: Vec<Value> = received
                .lock()
                .unwrap()
                .iter()
                .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
                .filter(|a| a["labels"]["alertname"] == "RolloutDecision")
                .collect();
            (got.len() >= 2).then_some(got)
        })
        .await;
    let decisions: Vec<&str> = alerts.iter().map(|a| a["labels"]["decision"].as_str().unwrap()).collect();
    assert!(decisions.contains(&"started") && decisions.contains(&"aborted"), "{alerts:?}");
    let aborted = alerts.iter().find(|a| a["labels"]["decision"] == "aborted").unwrap();
    assert_eq!(aborted["labels"]["service"], "cart");
    assert_eq!(aborted["labels"]["canary"], "v2");
    assert!(aborted["annotations"]["description"].as_str().unwrap().contains("every request back on v1"), "{aborted}");
    assert_eq!(aborted["generatorURL"], "http://console.example/rollouts/cart");
}
