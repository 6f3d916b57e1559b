//! The Rust client against a real node: registration with TTL refresh and deregistration on
//! drop, the watch-backed discovery cache, configuration reads and watches.

use crate::*;
use serde_json::json;
use signalbox_client::Client;
use signalbox_testkit::eventually;

#[tokio::test]
async fn registration_refreshes_its_ttl_and_deregisters_on_drop() {
    let n = Node::start().await;
    let c = Client::new(&n.url(""), None);
    let reg = c
        .register(json!({"service": "billing", "id": "billing-1", "address": "127.0.0.1", "port": 7000, "checks": [{"ttl": "300ms"}]}))
        .await
        .unwrap();
    assert_eq!(reg.id, "billing-1");
    eventually(ms(2000), "passing", || async {
        (n.get("/api/registry/instances/billing-1").await.json()["status"] == "passing").then_some(())
    })
    .await;
    // Well past the TTL, the refresher keeps it passing.
    tokio::time::sleep(ms(900)).await;
    assert_eq!(n.get("/api/registry/instances/billing-1").await.json()["status"], "passing");
    drop(reg);
    eventually(ms(2000), "deregistered on drop", || async {
        (n.get("/api/registry/instances/billing-1").await.status == 404).then_some(())
    })
    .await;
    let reg = c
        .register(json!({"service": "billing", "id": "billing-2", "address": "127.0.0.1", "port": 7001}))
        .await
        .unwrap();
    reg.deregister().await.unwrap();
    assert_eq!(n.get("/api/registry/instances/billing-2").await.status, 404);
    let err = c.register(json!({"service": "billing", "address": "127.0.0.1", "port": 0})).await.err().unwrap();
    assert_eq!(err.status(), Some(400));
}

#[tokio::test]
async fn discovery_follows_changes_and_survives_an_outage() {
    let n = Node::start().await;
    let c = Client::new(&n.url(""), None);
    let mut d = c.discover("search");
    let r1 = c.register(json!({"service": "search", "id": "s1", "address": "127.0.0.1", "port": 8001})).await.unwrap();
    eventually(ms(2000), "one endpoint", || {
        let eps = d.endpoints();
        async move { (eps.len() == 1).then_some(()) }
    })
    .await;
    assert_eq!(d.endpoints()[0].address, "127.0.0.1:8001");
    let _r2 = c.register(json!({"service": "search", "id": "s2", "address": "127.0.0.1", "port": 8002})).await.unwrap();
    assert!(tokio::time::timeout(ms(2000), d.changed()).await.unwrap());
    eventually(ms(2000), "two endpoints", || {
        let eps = d.endpoints();
        async move { (eps.len() == 2).then_some(()) }
    })
    .await;
    r1.deregister().await.unwrap();
    eventually(ms(2000), "back to one", || {
        let eps = d.endpoints();
        async move { (eps.len() == 1).then_some(()) }
    })
    .await;
    // A client pointed at a dead node keeps its last known endpoints.
    let dead = Client::new("http://127.0.0.1:1", None);
    let d2 = dead.discover("search");
    tokio::time::sleep(ms(300)).await;
    assert!(d2.endpoints().is_empty());
}

#[tokio::test]
async fn config_reads_writes_and_watches() {
    let n = Node::start().await;
    let c = Client::new(&n.url(""), None);
    let mut watch = c.config_watch(Some("orders".into()), None);
    tokio::time::sleep(ms(100)).await;
    let v = c.config_put("orders", "prod", "pool.size", "10", "initial", None).await.unwrap();
    assert_eq!(v["version"], 1);
    let ch = tokio::time::timeout(ms(2000), watch.recv()).await.unwrap().unwrap();
    assert_eq!(ch["key"], "pool.size");
    assert_eq!(ch["value"], "10");
    let conflict = c.config_put("orders", "prod", "pool.size", "20", "", Some(0)).await.err().unwrap();
    assert_eq!(conflict.status(), Some(409));
    c.config_put("orders", "prod", "pool.size", "20", "bigger", Some(1)).await.unwrap();
    assert_eq!(c.config_get("orders", "prod", "pool.size").await.unwrap()["value"], "20");
    let h = c.config_history("orders", "prod", "pool.size").await.unwrap();
    assert_eq!(h["versions"].as_array().unwrap().len(), 2);
    let d = c.config_diff("orders", "prod", "pool.size", 1, 2).await.unwrap();
    assert!(d["unified"].as_str().unwrap().contains("-10"));
    c.config_rollback("orders", "prod", "pool.size", 1, "undo").await.unwrap();
    assert_eq!(c.config_get("orders", "prod", "pool.size").await.unwrap()["value"], "10");
}
