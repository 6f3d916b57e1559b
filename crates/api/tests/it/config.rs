//! Central configuration: versions, CAS, history, diff, rollback, watches, Spring's view.

use crate::*;
use http::Method;
use serde_json::json;
use signalbox_testkit::sse;
use std::time::Instant;

async fn put(n: &Node, path: &str, body: serde_json::Value) -> Resp {
    n.call(Method::PUT, path, None, Some(body)).await
}

#[tokio::test]
async fn versions_cas_history_diff_rollback_and_delete() {
    let n = Node::start().await;
    let k = "/api/config/orders/prod/db.url";
    let r = put(&n, k, json!({"value": "postgres://a\npool=5\n", "comment": "first"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["author"], "anonymous");
    let r = put(&n, k, json!({"value": "postgres://b\npool=5\n", "expected_version": 1})).await;
    assert_eq!(r.json()["version"], 2);
    let stale = put(&n, k, json!({"value": "postgres://c", "expected_version": 1})).await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["code"], "version_conflict");
    assert_eq!(stale.json()["current_version"], 2);
    let r = n
        .http
        .send(
            Method::PUT,
            &n.url(k),
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            json!({"value": "x"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 409, "If-Match is a CAS too");
    let create_only = put(&n, k, json!({"value": "x", "expected_version": 0})).await;
    assert_eq!(create_only.status, 409);

    let got = n.get(k).await;
    assert_eq!(got.json()["value"], "postgres://b\npool=5\n");
    assert_eq!(got.header("etag"), Some("\"2\""));
    assert_eq!(n.get(&format!("{k}?version=1")).await.json()["value"], "postgres://a\npool=5\n");

    let d = n.get(&format!("{k}/diff?from=1&to=2")).await.json();
    assert!(d["unified"].as_str().unwrap().contains("-postgres://a\n+postgres://b"), "{d}");
    let ops: Vec<&str> = d["lines"].as_array().unwrap().iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["delete", "insert", "equal"]);

    let rb = n.call(Method::POST, &format!("{k}/rollback"), None, Some(json!({"to_version": 1}))).await;
    assert_eq!(rb.status, 200, "{}", rb.text());
    assert_eq!(rb.json()["version"], 3);
    assert_eq!(rb.json()["comment"], "rollback to version 1");
    assert_eq!(n.get(k).await.json()["value"], "postgres://a\npool=5\n");

    let del = n.call(Method::DELETE, &format!("{k}?expected_version=3"), None, None).await;
    assert_eq!(del.status, 200, "{}", del.text());
    assert_eq!(n.get(k).await.status, 404);
    let h = n.get(&format!("{k}/history")).await.json();
    let versions: Vec<(u64, bool)> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["deleted"].as_bool().unwrap()))
        .collect();
    assert_eq!(versions, [(1, false), (2, false), (3, false), (4, true)], "history survives the delete");
    // Rolling back a deleted key brings it back.
    let rb = n
        .call(Method::POST, &format!("{k}/rollback"), None, Some(json!({"to_version": 2, "comment": "restore"})))
        .await;
    assert_eq!(rb.json()["version"], 5);
    assert_eq!(n.get(k).await.json()["value"], "postgres://b\npool=5\n");
}

#[tokio::test]
async fn bad_input_and_limits_are_refused_without_harm() {
    let n = Node::start().await;
    put(&n, "/api/config/app/default/keep", json!({"value": "safe"})).await;
    let cases = [
        ("/api/config/bad%20app/default/k", json!({"value": "v"}), "application"),
        ("/api/config/app/default/..k", json!({"value": "v"}), "key"),
        ("/api/config/app/default/k", json!({"value": 5}), "value"),
        ("/api/config/app/default/k", json!({}), "value"),
        ("/api/config/app/default/k", json!({"value": "v", "expected_version": -1}), "expected_version"),
        ("/api/config/app/default/k", json!({"value": "v", "extra": true}), "extra"),
        ("/api/config/app/default/k.json", json!({"value": "{\"a\": "}), "value"),
        ("/api/config/app/default/application.yml", json!({"value": "a: [1\nb: 2\n"}), "value"),
    ];
    for (path, body, field) in cases {
        let r = put(&n, path, body.clone()).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{path} {body}: {}", r.text());
    }
    let big = "x".repeat(65 * 1024);
    let r = put(&n, "/api/config/app/default/big", json!({"value": big})).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["field"], "value");
    // The test node allows 20 keys.
    for i in 1..20 {
        assert_eq!(put(&n, &format!("/api/config/app/default/k{i}"), json!({"value": "v"})).await.status, 200);
    }
    let r = put(&n, "/api/config/app/default/k20", json!({"value": "v"})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["code"], "limit_exceeded");
    assert_eq!(n.get("/api/config/app/default/keep").await.json()["value"], "safe", "nothing stored was harmed");
    assert_eq!(n.get("/api/config/app/default/k1/diff?from=1").await.json()["field"], "from");
}

