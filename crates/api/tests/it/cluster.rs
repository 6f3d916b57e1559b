//! Two nodes on one etcd (whatever the harness switch says), talked to over HTTP: a
//! registration on one wakes a Consul blocking query waiting on the other within a
//! second; configuration written on one has its history on the other.

use crate::{Node, open_etcd_node};
use http::Method;
use serde_json::json;
use signalbox_testkit::etcd::Etcd;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn etcd_node(etcd: &Arc<Etcd>, name: &str) -> Node {
    let control = Arc::new(open_etcd_node(etcd, name, Default::default()).await);
    let mut n = Node::serve(control, None, tempfile::tempdir().unwrap()).await;
    n.etcd = Some(etcd.clone());
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_on_one_node_answers_a_blocking_query_on_the_other() {
    let etcd = Arc::new(Etcd::start().await);
    let a = etcd_node(&etcd, "a").await;
    let b = etcd_node(&etcd, "b").await;
    let consul = |n: &Node, path: &str| format!("http://{}{path}", n.consul_addr);

    let first = b.http.get(&consul(&b, "/v1/health/service/payments")).await;
    assert_eq!(first.json(), json!([]));
    let idx: u64 = first.header("x-consul-index").unwrap().parse().unwrap();
    let url = consul(&b, &format!("/v1/health/service/payments?index={idx}&wait=10s"));
    let http = b.http.clone();
    let waiting = tokio::spawn(async move {
        // A Consul client loops until the answer changes; so does this one.
        let mut url = url;
        loop {
            let r = http.get(&url).await;
            let at = Instant::now();
            let body = r.json();
            if body.as_array().is_some_and(|a| !a.is_empty()) {
                return (at, body, r.header("x-consul-index").unwrap().parse::<u64>().unwrap());
            }
            let next: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
            url = url.replace(&format!("index={idx}"), &format!("index={next}"));
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let registered = Instant::now();
    let r = a
        .call(
            Method::POST,
            "/api/registry/instances",
            None,
            Some(json!({"service": "payments", "id": "payments-1", "address": "127.0.0.1", "port": 9100})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let (answered, body, index) = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    let took = answered - registered;
    assert!(took < Duration::from_secs(1), "B's blocking query answered {took:?} after the registration on A");
    assert_eq!(body[0]["Service"]["ID"], "payments-1");
    assert!(index > idx);

    // Configuration written on B: its versions and history are readable on A.
    let k = "/api/config/payments/prod/limits.yaml";
    for v in ["max: 10\n", "max: 20\n"] {
        let r = b.call(Method::PUT, k, None, Some(json!({"value": v, "comment": "tune"}))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let history = signalbox_testkit::eventually(Duration::from_secs(2), "B's two versions on A", || async {
        let h = a.get(&format!("{k}/history")).await.json();
        h["versions"].as_array().is_some_and(|v| v.len() == 2).then_some(h)
    })
    .await;
    assert_eq!(history["versions"][1]["value"], "max: 20\n");
    assert_eq!(history["versions"][1]["comment"], "tune");
    assert_eq!(a.get(k).await.json()["version"], 2);
    let stale = a.call(Method::PUT, k, None, Some(json!({"value": "max: 5\n", "expected_version": 1}))).await;
    assert_eq!(stale.status, 409, "a CAS on A against B's older version loses");
}
