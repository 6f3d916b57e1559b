//! Delivery of host-metrics collections to a Prometheus remote_write receiver (the node's
//! `POST /prometheus/api/v1/write`), through a disk buffer of their own
//! (`DATA_DIR/metrics-buffer`, the same batch files as the logs' buffer, without file
//! positions): every collection is written durably before it is sent and removed only when
//! the receiver answered 2xx, so a node that is down loses nothing; the buffer is sent
//! oldest first once it is back (at least once: a collection whose answer was lost is sent
//! again, and the receiver keeps the identical samples once).
//!
//! Answers are read as Prometheus's remote_write sender reads them: 2xx stored; 400 (and
//! 413) refused for good, so the collection is dropped, logged and counted; anything else
//! (429, 5xx, a reset, a timeout) retried with jittered exponential backoff, `Retry-After`
//! honoured.
//!
//! Every push also lets the node measure the agent's clock (NTP's arithmetic on the push
//! connection, no extra exchange): the request states when it was sent by the agent's clock
//! ([`SENT_AT_HEADER`]) and the network round trip of the previous push
//! ([`ROUND_TRIP_HEADER`]: the time to the answer less the node's handling time, which the
//! node states in [`HANDLED_HEADER`]). The node records `sent-at + round trip / 2 - its
//! receive time` as `signalbox_agent_clock_offset_seconds{instance, job}`; its error is at
//! most half the round trip's asymmetry.

use crate::compile::Compiled;
use crate::spool::{Entry, Spool};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use signalbox_core::metrics::{Counter, Gauge, Histogram, Registry};
use signalbox_core::shutdown::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The agent's clock when it sent a push, in Unix nanoseconds (the node's
/// `crates/api/src/metrics/agent_clock.rs` reads it).
pub const SENT_AT_HEADER: &str = "x-signalbox-sent-at";
/// The network round trip of the agent's previous push, in nanoseconds.
pub const ROUND_TRIP_HEADER: &str = "x-signalbox-round-trip";
/// In the node's answer: nanoseconds between the request's arrival and the answer.
pub const HANDLED_HEADER: &str = "x-signalbox-handled-ns";

/// Bounds of `signalbox_agent_host_collect_seconds`.
const COLLECT_BOUNDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The host-metrics series about the agent's own work.
#[derive(Clone)]
pub struct HostStats {
    pub collect_seconds: Histogram,
    pub pushed: Counter,
    pub refused: Counter,
    pub dropped: Counter,
    pub push_failures: Counter,
    pub buffered: Gauge,
}

impl HostStats {
    pub fn new(r: &Registry) -> HostStats {
        HostStats {
            collect_seconds: r.histogram(
                "signalbox_agent_host_collect_seconds",
                "Wall time of one host-metrics collection (every collector).",
                &[],
                COLLECT_BOUNDS,
            ),
            pushed: r.counter(
                "signalbox_agent_host_snapshots_pushed_total",
                "Host-metrics collections the receiver stored.",
                &[],
            ),
            refused: r.counter(
                "signalbox_agent_host_snapshots_refused_total",
                "Host-metrics collections the receiver refused for good (400, 413); dropped.",
                &[],
            ),
            dropped: r.counter(
                "signalbox_agent_host_snapshots_dropped_total",
                "Host-metrics collections not buffered because the metrics buffer was full.",
                &[],
            ),
            push_failures: r.counter(
                "signalbox_agent_host_push_failures_total",
                "Failed host-metrics delivery attempts (each is retried).",
                &[],
            ),
            buffered: r.gauge(
                "signalbox_agent_host_snapshots_buffered",
                "Host-metrics collections on disk not yet delivered.",
                &[],
            ),
        }
    }
}

/// How one attempt ended.
#[derive(Debug, PartialEq)]
pub enum PushOutcome {
    Stored,
    Refused(String),
    Retry { after: Option<Duration>, error: String },
}

/// Reads a receiver's answer.
pub fn classify(status: StatusCode, retry_after: Option<&http::HeaderValue>, body: &[u8]) -> PushOutcome {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
    if status.is_success() {
        PushOutcome::Stored
    } else if status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE {
        PushOutcome::Refused(format!("{status}: {text}"))
    } else {
        let after = retry_after.and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok()).map(Duration::from_secs);
        PushOutcome::Retry { after, error: format!("{status}: {text}") }
    }
}

