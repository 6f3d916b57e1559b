//! Consul endpoints beyond service registration: checks registered by ID, node and state
//! health, the node's catalog entry, members, and KV transactions; request field names in
//! any case; every error a JSON body naming the field.

use crate::*;
use http::Method;
use serde_json::{Value, json};

fn consul(n: &Node, path: &str) -> String {
    format!("http://{}{path}", n.consul_addr)
}

async fn put(n: &Node, path: &str, body: Value) -> Resp {
    n.http.send(Method::PUT, &consul(n, path), &[("content-type", "application/json")], body.to_string()).await
}

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        v.as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn field_names_match_in_any_case_and_errors_name_them() {
    let n = Node::start().await;
    let body = json!({"name": "web", "id": "web-1", "port": 8080, "meta": {"Env": "prod"},
        "checks": [{"ttl": "15s", "deregister_critical_service_after": "1m", "status": "passing"}]});
    let r = put(&n, "/v1/agent/service/register", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let svc = &n.http.get(&consul(&n, "/v1/agent/services")).await.json()["web-1"];
    assert_eq!(svc["Service"], "web");
    assert_eq!(svc["Port"], 8080);
    assert_eq!(svc["Meta"], json!({"Env": "prod"}), "user keys keep their case");
    let h = n.http.get(&consul(&n, "/v1/health/checks/web")).await.json();
    assert_eq!(h[0]["Status"], "passing", "{h}");
    assert_eq!(h[0]["Type"], "ttl", "{h}");

    for (path, body, field) in [
        ("/v1/agent/service/register", json!({"name": "x", "port": 1, "check": {"ttl": "forever"}}), "Check.TTL"),
        ("/v1/agent/service/register", json!({"NAME": "x", "Port": "one"}), "Port"),
        ("/v1/agent/check/register", json!({"name": "c", "ttl": "10s"}), "ServiceID"),
        ("/v1/agent/check/register", json!({"name": "c", "ttl": "10s", "service_id": "nope"}), "ServiceID"),
        ("/v1/agent/check/register", json!({"name": "c", "interval": "1s", "serviceid": "web-1"}), "Check"),
        ("/v1/agent/check/register", json!({"ttl": "10s", "serviceid": "web-1"}), "Name"),
        ("/v1/agent/check/update/service:web-1", json!({"status": "sleeping"}), "Status"),
        ("/v1/txn", json!([{"kv": {"verb": "explode", "key": "a"}}]), "[0].KV.Verb"),
        ("/v1/txn", json!([{"KV": {"Verb": "set", "Key": "a", "Value": "%%%"}}]), "[0].KV.Value"),
        ("/v1/txn", json!([{"KV": {"Verb": "cas", "Key": "a"}}]), "[0].KV.Index"),
        ("/v1/txn", json!([{"Node": {"Verb": "get", "Node": {"Node": "n"}}}]), "[0].Node"),
        ("/v1/txn", json!({"KV": {}}), ""),
    ] {
        let r = put(&n, path, body.clone()).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        assert_eq!(r.json()["code"], "invalid_field", "{}", r.text());
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", r.text());
        if !field.is_empty() {
            assert_eq!(r.json()["field"], field, "{path} {body}: {}", r.text());
        }
    }
    let bad_json = n.http.send(Method::PUT, &consul(&n, "/v1/agent/service/register"), &[], "{").await;
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["code"], "invalid_json");
    let unknown = n.http.get(&consul(&n, "/v1/acl/tokens")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["code"], "not_found");
}

