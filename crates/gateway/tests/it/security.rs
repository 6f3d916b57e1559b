//! Abuse of the gateway port, each probe sent raw over a socket: a route decision made on one
//! path or authority while another is forwarded, client faults blamed on upstreams, and one
//! address taking every connection slot. Part of the security suite (docs/security.md).

use crate::*;
use signalbox_gateway::config::{ApiKeyConfig, AuthConfig, CircuitBreakerConfig};
use signalbox_testkit::upstream::{echo, serve};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line: {resp:?}"))
}

fn body_json(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp:?}"))
}

fn hash(secret: &str) -> String {
    signalbox_gateway::auth::hash_key(secret)
}

/// `/admin` behind an API key and `/public` open, both to one upstream that echoes the path.
async fn admin_and_public(
    paths: signalbox_gateway::config::PathsConfig,
) -> (Gw, signalbox_testkit::upstream::Upstream) {
    let up = serve(echo("u")).await;
    let mut admin = route("/admin", "s");
    admin.auth = Some(AuthConfig {
        api_keys: vec![ApiKeyConfig { id: "ops".into(), sha256: hash("admin-key") }],
        ..AuthConfig::default()
    });
    let mut cfg = config(vec![service("s", &[up.url()])], vec![admin, route("/public", "s")]);
    cfg.paths = paths;
    (start(cfg).await, up)
}

