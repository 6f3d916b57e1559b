//! Trace-context propagation, spans, RED metrics and the access log.

use crate::*;
use http::Method;
use signalbox_core::span::SpanKind;
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{echo, serve};

#[tokio::test]
async fn traceparent_is_continued_and_every_signal_is_emitted() {
    let up = serve(echo("u")).await;
    let mut gw = start(config(vec![service("users", &[up.url()])], vec![route("/api", "users")])).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = Http::new()
        .send(
            Method::GET,
            &gw.url("/api/users?id=7"),
            &[("traceparent", incoming), ("tracestate", "vendor=x"), ("x-request-id", "req-123")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("req-123"));
    let seen = r.json();
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {tp}");
    assert!(tp.ends_with("-01"));
    let upstream_parent = &tp[36..52];
    assert_ne!(upstream_parent, "00f067aa0ba902b7", "the upstream's parent is the gateway's client span");
    assert_eq!(seen["headers"]["tracestate"], "vendor=x");
    assert_eq!(seen["headers"]["x-request-id"], "req-123");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");

    let spans = signalbox_testkit::eventually(Duration::from_secs(2), "two spans", || {
        let got: Vec<_> = gw.drain_spans();
        async move { (got.len() == 2).then_some(got) }
    })
    .await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    let client = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert_eq!(server.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server.parent_span_id.unwrap().to_hex(), "00f067aa0ba902b7");
    assert_eq!(client.parent_span_id, Some(server.span_id));
    assert_eq!(client.span_id.to_hex(), upstream_parent);
    assert_eq!(server.service, "signalbox-gateway");
    assert_eq!(server.name, "GET r-api");
    assert!(server.attribute("http.response.status_code").is_some());
    assert_eq!(client.attribute("peer.service"), Some(&signalbox_core::span::AttrValue::Str("users".into())));
    assert!(server.end_unix_nanos >= client.end_unix_nanos && server.start_unix_nanos <= client.start_unix_nanos);

    assert_eq!(
        gw.metric("signalbox_gateway_requests_total", &[("route", "r-api"), ("service", "users"), ("class", "2xx")]),
        1.0
    );
    assert_eq!(
        gw.metric("signalbox_gateway_request_duration_seconds", &[("route", "r-api"), ("service", "users")]),
        1.0
    );
    let ep = up.addr.to_string();
    assert_eq!(
        gw.metric(
            "signalbox_gateway_upstream_requests_total",
            &[("service", "users"), ("endpoint", &ep), ("class", "2xx")]
        ),
        1.0
    );

    let line = signalbox_testkit::eventually(Duration::from_secs(2), "access log", || async {
        gw.log_lines().into_iter().next()
    })
    .await;
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["span_id"], server.span_id.to_hex());
    assert_eq!(line["request_id"], "req-123");
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "r-api");
    assert_eq!(line["path"], "/api/users");
    assert_eq!(line["endpoint"], ep);
}

#[tokio::test]
async fn a_trace_starts_when_none_comes_in() {
    let up = serve(echo("u")).await;
    let mut gw = start(config(vec![service("s", &[up.url()])], vec![route("/", "s")])).await;
    let r = Http::new().get(&gw.url("/")).await;
    let rid = r.header("x-request-id").expect("request id set").to_owned();
    assert_eq!(r.json()["headers"]["x-request-id"], rid.as_str());
    let tp = r.json()["headers"]["traceparent"].as_str().unwrap().to_owned();
    let spans = signalbox_testkit::eventually(Duration::from_secs(2), "spans", || {
        let got = gw.drain_spans();
        async move { (got.len() == 2).then_some(got) }
    })
    .await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(server.parent_span_id, None, "a root span");
    assert_eq!(&tp[3..35], server.trace_id.to_hex());
}

#[tokio::test]
async fn b3_is_continued_in_its_own_format() {
    let up = serve(echo("u")).await;
    let gw = start(config(vec![service("s", &[up.url()])], vec![route("/", "s")])).await;
    let http = Http::new();
    let single = http
        .send(Method::GET, &gw.url("/"), &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")], "")
        .await
        .json();
    let b3 = single["headers"]["b3"].as_str().unwrap();
    assert!(b3.starts_with("80f198ee56343ba864fe8b2a57d3eff7-") && b3.ends_with("-1"), "{b3}");
    assert!(single["headers"]["traceparent"].as_str().unwrap().contains("80f198ee56343ba864fe8b2a57d3eff7"));
    let multi = http
        .send(
            Method::GET,
            &gw.url("/"),
            &[
                ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
                ("x-b3-spanid", "0020000000000001"),
                ("x-b3-sampled", "1"),
            ],
            "",
        )
        .await
        .json();
    assert_eq!(multi["headers"]["x-b3-traceid"], "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(multi["headers"]["x-b3-parentspanid"], "0020000000000001");
    assert_ne!(multi["headers"]["x-b3-spanid"], "0020000000000001");
}

#[tokio::test]
async fn head_sampling_honours_the_callers_decision_and_the_route_rate() {
    let up = serve(echo("u")).await;
    let mut unsampled = route("/quiet", "s");
    unsampled.sample_rate = Some(0.0);
    let mut gw = start(config(vec![service("s", &[up.url()])], vec![unsampled, route("/", "s")])).await;
    let http = Http::new();
    let r = http
        .send(
            Method::GET,
            &gw.url("/"),
            &[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")],
            "",
        )
        .await;
    assert!(r.json()["headers"]["traceparent"].as_str().unwrap().ends_with("-00"), "the not-sampled flag is passed on");
    for _ in 0..5 {
        http.get(&gw.url("/quiet")).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(gw.drain_spans().is_empty(), "no spans for unsampled requests");
    assert_eq!(
        gw.metric("signalbox_gateway_requests_total", &[("route", "r-quiet"), ("service", "s"), ("class", "2xx")]),
        5.0,
        "metrics count every request"
    );
    signalbox_testkit::eventually(Duration::from_secs(2), "6 log lines", || async {
        (gw.log_lines().len() == 6).then_some(())
    })
    .await;
}

#[tokio::test]
async fn telemetry_off_records_nothing() {
    let up = serve(echo("u")).await;
    let mut cfg = config(vec![service("s", &[up.url()])], vec![route("/", "s")]);
    cfg.telemetry.spans = false;
    cfg.telemetry.metrics = false;
    cfg.telemetry.access_log = "off".into();
    let mut gw = start(cfg).await;
    assert_eq!(Http::new().get(&gw.url("/")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(gw.drain_spans().is_empty());
    assert_eq!(
        gw.metric("signalbox_gateway_requests_total", &[("route", "r-"), ("service", "s"), ("class", "2xx")]),
        0.0
    );
    assert!(gw.log_lines().is_empty());
}
