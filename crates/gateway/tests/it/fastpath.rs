//! The HTTP/1 fast path's own behaviour, beyond what every other module checks on both front
//! ends: pipelining, byte-exact chunked passthrough, upstream pools and closes, a client or
//! an upstream breaking off mid-body, and slow heads (the connection cap is in
//! `security`, for both front ends). Each test runs the
//! fast path whatever `SIGNALBOX_GATEWAY_HTTP1` says.

use crate::*;
use bytes::Bytes;
use http_body_util::Full;
use signalbox_gateway::config::GatewayConfig;
use signalbox_testkit::upstream::serve;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fast(mut cfg: GatewayConfig) -> GatewayConfig {
    cfg.http1 = "fast".into();
    cfg
}

/// A raw upstream: answers each whole request on a connection with `response`, closing the
/// connection after it when `close_after`; records the bytes of every connection.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start(response: &'static [u8], close_after: bool) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (count, all) = (accepted.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let all = all.clone();
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        while let Some(n) = whole_request(&pending) {
                            all.lock().unwrap().extend_from_slice(&pending[..n]);
                            pending.drain(..n);
                            if s.write_all(response).await.is_err() || close_after {
                                return;
                            }
                        }
                        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                });
            }
        });
        RawUpstream { addr, accepted, received, task }
    }

    fn url(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The length of the whole request at the start of `b` (head and body), if it is all there.
fn whole_request(b: &[u8]) -> Option<usize> {
    let end = find(b, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        // The last chunk, then the trailer section's empty line.
        let body = &b[end..];
        let last = if body.starts_with(b"0\r\n") { 0 } else { find(body, b"\r\n0\r\n")? + 2 };
        return find(&body[last..], b"\r\n\r\n").map(|i| end + last + i + 4);
    }
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    (b.len() >= end + len).then_some(end + len)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = serve(|req| async move { http::Response::new(Full::new(Bytes::from(req.uri().path().to_owned()))) }).await;
    let gw = start(fast(config(vec![service("s", &[up.url()])], vec![route("/", "s")]))).await;
    let reqs = "GET /a HTTP/1.1\r\nhost: x\r\n\r\nPOST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let out = exchange(gw.addr, reqs.as_bytes()).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    let (a, b, c) = (out.find("\r\n\r\n/a").unwrap(), out.find("\r\n\r\n/b").unwrap(), out.find("\r\n\r\n/c").unwrap());
    assert!(a < b && b < c, "{out}");
    assert!(out.contains("connection: close"), "the last answer says the connection closes: {out}");
}

#[tokio::test]
async fn a_connection_is_handed_to_hyper_mid_way_with_its_pipelined_bytes() {
    let up = serve(|req| async move { http::Response::new(Full::new(Bytes::from(req.uri().path().to_owned()))) }).await;
    let mut cfg = fast(config(vec![service("s", &[up.url()])], vec![route("/", "s")]));
    cfg.limits.header_read_timeout = millis(400);
    let gw = start(cfg).await;
    // The fast path answers /a; the HTTP/1.0 request behind it, already read, goes to hyper
    // with the rest of the connection.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for path in ["/a", "/a2"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with(&format!("\r\n\r\n{path}")));
        // Within the header timeout each time, but longer than it since the connection was
        // accepted: the hand-off starts hyper's idle clock afresh.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.write_all(b"GET /b HTTP/1.0\r\nhost: x\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("answered").unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n/b"), "{out}");
}

#[tokio::test]
async fn chunked_bodies_pass_through_byte_exact() {
    let up = RawUpstream::start(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n",
        false,
    )
    .await;
    let gw = start(fast(config(vec![service("s", &[up.url()])], vec![route("/", "s")]))).await;
    // Chunk extensions are left out (an upstream cannot parse them differently then);
    // everything else arrives as the client sent it.
    let body = "5;n=v\r\nhello\r\n6 \r\n world\r\n0\r\ntrailer: t\r\n\r\n";
    let forwarded = "5\r\nhello\r\n6\r\n world\r\n0\r\ntrailer: t\r\n\r\n";
    let req = format!("POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{body}");
    let out = exchange(gw.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n"), "{out}");
    let seen = String::from_utf8(up.received.lock().unwrap().clone()).unwrap();
    assert!(seen.starts_with("POST /p HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    assert!(seen.ends_with(&format!("\r\n\r\n{forwarded}")), "the body reaches the upstream as framed: {seen}");
}

#[tokio::test]
async fn pooled_upstream_connections_are_reused_and_closes_honoured() {
    let keep = RawUpstream::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let close = RawUpstream::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", true).await;
    let mut cfg = config(
        vec![service("k", &[keep.url()]), service("c", &[close.url()])],
        vec![route("/k", "k"), route("/c", "c")],
    );
    cfg.workers = 1;
    let gw = start(fast(cfg)).await;
    let mut reqs = String::new();
    for _ in 0..5 {
        reqs.push_str("GET /k HTTP/1.1\r\nhost: x\r\n\r\nGET /c HTTP/1.1\r\nhost: x\r\n\r\n");
    }
    reqs.push_str("GET /k HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let out = exchange(gw.addr, reqs.as_bytes()).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 11, "{out}");
    assert_eq!(keep.accepted.load(Ordering::SeqCst), 1, "one pooled connection serves every request");
    assert_eq!(close.accepted.load(Ordering::SeqCst), 5, "a connection the upstream closes is not reused");
}

#[tokio::test]
async fn an_upstream_that_closes_mid_body_cuts_the_response_short() {
    let up = RawUpstream::start(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789", true).await;
    let gw = start(fast(config(vec![service("s", &[up.url()])], vec![route("/", "s")]))).await;
    // The client connection closes: the response cannot be completed, nor the next one sent.
    let out = exchange(gw.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("content-length: 100\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n0123456789"), "the body stops where the upstream's did: {out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let line = wait_for_log(&gw, 1).await.pop().unwrap();
    assert_eq!(line["error"], "upstream body error", "{line}");
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_body_is_not_an_upstream_failure() {
    let a = RawUpstream::start(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false).await;
    let b = RawUpstream::start(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false).await;
    let mut svc = service("s", &[a.url(), b.url()]);
    svc.outlier.consecutive_gateway_failures = 1;
    svc.outlier.consecutive_5xx = 1;
    // A body too big to buffer for retries streams with the first try: the client hangs up
    // while the upstream already has the head and part of the body.
    let gw = start(fast(config(vec![svc], vec![route("/", "s")]))).await;
    for _ in 0..4 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n0123456789").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    }
    let lines = wait_for_log(&gw, 4).await;
    for l in &lines {
        assert_eq!(l["status"], 400, "{l}");
        assert_eq!(l["error_code"], "request_body_incomplete", "{l}");
    }
    for ep in [a.url(), b.url()] {
        let errors = gw.metric(
            "signalbox_gateway_upstream_requests_total",
            &[("service", "s"), ("endpoint", &ep), ("class", "error")],
        );
        assert_eq!(errors, 0.0, "no try is blamed on {ep}");
    }
    let services = gw.gw.services_view();
    assert!(
        services[0]["endpoints"].as_array().unwrap().iter().all(|e| e["ejected"] == false),
        "nothing ejected: {services}"
    );
}

#[tokio::test]
async fn a_head_dribbled_byte_by_byte_is_cut_at_the_header_timeout() {
    let up = RawUpstream::start(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false).await;
    let mut cfg = fast(config(vec![service("s", &[up.url()])], vec![route("/", "s")]));
    cfg.limits.header_read_timeout = millis(500);
    let gw = start(cfg).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let t = std::time::Instant::now();
    let head = b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if t.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "the gateway closed the connection");
        assert!(buf.is_empty(), "no answer to an incomplete head: {}", String::from_utf8_lossy(&buf));
    }
    assert!(t.elapsed() < Duration::from_millis(2500), "cut after {:?}", t.elapsed());
    assert_eq!(up.accepted.load(Ordering::SeqCst), 0, "nothing forwarded");
}

/// The access log once it has `n` lines (it is flushed in the background).
async fn wait_for_log(gw: &Gw, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let lines = gw.log_lines();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the access log has {} lines, expected {n}", gw.log_lines().len());
}

#[tokio::test]
async fn an_early_answer_closes_the_client_connection_after_draining_it() {
    const ANSWER: &[u8] = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope";
    let (up, conns) = crate::faults::answers_before_the_body(ANSWER).await;
    let gw = start(fast(config(vec![service("s", &[up.to_string()])], vec![route("/", "s")]))).await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    // Announces 4 MiB, sends 1 MiB, then waits with the connection open.
    c.write_all(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 4194304\r\n\r\n").await.unwrap();
    c.write_all(&vec![b'x'; 1024 * 1024]).await.unwrap();
    let t = std::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(read.is_ok(), "the gateway closes the connection: {text}");
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    assert!(text.contains("connection: close"), "the rest of the body cannot be skipped: {text}");
    assert!(text.ends_with("\r\n\r\nnope"), "{text}");
    // The gateway's side ended right after the answer...
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // ...but the rest of the body is still read (and dropped), so the client's writes do not
    // meet a reset that could have destroyed the answer before it was read.
    c.write_all(&vec![b'x'; 1024 * 1024]).await.expect("the gateway drains the rest of the body");
    // Once the client goes quiet for longer than the lingering gap, the gateway closes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut failed = false;
    for _ in 0..20 {
        if c.write_all(b"more").await.is_err() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "the connection was closed after the lingering gap");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}
