//! The security and abuse suite against the real binary: every port's limits, decoders that
//! must not blow up memory, errors that are always JSON, access control that reloads and
//! never turns itself off, and a port that cannot be shared. (The gateway port's probes are
//! in `crates/gateway/tests/it/security.rs`; docs/security.md says what each limit defends.)

use crate::*;
use std::io::Write as _;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An OTLP trace export of `n` empty spans in one scope: two bytes a span, so a few KB of
/// gzip inflate to megabytes.
fn empty_spans(n: usize) -> Vec<u8> {
    fn put_len(out: &mut Vec<u8>, mut n: usize) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut scope = Vec::with_capacity(n * 2);
    for _ in 0..n {
        scope.extend_from_slice(&[0x12, 0x00]);
    }
    let mut rs = vec![0x12];
    put_len(&mut rs, scope.len());
    rs.extend_from_slice(&scope);
    let mut req = vec![0x0a];
    put_len(&mut req, rs.len());
    req.extend_from_slice(&rs);
    req
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn assert_json_error(r: &signalbox_testkit::client::Resp, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(
        r.header("content-type").is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    let v = r.json();
    // The node's shape `{error, code}`, or on the Jaeger API Jaeger's own envelope.
    let jaeger = v["errors"][0]["msg"].as_str().is_some_and(|m| !m.is_empty());
    assert!(jaeger || v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert!(jaeger || v["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    v
}

#[tokio::test]
async fn otlp_and_zipkin_bombs_are_refused_within_a_memory_ceiling() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let before = peak_rss_mib(node.child.id());
    // 7.9M empty spans: 15.8 MB of protobuf in ~16 KB of gzip.
    let bomb = gzip(&empty_spans(7_900_000));
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/v1/traces", node.otlp_http),
            &[("content-type", "application/x-protobuf"), ("content-encoding", "gzip")],
            bomb.clone(),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    // The same over gRPC: the message scan refuses it with INVALID_ARGUMENT (not retried).
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bomb);
    let h2 = Http::h2();
    let grpc = |body: Vec<u8>| {
        let h2 = h2.clone();
        let url = format!("http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export", node.otlp_grpc);
        async move {
            h2.send(
                http::Method::POST,
                &url,
                &[("content-type", "application/grpc"), ("te", "trailers"), ("grpc-encoding", "gzip")],
                body,
            )
            .await
        }
    };
    let r = grpc(frame).await;
    assert_eq!(r.header("grpc-status"), Some("3"), "INVALID_ARGUMENT: {:?} {}", r.headers, r.text());
    // Over the decompressed size limit: INVALID_ARGUMENT too, never OUT_OF_RANGE.
    let huge = gzip(&empty_spans(9_000_000));
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(huge.len() as u32).to_be_bytes());
    frame.extend_from_slice(&huge);
    let r = grpc(frame).await;
    assert_eq!(r.header("grpc-status"), Some("3"), "{:?}", r.headers);
    // Malformed protobuf: INVALID_ARGUMENT, not INTERNAL.
    let r = grpc(vec![0, 0, 0, 0, 3, 0x0a, 0x05, 0x01]).await;
    assert_eq!(r.header("grpc-status"), Some("3"), "{:?}", r.headers);
    // Zipkin: a body over the limit once inflated is a 413 naming the limit.
    let zbomb = gzip(&vec![b' '; 20 * 1024 * 1024]);
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/v2/spans", node.zipkin),
            &[("content-type", "application/json"), ("content-encoding", "gzip")],
            zbomb,
        )
        .await;
    let v = assert_json_error(&r, 413);
    assert!(v["error"].as_str().unwrap().contains("16777216"), "{v}");
    let peak = peak_rss_mib(node.child.id());
    eprintln!("peak RSS before the bombs {before:.0} MiB, after {peak:.0} MiB");
    assert!(peak < 700.0, "the worst inputs held the node under 700 MiB, not {peak:.0} MiB");
    // The node still ingests normally.
    let ok = http
        .send(
            http::Method::POST,
            &format!("http://{}/v1/traces", node.otlp_http),
            &[("content-type", "application/json")],
            r#"{"resourceSpans":[]}"#,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test]
async fn every_error_on_every_port_is_json() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let c = &node.console;
    for (method, url) in [
        (http::Method::GET, format!("http://{c}/api/registry/services?index=abc")),
        (http::Method::GET, format!("http://{c}/api/config/app/default/key?version=-1")),
        (http::Method::GET, format!("http://{c}/api/traces/%FF")),
        (http::Method::POST, format!("http://{c}/loki/api/v1/push")),
        (http::Method::POST, format!("http://{c}/_bulk")),
        (http::Method::PUT, format!("http://{c}/services")),
        (http::Method::GET, format!("http://{c}/loki/api/v1/nonexistent")),
        (http::Method::POST, format!("http://{c}/prometheus/api/v1/write")),
        (http::Method::GET, format!("http://{c}/api/traces?start=2026-01-02T03:04:05%2B0%C3%A9:00")),
        (http::Method::GET, format!("http://{c}/api/traces/dependencies?start=2026-01-02T03:04:05%2B0%C3%A9:00")),
        (http::Method::GET, format!("http://{c}/api/traces?start=99999999999")),
        (http::Method::GET, format!("http://{c}/jaeger/api/traces?service=x&end=99999999999999999")),
        (http::Method::GET, format!("http://{c}/jaeger/api/dependencies?endTs=99999999999999999")),
        (http::Method::GET, format!("http://{}/v1/catalog/services?index=abc", node.consul)),
    ] {
        let r = http.send(method.clone(), &url, &[], bytes::Bytes::new()).await;
        assert!((400..500).contains(&r.status), "{method} {url}: {} {}", r.status, r.text());
        assert_json_error(&r, r.status);
    }
    let big = vec![b'x'; 5 * 1024 * 1024];
    let r = http.send(http::Method::PUT, &format!("http://{}/v1/kv/big", node.consul), &[], big).await;
    assert_json_error(&r, 413);
    // The console itself is still served to a browser.
    let r = http.get(&format!("http://{c}/services")).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn a_jaeger_search_with_start_after_end_is_refused_once_blocks_exist() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_in(dir, &[], &[("SIGNALBOX_TRACES__SEAL_AFTER", "100ms")]).await;
    let http = Http::new();
    let span = r#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","name":"get","timestamp":1700000000000000,"duration":10,"localEndpoint":{"serviceName":"svc"}}]"#;
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/v2/spans", node.zipkin),
            &[("content-type", "application/json")],
            span,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let url =
        format!("http://{}/jaeger/api/traces?service=svc&start=1700000000000001&end=1600000000000000", node.console);
    let r = http.get(&url).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = http.get(&format!("http://{}/api/traces?service=svc&start=1700000001&end=1600000000", node.console)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = http.get(&format!("http://{}/readyz", node.console)).await;
    assert_eq!(r.status, 200, "the node is still up");
}

async fn connect_from(source: &str, to: &str) -> std::io::Result<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{source}:0").parse().unwrap())?;
    sock.connect(to.parse::<SocketAddr>().unwrap()).await
}

#[tokio::test]
async fn api_ports_cap_connections_per_address_and_close_idle_ones() {
    let env = [
        ("SIGNALBOX_CONNECTIONS__MAX_CONNECTIONS_PER_IP", "10"),
        ("SIGNALBOX_CONNECTIONS__HEADER_READ_TIMEOUT", "1s"),
        ("SIGNALBOX_CONNECTIONS__IDLE_TIMEOUT", "1s"),
    ];
    let node = Node::start(&[], &env).await;
    for port in [&node.console, &node.consul, &node.otlp_http, &node.zipkin, &node.otlp_grpc] {
        let mut flood = Vec::new();
        for _ in 0..30 {
            if let Ok(mut c) = connect_from("127.0.0.2", port).await {
                let _ = c.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n").await;
                flood.push(c);
            }
        }
        // Another address is served at once.
        let mut c = connect_from("127.0.0.3", port).await.unwrap();
        c.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await.expect("served").unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 "), "{port}: {}", String::from_utf8_lossy(&out));
        // Every half-sent request is gone after the header deadline.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for c in &mut flood {
            let mut b = [0u8; 1024];
            let r = tokio::time::timeout(Duration::from_secs(1), c.read(&mut b)).await;
            assert!(r.is_ok(), "{port}: a half-sent request is closed after the header deadline");
        }
    }
    // An idle keep-alive connection is closed after the idle timeout.
    let mut c = TcpStream::connect(&node.console).await.unwrap();
    c.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut b = vec![0u8; 4096];
    let n = c.read(&mut b).await.unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 200"));
    let t = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b)).await.expect("closed when idle").unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_second_node_cannot_share_the_gateway_port() {
    let node = Node::start(&[], &[]).await;
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &node.gateway, "--console-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--consul-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--otlp-grpc-listen", "", "--otlp-http-listen", "", "--zipkin-listen", ""])
        .arg("--data-dir")
        .arg(other.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("already in use"), "{err}");
}