#[tokio::test]
async fn dot_segments_cannot_reach_a_protected_route() {
    let (gw, up) = admin_and_public(Default::default()).await;
    let direct = raw(gw.addr, b"GET /admin/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&direct), 401, "{direct}");
    for target in
        ["/public/../admin/x", "/public/%2e%2e/admin/x", "/public/%2E%2e/admin/x", "/public/.%2e/admin/x", "/%61dmin/x"]
    {
        let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(status_of(&resp), 401, "{target} is /admin/x and needs the key: {resp}");
    }
    // Servlet containers read `..;x` as `..`: no normal form is safe, so it is refused.
    let resp = raw(gw.addr, b"GET /public/..;x/admin/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(body_json(&resp)["code"], "bad_request");
    assert_eq!(up.hits(), 0, "nothing reached the upstream without the key");
    // With the key, the upstream gets the normalised path the route was chosen on.
    let resp = raw(
        gw.addr,
        b"GET /public/%2e%2e/admin/./x?q=1 HTTP/1.1\r\nhost: x\r\nx-api-key: admin-key\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(body_json(&resp)["path"], "/admin/x");
    assert_eq!(body_json(&resp)["query"], "q=1");
    // Open routes keep working, normalised too.
    let resp = raw(gw.addr, b"GET /public/a/../b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(body_json(&resp)["path"], "/public/b");
}

#[tokio::test]
async fn dot_segments_can_be_refused_and_slashes_merged() {
    let paths = signalbox_gateway::config::PathsConfig { dot_segments: "reject".into(), merge_slashes: true };
    let (gw, up) = admin_and_public(paths).await;
    let resp = raw(gw.addr, b"GET /public/../admin/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(body_json(&resp)["error"].as_str().unwrap().contains(".."), "{resp}");
    let resp = raw(gw.addr, b"GET //admin//x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 401, "//admin//x is /admin/x: {resp}");
    let resp = raw(gw.addr, b"GET //public//y HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(body_json(&resp)["path"], "/public/y");
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_route_can_refuse_dot_segments_on_its_own() {
    let up = serve(echo("u")).await;
    let mut strict = route("/strict", "s");
    strict.dot_segments = Some("reject".into());
    let gw = start(config(vec![service("s", &[up.url()])], vec![strict, route("/", "s")])).await;
    let resp = raw(gw.addr, b"GET /x/../strict/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    let resp = raw(gw.addr, b"GET /strict/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let resp = raw(gw.addr, b"GET /x/../y HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(body_json(&resp)["path"], "/y", "other routes still normalise");
}

#[tokio::test]
async fn one_authority_is_routed_and_forwarded() {
    let up = serve(echo("u")).await;
    let mut admin = route("/", "s");
    admin.name = Some("admin".into());
    admin.matcher.host = Some("admin.internal".into());
    admin.auth = Some(AuthConfig {
        api_keys: vec![ApiKeyConfig { id: "ops".into(), sha256: hash("admin-key") }],
        ..AuthConfig::default()
    });
    let mut public = route("/", "s");
    public.name = Some("public".into());
    public.matcher.host = Some("public.example".into());
    let gw = start(config(vec![service("s", &[up.url()])], vec![admin, public])).await;

    // Absolute form: the target's authority wins and replaces Host (RFC 9112 §3.2.2).
    let resp = raw(
        gw.addr,
        b"GET http://public.example/public/x HTTP/1.1\r\nhost: admin.internal\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let echoed = body_json(&resp);
    assert_eq!(echoed["headers"]["host"], "public.example", "the upstream is told the host that was routed on");
    let resp =
        raw(gw.addr, b"GET http://admin.internal/x HTTP/1.1\r\nhost: public.example\r\nconnection: close\r\n\r\n")
            .await;
    assert_eq!(status_of(&resp), 401, "routed to the admin host, which needs its key: {resp}");
    // Two Host headers: RFC 9112 requires 400.
    let resp =
        raw(gw.addr, b"GET / HTTP/1.1\r\nhost: public.example\r\nhost: admin.internal\r\nconnection: close\r\n\r\n")
            .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(body_json(&resp)["code"], "bad_request");
    // User information in the target is refused.
    let resp =
        raw(gw.addr, b"GET http://u@public.example/ HTTP/1.1\r\nhost: public.example\r\nconnection: close\r\n\r\n")
            .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn client_body_faults_do_not_open_a_healthy_circuit() {
    // The upstream reads the whole body before answering, as a real service does.
    let up = serve(|req: http::Request<bytes::Bytes>| async move {
        signalbox_testkit::upstream::status(if req.body().is_empty() { 204 } else { 200 })
    })
    .await;
    let mut s = service("s", &[up.url()]);
    s.circuit_breaker = Some(CircuitBreakerConfig {
        window: "count".into(),
        window_size: 10,
        minimum_calls: 5,
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 100.0,
        slow_call_duration: secs(5),
        wait_in_open: secs(30),
        half_open_calls: 2,
    });
    let mut r = route("/", "s");
    r.retry = Some(signalbox_gateway::config::RetryConfig { attempts: 1, ..Default::default() });
    let gw = start(config(vec![s], vec![r])).await;

    for i in 0..12 {
        // Half an upload, then the client hangs up.
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        c.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n").await.unwrap();
        c.write_all(&[b'a'; 4096]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(c);
        // An invalid chunk size.
        let resp = raw(
            gw.addr,
            b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n4\r\nabcd\r\nzz\r\nxx\r\n0\r\n\r\n",
        )
        .await;
        if !resp.is_empty() {
            assert_eq!(status_of(&resp), 400, "try {i}: a bad chunk is the client's fault: {resp}");
            assert_ne!(body_json(&resp)["code"], "upstream_reset", "{resp}");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let circuits = gw.gw.circuits_view();
    assert_eq!(circuits[0]["state"], "closed", "client faults never count against the service: {circuits:?}");
    let log = gw.log_lines();
    assert!(
        log.iter().all(|l| l["error_code"] != "upstream_reset" && l["status"] != 502),
        "no client fault is logged as an upstream failure: {log:?}"
    );
    let ok = signalbox_testkit::client::Http::new().send(http::Method::POST, &gw.url("/upload"), &[], "payload").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{source}:0").parse().unwrap())?;
    sock.connect(to).await
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_slot() {
    let up = serve(echo("u")).await;
    let mut cfg = config(vec![service("s", &[up.url()])], vec![route("/", "s")]);
    cfg.limits.max_connections = 64;
    cfg.limits.max_connections_per_ip = 16;
    cfg.limits.header_read_timeout = secs(2);
    let gw = start(cfg).await;

    // A flood of partial requests from one address, more than the whole connection cap.
    let mut flood = Vec::new();
    for _ in 0..80 {
        if let Ok(mut c) = connect_from("127.0.0.2", gw.addr).await {
            let _ = c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ").await;
            flood.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another address is served at once.
    let t = std::time::Instant::now();
    let mut c = connect_from("127.0.0.3", gw.addr).await.unwrap();
    c.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await.expect("served").unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
    assert!(t.elapsed() < Duration::from_secs(1), "served without waiting for the flood: {:?}", t.elapsed());

    // All but the address's share were closed at once; the rest go at the header deadline,
    // which runs from accept.
    let mut open_now = 0;
    for c in &mut flood {
        let mut b = [0u8; 1];
        // Closed with unread request bytes, the socket may be reset rather than ended.
        match tokio::time::timeout(Duration::from_millis(20), c.read(&mut b)).await {
            Ok(Ok(n)) => assert_eq!(n, 0, "a refused connection is closed, not answered"),
            Ok(Err(_)) => {}
            Err(_) => open_now += 1,
        }
    }
    assert_eq!(open_now, 16, "exactly the per-address share stays open");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for c in &mut flood {
        let mut b = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(1), c.read(&mut b)).await;
        assert!(matches!(n, Ok(Ok(_)) | Ok(Err(_))), "closed after the header deadline");
    }
}

/// Sends a keep-alive request on a new connection; the answer's head (and body), or what the
/// connection ended with. Never waits more than 3 s.
async fn keep_alive_get(addr: SocketAddr) -> (TcpStream, String) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let _ = c.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&out);
            // A served answer ends with the upstream's body; the connection stays open.
            if text.starts_with("HTTP/1.1 200") && text.ends_with("status 200") {
                break;
            }
        }
    })
    .await;
    (c, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn the_connection_cap_is_exact_across_workers_and_refuses_the_rest() {
    let up = serve(|_| async { signalbox_testkit::upstream::status(200) }).await;
    let mut cfg = config(vec![service("s", &[up.url()])], vec![route("/", "s")]);
    cfg.limits.max_connections = 3;
    cfg.limits.max_connections_per_ip = 0;
    // Several workers, each with its own accept loop and listening socket.
    cfg.workers = 4;
    let gw = start(cfg).await;
    let mut served = Vec::new();
    let mut refused = 0;
    for i in 0..8 {
        let t = std::time::Instant::now();
        let (c, answer) = keep_alive_get(gw.addr).await;
        assert!(t.elapsed() < Duration::from_millis(2500), "connection {i} hung: {answer:?}");
        if answer.starts_with("HTTP/1.1 200") {
            served.push(c);
        } else {
            // Refused cleanly: the gateway's JSON 503 and the connection closed.
            assert!(answer.starts_with("HTTP/1.1 503"), "connection {i}: {answer:?}");
            assert!(answer.contains("connection: close"), "{answer}");
            let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert_eq!(v["code"], "too_many_connections", "{v}");
            refused += 1;
        }
    }
    assert_eq!(served.len(), 3, "exactly the cap is served");
    assert_eq!(refused, 5);
    // The served connections are still usable, and a freed slot admits a new client.
    for c in &mut served {
        c.write_all(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await.expect("answered").unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    }
    drop(served.pop());
    let admitted = signalbox_testkit::eventually(Duration::from_secs(3), "a freed slot", || async {
        let (c, answer) = keep_alive_get(gw.addr).await;
        answer.starts_with("HTTP/1.1 200").then_some(c)
    })
    .await;
    let (_c, answer) = keep_alive_get(gw.addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "the cap holds again: {answer}");
    drop(admitted);
}
