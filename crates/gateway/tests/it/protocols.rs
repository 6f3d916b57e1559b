//! Downstream and upstream protocols: h2c, TLS with ALPN, gRPC (unary and bidirectional
//! streaming), WebSocket, streamed bodies.

use crate::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use http_body_util::{BodyExt, Full};
use signalbox_gateway::config::{ServiceConfig, TlsConfig};
use signalbox_testkit::client::Http;
use signalbox_testkit::grpc::{self, EchoMsg};
use signalbox_testkit::upstream::{echo, serve};
use signalbox_testkit::{fixture, ws};

#[tokio::test]
async fn h2c_prior_knowledge_downstream() {
    let up = serve(echo("u")).await;
    let gw = start(config(vec![service("s", &[up.url()])], vec![route("/", "s")])).await;
    let r = Http::h2().get(&gw.url("/h2")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/h2");
    assert_eq!(r.json()["version"], "HTTP/1.1", "upstream speaks HTTP/1.1");
}

#[tokio::test]
async fn http2_upstreams_are_supported() {
    let up = serve(echo("u")).await;
    let s = ServiceConfig { protocol: "http2".into(), ..service("s", &[up.url()]) };
    let gw = start(config(vec![s], vec![route("/", "s")])).await;
    let r = Http::new().get(&gw.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/2.0");
}

async fn tls_request(addr: std::net::SocketAddr, alpn: &[u8]) -> (String, u16, serde_json::Value) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(fixture("tls-cert.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let negotiated = String::from_utf8_lossy(tls.get_ref().1.alpn_protocol().unwrap_or(b"")).into_owned();
    let io = hyper_util::rt::TokioIo::new(tls);
    let req = http::Request::builder()
        .uri("https://localhost/tls")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = if alpn == b"h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (negotiated, status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn tls_listener_negotiates_h2_and_http1_by_alpn() {
    let up = serve(echo("u")).await;
    let mut cfg = config(vec![service("s", &[up.url()])], vec![route("/", "s")]);
    cfg.tls =
        Some(TlsConfig { listen: "127.0.0.1:0".into(), cert: fixture("tls-cert.pem"), key: fixture("tls-key.pem") });
    let gw = start(cfg).await;
    let addr = gw.tls_addr.unwrap();
    let (alpn, status, body) = tls_request(addr, b"h2").await;
    assert_eq!((alpn.as_str(), status), ("h2", 200));
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    let (alpn, status, _) = tls_request(addr, b"http/1.1").await;
    assert_eq!((alpn.as_str(), status), ("http/1.1", 200));
}

#[tokio::test]
async fn grpc_unary_and_bidirectional_streaming_pass_through() {
    let server = grpc::serve().await;
    let gw =
        start(config(vec![service("grpc", &[format!("http://{}", server.addr)])], vec![route("/test.Echo", "grpc")]))
            .await;
    let mut client = grpc::Client::connect(&gw.url("")).await;
    let r = client.unary(EchoMsg { text: "hi".into(), seq: 1, fail_code: 0 }).await.unwrap();
    assert_eq!(r.text, "echo: hi");

    let err =
        client.unary(EchoMsg { text: "x".into(), seq: 2, fail_code: tonic::Code::NotFound as i32 }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "status passes through");
    assert_eq!(err.message(), "asked to fail");

    let (tx, rx) = tokio::sync::mpsc::channel::<EchoMsg>(4);
    let mut replies = client.chat(tokio_stream_from(rx)).await.unwrap();
    for i in 0..10u32 {
        tx.send(EchoMsg { text: format!("m{i}"), seq: i, fail_code: 0 }).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(
            (reply.text.as_str(), reply.seq),
            (format!("re: m{i}").as_str(), i),
            "each reply arrives before the next send"
        );
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none(), "the stream ends with trailers");
    assert_eq!(server.calls.load(std::sync::atomic::Ordering::SeqCst), 3);

    let line = signalbox_testkit::eventually(Duration::from_secs(2), "grpc log line", || async {
        gw.log_lines().into_iter().find(|l| l["grpc_status"] == 5)
    })
    .await;
    assert_eq!(line["status"], 200);
}

#[tokio::test]
async fn grpc_errors_from_the_gateway_are_grpc_statuses() {
    let gw = start(config(vec![service("grpc", &["127.0.0.1:1".into()])], vec![route("/test.Echo", "grpc")])).await;
    let mut client = grpc::Client::connect(&gw.url("")).await;
    let err = client.unary(EchoMsg::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<EchoMsg>,
) -> impl futures_util::Stream<Item = EchoMsg> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn websocket_upgrade_echoes() {
    let server = ws::echo_server().await;
    let gw = start(config(vec![service("ws", &[server.addr.to_string()])], vec![route("/ws", "ws")])).await;
    let (mut socket, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr)).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        socket.send(tokio_tungstenite::tungstenite::Message::text(format!("hello {i}"))).await.unwrap();
        let m = socket.next().await.unwrap().unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = serve(|req: http::Request<Bytes>| async move { http::Response::new(Full::new(req.into_body())) }).await;
    let gw = start(config(vec![service("s", &[up.url()])], vec![route("/", "s")])).await;
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = Http::new().send(Method::PUT, &gw.url("/big"), &[], body.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "bytes arrive intact");
}

#[tokio::test]
async fn an_http10_upstream_answers_http11_clients_in_http11_with_keep_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A bare HTTP/1.0 server: one response per connection, then close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ =
                    s.write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok").await;
            });
        }
    });
    let gw = start(config(vec![service("s", &[format!("http://{up}")])], vec![route("/", "s")])).await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for i in 0..2 {
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"ok") {
            let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "request {i}: the gateway closed the client's connection");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "request {i}: {text}");
    }
}

