//! Hot reload under load, rejected configs, graceful drain.

use crate::*;
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{echo, serve};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[tokio::test]
async fn reload_under_load_fails_no_request() {
    let a = serve(echo("a")).await;
    let b = serve(echo("b")).await;
    let cfg_a = config(vec![service("s", &[a.url()])], vec![route("/", "s")]);
    let mut cfg_b = config(vec![service("s", &[b.url()])], vec![route("/", "s")]);
    cfg_b.routes[0].request_headers.set.insert("x-version".into(), "b".into());
    let gw = start(cfg_a.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, ok, url) = (stop.clone(), ok.clone(), gw.url("/"));
        clients.push(tokio::spawn(async move {
            let http = Http::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match http.try_send(http::Method::GET, &url, &[], bytes::Bytes::new()).await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{other:?}")),
                }
            }
            failures
        }));
    }
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        gw.gw.reload(if i % 2 == 0 { cfg_b.clone() } else { cfg_a.clone() }).expect("valid config");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let failures = c.await.unwrap();
        assert!(failures.is_empty(), "requests failed during reload: {failures:?}");
    }
    assert!(ok.load(Ordering::Relaxed) > 100, "load was applied: {}", ok.load(Ordering::Relaxed));
    assert!(a.hits() > 0 && b.hits() > 0, "both configs served traffic");
    assert_eq!(gw.metric("signalbox_gateway_config_reloads_total", &[("result", "ok")]), 20.0);
}

#[tokio::test]
async fn invalid_reload_is_rejected_and_the_old_config_stays() {
    let a = serve(echo("a")).await;
    let gw = start(config(vec![service("s", &[a.url()])], vec![route("/", "s")])).await;
    let mut bad = config(vec![service("s", &[a.url()])], vec![route("/", "missing")]);
    bad.routes[0].matcher.path_regex = Some("([".into());
    let problems = gw.gw.reload(bad).unwrap_err();
    let paths: Vec<&str> = problems.list.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"gateway.routes[0].service"), "{paths:?}");
    assert!(paths.contains(&"gateway.routes[0].match"), "two path kinds given: {paths:?}");
    assert!(paths.contains(&"gateway.routes[0].match.path_regex"), "{paths:?}");
    assert_eq!(Http::new().get(&gw.url("/")).await.status, 200);
    assert_eq!(gw.metric("signalbox_gateway_config_reloads_total", &[("result", "rejected")]), 1.0);
}

#[tokio::test]
async fn reload_keeps_endpoint_state() {
    let a = serve(|_| async { signalbox_testkit::upstream::status(500) }).await;
    let b = serve(echo("b")).await;
    let mut s = service("s", &[a.url(), b.url()]);
    s.balancer.kind = "round_robin".into();
    s.outlier.consecutive_5xx = 2;
    s.outlier.base_ejection_time = secs(60);
    let mut r = route("/", "s");
    r.retry = Some(signalbox_gateway::config::RetryConfig { attempts: 1, ..Default::default() });
    let cfg = config(vec![s], vec![r]);
    let gw = start(cfg.clone()).await;
    let http = Http::new();
    for _ in 0..4 {
        http.get(&gw.url("/")).await;
    }
    assert_eq!(a.hits(), 2);
    let mut changed = cfg.clone();
    changed.routes[0].response_headers.set.insert("x-new".into(), "1".into());
    changed.services[0].pool_idle_timeout = secs(30);
    gw.gw.reload(changed).unwrap();
    for _ in 0..4 {
        let r = http.get(&gw.url("/")).await;
        assert_eq!(r.status, 200, "the ejection survived the reload");
        assert_eq!(r.header("x-new"), Some("1"));
    }
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let slow = serve(|_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        signalbox_testkit::upstream::status(200)
    })
    .await;
    let gw = start(config(vec![service("s", &[slow.url()])], vec![route("/", "s")])).await;
    let url = gw.url("/");
    let addr = gw.addr;
    let in_flight = tokio::spawn(async move { Http::new().get(&url).await.status });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    gw.shutdown().await;
    assert!(t.elapsed() >= Duration::from_millis(300), "shutdown waited for the request");
    assert_eq!(in_flight.await.unwrap(), 200, "the in-flight request completed");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}
