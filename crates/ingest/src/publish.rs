//! The receivers' side: a decoded batch is split by partition, each part published to
//! `<prefix>.<signal>.<partition>` with a `Nats-Msg-Id` of the batch id and partition, and
//! the call resolves only once JetStream has acknowledged every part (on a replicated
//! stream: once a majority of its servers has it).
//!
//! Refusals, never queues: NATS unreachable or a publish unconfirmed in time →
//! [`Refusal::Unavailable`] (503); the stream above its high-water mark (from stream state
//! refreshed every [`REFRESH`]), a limit error in a PubAck, or too many batches in flight on
//! this node → [`Refusal::Full`] (429).

use crate::config::IngestConfig;
use crate::wire::{self, Signal};
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType};
use futures_util::future::join_all;
use signalbox_api::buffer::{IngestBuffer, Published, Refusal};
use signalbox_core::log::LogRecord;
use signalbox_core::metrics::{Counter, Histogram, Registry};
use signalbox_core::span::Span;
use signalbox_metrics::storage::Labels;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How often the stream's size is read for the high-water check.
pub const REFRESH: Duration = Duration::from_millis(250);
/// How long a refused client is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

const LATENCY_BOUNDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// A connection to the NATS servers, with the stream ensured. Shared by the publisher and
/// the storage consumers.
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub cfg: Arc<IngestConfig>,
}

