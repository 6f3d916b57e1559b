//! The health control loop: one task per check, running it every interval with its timeout
//! and feeding the result to the registry, which applies thresholds and flap damping.
//!
//! - HTTP: `GET` the URL; 2xx is passing, 429 warning (as Consul), anything else critical.
//!   `https://` URLs verify the certificate against the Mozilla roots, unless the check
//!   skips verification (Consul's `TLSSkipVerify`).
//! - TCP: a connection within the timeout is passing.
//! - gRPC: `grpc.health.v1.Health/Check`; `SERVING` is passing.
//! - TTL: the instance reports itself; silence longer than the TTL is critical.

use super::Registry;
use super::model::{CheckKind, CheckSpec, Status};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;

/// The client HTTP checks use: plain TCP, or TLS for `https://` URLs.
pub type CheckClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Runs checks. Holds the HTTP clients shared by all HTTP checks.
#[derive(Clone)]
pub struct Checker {
    http: CheckClient,
    /// For checks that skip certificate verification.
    http_unverified: CheckClient,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                // Invariant: ring implements both default versions (TLS 1.2 and 1.3).
                .expect("the ring provider supports the default TLS versions")
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let verified = builder().with_root_certificates(roots).with_no_client_auth();
        let unverified = builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
            .with_no_client_auth();
        let client = |tls: rustls::ClientConfig| {
            let mut conn = HttpConnector::new();
            conn.set_nodelay(true);
            conn.enforce_http(false);
            let conn = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(conn);
            // Fresh connections each time: a check must see a listener that stopped
            // accepting, not a pooled connection that happens to still be open.
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(conn)
        };
        Checker { http: client(verified), http_unverified: client(unverified) }
    }

    /// Starts the task of check `index` of `instance`.
    ///
    /// The tasks stay small (a few hundred bytes while they sleep): the futures of a check
    /// run and of a registry update live on the heap only while they run. Inline, the HTTP
    /// client's future made every task ~4.7 KB, 47 MB for 10,000 instances.
    pub fn spawn(&self, registry: Weak<Registry>, instance: String, index: usize, spec: CheckSpec) -> AbortHandle {
        match spec.kind.clone() {
            CheckKind::Ttl { ttl_ms } => {
                tokio::spawn(ttl_loop(registry, instance, index, Duration::from_millis(ttl_ms))).abort_handle()
            }
            kind => tokio::spawn(active_loop(self.clone(), registry, instance, index, spec, kind)).abort_handle(),
        }
    }
}

/// A TTL check: critical when the instance stays silent past its deadline.
async fn ttl_loop(registry: Weak<Registry>, instance: String, index: usize, ttl: Duration) {
    let mut next = tokio::time::Instant::now() + ttl;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(reg) = registry.upgrade() else { return };
        match Box::pin(reg.expire_ttl(&instance, index, ttl)).await {
            // A report that came in meanwhile moved the deadline on.
            Some(at) => {
                next = tokio::time::Instant::from_std(at).max(tokio::time::Instant::now() + Duration::from_millis(5))
            }
            None => return,
        }
    }
}

/// An active check (HTTP, TCP, gRPC): runs every interval and reports the result.
async fn active_loop(
    checker: Checker,
    registry: Weak<Registry>,
    instance: String,
    index: usize,
    spec: CheckSpec,
    kind: CheckKind,
) {
    let mut interval = tokio::time::interval(spec.interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let (status, output) = Box::pin(run(&checker, &kind, spec.timeout())).await;
        let Some(reg) = registry.upgrade() else { return };
        Box::pin(reg.report(&instance, index, status, output)).await;
    }
}

/// Runs one active check.
pub async fn run(checker: &Checker, kind: &CheckKind, timeout: Duration) -> (Status, String) {
    match kind {
        CheckKind::Http { url, tls_skip_verify } => {
            let http = if *tls_skip_verify { &checker.http_unverified } else { &checker.http };
            let req = match http::Request::get(url.as_str()).header("user-agent", "signalbox-health").body(Empty::new())
            {
                Ok(r) => r,
                Err(e) => return (Status::Critical, format!("bad request: {e}")),
            };
            match tokio::time::timeout(timeout, async {
                let resp = http.request(req).await?;
                let status = resp.status();
                // Read (and bound) the body so the output can show the start of it.
                let body = tokio::time::timeout(timeout, resp.into_body().collect())
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                Ok::<_, hyper_util::client::legacy::Error>((status, body))
            })
            .await
            {
                Err(_) => (Status::Critical, format!("HTTP GET {url}: timed out after {timeout:?}")),
                Ok(Err(e)) => (Status::Critical, format!("HTTP GET {url}: {}", error_chain(&e))),
                Ok(Ok((status, body))) => {
                    let snippet: String = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                    let out = format!("HTTP GET {url}: {status} {snippet}");
                    let s = if status.is_success() {
                        Status::Passing
                    } else if status.as_u16() == 429 {
                        Status::Warning
                    } else {
                        Status::Critical
                    };
                    (s, out)
                }
            }
        }
        CheckKind::Tcp { address } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address.as_str())).await {
                Ok(Ok(_)) => (Status::Passing, format!("TCP connect {address}: success")),
                Ok(Err(e)) => (Status::Critical, format!("TCP connect {address}: {e}")),
                Err(_) => (Status::Critical, format!("TCP connect {address}: timed out after {timeout:?}")),
            }
        }
        CheckKind::Grpc { address, service } => match tokio::time::timeout(timeout, grpc_check(address, service)).await
        {
            Ok(Ok(1)) => (Status::Passing, format!("gRPC health {address} `{service}`: SERVING")),
            Ok(Ok(code)) => {
                (Status::Critical, format!("gRPC health {address} `{service}`: status {}", serving_status(code)))
            }
            Ok(Err(e)) => (Status::Critical, format!("gRPC health {address} `{service}`: {e}")),
            Err(_) => (Status::Critical, format!("gRPC health {address}: timed out after {timeout:?}")),
        },
        CheckKind::Ttl { .. } => (Status::Critical, "TTL checks are reported by the instance".into()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn serving_status(code: i32) -> &'static str {
    match code {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "unrecognised",
    }
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

async fn grpc_check(address: &str, service: &str) -> Result<i32, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| error_chain(&e))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let resp = grpc
        .unary(
            tonic::Request::new(HealthCheckRequest { service: service.to_owned() }),
            path,
            tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(),
        )
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok(resp.into_inner().status)
}

/// Accepts any server certificate (for checks with `tls_skip_verify`), while still checking
/// that the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
