//! Rollouts on a running node: the API's validation and conflicts, the weights written to
//! the traffic policy, the commands, the CLI, the annotations, and a node killed (SIGKILL)
//! mid-rollout that resumes from its recorded state.

use super::{BIN, Node};
use serde_json::{Value, json};
use signalbox_testkit::client::Http;
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

    // Bad input names the field.
    let (status, v) = post(&http, &node, "/api/rollouts/cart", Some(json!({"to": "v2", "steps": [50, 10]}))).await;
    assert_eq!((status, v["field"].as_str()), (400, Some("steps")), "{v}");
    let (status, v) = post(&http, &node, "/api/rollouts/cart", Some(json!({"to": "v2", "max_p99": "soon"}))).await;
    assert_eq!((status, v["field"].as_str()), (400, Some("max_p99")), "{v}");
    let (status, v) = post(&http, &node, "/api/rollouts/cart", Some(json!({"too": "v2"}))).await;
    assert_eq!((status, v["code"].as_str()), (400, Some("invalid_field")), "{v}");
    // No healthy canary: refused, naming `to`.
    let (status, v) = post(&http, &node, "/api/rollouts/cart", Some(json!({"to": "v2"}))).await;
    assert_eq!(
        (status, v["code"].as_str(), v["field"].as_str()),
        (409, Some("no_healthy_instance"), Some("to")),
        "{v}"
    );

    register(&http, &node, "cart", "v2", 9102).await;
    let body = json!({"to": "v2", "steps": [10, 50, 100], "interval": "pause"});
    let (status, v) = post(&http, &node, "/api/rollouts/cart", Some(body.clone())).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!((v["phase"].as_str(), v["spec"]["stable"].as_str()), (Some("progressing"), Some("v1")));
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v1": 90, "v2": 10}));
    let (status, v) = post(&http, &node, "/api/rollouts/cart", Some(body)).await;
    assert_eq!((status, v["code"].as_str()), (409, Some("rollout_conflict")), "{v}");

    let (status, v) = post(&http, &node, "/api/rollouts/cart/promote", None).await;
    assert_eq!((status, v["canary_percent"].as_u64()), (200, Some(50)), "{v}");
    let (status, v) = post(&http, &node, "/api/rollouts/cart/pause", None).await;
    assert_eq!((status, v["phase"].as_str()), (200, Some("paused")), "{v}");
    let (status, _) = post(&http, &node, "/api/rollouts/cart/pause", None).await;
    assert_eq!(status, 409);

    // SIGKILL mid-rollout: the restarted node has the rollout where it was.
    let node = node.restart_kill9(&[], &[], Duration::from_millis(200)).await;
    let (status, v) = get(&http, &node, "/api/rollouts/cart").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["phase"].as_str(), v["step"].as_u64(), v["canary_percent"].as_u64()),
        (Some("paused"), Some(1), Some(50))
    );
    let decisions: Vec<&str> =
        v["history"].as_array().unwrap().iter().map(|e| e["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["started", "promoted", "paused"]);
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v1": 50, "v2": 50}));
    let (status, v) = post(&http, &node, "/api/rollouts/cart/resume", None).await;
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
    let (status, v) = get(&http, &node, "/api/annotations?service=cart").await;
    assert_eq!(status, 200, "{v}");
    let marks: Vec<&str> =
        v["annotations"].as_array().unwrap().iter().map(|a| a["decision"].as_str().unwrap()).collect();
    assert_eq!(marks, ["started", "promoted", "paused", "resumed", "aborted"]);

    // Blue-green: a switch, then back.
    let (status, v) = post(&http, &node, "/api/rollouts/cart/switch", Some(json!({"to": "v2"}))).await;
    assert_eq!((status, v["phase"].as_str()), (200, Some("succeeded")), "{v}");
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v2": 100}));
    let (status, v) = post(&http, &node, "/api/rollouts/cart/switch", Some(json!({"back": true}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(policy_weights(&http, &node, "cart").await, json!({"v1": 100}));
    let (status, v) = post(&http, &node, "/api/rollouts/cart/switch", Some(json!({"to": "v9"}))).await;
    assert_eq!((status, v["field"].as_str()), (409, Some("to")), "{v}");

    let (status, v) = get(&http, &node, "/api/rollouts").await;
    assert_eq!((status, v["rollouts"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    let (status, v) = get(&http, &node, "/api/rollouts/nothing-here").await;
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
    let (status, v) = post(&http, &node, "/api/rollouts/shelf", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    let held_reason = |v: &Value| {
        v["history"].as_array().unwrap().iter().rev().find(|e| e["decision"] == "held").map(|e| e["reason"].to_string())
    };
    signalbox_testkit::eventually(Duration::from_secs(10), "a hold before the kill", || async {
        held_reason(&get(&http, &node, "/api/rollouts/shelf").await.1)
    })
    .await;
    let node = node.restart_kill9(&[], &[], Duration::from_millis(200)).await;
    let restarted = signalbox_core::time::unix_nanos() / 1_000_000;
    signalbox_testkit::eventually(Duration::from_secs(10), "a hold after the restart", || async {
        let v = get(&http, &node, "/api/rollouts/shelf").await.1;
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["decision"] == "held" && e["t_ms"].as_u64() > Some(restarted))
            .then_some(())
    })
    .await;
    let v = get(&http, &node, "/api/rollouts/shelf").await.1;
    assert_eq!(v["phase"], "progressing");
    assert!(held_reason(&v).unwrap().contains("too few requests"), "{v}");
}