impl Nats {
    /// Connects to the servers of `cfg.buffer`. The node starts even when none answers: the
    /// client keeps trying, and receivers answer 503 until it is connected.
    pub async fn connect(cfg: &IngestConfig) -> Result<Nats, String> {
        let n = &cfg.nats;
        let mut opts = async_nats::ConnectOptions::new()
            .name("signalbox")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None);
        if let (Some(u), Some(p)) = (&n.user, &n.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &n.token {
            opts = opts.token(t.clone());
        }
        if let Some(ca) = &n.tls_ca {
            opts = opts.add_root_certificates(ca.into()).require_tls(true);
        }
        let addrs: Vec<async_nats::ServerAddr> = cfg
            .servers()
            .iter()
            .map(|s| s.parse().map_err(|e| format!("ingest.buffer: `{s}`: {e}")))
            .collect::<Result<_, _>>()?;
        let client = opts.connect(addrs).await.map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let js = jetstream::ContextBuilder::new().timeout(n.publish_timeout.0).build(client.clone());
        Ok(Nats { client, js, cfg: Arc::new(cfg.clone()) })
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The stream's configuration: a work queue (a message goes once its consumer has
    /// acknowledged it, so the stream's size is the storage nodes' backlog), refusing new
    /// messages when full (never dropping unconsumed ones), on disk, replicated.
    pub fn stream_config(&self) -> StreamConfig {
        let n = &self.cfg.nats;
        StreamConfig {
            name: n.stream.clone(),
            subjects: vec![format!("{}.>", n.subject_prefix)],
            retention: RetentionPolicy::WorkQueue,
            discard: DiscardPolicy::New,
            storage: StorageType::File,
            num_replicas: n.replicas,
            max_bytes: n.max_bytes.0 as i64,
            max_age: n.max_age.0,
            duplicate_window: n.duplicate_window.0,
            ..Default::default()
        }
    }

    /// Creates the stream, or brings an existing one's limits to the configuration.
    pub async fn ensure_stream(&self) -> Result<(), String> {
        let cfg = self.stream_config();
        match self.js.get_stream(&cfg.name).await {
            Ok(_) => self.js.update_stream(cfg).await.map(|_| ()).map_err(|e| format!("updating the stream: {e}")),
            Err(_) => self.js.create_stream(cfg).await.map(|_| ()).map_err(|e| format!("creating the stream: {e}")),
        }
    }

    pub fn subject(&self, signal: Signal, partition: u32) -> String {
        format!("{}.{}.{partition}", self.cfg.nats.subject_prefix, signal.name())
    }
}

/// The stream's size as last read, for the high-water check.
#[derive(Default)]
struct StreamState {
    bytes: AtomicU64,
    messages: AtomicU64,
    /// The stream exists and its state was read recently.
    fresh: AtomicBool,
}

struct Metrics {
    latency: [Histogram; 3],
    published: [Counter; 3],
    refused_full: [Counter; 3],
    refused_unavailable: [Counter; 3],
}

/// The publisher receivers hand batches to.
pub struct Buffer {
    nats: Nats,
    state: Arc<StreamState>,
    in_flight: Semaphore,
    metrics: Metrics,
}

impl Buffer {
    /// Starts the publisher: ensures the stream (retrying while NATS is away) and keeps its
    /// state fresh. Must run inside a Tokio runtime.
    pub fn start(nats: Nats, registry: &Registry) -> Arc<Buffer> {
        let per_signal = |f: &dyn Fn(&'static str) -> Counter| Signal::ALL.map(|s| f(s.name()));
        let metrics = Metrics {
            latency: Signal::ALL.map(|s| {
                registry.histogram(
                    "signalbox_ingest_buffer_publish_seconds",
                    "Time from a receiver's decoded batch to JetStream's acknowledgement of all its parts.",
                    &[("signal", s.name())],
                    LATENCY_BOUNDS,
                )
            }),
            published: per_signal(&|s| {
                registry.counter(
                    "signalbox_ingest_buffer_published_batches_total",
                    "Batches acknowledged by JetStream (a batch is one request, all its partitions).",
                    &[("signal", s)],
                )
            }),
            refused_full: per_signal(&|s| {
                registry.counter(
                    "signalbox_ingest_buffer_refused_total",
                    "Batches refused by the ingest buffer, by reason (full: 429, unavailable: 503).",
                    &[("signal", s), ("reason", "full")],
                )
            }),
            refused_unavailable: per_signal(&|s| {
                registry.counter(
                    "signalbox_ingest_buffer_refused_total",
                    "Batches refused by the ingest buffer, by reason (full: 429, unavailable: 503).",
                    &[("signal", s), ("reason", "unavailable")],
                )
            }),
        };
        let state = Arc::new(StreamState::default());
        {
            let s = state.clone();
            registry.gauge_fn(
                "signalbox_ingest_buffer_stream_bytes",
                "Bytes in the ingest stream (batches not yet stored), as last read.",
                &[],
                move || s.bytes.load(Ordering::Relaxed) as f64,
            );
            let s = state.clone();
            registry.gauge_fn(
                "signalbox_ingest_buffer_stream_messages",
                "Messages in the ingest stream (batch parts not yet stored), as last read.",
                &[],
                move || s.messages.load(Ordering::Relaxed) as f64,
            );
        }
        let b = Arc::new(Buffer {
            in_flight: Semaphore::new(nats.cfg.nats.max_in_flight),
            nats: nats.clone(),
            state: state.clone(),
            metrics,
        });
        tokio::spawn(watch_stream(nats, Arc::downgrade(&b)));
        b
    }

    /// Waits (up to `timeout`) until the stream exists and its state has been read; false
    /// if it is not ready by then (NATS away: receivers answer 503 until it is).
    pub async fn ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.state.fresh.load(Ordering::Relaxed) {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn above_high_water(&self) -> bool {
        let max = self.nats.cfg.nats.max_bytes.0 as f64;
        self.state.bytes.load(Ordering::Relaxed) as f64 >= max * self.nats.cfg.nats.high_water
    }

    /// Publishes the parts of one batch and waits for every acknowledgement.
    async fn publish(&self, signal: Signal, parts: Vec<(u32, Vec<u8>)>) -> Result<(), Refusal> {
        let i = signal as usize;
        let result = self.publish_parts(signal, parts).await;
        match &result {
            Ok(()) => self.metrics.published[i].inc(),
            Err(Refusal::Full { .. }) => self.metrics.refused_full[i].inc(),
            Err(Refusal::Unavailable(_)) => self.metrics.refused_unavailable[i].inc(),
        }
        result
    }

    async fn publish_parts(&self, signal: Signal, parts: Vec<(u32, Vec<u8>)>) -> Result<(), Refusal> {
        if parts.is_empty() {
            return Ok(());
        }
        if !self.nats.connected() {
            return Err(Refusal::Unavailable("the ingest buffer (NATS) is not reachable".into()));
        }
        if !self.state.fresh.load(Ordering::Relaxed) {
            return Err(Refusal::Unavailable("the ingest stream is not ready".into()));
        }
        if self.above_high_water() {
            return Err(full(format!(
                "the ingest stream is above {}% of its {} bytes: storage is behind; retry later",
                (self.nats.cfg.nats.high_water * 100.0).round(),
                self.nats.cfg.nats.max_bytes.0
            )));
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(full("this node has as many batches in flight to the ingest buffer as it may; retry later"));
        };
        let started = Instant::now();
        let sends = parts.into_iter().map(|(p, payload)| {
            let subject = self.nats.subject(signal, p);
            self.publish_one(subject, batch_id(signal, p, &payload), payload.into())
        });
        let results = join_all(sends).await;
        // Any part refused means the client retries the whole batch. The parts acknowledged
        // before are not stored twice: a part's id comes from its content, so the retry's
        // copy falls in JetStream's duplicate window (or the storage side's record).
        for r in results {
            r?;
        }
        self.metrics.latency[signal as usize].observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// One part: publish, and publish again with the same id when the acknowledgement was
    /// lost (JetStream's duplicate window drops the copy if the first one landed).
    async fn publish_one(&self, subject: String, id: String, payload: bytes::Bytes) -> Result<(), Refusal> {
        let mut last = String::new();
        for _attempt in 0..2 {
            let msg = PublishMessage::build().payload(payload.clone()).message_id(id.as_str());
            let ack = match self.nats.js.send_publish(subject.clone(), msg).await {
                Ok(f) => f.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let text = e.to_string();
                    match e.kind() {
                        PublishErrorKind::Other | PublishErrorKind::MaxPayloadExceeded if is_limit(&text) => {
                            return Err(full(format!("the ingest stream is full ({text}); retry later")));
                        }
                        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => last = text,
                        _ => return Err(Refusal::Unavailable(format!("the ingest buffer refused the batch: {text}"))),
                    }
                }
            }
            if !self.nats.connected() {
                break;
            }
        }
        Err(Refusal::Unavailable(format!("the ingest buffer did not confirm the batch: {last}")))
    }
}

/// The id of one part of a batch (`Nats-Msg-Id`): its signal, partition, and a hash and
/// length of its content. The same request sent again (a client's retry) gets the same ids,
/// so JetStream's duplicate window drops the parts it already holds.
pub fn batch_id(signal: Signal, partition: u32, payload: &[u8]) -> String {
    let h = signalbox_core::partition::stable_hash(payload);
    format!("{}.{partition}.{h:016x}{:x}", signal.name(), payload.len())
}

fn full(message: impl Into<String>) -> Refusal {
    Refusal::Full { message: message.into(), retry_after: RETRY_AFTER }
}

/// A JetStream error about a stream limit (bytes, messages, size).
fn is_limit(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("maximum") || t.contains("exceeded") || t.contains("insufficient resources")
}

/// Ensures the stream, then reads its state every [`REFRESH`] while the buffer lives.
async fn watch_stream(nats: Nats, buffer: std::sync::Weak<Buffer>) {
    let mut ensured = false;
    let mut last_error = String::new();
    loop {
        let Some(b) = buffer.upgrade() else { return };
        if !ensured {
            match nats.ensure_stream().await {
                Ok(()) => {
                    tracing::info!(stream = %nats.cfg.nats.stream, "the ingest stream is ready");
                    ensured = true;
                }
                // Logged when the reason changes, not every attempt.
                Err(e) if e != last_error => {
                    tracing::warn!(error = %e, "the ingest stream is not ready yet");
                    last_error = e;
                }
                Err(_) => {}
            }
        }
        if ensured {
            match nats.js.get_stream(&nats.cfg.nats.stream).await {
                Ok(mut s) => match s.info().await {
                    Ok(info) => {
                        b.state.bytes.store(info.state.bytes, Ordering::Relaxed);
                        b.state.messages.store(info.state.messages, Ordering::Relaxed);
                        b.state.fresh.store(true, Ordering::Relaxed);
                    }
                    Err(_) => b.state.fresh.store(false, Ordering::Relaxed),
                },
                Err(e) => {
                    b.state.fresh.store(false, Ordering::Relaxed);
                    if e.to_string().contains("not found") {
                        ensured = false;
                    }
                }
            }
        }
        drop(b);
        tokio::time::sleep(REFRESH).await;
    }
}

impl IngestBuffer for Buffer {
    fn spans(&self, spans: Vec<Span>) -> Published<'_> {
        Box::pin(async move {
            let n = self.nats.cfg.partitions;
            let parts = wire::split_spans(spans, n).into_iter().map(|(p, s)| (p, wire::encode_spans(&s))).collect();
            self.publish(Signal::Traces, parts).await
        })
    }

    fn logs(&self, records: Vec<LogRecord>) -> Published<'_> {
        Box::pin(async move {
            let n = self.nats.cfg.partitions;
            let parts = wire::split_logs(records, n).into_iter().map(|(p, r)| (p, wire::encode_logs(&r))).collect();
            self.publish(Signal::Logs, parts).await
        })
    }

    fn samples(&self, samples: Vec<(Labels, i64, f64)>) -> Published<'_> {
        Box::pin(async move {
            let n = self.nats.cfg.partitions;
            let parts =
                wire::split_samples(samples, n).into_iter().map(|(p, s)| (p, wire::encode_samples(&s))).collect();
            self.publish(Signal::Metrics, parts).await
        })
    }
}