#[tokio::test]
async fn tokens_reload_on_sighup_and_logins_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let hash = |s: &str| String::from_utf8(Command::new(BIN).args(["hash-key", s]).output().unwrap().stdout).unwrap();
    let (root, ops) = (hash("root-secret"), hash("ops-secret"));
    let cfg = dir.path().join("signalbox.toml");
    let write = |tokens: &str| std::fs::write(&cfg, format!("[access]\ntokens = [{tokens}]\n")).unwrap();
    write(&format!(
        "{{ id = \"root\", role = \"admin\", sha256 = \"{}\" }}, {{ id = \"ops\", role = \"edit\", sha256 = \"{}\" }}",
        root.trim(),
        ops.trim()
    ));
    let node = Node::start(&["-c", cfg.to_str().unwrap()], &[("SIGNALBOX_NODE__WATCH_INTERVAL", "1h")]).await;
    let http = Http::new();
    let put = |secret: &'static str| {
        let http = http.clone();
        let url = format!("http://{}/api/config/app/default/k", node.console);
        async move {
            http.send(
                http::Method::PUT,
                &url,
                &[("authorization", &format!("Bearer {secret}")), ("content-type", "application/json")],
                r#"{"value":"v"}"#,
            )
            .await
        }
    };
    assert_eq!(put("ops-secret").await.status, 200);
    // ops removed, root demoted to read.
    write(&format!("{{ id = \"root\", role = \"read\", sha256 = \"{}\" }}", root.trim()));
    node.signal("HUP");
    signalbox_testkit::eventually(Duration::from_secs(5), "the reload", || async {
        (put("ops-secret").await.status == 401).then_some(())
    })
    .await;
    assert_eq!(put("root-secret").await.status, 403, "the demoted token no longer writes");
    // Failed logins back off.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = http
            .send(
                http::Method::POST,
                &format!("http://{}/api/session", node.console),
                &[("content-type", "application/json")],
                r#"{"token":"guess"}"#,
            )
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            assert_json_error(&r, 429);
        }
    }
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 3, "{statuses:?}");
    let metrics = http
        .send(
            http::Method::GET,
            &format!("http://{}/metrics", node.console),
            &[("authorization", "Bearer root-secret")],
            bytes::Bytes::new(),
        )
        .await;
    assert!(
        metrics.text().lines().any(|l| l.starts_with("signalbox_login_failures_total ") && !l.ends_with(" 0")),
        "{}",
        metrics.text()
    );
}
