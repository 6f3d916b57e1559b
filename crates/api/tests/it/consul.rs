//! The Consul subset, driven with the request shapes Spring Cloud Consul and consul-api send
//! (PascalCase bodies with nulls for unset fields, `passing=true`, `X-Consul-Token`,
//! `?index=&wait=` blocking queries, `text/plain` KV puts).

use crate::*;
use http::Method;
use serde_json::json;
use std::time::Instant;

fn consul(n: &Node, path: &str) -> String {
    format!("http://{}{path}", n.consul_addr)
}

async fn put_json(n: &Node, path: &str, body: serde_json::Value) -> Resp {
    n.http.send(Method::PUT, &consul(n, path), &[("content-type", "application/json")], body.to_string()).await
}

/// What Spring Cloud Consul's `NewService` serialises to (Jackson writes unset fields as
/// null), with its heartbeat TTL check.
fn spring_service(id: &str, port: u16) -> serde_json::Value {
    json!({
        "ID": id, "Name": "orders", "Tags": ["secure=false"], "Address": "127.0.0.1",
        "Meta": {"secure": "false"}, "Port": port, "EnableTagOverride": null,
        "Check": {
            "Args": null, "DockerContainerID": null, "Shell": null, "Interval": null, "TTL": "30s", "HTTP": null,
            "Method": null, "Header": null, "TCP": null, "Timeout": null, "DeregisterCriticalServiceAfter": "1m",
            "TLSSkipVerify": null, "Status": null, "GRPC": null, "GRPCUseTLS": null
        },
        "Checks": null
    })
}