#[tokio::test]
async fn checks_by_id_node_and_state_health_catalog_node_and_members() {
    let n = Node::start().await;
    let r = put(&n, "/v1/agent/service/register", json!({"Name": "api", "ID": "api-1", "Port": 9000, "Tags": ["v2"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A check added by ID to the registered service, then reported on by its ID.
    let r = put(&n, "/v1/agent/check/register", json!({"Name": "disk", "ServiceID": "api-1", "TTL": "30s"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = put(
        &n,
        "/v1/agent/check/register",
        json!({"Name": "mem", "CheckID": "api-mem", "ServiceID": "api-1", "TTL": "30s", "Status": "passing"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let checks = n.http.get(&consul(&n, "/v1/agent/checks")).await.json();
    assert_eq!(checks["disk"]["ServiceID"], "api-1", "the ID defaults to the name: {checks}");
    assert_eq!(checks["disk"]["Status"], "critical", "{checks}");
    assert_eq!(checks["api-mem"]["Status"], "passing", "{checks}");

    let critical = n.http.get(&consul(&n, "/v1/health/state/critical")).await;
    assert_eq!(critical.status, 200);
    assert!(critical.header("x-consul-index").is_some());
    assert_eq!(ids(&critical.json()), ["disk"]);
    let idx: u64 = critical.header("x-consul-index").unwrap().parse().unwrap();

    // pass/warn/fail/update address a check by its ID; a blocking state query sees it.
    let http = n.http.clone();
    let url = consul(&n, &format!("/v1/health/state/warning?index={idx}&wait=10s"));
    let waiter = tokio::spawn(async move { http.get(&url).await.json() });
    tokio::time::sleep(ms(100)).await;
    let r = n.http.send(Method::PUT, &consul(&n, "/v1/agent/check/warn/disk?note=80%25"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let warning = waiter.await.unwrap();
    assert_eq!(ids(&warning), ["disk"]);
    assert_eq!(warning[0]["Output"], "80%");
    assert_eq!(warning[0]["ServiceName"], "api");
    let r = put(&n, "/v1/agent/check/update/disk", json!({"status": "passing", "output": "fine"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    n.http.send(Method::PUT, &consul(&n, "/v1/agent/check/fail/api-mem"), &[], "").await;
    n.http.send(Method::PUT, &consul(&n, "/v1/agent/check/pass/api-mem"), &[], "").await;
    let passing = n.http.get(&consul(&n, "/v1/health/state/passing")).await.json();
    assert_eq!(ids(&passing), ["api-mem", "disk", "serfHealth"]);
    assert_eq!(passing.as_array().unwrap().iter().find(|c| c["CheckID"] == "disk").unwrap()["Output"], "fine");
    assert_eq!(ids(&n.http.get(&consul(&n, "/v1/health/state/any")).await.json()).len(), 3);
    let bad = n.http.get(&consul(&n, "/v1/health/state/sleepy")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "state");

    let node = n.http.get(&consul(&n, "/v1/health/node/test-node")).await.json();
    assert_eq!(ids(&node), ["api-mem", "disk", "serfHealth"]);
    assert!(node.as_array().unwrap().iter().all(|c| c["Node"] == "test-node"));
    assert_eq!(n.http.get(&consul(&n, "/v1/health/node/other")).await.json(), json!([]));

    let cat = n.http.get(&consul(&n, "/v1/catalog/node/test-node")).await;
    assert!(cat.header("x-consul-index").is_some());
    let cat = cat.json();
    assert_eq!(cat["Node"]["Node"], "test-node");
    assert_eq!(cat["Node"]["Datacenter"], "dc1");
    assert_eq!(cat["Services"]["api-1"]["Service"], "api");
    assert_eq!(cat["Services"]["api-1"]["Tags"], json!(["v2"]));
    assert_eq!(cat["Services"]["api-1"]["Port"], 9000);
    let other = n.http.get(&consul(&n, "/v1/catalog/node/other")).await;
    assert_eq!((other.status, other.json()), (200, Value::Null));

    let members = n.http.get(&consul(&n, "/v1/agent/members")).await.json();
    assert_eq!(members[0]["Name"], "test-node");
    assert_eq!(members[0]["Addr"], "127.0.0.1");
    assert_eq!(members[0]["Status"], 1);
    assert_eq!(members[0]["Tags"]["dc"], "dc1");
    let me = n.http.get(&consul(&n, "/v1/agent/self")).await.json();
    assert_eq!(me["Member"], members[0]);
    assert_eq!(me["Config"]["NodeName"], "test-node");

    // Removing a check keeps the others as they were.
    let r = n.http.send(Method::PUT, &consul(&n, "/v1/agent/check/deregister/disk"), &[], "").await;
    assert_eq!(r.status, 200);
    let r = n.http.send(Method::PUT, &consul(&n, "/v1/agent/check/deregister/disk"), &[], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    let left = n.http.get(&consul(&n, "/v1/health/checks/api")).await.json();
    assert_eq!(ids(&left), ["api-mem"]);
    assert_eq!(left[0]["Status"], "passing");
}

#[tokio::test]
async fn transactions_apply_atomically_or_roll_back() {
    let n = Node::start().await;
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let r = put(
        &n,
        "/v1/txn",
        json!([
            {"KV": {"Verb": "set", "Key": "app/a", "Value": b64("1"), "Flags": 7}},
            {"KV": {"Verb": "set", "Key": "app/b", "Value": b64("2")}},
            {"KV": {"Verb": "get", "Key": "app/a"}},
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Errors"], Value::Null);
    let res = v["Results"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["KV"]["Key"], "app/a");
    assert_eq!(res[0]["KV"]["Value"], Value::Null, "writes return no value");
    assert_eq!(res[0]["KV"]["Flags"], 7);
    assert_eq!(res[2]["KV"]["Value"], b64("1"), "a get sees the set before it");
    let index = res[0]["KV"]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(res[1]["KV"]["ModifyIndex"], index, "one index for the whole transaction");

    // A failed check rolls everything back, naming the operation.
    let r = put(
        &n,
        "/v1/txn",
        json!([
            {"KV": {"Verb": "set", "Key": "app/c", "Value": b64("3")}},
            {"KV": {"Verb": "cas", "Key": "app/a", "Value": b64("x"), "Index": index + 100}},
            {"KV": {"Verb": "check-not-exists", "Key": "app/b"}},
        ]),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Results"], Value::Null);
    let errors = v["Errors"].as_array().unwrap();
    assert_eq!(errors.iter().map(|e| e["OpIndex"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    assert!(errors[0]["What"].as_str().unwrap().contains("app/a"), "{v}");
    assert_eq!(n.http.get(&consul(&n, "/v1/kv/app/c")).await.status, 404, "nothing was applied");
    assert_eq!(n.http.get(&consul(&n, "/v1/kv/app/a?raw")).await.text(), "1");

    // Read-only transactions, tree reads and deletes.
    let r = put(
        &n,
        "/v1/txn",
        json!([
            {"KV": {"Verb": "check-index", "Key": "app/a", "Index": index}},
            {"KV": {"Verb": "get-tree", "Key": "app/"}},
            {"KV": {"Verb": "get-or-empty", "Key": "app/none"}},
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let keys: Vec<Value> = r.json()["Results"].as_array().unwrap().iter().map(|x| x["KV"]["Key"].clone()).collect();
    assert_eq!(keys, [json!("app/a"), json!("app/a"), json!("app/b")]);
    let r = put(
        &n,
        "/v1/txn",
        json!([
            {"KV": {"Verb": "delete-cas", "Key": "app/a", "Index": index}},
            {"KV": {"Verb": "delete-tree", "Key": "app/"}},
        ]),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({"Results": null, "Errors": null})));
    assert_eq!(n.http.get(&consul(&n, "/v1/kv/app/?recurse")).await.status, 404);

    let many: Vec<Value> = (0..129).map(|i| json!({"KV": {"Verb": "get", "Key": format!("k{i}")}})).collect();
    let r = put(&n, "/v1/txn", Value::Array(many)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], "limit_exceeded");
}

#[tokio::test]
async fn services_of_this_node_through_the_catalog() {
    let n = Node::start().await;
    let r = put(
        &n,
        "/v1/catalog/register",
        json!({"node": "test-node", "address": "127.0.0.1",
        "service": {"service": "ext", "id": "ext-1", "address": "10.0.0.5", "port": 5432, "meta": {"Kind": "db"}}}),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!(true)), "{}", r.text());
    let svc = n.http.get(&consul(&n, "/v1/catalog/service/ext")).await.json();
    assert_eq!(svc[0]["ServiceID"], "ext-1");
    assert_eq!(svc[0]["ServiceAddress"], "10.0.0.5");
    assert_eq!(svc[0]["ServiceMeta"], json!({"Kind": "db"}));
    let h = n.http.get(&consul(&n, "/v1/health/service/ext?passing")).await.json();
    assert_eq!(h[0]["Service"]["ID"], "ext-1", "no checks: passing");
    // A node-only registration of this node changes nothing and succeeds.
    let r = put(&n, "/v1/catalog/register", json!({"Node": "test-node", "Address": "127.0.0.1"})).await;
    assert_eq!(r.status, 200, "{}", r.text());

    for (body, field) in [
        (json!({"Node": "elsewhere", "Service": {"Service": "x", "Port": 1}}), "Node"),
        (json!({"Service": {"Service": "x", "Port": 1}}), "Node"),
        (json!({"Node": "test-node", "Service": {"Service": "x", "Port": 1}, "Check": {"Status": "passing"}}), "Check"),
        (json!({"Node": "test-node", "Service": {"Service": "x", "Port": 70000}}), "Service.Port"),
        (json!({"Node": "test-node", "Service": {"Service": "bad name"}}), "Service.Service"),
    ] {
        let r = put(&n, "/v1/catalog/register", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{body}: {}", r.text());
    }
    let r = put(&n, "/v1/catalog/deregister", json!({"Node": "test-node"})).await;
    assert_eq!(r.json()["field"], "ServiceID", "{}", r.text());
    let r = put(&n, "/v1/catalog/deregister", json!({"node": "test-node", "serviceid": "ext-1"})).await;
    assert_eq!((r.status, r.json()), (200, json!(true)), "{}", r.text());
    assert_eq!(n.http.get(&consul(&n, "/v1/catalog/services")).await.json(), json!({}));
}
