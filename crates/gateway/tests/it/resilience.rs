//! Timeouts, retries and the retry budget, circuit breakers, outlier ejection.

use crate::*;
use bytes::Bytes;
use http::Method;
use signalbox_gateway::config::{CircuitBreakerConfig, RetryConfig, TimeoutsConfig};
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{echo, serve, serve_at, status};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn no_retry() -> RetryConfig {
    RetryConfig { attempts: 1, ..RetryConfig::default() }
}

#[tokio::test]
async fn retries_idempotent_requests_on_503_but_not_posts() {
    let bad = serve(|_| async { status(503) }).await;
    let good = serve(echo("good")).await;
    let mut s = service("s", &[bad.url(), good.url()]);
    s.balancer.kind = "round_robin".into();
    s.outlier.consecutive_5xx = 0;
    let gw = start(config(vec![s], vec![route("/", "s")])).await;
    let http = Http::new();
    for _ in 0..10 {
        assert_eq!(http.get(&gw.url("/")).await.status, 200, "GET is retried on the other endpoint");
    }
    assert!(bad.hits() >= 4, "the bad endpoint was tried: {}", bad.hits());
    let mut failed_posts = 0;
    for _ in 0..10 {
        if http.send(Method::POST, &gw.url("/"), &[], "x").await.status == 503 {
            failed_posts += 1;
        }
    }
    assert_eq!(failed_posts, 5, "POST is not retried: round robin sends half to the bad endpoint");
    signalbox_testkit::eventually(Duration::from_secs(2), "a logged retry", || async {
        gw.log_lines().iter().any(|l| l["tries"] == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn retry_budget_caps_extra_load_at_the_ratio() {
    let bad = serve(|_| async { status(503) }).await;
    let mut s = service("s", &[bad.url()]);
    s.outlier.consecutive_5xx = 0;
    let mut r = route("/", "s");
    r.retry = Some(RetryConfig {
        attempts: 3,
        budget_ratio: 0.2,
        budget_min_per_second: 0,
        backoff_base: millis(1),
        backoff_max: millis(2),
        ..RetryConfig::default()
    });
    let gw = start(config(vec![s], vec![r])).await;
    let http = Http::new();
    for _ in 0..100 {
        assert_eq!(http.get(&gw.url("/")).await.status, 503);
    }
    let hits = bad.hits();
    assert!(hits > 100, "some retries happened: {hits}");
    assert!(hits <= 121, "retries add at most 20% load (+1 for rounding): {hits}");
}

#[tokio::test]
async fn connect_failures_are_retried_even_for_posts() {
    let dead = {
        let u = serve(echo("dead")).await;
        u.url()
    }; // dropped: nothing listens there now
    let good = serve(echo("good")).await;
    let mut s = service("s", &[dead, good.url()]);
    s.balancer.kind = "round_robin".into();
    let gw = start(config(vec![s], vec![route("/", "s")])).await;
    let http = Http::new();
    for _ in 0..6 {
        let r = http.send(Method::POST, &gw.url("/"), &[], "payload").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body"], "payload", "the buffered body is replayed");
    }
}

#[tokio::test]
async fn per_try_timeout_gives_504() {
    let slow = serve(|_| async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        status(200)
    })
    .await;
    let mut r = route("/", "s");
    r.timeouts = Some(TimeoutsConfig { per_try: millis(100), ..TimeoutsConfig::default() });
    r.retry = Some(no_retry());
    let gw = start(config(vec![service("s", &[slow.url()])], vec![r])).await;
    let t = Instant::now();
    let resp = Http::new().get(&gw.url("/")).await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.json()["code"], "upstream_timeout");
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
}

#[tokio::test]
async fn request_timeout_bounds_all_tries() {
    let slow = serve(|_| async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        status(200)
    })
    .await;
    let mut r = route("/", "s");
    r.timeouts = Some(TimeoutsConfig { per_try: millis(200), request: millis(350), ..TimeoutsConfig::default() });
    r.retry = Some(RetryConfig {
        attempts: 5,
        retry_on: vec!["timeout".into()],
        backoff_base: millis(1),
        backoff_max: millis(1),
        ..RetryConfig::default()
    });
    let gw = start(config(vec![service("s", &[slow.url()])], vec![r])).await;
    let t = Instant::now();
    let resp = Http::new().get(&gw.url("/")).await;
    assert_eq!(resp.status, 504);
    assert!(t.elapsed() < Duration::from_millis(550), "the deadline cut the second try short: {:?}", t.elapsed());
    assert_eq!(slow.hits(), 2, "two tries reached the upstream; neither finished");
    let line = signalbox_testkit::eventually(Duration::from_secs(2), "log line", || async {
        gw.log_lines().into_iter().next()
    })
    .await;
    assert_eq!(line["tries"], 2);
}

#[tokio::test]
async fn connect_timeout_gives_502() {
    let hole = signalbox_testkit::blackhole().await;
    let mut r = route("/", "s");
    r.timeouts = Some(TimeoutsConfig { connect: millis(200), ..TimeoutsConfig::default() });
    r.retry = Some(no_retry());
    let gw = start(config(vec![service("s", &[hole.addr.to_string()])], vec![r])).await;
    let t = Instant::now();
    let resp = Http::new().get(&gw.url("/")).await;
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.json()["code"], "upstream_connect_failed");
    assert!(
        t.elapsed() >= Duration::from_millis(180) && t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn idle_timeout_cuts_a_stalled_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello").await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            });
        }
    });
    let mut r = route("/", "s");
    r.timeouts = Some(TimeoutsConfig { idle: millis(300), ..TimeoutsConfig::default() });
    let gw = start(config(vec![service("s", &[addr.to_string()])], vec![r])).await;
    let t = Instant::now();
    let res = Http::new().try_send(Method::GET, &gw.url("/"), &[], Bytes::new()).await;
    assert!(res.is_err(), "the body cannot complete: {res:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "cut after the idle timeout, not the stall: {:?}", t.elapsed());
    let line = signalbox_testkit::eventually(Duration::from_secs(2), "access log line", || async {
        gw.log_lines().into_iter().next()
    })
    .await;
    assert_eq!(line["error"], "body idle timeout");
}

