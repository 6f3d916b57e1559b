//! One request of a queued batch to its receiver, and what the answer means for the batch.
//!
//! Retryable: connection errors, timeouts, every 5xx and 429 (with its `Retry-After`), and
//! the gRPC codes OTLP names retryable. Any other 4xx (or gRPC status) means the receiver
//! will refuse the same bytes again: the batch is dropped and counted, never retried.

use crate::config::{Exporter, Protocol, Signal};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// What an attempt came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again: after `after` when the receiver said so.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// The receiver refused the batch for good.
    Rejected {
        error: String,
    },
}

/// A connected (lazily) client for one exporter.
pub struct Sender {
    cfg: Arc<Exporter>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    grpc: Option<Channel>,
}

impl Sender {
    pub fn new(cfg: Arc<Exporter>) -> Sender {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The ring provider supports the default protocol versions; this cannot fail.
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| unreachable_tls());
        let mut conn = HttpConnector::new();
        conn.enforce_http(false);
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(conn);
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(conn);
        let grpc = match &cfg.protocol {
            Protocol::OtlpGrpc { endpoint } => Some(
                tonic::transport::Endpoint::from(endpoint.clone())
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(cfg.timeout)
                    .connect_lazy(),
            ),
            _ => None,
        };
        Sender { cfg, http, grpc }
    }

    /// Sends one queued batch body.
    pub async fn send(&self, signal: Signal, payload: &[u8]) -> Outcome {
        let body = Bytes::copy_from_slice(payload);
        match (&self.cfg.protocol, signal) {
            (Protocol::RemoteWrite { url }, _) => {
                self.post(
                    url,
                    body,
                    &[
                        ("content-type", "application/x-protobuf"),
                        ("content-encoding", "snappy"),
                        ("x-prometheus-remote-write-version", "0.1.0"),
                    ],
                )
                .await
            }
            (Protocol::Loki { url }, _) => self.post(url, body, &[("content-type", "application/json")]).await,
            (Protocol::OtlpHttp { traces, logs }, s) => {
                let url = if s == Signal::Traces { traces } else { logs };
                self.post(url, body, &[("content-type", "application/x-protobuf")]).await
            }
            (Protocol::OtlpGrpc { .. }, s) => self.grpc(s, payload).await,
        }
    }

    async fn post(&self, url: &http::Uri, body: Bytes, own: &[(&'static str, &'static str)]) -> Outcome {
        let mut req = http::Request::post(url.clone());
        for (k, v) in own {
            req = req.header(*k, *v);
        }
        req = req.header(http::header::USER_AGENT, concat!("signalbox/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &self.cfg.headers {
            req = req.header(k, v);
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected { error: format!("cannot build the request: {e}") },
        };
        let call = async {
            let resp = self.http.request(req).await.map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let retry_after = resp.headers().get(http::header::RETRY_AFTER).and_then(parse_retry_after);
            // The body says why; read a little of it, bounded by the same deadline.
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok::<_, String>((status, retry_after, body))
        };
        match tokio::time::timeout(self.cfg.timeout, call).await {
            Err(_) => Outcome::Retry { after: None, error: format!("no answer within {:?}", self.cfg.timeout) },
            Ok(Err(e)) => Outcome::Retry { after: None, error: e },
            Ok(Ok((status, retry_after, body))) => classify(status, retry_after, &body),
        }
    }

    async fn grpc(&self, signal: Signal, payload: &[u8]) -> Outcome {
        let Some(channel) = self.grpc.clone() else {
            return Outcome::Rejected { error: "no gRPC channel".into() };
        };
        let mut meta = tonic::metadata::MetadataMap::new();
        for (k, v) in &self.cfg.headers {
            if let (Ok(k), Ok(v)) = (
                tonic::metadata::MetadataKey::from_bytes(k.as_str().as_bytes()),
                tonic::metadata::MetadataValue::try_from(v.as_bytes()),
            ) {
                meta.insert(k, v);
            }
        }
        let result = match signal {
            Signal::Traces => match ExportTraceServiceRequest::decode(payload) {
                Ok(m) => TraceServiceClient::new(channel)
                    .export(tonic::Request::from_parts(meta, Default::default(), m))
                    .await
                    .map(|_| ()),
                Err(e) => return Outcome::Rejected { error: format!("queued batch does not decode: {e}") },
            },
            Signal::Logs => match ExportLogsServiceRequest::decode(payload) {
                Ok(m) => LogsServiceClient::new(channel)
                    .export(tonic::Request::from_parts(meta, Default::default(), m))
                    .await
                    .map(|_| ()),
                Err(e) => return Outcome::Rejected { error: format!("queued batch does not decode: {e}") },
            },
            Signal::Metrics => return Outcome::Rejected { error: "OTLP export carries traces and logs only".into() },
        };
        match result {
            Ok(()) => Outcome::Delivered,
            Err(s) if retryable(s.code()) => {
                Outcome::Retry { after: None, error: format!("gRPC {:?}: {}", s.code(), s.message()) }
            }
            Err(s) => Outcome::Rejected { error: format!("gRPC {:?}: {}", s.code(), s.message()) },
        }
    }
}

fn unreachable_tls() -> rustls::ClientConfig {
    // `with_safe_default_protocol_versions` fails only for a provider without TLS 1.2/1.3
    // suites; ring has both.
    panic!("the ring crypto provider offers no TLS versions")
}

/// What an HTTP answer means for the batch.
pub fn classify(status: http::StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    let text = || String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
    if status.is_success() {
        Outcome::Delivered
    } else if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry { after: retry_after, error: format!("{status}: {}", text()) }
    } else {
        Outcome::Rejected { error: format!("{status}: {}", text()) }
    }
}

/// The codes OTLP/gRPC says a client should retry.
fn retryable(c: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(c, Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss | ResourceExhausted)
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn parse_retry_after(v: &http::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
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
