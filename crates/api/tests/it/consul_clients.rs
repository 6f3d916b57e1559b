//! The Consul API driven by real Python clients from PyPI, py-consul and python-consul2:
//! they send lowercase JSON keys (`{"name": "web", "checks": [{"ttl": "15s"}]}`), which
//! Consul's decoder accepts. `scripts/test-deps.sh` installs both.

use crate::*;
use serde_json::{Value, json};
use signalbox_testkit::python;

async fn drive(package: &str) -> Value {
    let n = Node::start().await;
    let script = format!("{}/tests/python/consul_client.py", env!("CARGO_MANIFEST_DIR"));
    let port = n.consul_addr.port().to_string();
    let out = python::run(package, &script, &["127.0.0.1", &port], Duration::from_secs(60)).await;
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    check(&v, package);
    v
}

fn check(v: &Value, package: &str) {
    let ctx = format!("{package}: {v}");
    assert_eq!(v["self_node"], "test-node", "{ctx}");
    assert_eq!(v["members"][0]["Name"], "test-node", "{ctx}");
    assert_eq!(v["members"][0]["Status"], 1, "{ctx}");
    assert_eq!(v["register"], true, "{ctx}");
    assert_eq!(v["check_register"], true, "{ctx}");
    assert!(v["check_ids"].as_array().unwrap().contains(&json!("web-1-extra")), "{ctx}");
    let svc = &v["services"]["web-1"];
    assert_eq!(svc["Service"], "web", "{ctx}");
    assert_eq!(svc["Port"], 8080, "{ctx}");
    assert_eq!(svc["Tags"], json!(["v1"]), "{ctx}");
    assert_eq!(svc["Meta"], json!({"version": "1"}), "{ctx}");
    assert_eq!(v["catalog_services"], json!({"web": ["v1"]}), "{ctx}");
    assert_eq!(v["catalog_node"]["Node"]["Node"], "test-node", "{ctx}");
    assert_eq!(v["catalog_node"]["Services"]["web-1"]["Service"], "web", "{ctx}");

    // Every check passed by TTL report: the instance is passing.
    let h = v["health_passing"].as_array().unwrap();
    assert_eq!(h.len(), 1, "{ctx}");
    assert_eq!(h[0]["Service"]["ID"], "web-1", "{ctx}");
    let checks = h[0]["Checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["Status"] == "passing"), "{ctx}");
    assert!(checks.iter().any(|c| c["CheckID"] == "web-1-extra" && c["Name"] == "extra"), "{ctx}");
    assert!(checks.iter().any(|c| c["Output"] == "ready" && c["Type"] == "ttl"), "{ctx}");
    let service_checks = v["health_checks"].as_array().unwrap();
    assert!(service_checks.iter().all(|c| c["ServiceID"] == "web-1" && c["Status"] == "passing"), "{ctx}");
    let state = v["health_state_passing"].as_array().unwrap();
    assert!(state.iter().any(|c| c["CheckID"] == "serfHealth"), "{ctx}");
    assert_eq!(state.len(), service_checks.len() + 1, "{ctx}");
    assert_eq!(v["health_node"].as_array().unwrap().len(), service_checks.len() + 1, "{ctx}");

    assert_eq!(v["kv_put"], true, "{ctx}");
    assert_eq!(v["kv_get"]["Key"], "app/config", "{ctx}");
    assert_eq!(v["kv_get"]["Value"], "hello", "{ctx}");
    assert_eq!(v["kv_cas_stale"], false, "{ctx}");
    let results = v["txn"]["Results"].as_array().unwrap();
    assert_eq!(results[0]["KV"]["Key"], "app/a", "{ctx}");
    assert_eq!(results[0]["KV"]["Value"], Value::Null, "{ctx}");
    assert_eq!(results[1]["KV"]["Value"], "aGVsbG8=", "{ctx}");
    assert_eq!(v["txn"]["Errors"], Value::Null, "{ctx}");
    assert_eq!(v["kv_after_txn"], "one", "{ctx}");

    assert_eq!(v["catalog_register"], true, "{ctx}");
    let ext = &v["catalog_ext"][0];
    assert_eq!(
        (&ext["ServiceID"], &ext["ServicePort"], &ext["ServiceTags"]),
        (&json!("ext-1"), &json!(9100), &json!(["x"])),
        "{ctx}"
    );
    assert_eq!(ext["Node"], "test-node", "{ctx}");
    assert_eq!(v["catalog_deregister"], true, "{ctx}");
    assert_eq!(v["catalog_ext_after"], json!([]), "{ctx}");

    assert_eq!(v["check_deregister"], true, "{ctx}");
    assert_eq!(v["deregister"], true, "{ctx}");
    assert_eq!(v["catalog_after"], json!({}), "{ctx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_consul_registers_checks_discovers_and_uses_kv() {
    let v = drive("py-consul").await;
    // py-consul sends the service's two checks as `checks`.
    let ids = v["check_ids"].as_array().unwrap();
    assert!(ids.contains(&json!("service:web-1:1")) && ids.contains(&json!("service:web-1:2")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_consul2_registers_checks_discovers_and_uses_kv() {
    let v = drive("python-consul2").await;
    assert!(v["check_ids"].as_array().unwrap().contains(&json!("service:web-1")), "{v}");
}