fn breaker() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: "count".into(),
        window_size: 10,
        minimum_calls: 5,
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 100.0,
        slow_call_duration: secs(5),
        wait_in_open: millis(300),
        half_open_calls: 2,
    }
}

#[tokio::test]
async fn service_circuit_opens_half_opens_and_closes() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let up = serve(move |_| {
        let fail = f.load(Ordering::SeqCst);
        async move { status(if fail { 500 } else { 200 }) }
    })
    .await;
    let mut s = service("s", &[up.url()]);
    s.circuit_breaker = Some(breaker());
    s.outlier.consecutive_5xx = 0;
    let mut r = route("/", "s");
    r.retry = Some(no_retry());
    let gw = start(config(vec![s], vec![r])).await;
    let http = Http::new();
    for _ in 0..5 {
        assert_eq!(http.get(&gw.url("/")).await.status, 500);
    }
    let open = http.get(&gw.url("/")).await;
    assert_eq!(open.status, 503);
    assert_eq!(open.json()["code"], "circuit_open");
    assert_eq!(open.header("x-signalbox-circuit"), Some("service:s"));
    assert!(open.header("retry-after").is_some());
    assert_eq!(up.hits(), 5, "an open circuit fails fast without calling the upstream");
    assert_eq!(gw.gw.circuits_view()[0]["state"], "open");

    // Still failing after the wait: the trial calls re-open it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(http.get(&gw.url("/")).await.status, 500);
    assert_eq!(gw.gw.circuits_view()[0]["state"], "half_open");
    assert_eq!(http.get(&gw.url("/")).await.status, 500);
    assert_eq!(http.get(&gw.url("/")).await.status, 503, "re-opened");

    // Healthy after the wait: two good trial calls close it.
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(http.get(&gw.url("/")).await.status, 200);
    assert_eq!(http.get(&gw.url("/")).await.status, 200);
    assert_eq!(gw.gw.circuits_view()[0]["state"], "closed");
    for _ in 0..5 {
        assert_eq!(http.get(&gw.url("/")).await.status, 200);
    }
    let metrics = gw.registry.render();
    assert!(
        metrics.contains("signalbox_gateway_circuit_state{scope=\"service\",service=\"s\",endpoint=\"\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn endpoint_circuit_steers_traffic_to_healthy_endpoints() {
    let bad = serve(|_| async { status(500) }).await;
    let good = serve(echo("good")).await;
    let mut s = service("s", &[bad.url(), good.url()]);
    s.balancer.kind = "round_robin".into();
    s.endpoint_circuit_breaker = Some(CircuitBreakerConfig { wait_in_open: secs(30), ..breaker() });
    s.outlier.consecutive_5xx = 0;
    let mut r = route("/", "s");
    r.retry = Some(no_retry());
    let gw = start(config(vec![s], vec![r])).await;
    let http = Http::new();
    for _ in 0..10 {
        http.get(&gw.url("/")).await;
    }
    assert_eq!(bad.hits(), 5, "5 calls fill the minimum and open the endpoint's circuit");
    for _ in 0..10 {
        assert_eq!(http.get(&gw.url("/")).await.status, 200);
    }
    assert_eq!(bad.hits(), 5);
    let view = gw.gw.circuits_view();
    let states: Vec<_> = view
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["endpoint"].as_str().unwrap().to_owned(), c["state"].clone()))
        .collect();
    assert!(states.contains(&(bad.addr.to_string(), "open".into())), "{states:?}");
}

