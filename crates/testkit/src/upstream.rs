//! Upstream servers for tests: each serves HTTP/1.1 and h2c on a loopback port, answering with
//! a closure over the fully read request. Dropping the server closes its listener and every
//! open connection, the way a crashed process would.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    tls: bool,
}

impl Upstream {
    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for a TLS upstream (the name its
    /// certificate, `fixtures/tls-cert.pem`, carries).
    pub fn url(&self) -> String {
        if self.tls { format!("https://localhost:{}", self.addr.port()) } else { format!("http://{}", self.addr) }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a server on a free loopback port.
pub async fn serve<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    serve_on(listener, None, handler)
}

/// Starts a TLS server (the self-signed `fixtures/tls-cert.pem`, for `localhost` and
/// 127.0.0.1) offering HTTP/2 and HTTP/1.1 by ALPN.
pub async fn serve_tls<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    serve_on(listener, Some(tls_acceptor(false)), handler)
}

/// Like [`serve_tls`], but refusing clients without a certificate signed by (or equal to)
/// `fixtures/tls-cert.pem`: mutual TLS.
pub async fn serve_mtls<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    serve_on(listener, Some(tls_acceptor(true)), handler)
}

fn tls_acceptor(client_auth: bool) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(crate::fixture("tls-cert.pem"))
        .expect("test certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("test certificate PEM");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(crate::fixture("tls-key.pem")).expect("test key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(certs.clone());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_single_cert(certs, key).expect("certificate and key");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// Starts a server on `addr` (to bring a stopped upstream back on the same port).
pub async fn serve_at<F, Fut>(addr: SocketAddr, handler: F) -> Upstream
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_reuseaddr(true).expect("reuseaddr");
    sock.bind(addr).expect("bind again");
    serve_on(sock.listen(1024).expect("listen"), None, handler)
}

fn serve_on<F, Fut>(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, handler: F) -> Upstream
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let addr = listener.local_addr().expect("local addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let counter = hits.clone();
    let is_tls = tls.is_some();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let counter = counter.clone();
            let tls = tls.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    let counter = counter.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(handler(Request::from_parts(parts, body)).await)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection_with_upgrades(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Upstream { addr, hits, task, tls: is_tls }
}

/// A handler that answers 200 with a JSON description of the request and `name`.
pub fn echo(
    name: &'static str,
) -> impl Fn(Request<Bytes>) -> std::future::Ready<Response<Full<Bytes>>> + Send + Sync + 'static {
    move |req| std::future::ready(echo_response(name, &req))
}

/// The JSON echo of a request: server name, method, path and query, headers, body.
pub fn echo_response(name: &str, req: &Request<Bytes>) -> Response<Full<Bytes>> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_str().unwrap_or("").to_owned())))
        .collect();
    let v = serde_json::json!({
        "server": name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
        "body": String::from_utf8_lossy(req.body()),
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("valid response")
}

/// A response with `status` and a short text body.
pub fn status(code: u16) -> Response<Full<Bytes>> {
    Response::builder().status(code).body(Full::new(Bytes::from(format!("status {code}")))).expect("valid response")
}
