//! Load balancing: spread, round robin order, consistent-hash stickiness.

use crate::*;
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{echo, serve};

#[tokio::test]
async fn p2c_spreads_concurrent_load_over_all_endpoints() {
    let ups = [serve(echo("a")).await, serve(echo("b")).await, serve(echo("c")).await];
    let eps: Vec<String> = ups.iter().map(|u| u.url()).collect();
    let gw = start(config(vec![service("s", &eps)], vec![route("/", "s")])).await;
    let http = Http::new();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url) = (http.clone(), gw.url("/x"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                assert_eq!(http.get(&url).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let hits: Vec<usize> = ups.iter().map(|u| u.hits()).collect();
    assert_eq!(hits.iter().sum::<usize>(), 300);
    for h in &hits {
        assert!(*h >= 30, "every endpoint gets a fair share: {hits:?}");
    }
}

#[tokio::test]
async fn round_robin_takes_turns() {
    let ups = [serve(echo("a")).await, serve(echo("b")).await, serve(echo("c")).await];
    let eps: Vec<String> = ups.iter().map(|u| u.url()).collect();
    let mut s = service("s", &eps);
    s.balancer.kind = "round_robin".into();
    let gw = start(config(vec![s], vec![route("/", "s")])).await;
    let http = Http::new();
    let mut order = Vec::new();
    for _ in 0..9 {
        order.push(http.get(&gw.url("/")).await.json()["server"].as_str().unwrap().to_owned());
    }
    assert_eq!(ups.iter().map(|u| u.hits()).collect::<Vec<_>>(), vec![3, 3, 3]);
    assert_eq!(order[0..3], order[3..6], "a stable rotation: {order:?}");
}

#[tokio::test]
async fn ring_hash_keeps_a_key_on_one_endpoint() {
    let ups = [serve(echo("a")).await, serve(echo("b")).await, serve(echo("c")).await];
    let eps: Vec<String> = ups.iter().map(|u| u.url()).collect();
    let mut s = service("s", &eps);
    s.balancer.kind = "ring_hash".into();
    s.balancer.hash_header = Some("x-user".into());
    s.balancer.hash_cookie = Some("session".into());
    let gw = start(config(vec![s], vec![route("/", "s")])).await;
    let http = Http::new();
    let mut seen = std::collections::HashSet::new();
    for user in 0..30 {
        let u = format!("user-{user}");
        let first = http.send(http::Method::GET, &gw.url("/"), &[("x-user", &u)], "").await.json()["server"].clone();
        for _ in 0..3 {
            let again =
                http.send(http::Method::GET, &gw.url("/"), &[("x-user", &u)], "").await.json()["server"].clone();
            assert_eq!(first, again, "{u} sticks to one endpoint");
        }
        seen.insert(first.as_str().unwrap().to_owned());
    }
    assert!(seen.len() >= 2, "keys spread over endpoints: {seen:?}");
    let c1 = http.send(http::Method::GET, &gw.url("/"), &[("cookie", "a=1; session=xyz")], "").await.json()["server"]
        .clone();
    let c2 =
        http.send(http::Method::GET, &gw.url("/"), &[("cookie", "session=xyz")], "").await.json()["server"].clone();
    assert_eq!(c1, c2, "the cookie is a hash key too");
}
