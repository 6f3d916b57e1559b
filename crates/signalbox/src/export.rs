//! The standalone gateway's span exporter: the gateway's spans leave over OTLP/gRPC for a
//! node's receiver (or any OTLP collector).
//!
//! The gateway hands batches to a bounded queue without waiting (a full queue refuses the
//! batch and the gateway counts the drop). One task gathers up to `BATCH_SPANS` spans or
//! `BATCH_WAIT`, sends them gzip-compressed, and retries what OTLP calls retryable
//! (UNAVAILABLE, RESOURCE_EXHAUSTED, ...) with exponential backoff a bounded number of
//! times; what still fails is dropped and counted, never buffered without bound.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use signalbox_core::metrics::{Counter, Registry};
use signalbox_core::shutdown::Shutdown;
use signalbox_core::span::Span;
use signalbox_core::telemetry::ChannelSink;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// Batches the queue holds before the gateway is refused.
const QUEUE_BATCHES: usize = 1024;
/// Spans per export request, at most.
const BATCH_SPANS: usize = 2048;
/// How long a partial batch waits for more spans.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Tries per export request.
const ATTEMPTS: u32 = 5;
/// Deadline of one export call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the final flush at shutdown may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

struct Counters {
    sent: Counter,
    failed: Counter,
    rejected: Counter,
}

/// A running exporter: the sink the gateway writes to, and the task that sends.
pub struct Exporter {
    pub sink: ChannelSink,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts exporting to `endpoint` (`http://host:4317`). The task drains and stops once
/// `stop` fires (trigger it after the gateway has finished its last requests).
pub fn start(endpoint: &str, token: Option<String>, registry: &Registry, stop: Shutdown) -> anyhow::Result<Exporter> {
    let uri: http::Uri =
        endpoint.parse().map_err(|e| anyhow::anyhow!("--otlp-endpoint `{endpoint}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        anyhow::bail!("--otlp-endpoint `{endpoint}`: give an http:// URL with a host, like http://127.0.0.1:4317");
    }
    let channel = tonic::transport::Endpoint::from(uri)
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .connect_lazy();
    let client = TraceServiceClient::new(channel).send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let auth = match token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .map_err(|_| anyhow::anyhow!("--token holds characters that cannot go in a header"))?,
        ),
        None => None,
    };
    let result = |r| {
        registry.counter(
            "signalbox_otlp_export_spans_total",
            "Gateway spans exported over OTLP, by result (sent, failed after retries, rejected by the receiver).",
            &[("result", r)],
        )
    };
    let counters = Counters { sent: result("sent"), failed: result("failed"), rejected: result("rejected") };
    let accepted = registry.counter(
        "signalbox_otlp_export_queued_spans_total",
        "Gateway spans accepted into the OTLP export queue.",
        &[],
    );
    let (sink, rx) = ChannelSink::new(QUEUE_BATCHES, accepted);
    let task = tokio::spawn(run(Sender { client, auth, counters }, rx, stop));
    Ok(Exporter { sink, task })
}

struct Sender {
    client: TraceServiceClient<Channel>,
    auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    counters: Counters,
}

async fn run(mut sender: Sender, mut rx: mpsc::Receiver<Vec<Span>>, mut stop: Shutdown) {
    loop {
        let first = tokio::select! {
            b = rx.recv() => b,
            _ = stop.wait() => None,
        };
        let Some(mut batch) = first else { break };
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_SPANS && !stop.is_triggered() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(more)) => batch.extend(more),
                Ok(None) | Err(_) => break,
            }
        }
        sender.send(batch).await;
    }
    // Final flush: whatever is queued, within a deadline.
    let mut rest = Vec::new();
    while let Ok(b) = rx.try_recv() {
        rest.extend(b);
    }
    if !rest.is_empty() {
        let n = rest.len() as u64;
        if tokio::time::timeout(FLUSH_TIMEOUT, sender.send(rest)).await.is_err() {
            sender.counters.failed.add(n);
        }
    }
}

impl Sender {
    async fn send(&mut self, spans: Vec<Span>) {
        let n = spans.len() as u64;
        let body = signalbox_otlp::traces::to_request(spans);
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let mut req = tonic::Request::new(body.clone());
            if let Some(a) = &self.auth {
                req.metadata_mut().insert("authorization", a.clone());
            }
            match self.client.export(req).await {
                Ok(resp) => {
                    let rejected =
                        resp.into_inner().partial_success.map(|p| p.rejected_spans.max(0) as u64).unwrap_or(0);
                    self.counters.sent.add(n.saturating_sub(rejected));
                    self.counters.rejected.add(rejected.min(n));
                    return;
                }
                Err(s) if retryable(s.code()) && attempt < ATTEMPTS => {
                    tracing::debug!(code = ?s.code(), message = s.message(), attempt, "OTLP export failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(s) => {
                    tracing::warn!(code = ?s.code(), message = s.message(), spans = n, "OTLP export failed; spans dropped");
                    if retryable(s.code()) { &self.counters.failed } else { &self.counters.rejected }.add(n);
                    return;
                }
            }
        }
    }
}

/// The codes OTLP/gRPC says a client should retry.
fn retryable(c: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(c, Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss | ResourceExhausted)
}