#[tokio::test]
async fn spring_cloud_consul_registration_heartbeat_and_discovery() {
    let n = Node::start().await;
    let r = put_json(&n, "/v1/agent/service/register", spring_service("orders-8080", 8080)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Discovery before the first heartbeat: TTL checks start critical.
    let h = n.http.get(&consul(&n, "/v1/health/service/orders?passing=true")).await;
    assert_eq!(h.json(), json!([]));
    let idx: u64 = h.header("x-consul-index").unwrap().parse().unwrap();
    // Spring's heartbeat: PUT /v1/agent/check/pass/service:<id>.
    let r = n.http.send(Method::PUT, &consul(&n, "/v1/agent/check/pass/service:orders-8080?note=ok"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h =
        n.http.get(&consul(&n, &format!("/v1/health/service/orders?passing=true&index={idx}&wait=5s"))).await.json();
    let e = &h[0];
    assert_eq!(e["Service"]["ID"], "orders-8080");
    assert_eq!(e["Service"]["Service"], "orders");
    assert_eq!(e["Service"]["Port"], 8080);
    assert_eq!(e["Service"]["Tags"], json!(["secure=false"]));
    assert_eq!(e["Node"]["Datacenter"], "dc1");
    let checks = e["Checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing"));
    assert!(
        checks.iter().any(|c| c["CheckID"] == "service:orders-8080" && c["Status"] == "passing" && c["Output"] == "ok")
    );

    let cat = n.http.get(&consul(&n, "/v1/catalog/services")).await;
    assert_eq!(cat.json(), json!({"orders": ["secure=false"]}));
    let svc = n.http.get(&consul(&n, "/v1/catalog/service/orders")).await.json();
    assert_eq!(svc[0]["ServiceAddress"], "127.0.0.1");
    assert_eq!(svc[0]["ServicePort"], 8080);
    assert_eq!(svc[0]["ServiceMeta"]["secure"], "false");
    assert_eq!(n.http.get(&consul(&n, "/v1/health/service/orders?tag=other")).await.json(), json!([]));
    assert_eq!(n.http.get(&consul(&n, "/v1/status/leader")).await.json(), json!("127.0.0.1:8300"));
    assert_eq!(n.http.get(&consul(&n, "/v1/agent/self")).await.json()["Config"]["Datacenter"], "dc1");
    assert_eq!(n.http.get(&consul(&n, "/v1/agent/services")).await.json()["orders-8080"]["Service"], "orders");
    assert_eq!(n.http.get(&consul(&n, "/v1/catalog/datacenters")).await.json(), json!(["dc1"]));

    // Maintenance mode takes it out; fail and warn are reported.
    n.http
        .send(Method::PUT, &consul(&n, "/v1/agent/service/maintenance/orders-8080?enable=true&reason=deploy"), &[], "")
        .await;
    assert_eq!(n.http.get(&consul(&n, "/v1/health/service/orders?passing")).await.json(), json!([]));
    n.http.send(Method::PUT, &consul(&n, "/v1/agent/service/maintenance/orders-8080?enable=false"), &[], "").await;
    n.http.send(Method::PUT, &consul(&n, "/v1/agent/check/warn/service:orders-8080"), &[], "").await;
    let h = n.http.get(&consul(&n, "/v1/health/checks/orders")).await.json();
    assert_eq!(h[0]["Status"], "warning");

    // The same registry is the native one.
    assert_eq!(n.get("/api/registry/instances/orders-8080").await.json()["status"], "warning");
    // And /consul on the console port is the same API.
    assert_eq!(n.get("/consul/v1/catalog/services").await.json(), json!({"orders": ["secure=false"]}));

    let r = n.http.send(Method::PUT, &consul(&n, "/v1/agent/service/deregister/orders-8080"), &[], "").await;
    assert_eq!(r.status, 200);
    let r = n.http.send(Method::PUT, &consul(&n, "/v1/agent/service/deregister/orders-8080"), &[], "").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn http_and_multiple_checks_and_bad_definitions() {
    let n = Node::start().await;
    let up = signalbox_testkit::upstream::serve(signalbox_testkit::upstream::echo("x")).await;
    let body = json!({
        "ID": "web-1", "Name": "web", "Address": "127.0.0.1", "Port": up.addr.port(),
        "Checks": [
            {"HTTP": format!("http://127.0.0.1:{}/health", up.addr.port()), "Interval": "100ms", "Timeout": "50ms"},
            {"TCP": format!("127.0.0.1:{}", up.addr.port()), "Interval": "100ms"}
        ]
    });
    assert_eq!(put_json(&n, "/v1/agent/service/register", body).await.status, 200);
    signalbox_testkit::eventually(ms(3000), "both checks passing", || async {
        let h = n.http.get(&consul(&n, "/v1/health/service/web?passing")).await.json();
        (h.as_array().map(|a| a.len()) == Some(1)).then_some(h)
    })
    .await;
    let checks = n.http.get(&consul(&n, "/v1/health/checks/web")).await.json();
    let ids: Vec<&str> = checks.as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
    assert_eq!(ids, ["service:web-1:1", "service:web-1:2"], "Consul's naming for several checks");
    for (body, field) in [
        (json!({"Name": "x", "Port": 1, "Check": {"Args": ["/bin/true"], "Interval": "10s"}}), "Check.Args"),
        (json!({"Name": "x", "Port": 1, "Check": {"TTL": "forever"}}), "Check.TTL"),
        (json!({"Name": "bad name", "Port": 1}), "Name"),
        (json!({"Name": "x", "Port": 70000}), "Port"),
    ] {
        let r = put_json(&n, "/v1/agent/service/register", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{}", r.text());
    }
}

#[tokio::test]
async fn key_value_with_cas_recursion_keys_raw_and_blocking() {
    let n = Node::start().await;
    let put = |path: &str, body: &'static str| {
        let (http, url) = (n.http.clone(), consul(&n, path));
        async move { http.send(Method::PUT, &url, &[("content-type", "text/plain")], body).await }
    };
    assert_eq!(put("/v1/kv/config/orders/db.url", "postgres://a").await.json(), json!(true));
    put("/v1/kv/config/orders/pool", "5").await;
    put("/v1/kv/config/app/x", "1").await;
    let got = n.http.get(&consul(&n, "/v1/kv/config/orders/db.url")).await;
    let e = &got.json()[0];
    assert_eq!(e["Key"], "config/orders/db.url");
    assert_eq!(e["Value"], "cG9zdGdyZXM6Ly9h", "base64");
    assert_eq!(e["Flags"], 0);
    let modify = e["ModifyIndex"].as_u64().unwrap();
    assert_eq!(n.http.get(&consul(&n, "/v1/kv/config/orders/db.url?raw")).await.text(), "postgres://a");
    let all = n.http.get(&consul(&n, "/v1/kv/config/?recurse")).await.json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(
        n.http.get(&consul(&n, "/v1/kv/config/?keys&separator=/")).await.json(),
        json!(["config/app/", "config/orders/"])
    );
    let missing = n.http.get(&consul(&n, "/v1/kv/nope")).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.is_empty());
    assert!(missing.header("x-consul-index").is_some());

    assert_eq!(put(&format!("/v1/kv/config/orders/db.url?cas={}", modify - 1), "lost").await.json(), json!(false));
    assert_eq!(put(&format!("/v1/kv/config/orders/db.url?cas={modify}"), "postgres://b").await.json(), json!(true));
    assert_eq!(put("/v1/kv/config/orders/db.url?cas=0", "create-only").await.json(), json!(false));

    // A blocking read on the prefix returns when something under it changes.
    let idx: u64 = n
        .http
        .get(&consul(&n, "/v1/kv/config/orders/?recurse"))
        .await
        .header("x-consul-index")
        .unwrap()
        .parse()
        .unwrap();
    let url = consul(&n, &format!("/v1/kv/config/orders/?recurse&index={idx}&wait=10s"));
    let http = n.http.clone();
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        (http.get(&url).await, t.elapsed())
    });
    tokio::time::sleep(ms(200)).await;
    put("/v1/kv/config/app/y", "unrelated").await;
    tokio::time::sleep(ms(100)).await;
    assert!(!waiter.is_finished(), "a change elsewhere does not end the wait");
    put("/v1/kv/config/orders/pool", "10").await;
    let (r, took) = waiter.await.unwrap();
    assert!(took < ms(2000));
    assert!(r.header("x-consul-index").unwrap().parse::<u64>().unwrap() > idx);

    let r = n.http.send(Method::DELETE, &consul(&n, "/v1/kv/config/orders?recurse"), &[], "").await;
    assert_eq!(r.json(), json!(true));
    assert_eq!(n.http.get(&consul(&n, "/v1/kv/config/?keys")).await.json(), json!(["config/app/x", "config/app/y"]));
    let big = "v".repeat(600 * 1024);
    let r = n.http.send(Method::PUT, &consul(&n, "/v1/kv/big"), &[], big).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn consul_tokens_are_checked() {
    let n = Node::with_tokens(vec![file_token("reader", signalbox_control::access::Role::Read, "reader-secret")]).await;
    assert_eq!(n.http.get(&consul(&n, "/v1/catalog/services")).await.status, 401);
    let ok =
        n.http.send(Method::GET, &consul(&n, "/v1/catalog/services"), &[("x-consul-token", "reader-secret")], "").await;
    assert_eq!(ok.status, 200);
    let denied = n.http.send(Method::PUT, &consul(&n, "/v1/kv/x"), &[("x-consul-token", "reader-secret")], "v").await;
    assert_eq!(denied.status, 403);
    let allowed = n.http.send(Method::PUT, &consul(&n, "/v1/kv/x"), &[("x-consul-token", ADMIN)], "v").await;
    assert_eq!(allowed.status, 200);
}

#[tokio::test]
async fn https_checks_with_tls_skip_verify() {
    let n = Node::start().await;
    let up = signalbox_testkit::upstream::serve_tls(|_| async { signalbox_testkit::upstream::status(200) }).await;
    let body = json!({
        "ID": "secure-1", "Name": "secure", "Address": "127.0.0.1", "Port": up.addr.port(),
        "Check": {"HTTP": format!("{}/actuator/health", up.url()), "Interval": "100ms", "TLSSkipVerify": true},
    });
    let r = put_json(&n, "/v1/agent/service/register", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    signalbox_testkit::eventually(ms(3000), "the https check passes", || async {
        let h = n.http.get(&consul(&n, "/v1/health/service/secure?passing=true")).await.json();
        (h.as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
}