/// Sends the metrics buffer's batches until shutdown.
pub struct Pusher {
    cfg: Arc<Compiled>,
    url: http::Uri,
    spool: Arc<Spool>,
    stats: HostStats,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Added to the system clock in [`SENT_AT_HEADER`] (tests only).
    clock_skew_ms: i64,
    /// The last push's network round trip in ns (0: none measured yet).
    round_trip_ns: AtomicU64,
}

impl Pusher {
    pub fn new(cfg: Arc<Compiled>, url: http::Uri, spool: Arc<Spool>, stats: HostStats) -> Pusher {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(cfg.output.connect_timeout));
        conn.set_nodelay(true);
        conn.enforce_http(false);
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*cfg.output.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(conn);
        let clock_skew_ms = cfg.host_metrics.as_ref().map_or(0, |h| h.settings.clock_skew_ms);
        Pusher { cfg, url, spool, stats, client, clock_skew_ms, round_trip_ns: AtomicU64::new(0) }
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        let mut attempt: u32 = 0;
        loop {
            let spool = self.spool.clone();
            let next = tokio::task::spawn_blocking(move || spool.oldest()).await;
            let entry = match next {
                Ok(Ok(Some(e))) => e,
                Ok(Ok(None)) => {
                    tokio::select! {
                        _ = self.spool.ready.notified() => {}
                        // Woken by the next collection; this is only a safety net.
                        _ = tokio::time::sleep(crate::ship::IDLE_RECHECK) => {}
                        _ = shutdown.wait() => return,
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "a buffered host-metrics collection is unreadable; it is set aside");
                    let _ = self.spool.set_aside_oldest();
                    continue;
                }
                Err(_) => return,
            };
            let wait = match self.attempt(&entry).await {
                PushOutcome::Stored => {
                    attempt = 0;
                    self.stats.pushed.inc();
                    self.remove(entry.seq).await;
                    continue;
                }
                PushOutcome::Refused(error) => {
                    attempt = 0;
                    tracing::error!(%error, samples = entry.header.records, "the receiver refused a host-metrics collection; it is dropped");
                    self.stats.refused.inc();
                    self.remove(entry.seq).await;
                    continue;
                }
                PushOutcome::Retry { after, error } => {
                    tracing::warn!(%error, "host-metrics delivery failed; retrying");
                    self.stats.push_failures.inc();
                    after.map(|a| a.min(self.cfg.max_retry_after)).unwrap_or_else(|| {
                        let exp =
                            self.cfg.initial_backoff.saturating_mul(1u32 << attempt.min(20)).min(self.cfg.max_backoff);
                        attempt += 1;
                        exp / 2 + Duration::from_nanos(fastrand::u64(0..=(exp / 2).as_nanos() as u64))
                    })
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    async fn remove(&self, seq: u64) {
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.remove(seq)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot remove a delivered host-metrics collection"),
            Err(e) => tracing::error!(error = %e, "buffer task failed"),
        }
        self.stats.buffered.set(self.spool.usage().0 as i64);
    }

    async fn attempt(&self, entry: &Entry) -> PushOutcome {
        let out = &self.cfg.output;
        let mut req = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(header::USER_AGENT, concat!("signalbox-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &out.authorization {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let round_trip = self.round_trip_ns.load(Ordering::Relaxed);
        if round_trip > 0 {
            req = req.header(ROUND_TRIP_HEADER, round_trip);
        }
        let sent_at = signalbox_core::time::unix_nanos() as i64 + self.clock_skew_ms * 1_000_000;
        req = req.header(SENT_AT_HEADER, sent_at);
        let start = Instant::now();
        let req = match req.body(Full::new(Bytes::from(entry.payload.clone()))) {
            Ok(r) => r,
            Err(e) => return PushOutcome::Retry { after: None, error: format!("request: {e}") },
        };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{}: {e}", self.url))?;
            let (parts, body) = resp.into_parts();
            let handled = parts.headers.get(HANDLED_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if let Some(handled) = handled {
                let total = start.elapsed().as_nanos() as u64;
                self.round_trip_ns.store(total.saturating_sub(handled).max(1), Ordering::Relaxed);
            }
            let body = Limited::new(body, 64 * 1024)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| format!("reading the answer: {e}"))?;
            Ok::<_, String>((parts, body))
        };
        match tokio::time::timeout(out.timeout, exchange).await {
            Err(_) => {
                PushOutcome::Retry { after: None, error: format!("{}: no answer within {:?}", self.url, out.timeout) }
            }
            Ok(Err(error)) => PushOutcome::Retry { after: None, error },
            Ok(Ok((parts, body))) => classify(parts.status, parts.headers.get(header::RETRY_AFTER), &body),
        }
    }
}