#[tokio::test]
async fn outlier_is_ejected_and_returns() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let flaky = serve(move |_| {
        let fail = f.load(Ordering::SeqCst);
        async move { status(if fail { 500 } else { 200 }) }
    })
    .await;
    let a = serve(echo("a")).await;
    let b = serve(echo("b")).await;
    let mut s = service("s", &[flaky.url(), a.url(), b.url()]);
    s.balancer.kind = "round_robin".into();
    s.outlier.consecutive_5xx = 3;
    s.outlier.base_ejection_time = millis(500);
    let mut r = route("/", "s");
    r.retry = Some(no_retry());
    let gw = start(config(vec![s], vec![r])).await;
    let http = Http::new();
    for _ in 0..9 {
        http.get(&gw.url("/")).await;
    }
    assert_eq!(flaky.hits(), 3);
    let view = gw.gw.services_view();
    let flaky_view = view[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == flaky.addr.to_string())
        .unwrap()
        .clone();
    assert_eq!(flaky_view["ejected"], true, "{view}");
    assert_eq!(flaky_view["ejections"], 1);
    for _ in 0..10 {
        assert_eq!(http.get(&gw.url("/")).await.status, 200, "ejected endpoint gets no traffic");
    }
    assert_eq!(flaky.hits(), 3);
    assert!(
        gw.registry
            .render()
            .contains(&format!("signalbox_gateway_endpoint_ejected{{service=\"s\",endpoint=\"{}\"}} 1", flaky.addr))
    );

    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(550)).await;
    for _ in 0..9 {
        assert_eq!(http.get(&gw.url("/")).await.status, 200);
    }
    assert!(flaky.hits() > 3, "it came back after the ejection time");
}

