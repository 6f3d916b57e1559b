//! Bad input and dead upstreams: every error is a status with a JSON body
//! `{error, code, trace_id}`, nothing panics, and slow clients are cut off.

use crate::*;
use http::Method;
use signalbox_gateway::config::RetryConfig;
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{echo, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_json_error(r: &signalbox_testkit::client::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["code"], code);
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(v["trace_id"].as_str().map(str::len), Some(32));
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let up = serve(echo("u")).await;
    let gw = start(config(vec![service("s", &[up.url()])], vec![route("/", "s")])).await;
    // Requests hyper itself cannot parse get the gateway's JSON too.
    let resp = raw(gw.addr, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert_raw_json_error(&resp, 400, "bad_request");
    let resp = raw(gw.addr, b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n").await;
    assert_raw_json_error(&resp, 400, "bad_request");
    let huge = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "y".repeat(200 * 1024));
    let resp = raw(gw.addr, huge.as_bytes()).await;
    assert_raw_json_error(&resp, 431, "headers_too_large");
    // ...also after good requests on the same keep-alive connection.
    let resp =
        raw(gw.addr, b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n\x01\x02 nonsense\r\n\r\n")
            .await;
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
    let last = &resp[resp.rfind("HTTP/1.1 ").unwrap()..];
    assert_raw_json_error(last, 400, "bad_request");
    let resp = raw(gw.addr, b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "missing Host: {resp}");
    assert!(resp.contains("\"code\":\"bad_request\""), "{resp}");
    let resp = raw(gw.addr, b"GET / HTTP/1.1\r\nhost: a b c\r\nconnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "invalid Host: {resp}");
    assert_eq!(up.hits(), 2);
}

/// A raw HTTP/1.1 response: the status, JSON content type, and `{error, code, trace_id}`.
fn assert_raw_json_error(resp: &str, status: u16, code: &str) {
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete head: {resp:?}"));
    assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{resp}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v["code"], code, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert_eq!(v["trace_id"].as_str().map(str::len), Some(32), "{v}");
}

#[tokio::test]
async fn an_upstream_bare_error_passes_through_untouched() {
    // An upstream 400 with an empty body looks like hyper's canned answer but for the
    // x-request-id the gateway adds: it must reach the client as the upstream sent it.
    let up = serve(|_req: http::Request<bytes::Bytes>| async {
        http::Response::builder().status(400).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap()
    })
    .await;
    let gw = start(config(vec![service("s", &[up.url()])], vec![route("/", "s")])).await;
    let resp = raw(gw.addr, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    assert!(!resp.contains("application/json"), "{resp}");
    assert!(resp.ends_with("\r\n\r\n"), "empty body: {resp:?}");
    assert!(resp.contains("x-request-id: "), "{resp}");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let up = serve(echo("u")).await;
    let gw = start(config(vec![service("s", &[up.url()])], vec![route("/", "s")])).await;
    let http = Http::new();
    let big = "x".repeat(40 * 1024);
    assert_json_error(&http.send(Method::GET, &gw.url("/"), &[("x-big", &big)], "").await, 431, "headers_too_large");
    let names: Vec<String> = (0..120).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    assert_json_error(&http.send(Method::GET, &gw.url("/"), &many, "").await, 431, "headers_too_large");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let up = serve(echo("u")).await;
    let mut r = route("/", "s");
    r.max_body_bytes = Some(signalbox_core::config::ByteSize(1024));
    r.retry = Some(RetryConfig { attempts: 1, ..RetryConfig::default() });
    let gw = start(config(vec![service("s", &[up.url()])], vec![r])).await;
    let http = Http::new();
    assert_json_error(&http.send(Method::POST, &gw.url("/"), &[], vec![b'a'; 2048]).await, 413, "body_too_large");
    assert_eq!(up.hits(), 0, "refused on content-length before contacting the upstream");
    // Chunked: the limit is found while streaming.
    let mut body = String::new();
    for _ in 0..4 {
        body.push_str(&format!("200\r\n{}\r\n", "b".repeat(512)));
    }
    body.push_str("0\r\n\r\n");
    let req = format!("POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{body}");
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(http.send(Method::POST, &gw.url("/"), &[], vec![b'a'; 512]).await.status, 200);
}

#[tokio::test]
async fn unknown_routes_get_404() {
    let up = serve(echo("u")).await;
    let gw = start(config(vec![service("s", &[up.url()])], vec![route("/api", "s")])).await;
    let r = Http::new().get(&gw.url("/elsewhere")).await;
    assert_json_error(&r, 404, "route_not_found");
    assert!(r.header("x-request-id").is_some());
    let line = signalbox_testkit::eventually(Duration::from_secs(2), "404 logged", || async {
        gw.log_lines().into_iter().next()
    })
    .await;
    assert_eq!(line["status"], 404);
    assert_eq!(line["error_code"], "route_not_found");
}

#[tokio::test]
async fn dead_upstreams_get_502_and_no_endpoints_503() {
    let dead = {
        let u = serve(echo("gone")).await;
        u.url()
    };
    let mut r = route("/", "s");
    r.retry =
        Some(RetryConfig { attempts: 2, backoff_base: millis(1), backoff_max: millis(1), ..RetryConfig::default() });
    let gw = start(config(vec![service("s", &[dead])], vec![r])).await;
    let resp = Http::new().get(&gw.url("/")).await;
    assert_json_error(&resp, 502, "upstream_connect_failed");

    let mut s = service("empty", &[]);
    s.endpoints.clear();
    let mut cfg = config(vec![service("s", &["127.0.0.1:1".into()])], vec![route("/", "s")]);
    cfg.services.push(s);
    let problems = Gateway::new(
        cfg,
        Deps {
            registry: Registry::new(),
            spans: Arc::new(signalbox_core::telemetry::DroppingSink),
            discovery: None,
            logs: None,
        },
    )
    .err()
    .unwrap();
    assert!(problems.list.iter().any(|p| p.path == "gateway.services[1].endpoints"), "{problems:?}");
}

#[tokio::test]
async fn all_endpoints_unavailable_gives_503() {
    let up = serve(|_| async { signalbox_testkit::upstream::status(500) }).await;
    let mut s = service("s", &[up.url()]);
    s.endpoint_circuit_breaker = Some(signalbox_gateway::config::CircuitBreakerConfig {
        minimum_calls: 2,
        window_size: 2,
        ..Default::default()
    });
    let mut r = route("/", "s");
    r.retry = Some(RetryConfig { attempts: 1, ..RetryConfig::default() });
    let gw = start(config(vec![s], vec![r])).await;
    let http = Http::new();
    http.get(&gw.url("/")).await;
    http.get(&gw.url("/")).await;
    let resp = http.get(&gw.url("/")).await;
    assert_json_error(&resp, 503, "circuit_open");
    assert_eq!(resp.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn slow_clients_are_timed_out() {
    let up = serve(echo("u")).await;
    let mut cfg = config(vec![service("s", &[up.url()])], vec![route("/", "s")]);
    cfg.limits.header_read_timeout = millis(300);
    let gw = start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("the gateway closes the connection");
    assert!(n.is_ok());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // An idle keep-alive connection is closed too.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let rest = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut Vec::new())).await;
    assert!(rest.is_ok(), "idle connection closed");
}

#[tokio::test]
async fn unknown_grpc_route_gets_unimplemented() {
    let gw = start(config(vec![service("s", &["127.0.0.1:1".into()])], vec![route("/api", "s")])).await;
    let r = Http::h2()
        .send(Method::POST, &gw.url("/pkg.Svc/Method"), &[("content-type", "application/grpc"), ("te", "trailers")], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("12"));
}