fn tls_service(name: &str, endpoints: &[String], ca: Option<String>, server_name: Option<&str>) -> ServiceConfig {
    ServiceConfig {
        tls: Some(signalbox_gateway::config::UpstreamTlsConfig {
            ca_file: ca,
            server_name: server_name.map(str::to_owned),
            ..Default::default()
        }),
        ..service(name, endpoints)
    }
}

#[tokio::test]
async fn tls_upstreams_over_http1_and_http2_verify_the_certificate() {
    let up = signalbox_testkit::upstream::serve_tls(echo("secure")).await;
    let ca = Some(fixture("tls-cert.pem"));
    // https:// endpoint, the name in the URL checked against the certificate; HTTP/1.1.
    let h1 = tls_service("h1", &[up.url()], ca.clone(), None);
    // HTTP/2 by ALPN.
    let h2 = ServiceConfig { protocol: "http2".into(), ..tls_service("h2", &[up.url()], ca.clone(), None) };
    // An IP endpoint (as the registry or DNS gives) with the certificate's name set apart.
    let by_ip = tls_service("ip", &[format!("127.0.0.1:{}", up.addr.port())], ca.clone(), Some("localhost"));
    // The default trust store (Mozilla's roots) does not trust a self-signed certificate.
    let untrusted = service("untrusted", &[up.url()]);
    let mut routes = vec![route("/h1", "h1"), route("/h2", "h2"), route("/ip", "ip"), route("/untrusted", "untrusted")];
    for r in &mut routes {
        r.retry = Some(signalbox_gateway::config::RetryConfig { attempts: 1, ..Default::default() });
    }
    let gw = start(config(vec![h1, h2, by_ip, untrusted], routes)).await;
    let http = Http::new();
    let r = http.get(&gw.url("/h1/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["server"], "secure");
    assert_eq!(r.json()["version"], "HTTP/1.1");
    let r = http.get(&gw.url("/h2/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/2.0");
    let r = http.get(&gw.url("/ip/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http.get(&gw.url("/untrusted/x")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["code"], "upstream_connect_failed");
    assert_eq!(up.hits(), 3, "the untrusted handshake never reached the server's handler");
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let up = signalbox_testkit::upstream::serve_mtls(echo("mtls")).await;
    let ca = Some(fixture("tls-cert.pem"));
    let mut with_cert = tls_service("with", &[up.url()], ca.clone(), None);
    if let Some(t) = with_cert.tls.as_mut() {
        t.cert_file = Some(fixture("tls-cert.pem"));
        t.key_file = Some(fixture("tls-key.pem"));
    }
    let without = tls_service("without", &[up.url()], ca, None);
    let mut routes = vec![route("/with", "with"), route("/without", "without")];
    for r in &mut routes {
        r.retry = Some(signalbox_gateway::config::RetryConfig { attempts: 1, ..Default::default() });
    }
    let gw = start(config(vec![with_cert, without], routes)).await;
    let http = Http::new();
    let r = http.get(&gw.url("/with/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["server"], "mtls");
    let r = http.get(&gw.url("/without/x")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn bad_upstream_tls_settings_name_the_key() {
    let up = serve(echo("u")).await;
    let problems = |s: ServiceConfig| {
        let cfg = config(vec![s], vec![route("/", "s")]);
        signalbox_gateway::check(&cfg, None)
            .unwrap_err()
            .list
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect::<Vec<_>>()
    };
    let mixed = service("s", &[up.url(), "https://localhost:1".into()]);
    let p = problems(mixed);
    assert_eq!(p[0].0, "gateway.services[0].endpoints", "{p:?}");
    assert!(p[0].1.contains("mixes"), "{p:?}");
    let missing_ca = tls_service("s", &["localhost:1".into()], Some("/nonexistent/ca.pem".into()), None);
    let p = problems(missing_ca);
    assert_eq!(p[0].0, "gateway.services[0].tls.ca_file", "{p:?}");
    assert!(p[0].1.contains("/nonexistent/ca.pem"), "{p:?}");
    let not_a_name = tls_service("s", &["localhost:1".into()], None, Some("bad name!"));
    assert_eq!(problems(not_a_name)[0].0, "gateway.services[0].tls.server_name");
    let tls_on_http = tls_service("s", &[up.url()], None, None);
    assert_eq!(problems(tls_on_http)[0].0, "gateway.services[0].tls");
    let mut half = tls_service("s", &["localhost:1".into()], None, None);
    if let Some(t) = half.tls.as_mut() {
        t.cert_file = Some(fixture("tls-cert.pem"));
    }
    assert_eq!(problems(half)[0].0, "gateway.services[0].tls");
    let mut bad_key = tls_service("s", &["localhost:1".into()], None, None);
    if let Some(t) = bad_key.tls.as_mut() {
        t.cert_file = Some(fixture("tls-cert.pem"));
        t.key_file = Some(fixture("tls-cert.pem"));
    }
    assert_eq!(problems(bad_key)[0].0, "gateway.services[0].tls.key_file");
}