#[tokio::test]
async fn ejection_never_exceeds_the_max_share() {
    let a = serve(|_| async { status(500) }).await;
    let b = serve(|_| async { status(500) }).await;
    let mut s = service("s", &[a.url(), b.url()]);
    s.balancer.kind = "round_robin".into();
    s.outlier.consecutive_5xx = 2;
    s.outlier.max_ejection_percent = 50;
    let mut r = route("/", "s");
    r.retry = Some(no_retry());
    let gw = start(config(vec![s], vec![r])).await;
    let http = Http::new();
    for _ in 0..20 {
        assert_eq!(http.get(&gw.url("/")).await.status, 500, "one endpoint always stays");
    }
    let view = gw.gw.services_view();
    let ejected = view[0]["endpoints"].as_array().unwrap().iter().filter(|e| e["ejected"] == true).count();
    assert_eq!(ejected, 1);
}

#[tokio::test]
async fn an_endpoint_restarted_on_its_port_serves_again() {
    let up = serve(echo("one")).await;
    let addr = up.addr;
    let other = serve(echo("two")).await;
    let mut s = service("s", &[up.url(), other.url()]);
    s.balancer.kind = "round_robin".into();
    s.outlier.consecutive_gateway_failures = 1;
    s.outlier.base_ejection_time = millis(300);
    let gw = start(config(vec![s], vec![route("/", "s")])).await;
    let http = Http::new();
    drop(up);
    for _ in 0..6 {
        assert_eq!(http.get(&gw.url("/")).await.status, 200, "retried on the live endpoint");
    }
    let back = serve_at(addr, echo("one-again")).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..6 {
        assert_eq!(http.get(&gw.url("/")).await.status, 200);
    }
    assert!(back.hits() > 0);
}

#[tokio::test]
async fn a_request_dropped_mid_flight_releases_its_breaker_permits() {
    // 0: fail with 500; 1: hang; 2: answer 200.
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let m = mode.clone();
    let up = serve(move |_| {
        let mode = m.load(Ordering::SeqCst);
        async move {
            match mode {
                0 => status(500),
                1 => {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    status(200)
                }
                _ => status(200),
            }
        }
    })
    .await;
    let one_trial = CircuitBreakerConfig { half_open_calls: 1, ..breaker() };
    let mut s = service("s", &[up.url()]);
    s.circuit_breaker = Some(one_trial.clone());
    s.endpoint_circuit_breaker = Some(one_trial);
    s.outlier.consecutive_5xx = 0;
    let mut r = route("/", "s");
    r.retry = Some(no_retry());
    let gw = start(config(vec![s], vec![r])).await;
    let http = Http::new();
    for _ in 0..5 {
        assert_eq!(http.get(&gw.url("/")).await.status, 500);
    }
    assert_eq!(http.get(&gw.url("/")).await.status, 503, "open");
    tokio::time::sleep(Duration::from_millis(350)).await;

    // The one trial call hangs; its client goes away mid-flight.
    mode.store(1, Ordering::SeqCst);
    let hits = up.hits();
    let mut sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut sock, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
    signalbox_testkit::eventually(Duration::from_secs(5), "the trial call reaching the upstream", || async {
        (up.hits() > hits).then_some(())
    })
    .await;
    let permits = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array().unwrap().iter().map(|c| c["permits_in_use"].as_u64().unwrap()).collect()
    };
    assert_eq!(permits(&gw.gw.circuits_view()), vec![1, 1], "service and endpoint permits held mid-flight");
    drop(sock);
    signalbox_testkit::eventually(Duration::from_secs(5), "the permits released", || async {
        let v = gw.gw.circuits_view();
        (permits(&v) == vec![0, 0]).then_some(())
    })
    .await;
    for c in gw.gw.circuits_view().as_array().unwrap() {
        assert_eq!(c["state"], "half_open", "a dropped call records no outcome: {c}");
    }

    // The trial slot is free at once (a leaked permit would fail fast until the trial went
    // stale a second later).
    mode.store(2, Ordering::SeqCst);
    let started = Instant::now();
    assert_eq!(http.get(&gw.url("/")).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    for c in gw.gw.circuits_view().as_array().unwrap() {
        assert_eq!(c["state"], "closed", "{c}");
    }
}
