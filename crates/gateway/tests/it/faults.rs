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

/// An upstream that answers every request as soon as its head is in, without reading the
/// body, then closes (with the body unread, the kernel resets the connection): `answer` for
/// a POST, 200 `ok` otherwise. Counts its connections.
pub(crate) async fn answers_before_the_body(
    answer: &'static [u8],
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let reply: &[u8] = if head.starts_with(b"POST") {
                    answer
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                };
                let _ = s.write_all(reply).await;
            });
        }
    });
    (addr, conns)
}

/// Sends a `len`-byte upload raw and reads the answer while the body is still going out.
/// Returns the answer and how many body bytes the gateway took before it stopped reading.
async fn upload(addr: SocketAddr, path: &str, len: usize) -> (String, usize) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n\r\n");
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let block = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = block.len().min(len - sent);
            if wr.write_all(&block[..n]).await.is_err() {
                break;
            }
            sent += n;
        }
        (sent, wr)
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the whole answer is in (its head says how long its body is), or the
    // connection ends.
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|n| out.len() >= end + 4 + n) {
                    break;
                }
            }
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the answer came; got {}", String::from_utf8_lossy(&out));
    // Whatever the gateway does with the rest of the body (drops it and closes, or reads
    // it), the client is not left blocked.
    let (sent, _wr) = tokio::time::timeout(Duration::from_secs(10), writer).await.expect("writer ends").unwrap();
    (String::from_utf8_lossy(&out).into_owned(), sent)
}

#[tokio::test]
async fn an_upstream_answer_before_the_whole_body_reaches_the_client() {
    const ANSWER: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n\
content-length: 27\r\nx-from: upstream\r\n\r\n{\"error\":\"upload too big\"}\n";
    let (up, conns) = answers_before_the_body(ANSWER).await;
    let mut s = service("s", &[up.to_string()]);
    // A breaker that two failures in a row would open: an early answer must not count as one.
    s.endpoint_circuit_breaker = Some(signalbox_gateway::config::CircuitBreakerConfig {
        minimum_calls: 2,
        window_size: 2,
        ..Default::default()
    });
    s.outlier.consecutive_5xx = 1;
    s.outlier.consecutive_gateway_failures = 1;
    let mut r = route("/", "s");
    r.max_body_bytes = Some(signalbox_core::config::ByteSize(64 * 1024 * 1024));
    let gw = start(config(vec![s], vec![r])).await;
    let len = 8 * 1024 * 1024;
    for i in 0..3 {
        let (answer, sent) = upload(gw.addr, "/upload", len).await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "upload {i}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("x-from: upstream"), "the upstream's own answer: {answer}");
        assert!(answer.ends_with("{\"error\":\"upload too big\"}\n"), "with its body: {answer}");
        assert!(sent <= len, "{sent}");
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 3, "one connection per upload, no retry");
    // The upstream answered each time: no breaker, ejection or failure is charged to it.
    let ok = Http::new().get(&gw.url("/after")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.text(), "ok");
    assert!(
        gw.gw.circuits_view().as_array().is_none_or(|c| c.iter().all(|c| c["state"] == "closed")),
        "{}",
        gw.gw.circuits_view()
    );
    let lines = signalbox_testkit::eventually(Duration::from_secs(3), "access log lines", || async {
        let l = gw.log_lines();
        (l.len() >= 4).then_some(l)
    })
    .await;
    let uploads: Vec<_> = lines.iter().filter(|l| l["method"] == "POST").collect();
    assert_eq!(uploads.len(), 3, "{lines:?}");
    for l in uploads {
        assert_eq!(l["status"], 413, "{l}");
        assert!(l["error"].is_null(), "an answered request is not an upstream failure: {l}");
    }
}