#[tokio::test]
async fn watchers_see_a_change_within_100ms() {
    let n = Node::start().await;
    let idx = n.get("/api/config").await.json()["index"].as_u64().unwrap();
    let mut sse = sse::connect(&n.url("/api/config/events?application=orders"), &[]).await;
    assert_eq!(tokio::time::timeout(ms(2000), sse.recv()).await.unwrap().unwrap().0, "hello");
    let url = n.url(&format!("/api/config/watch?index={idx}&application=orders&wait=10s"));
    let http = n.http.clone();
    let poll = tokio::spawn(async move { (http.get(&url).await, Instant::now()) });
    tokio::time::sleep(ms(150)).await;
    put(&n, "/api/config/other/default/k", json!({"value": "ignored"})).await;
    tokio::time::sleep(ms(100)).await;
    assert!(!poll.is_finished(), "another application's change does not wake the watch");
    let written = Instant::now();
    put(&n, "/api/config/orders/default/flag", json!({"value": "on"})).await;
    let (r, seen) = poll.await.unwrap();
    let latency = seen.duration_since(written);
    assert!(latency < ms(100), "long-poll latency {latency:?}");
    let c = &r.json()["changes"][0];
    assert_eq!((c["key"].as_str(), c["version"].as_u64()), (Some("flag"), Some(1)));
    let (ev, data) = tokio::time::timeout(ms(100), sse.recv()).await.expect("SSE within 100 ms").unwrap();
    assert_eq!(ev, "change");
    assert!(data.contains("\"value\":\"on\""), "{data}");
    let t = Instant::now();
    let r = n.get(&format!("/api/config/watch?index={}&wait=200ms", r.json()["index"])).await.json();
    assert!(t.elapsed() >= ms(180));
    assert!(r["changes"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn spring_cloud_config_view_orders_sources_most_specific_first() {
    let n = Node::start().await;
    put(&n, "/api/config/orders/prod/db.url", json!({"value": "postgres://prod"})).await;
    put(&n, "/api/config/orders/default/db.url", json!({"value": "postgres://dev"})).await;
    put(
        &n,
        "/api/config/orders/default/app.properties",
        json!({"value": "server.port=8081\n# comment\nfeature.x: on\n"}),
    )
    .await;
    put(
        &n,
        "/api/config/application/default/shared.json",
        json!({"value": "{\"logging\":{\"level\":\"INFO\"},\"hosts\":[\"a\",\"b\"]}"}),
    )
    .await;
    put(
        &n,
        "/api/config/application/default/application.yml",
        json!({"value": "timeouts:\n  read: 5s\n  retries: 3\n---\nspring:\n  config:\n    activate:\n      on-profile: prod\ntimeouts:\n  retries: 1\n"}),
    )
    .await;
    let v = n.get("/config/orders/prod").await.json();
    assert_eq!(v["name"], "orders");
    assert_eq!(v["profiles"], json!(["prod"]));
    let names: Vec<&str> =
        v["propertySources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["signalbox:orders-prod", "signalbox:orders-default", "signalbox:application-default"]);
    let src = &v["propertySources"];
    assert_eq!(src[0]["source"]["db.url"], "postgres://prod");
    assert_eq!(src[1]["source"]["server.port"], "8081");
    assert_eq!(src[1]["source"]["feature.x"], "on");
    assert_eq!(src[2]["source"]["logging.level"], "INFO");
    assert_eq!(src[2]["source"]["hosts[1]"], "b");
    // YAML is flattened, and its prod document applies to the prod profile only.
    assert_eq!(src[2]["source"]["timeouts.read"], "5s");
    assert_eq!(src[2]["source"]["timeouts.retries"], 1);
    let dev = n.get("/config/orders/dev").await.json();
    let shared = dev["propertySources"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(shared["source"]["timeouts.retries"], 3, "{dev}");
    let labelled = n.get("/config/orders/default,prod/main").await.json();
    assert_eq!(labelled["label"], "main");
    assert_eq!(labelled["propertySources"][0]["name"], "signalbox:orders-prod", "the last profile wins");
}
