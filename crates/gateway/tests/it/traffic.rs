//! Traffic splits by version: weights, pins, stickiness, fallback, mirroring, and policy
//! changes under load.

use crate::*;
use bytes::Bytes;
use http_body_util::Full;
use signalbox_core::traffic::{TrafficPolicy, sticky_point};
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{Upstream, echo, serve};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A service `s` with one endpoint per version, routed at `/`.
fn versioned(ups: &[(&str, &Upstream)]) -> GatewayConfig {
    let mut s = service("s", &[]);
    for (v, u) in ups {
        s.versions.insert((*v).to_owned(), vec![u.url()]);
    }
    config(vec![s], vec![route("/", "s")])
}

fn server(resp: &signalbox_testkit::client::Resp) -> String {
    resp.json()["server"].as_str().unwrap_or("").to_owned()
}

/// Sends `n` GETs from `tasks` concurrent clients; returns the answers' servers.
async fn spread(gw: &Gw, n: usize, tasks: usize, headers: Vec<(String, String)>) -> HashMap<String, usize> {
    let http = Http::new();
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (http, url, next, headers) = (http.clone(), gw.url("/x"), next.clone(), headers.clone());
        handles.push(tokio::spawn(async move {
            let mut seen = HashMap::<String, usize>::new();
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let r = http.send(http::Method::GET, &url, &h, Bytes::new()).await;
                assert_eq!(r.status, 200, "{}", r.text());
                *seen.entry(server(&r)).or_default() += 1;
            }
            seen
        }));
    }
    let mut all = HashMap::new();
    for h in handles {
        for (k, v) in h.await.unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

#[tokio::test]
async fn weights_hold_within_three_percent_and_metrics_carry_the_version() {
    let (v1, v2) = (serve(echo("v1")).await, serve(echo("v2")).await);
    let gw = start(versioned(&[("v1", &v1), ("v2", &v2)])).await;
    gw.gw.apply_traffic_policy("s", Some(r#"{"weights": {"v1": 80, "v2": 20}}"#)).unwrap();
    let seen = spread(&gw, 10_000, 16, Vec::new()).await;
    let share = seen.get("v2").copied().unwrap_or(0) as f64 / 10_000.0;
    assert!((share - 0.20).abs() <= 0.03, "v2 got {share:.3} of requests: {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 10_000);
    // Per-version series; the unlabelled one stays empty (no request had an unversioned endpoint).
    let count = |version: &str| {
        gw.metric(
            "signalbox_gateway_requests_total",
            &[("route", "r-"), ("service", "s"), ("version", version), ("class", "2xx")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count("v1") + count("v2") < 10_000.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count("v2"), seen["v2"] as f64);
    assert_eq!(count("v1"), seen["v1"] as f64);
    assert_eq!(
        gw.metric("signalbox_gateway_requests_total", &[("route", "r-"), ("service", "s"), ("class", "2xx")]),
        0.0
    );
    let text = gw.registry.render();
    assert!(
        text.contains(r#"signalbox_gateway_request_duration_seconds_count{route="r-",service="s",version="v2"}"#),
        "duration series by version"
    );
}

#[tokio::test]
async fn header_and_cookie_pins_win_over_weights() {
    let (v1, v2) = (serve(echo("v1")).await, serve(echo("v2")).await);
    let gw = start(versioned(&[("v1", &v1), ("v2", &v2)])).await;
    let policy = r#"{"weights": {"v1": 100, "v2": 0},
        "pins": [{"header": "x-canary", "value": "always", "version": "v2"},
                 {"cookie": "canary", "value": "1", "version": "v2"}]}"#;
    gw.gw.apply_traffic_policy("s", Some(policy)).unwrap();
    let http = Http::new();
    let get = |h: Vec<(&'static str, &'static str)>| {
        let (http, url) = (http.clone(), gw.url("/"));
        async move { server(&http.send(http::Method::GET, &url, &h, Bytes::new()).await) }
    };
    for _ in 0..20 {
        assert_eq!(get(vec![]).await, "v1");
        assert_eq!(get(vec![("x-canary", "always")]).await, "v2");
        assert_eq!(get(vec![("cookie", "a=b; canary=1")]).await, "v2");
        assert_eq!(get(vec![("x-canary", "sometimes")]).await, "v1");
        assert_eq!(get(vec![("cookie", "canary=0")]).await, "v1");
    }
}

#[tokio::test]
async fn sticky_users_stay_put_and_only_the_grown_range_moves() {
    let (v1, v2) = (serve(echo("v1")).await, serve(echo("v2")).await);
    let gw = start(versioned(&[("v1", &v1), ("v2", &v2)])).await;
    let before = r#"{"weights": {"v1": 90, "v2": 10}, "sticky": {"header": "x-user"}}"#;
    let after = r#"{"weights": {"v1": 70, "v2": 30}, "sticky": {"header": "x-user"}}"#;
    let http = Http::new();
    let versions_of = |users: &[String]| {
        let (http, url, users) = (http.clone(), gw.url("/"), users.to_vec());
        async move {
            let mut out = BTreeMap::new();
            for u in &users {
                let first = server(&http.send(http::Method::GET, &url, &[("x-user", u)], Bytes::new()).await);
                for _ in 0..2 {
                    let again = server(&http.send(http::Method::GET, &url, &[("x-user", u)], Bytes::new()).await);
                    assert_eq!(again, first, "user {u} stays on one version");
                }
                out.insert(u.clone(), first);
            }
            out
        }
    };
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    gw.gw.apply_traffic_policy("s", Some(before)).unwrap();
    let first = versions_of(&users).await;
    gw.gw.apply_traffic_policy("s", Some(after)).unwrap();
    let second = versions_of(&users).await;
    let (p_before, p_after) = (TrafficPolicy::parse(before).unwrap(), TrafficPolicy::parse(after).unwrap());
    let mut moved = 0;
    for u in &users {
        let point = sticky_point(u.as_bytes());
        assert_eq!(first[u], p_before.version_at(point).unwrap(), "{u} is where its point says");
        assert_eq!(second[u], p_after.version_at(point).unwrap(), "{u} is where its point says");
        if first[u] != second[u] {
            moved += 1;
            assert_eq!((first[u].as_str(), second[u].as_str()), ("v1", "v2"), "{u} moved only towards the canary");
            assert!((7_000..9_000).contains(&point), "{u} moved though its point {point} is outside the grown range");
        }
    }
    let expected = users.iter().filter(|u| (7_000..9_000).contains(&sticky_point(u.as_bytes()))).count();
    assert_eq!(moved, expected);
    assert!(moved > 10, "some users moved: {moved}");
    assert!(first.values().filter(|v| *v == "v2").count() > 5, "some users were on v2 before");
}

#[tokio::test]
async fn a_version_without_endpoints_gets_nothing_and_is_counted() {
    let v1 = serve(echo("v1")).await;
    let gw = start(versioned(&[("v1", &v1)])).await;
    gw.gw.apply_traffic_policy("s", Some(r#"{"weights": {"v1": 50, "v3": 50}}"#)).unwrap();
    let seen = spread(&gw, 400, 4, Vec::new()).await;
    assert_eq!(seen.get("v1"), Some(&400));
    let fell_back = gw.metric("signalbox_gateway_traffic_fallbacks_total", &[("service", "s"), ("version", "v3")]);
    assert!((100.0..300.0).contains(&fell_back), "about half fell back from v3: {fell_back}");
    // A pin to a version with no endpoint falls back to the weights too.
    gw.gw
        .apply_traffic_policy("s", Some(r#"{"pins": [{"header": "x-canary", "value": "1", "version": "v9"}]}"#))
        .unwrap();
    let seen = spread(&gw, 20, 1, vec![("x-canary".into(), "1".into())]).await;
    assert_eq!(seen.get("v1"), Some(&20));
    assert_eq!(
        gw.metric("signalbox_gateway_traffic_fallbacks_total", &[("service", "s"), ("version", "pinned")]),
        20.0
    );
}

#[tokio::test]
async fn mirrors_never_change_the_answer_and_are_counted_apart() {
    let v1 = serve(echo("v1")).await;
    let mirrored = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = mirrored.clone();
    let v2 = serve(move |req: http::Request<Bytes>| {
        seen.lock().unwrap().push(String::from_utf8_lossy(req.body()).into_owned());
        async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            http::Response::builder().status(500).body(Full::new(Bytes::from_static(b"mirror fails"))).unwrap()
        }
    })
    .await;
    let mut cfg = versioned(&[("v1", &v1), ("v2", &v2)]);
    cfg.traffic.mirror_max_inflight = 4;
    let gw = start(cfg).await;
    gw.gw
        .apply_traffic_policy("s", Some(r#"{"weights": {"v1": 100}, "mirror": {"version": "v2", "percent": 100}}"#))
        .unwrap();
    let http = Http::new();
    let t0 = Instant::now();
    for i in 0..12 {
        let r = http.send(http::Method::POST, &gw.url("/m"), &[], Bytes::from(format!("body-{i}"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(server(&r), "v1");
        assert_eq!(r.json()["body"], format!("body-{i}"));
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "12 requests took {took:?}: the mirror's 2 s never delay the client");
    // Four copies fit the budget; the rest were dropped, not queued.
    let sent = gw.metric("signalbox_gateway_mirror_sent_total", &[]);
    let dropped = gw.metric("signalbox_gateway_mirror_dropped_total", &[("reason", "budget")]);
    assert_eq!(sent, 4.0);
    assert_eq!(sent + dropped, 12.0);
    let labels = [("route", "r-"), ("service", "s"), ("version", "v2"), ("class", "5xx")];
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("signalbox_gateway_mirror_requests_total", &labels) < 4.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.metric("signalbox_gateway_mirror_requests_total", &labels), 4.0);
    assert_eq!(
        gw.metric(
            "signalbox_gateway_mirror_requests_total",
            &[("route", "r-"), ("service", "s"), ("version", "v2"), ("class", "2xx")]
        ),
        0.0
    );
    // The client's series saw only v1's answers.
    let client_5xx = gw.metric(
        "signalbox_gateway_requests_total",
        &[("route", "r-"), ("service", "s"), ("version", "v2"), ("class", "5xx")],
    );
    assert_eq!(client_5xx, 0.0);
    let bodies = mirrored.lock().unwrap().clone();
    assert_eq!(bodies.len(), 4);
    assert!(bodies.iter().all(|b| b.starts_with("body-")), "small bodies are mirrored: {bodies:?}");
}

#[tokio::test]
async fn weights_change_under_load_without_a_failed_request() {
    let (v1, v2) = (serve(echo("v1")).await, serve(echo("v2")).await);
    let gw = start(versioned(&[("v1", &v1), ("v2", &v2)])).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let http = Http::new();
    let mut load = Vec::new();
    for _ in 0..8 {
        let (http, url, stop) = (http.clone(), gw.url("/load"), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let r = http.get(&url).await;
                if r.status == 200 { ok += 1 } else { failed += 1 }
            }
            (ok, failed)
        }));
    }
    let docs = [
        r#"{"weights": {"v1": 100, "v2": 0}}"#,
        r#"{"weights": {"v1": 50, "v2": 50}}"#,
        r#"{"weights": {"v1": 0, "v2": 100}}"#,
        r#"{"weights": {"v1": 95, "v2": 5}, "sticky": {"header": "x-user"}}"#,
    ];
    for round in 0..40 {
        gw.gw.apply_traffic_policy("s", Some(docs[round % docs.len()])).unwrap();
        if round == 20 {
            // A bad document is refused and counted; the last good policy stays.
            let e = gw.gw.apply_traffic_policy("s", Some(r#"{"weights": {"v1": 60, "v2": 60}}"#)).unwrap_err();
            assert_eq!(e.field, "weights");
            assert_eq!(gw.gw.traffic_policy("s").unwrap(), TrafficPolicy::parse(docs[0]).unwrap());
        }
        if round == 30 {
            gw.gw.apply_traffic_policy("s", None).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for t in load {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "no request failed while weights changed ({ok} succeeded)");
    assert!(ok > 200, "the load ran: {ok}");
    assert!(v1.hits() > 0 && v2.hits() > 0);
    assert_eq!(gw.metric("signalbox_gateway_traffic_policy_updates_total", &[("result", "rejected")]), 1.0);
    assert!(gw.metric("signalbox_gateway_traffic_policy_updates_total", &[("result", "ok")]) >= 40.0);
}

#[tokio::test]
async fn static_versions_are_validated_and_shown() {
    let v1 = serve(echo("v1")).await;
    let mut bad = versioned(&[("v1", &v1)]);
    bad.services[0].versions.insert("v 2".into(), vec!["127.0.0.1:1".into()]);
    let e = signalbox_gateway::check(&bad, None).unwrap_err();
    assert!(e.list.iter().any(|p| p.path == "gateway.services[0].versions.v 2[0]"), "{e:?}");
    let gw = start(versioned(&[("v1", &v1)])).await;
    let view = gw.gw.traffic_view("s");
    assert_eq!(view["endpoints"]["v1"]["total"], 1);
    assert_eq!(view["endpoints"]["v1"]["available"], 1);
    assert!(view["policy"].is_null());
    let services = gw.gw.services_view();
    assert_eq!(services[0]["endpoints"][0]["version"], "v1");
}
