//! The trace pipeline: receivers → bounded queue → write-ahead log (group commit, then the
//! sender's acknowledgement) → tail sampler → store and dependency graph.
//!
//! Every hand-off is a bounded channel. When the store or the sampler falls behind, the
//! log writer waits, the ingest queue fills, and [`Traces::submit`] refuses with
//! [`Backpressure`], which receivers turn into their protocol's retryable answer. Nothing
//! is held in unbounded memory and nothing acknowledged is dropped silently.

use crate::container::wal;
use crate::spans::codec;
use crate::spans::deps::{Edge, Graph};
use crate::spans::query::{self, Search, TraceSummary};
use crate::spans::sampler::{Output, Sampler, SamplerConfig};
use crate::spans::store::{Dedup, SpanStore, StoreConfig};
use signalbox_core::ids::TraceId;
use signalbox_core::metrics::{Counter, Registry};
use signalbox_core::span::Span;
use signalbox_core::telemetry::{Refused, SpanSink};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    pub dir: PathBuf,
    /// Batches waiting for the log writer.
    pub queue_batches: usize,
    pub store: StoreConfig,
    pub sampler: SamplerConfig,
    /// How long the dependency graph keeps per-minute counts.
    pub graph_retention: Duration,
}

/// The queue is full: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the trace pipeline is busy; retry after {retry_after:?}")]
pub struct Backpressure {
    pub retry_after: Duration,
}

/// A write failed: the spans were not stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("spans could not be written: {0}")]
pub struct WriteFailed(pub String);

struct Job {
    spans: Vec<Span>,
    ack: Option<oneshot::Sender<Result<(), WriteFailed>>>,
    /// Released once everything queued before it has reached the store.
    barrier: Option<oneshot::Sender<()>>,
    /// Start a new log segment if everything in the current one is settled (sent when the
    /// store has sealed all it held, so an idle node keeps no log on disk).
    rotate: bool,
}

/// What flows from the log writer to the sampler.
enum Flow {
    /// Spans durable in WAL segment `.0`.
    Spans(u64, Vec<Span>),
    /// Released by the store task once everything before it is in the store.
    Barrier(oneshot::Sender<()>),
}

struct Metrics {
    received: Counter,
    refused: Counter,
    kept: [Counter; 5],
    dropped: Counter,
    spans_dropped: Counter,
}

/// The handle to the pipeline and its queries. Cheap to clone.
#[derive(Clone)]
pub struct Traces {
    tx: mpsc::Sender<Job>,
    pub store: Arc<SpanStore>,
    graph: Arc<Mutex<Graph>>,
    metrics: Arc<Metrics>,
    recovered: Arc<std::sync::atomic::AtomicBool>,
    tee: signalbox_core::export::TeeSlot,
}

const REASONS: [&str; 5] = ["error", "slow", "policy", "rate", "all"];

impl Traces {
    /// Opens the store, replays the write-ahead log, and starts the pipeline's threads and
    /// tasks. Must run inside a tokio runtime.
    pub fn start(cfg: PipelineSettings, registry: &Registry) -> std::io::Result<Self> {
        let wal_dir = cfg.dir.join("wal");
        std::fs::create_dir_all(&wal_dir)?;
        let ledger = wal::Ledger::new(&wal_dir);
        let store = Arc::new(SpanStore::open(cfg.store.clone(), ledger.clone())?);
        let now = signalbox_core::time::unix_nanos();
        let graph = Arc::new(Mutex::new(Graph::open(Some(cfg.dir.join("deps.jsonl")), cfg.graph_retention, now)));
        let metrics = Arc::new(Metrics {
            received: registry.counter(
                "signalbox_traces_spans_received_total",
                "Spans accepted into the trace pipeline (durable once counted).",
                &[],
            ),
            refused: registry.counter(
                "signalbox_traces_spans_refused_total",
                "Spans refused because the pipeline was full (the sender was told to retry).",
                &[],
            ),
            kept: REASONS.map(|r| {
                registry.counter(
                    "signalbox_traces_sampled_total",
                    "Traces decided by tail sampling, by decision and reason.",
                    &[("decision", "kept"), ("reason", r)],
                )
            }),
            dropped: registry.counter(
                "signalbox_traces_sampled_total",
                "Traces decided by tail sampling, by decision and reason.",
                &[("decision", "dropped"), ("reason", "rate")],
            ),
            spans_dropped: registry.counter(
                "signalbox_traces_spans_sampled_out_total",
                "Spans of traces dropped by tail sampling.",
                &[],
            ),
        });
        {
            let s = store.clone();
            registry.gauge_fn("signalbox_traces_spans_stored", "Spans in sealed blocks.", &[], move || {
                s.stats.spans_stored.load(std::sync::atomic::Ordering::Relaxed) as f64
            });
            let s = store.clone();
            registry.gauge_fn("signalbox_traces_disk_bytes", "Bytes of sealed trace blocks.", &[], move || {
                s.stats.file_bytes.load(std::sync::atomic::Ordering::Relaxed) as f64
            });
            let s = store.clone();
            registry.gauge_fn("signalbox_traces_head_spans", "Spans in memory, not yet sealed.", &[], move || {
                s.head_len() as f64
            });
            let l = ledger.clone();
            registry.gauge_fn(
                "signalbox_traces_wal_unsettled_spans",
                "Spans in the write-ahead log not yet sealed or sampled out.",
                &[],
                move || l.backlog().1 as f64,
            );
        }

        // Recovery: replay what the log still holds, minus spans already sealed.
        let existing = wal::segments(&wal_dir)?;
        let mut replay: Vec<(u64, Vec<Span>)> = Vec::new();
        {
            let mut dedup = Dedup::new(&store);
            for seg in &existing {
                let mut n = 0u64;
                let mut fresh = Vec::new();
                for (count, payload) in wal::read_segment(&wal_dir, *seg)? {
                    // A record that does not decode ends its segment, as a torn one does.
                    let Ok(batch) = codec::decode_batch(count, &payload) else { break };
                    for s in batch {
                        n += 1;
                        if dedup.stored(&s) {
                            continue;
                        }
                        fresh.push(s);
                    }
                }
                let already = n - fresh.len() as u64;
                ledger.add(*seg, n);
                if already > 0 {
                    ledger.settle(*seg, already);
                }
                if !fresh.is_empty() {
                    replay.push((*seg, fresh));
                }
            }
        }
        let replayed: usize = replay.iter().map(|(_, v)| v.len()).sum();
        if replayed > 0 {
            tracing::info!(spans = replayed, segments = existing.len(), "replaying the trace write-ahead log");
        }
        let writer = wal::Writer::create(&wal_dir, ledger.clone())?;

        let (tx, rx) = mpsc::channel::<Job>(cfg.queue_batches.max(1));
        let (to_sampler, from_wal) = mpsc::channel::<Flow>(64);
        // Replayed spans go first, in log order, then a barrier that marks recovery done.
        let recovered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (replay_done, replay_stored) = oneshot::channel();
        {
            let recovered = recovered.clone();
            tokio::spawn(async move {
                if replay_stored.await.is_ok() {
                    recovered.store(true, std::sync::atomic::Ordering::Release);
                    if replayed > 0 {
                        tracing::info!(spans = replayed, "trace write-ahead log replayed");
                    }
                }
            });
        }
        let tee = signalbox_core::export::TeeSlot::default();
        {
            let tee = tee.clone();
            std::thread::Builder::new()
                .name("trace-wal".into())
                .spawn(move || writer_thread(writer, rx, to_sampler, replay, replay_done, tee))?;
        }

        let (to_store, from_sampler) = mpsc::channel::<Output>(64);
        tokio::spawn(sampler_task(Sampler::new(cfg.sampler.clone()), from_wal, to_store, ledger, metrics.clone()));
        tokio::spawn(store_task(store.clone(), graph.clone(), from_sampler, tx.downgrade()));
        Ok(Traces { tx, store, graph, metrics, recovered, tee })
    }

    /// Where exporters get a copy of each write once it is durable in the write-ahead log,
    /// before tail sampling (set before ingest starts; spans replayed at start-up are not
    /// copied again).
    pub fn tee(&self) -> &signalbox_core::export::TeeSlot {
        &self.tee
    }

    /// True once the spans replayed from the write-ahead log at start-up are in the store
    /// (or in the tail sampler's buffer): until then queries may miss acknowledged spans.
    pub fn recovered(&self) -> bool {
        self.recovered.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until every span acknowledged before the call has reached the store (or the
    /// tail sampler's buffer), so queries see it. False if that takes more than `timeout`.
    pub async fn sync(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let job = Job { spans: Vec::new(), ack: None, barrier: Some(tx), rotate: false };
        tokio::time::timeout(timeout, async move { self.tx.send(job).await.is_ok() && rx.await.is_ok() })
            .await
            .unwrap_or(false)
    }

    /// Queues spans; the receiver resolves once they are durable. Refuses at once when the
    /// queue is full.
    pub fn submit(&self, spans: Vec<Span>) -> Result<oneshot::Receiver<Result<(), WriteFailed>>, Backpressure> {
        let n = spans.len() as u64;
        let (ack, rx) = oneshot::channel();
        match self.tx.try_send(Job { spans, ack: Some(ack), barrier: None, rotate: false }) {
            Ok(()) => Ok(rx),
            Err(_) => {
                self.metrics.refused.add(n);
                Err(Backpressure { retry_after: Duration::from_secs(1) })
            }
        }
    }

    /// Queues spans and waits until they are durable (with a bound on the wait).
    pub async fn write(&self, spans: Vec<Span>) -> Result<(), WriteError> {
        let n = spans.len() as u64;
        let rx = self.submit(spans).map_err(WriteError::Busy)?;
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(()))) => {
                self.metrics.received.add(n);
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(WriteError::Failed(e)),
            Ok(Err(_)) => Err(WriteError::Failed(WriteFailed("the log writer stopped".into()))),
            Err(_) => Err(WriteError::Busy(Backpressure { retry_after: Duration::from_secs(5) })),
        }
    }

    pub fn trace(&self, id: &TraceId) -> Vec<Span> {
        query::trace(&self.store, id)
    }

    pub fn search(&self, q: &Search) -> Vec<TraceSummary> {
        query::search(&self.store, q)
    }

    pub fn services(&self) -> Vec<String> {
        self.store.catalog().into_keys().collect()
    }

    pub fn operations(&self, service: &str) -> Vec<String> {
        let mut v: Vec<String> = self.store.catalog().remove(service).unwrap_or_default().into_iter().collect();
        v.sort();
        v
    }

    /// The operations of `service` with their span kinds (see
    /// [`crate::spans::store::SpanStore::operation_kinds`]).
    pub fn operation_kinds(&self, service: &str) -> std::collections::BTreeMap<String, u8> {
        self.store.operation_kinds(service)
    }

    /// Attribute keys of spans that started in `[start, end]` (at most `limit`).
    pub fn tag_keys(&self, start: u64, end: u64, limit: usize) -> Vec<String> {
        crate::spans::query::tag_keys(&self.store, start, end, limit)
    }

    /// Values of attribute `key` in spans that started in `[start, end]` (at most `limit`).
    pub fn tag_values(&self, key: &str, start: u64, end: u64, limit: usize) -> Vec<String> {
        crate::spans::query::tag_values(&self.store, key, start, end, limit)
    }

    pub fn dependencies(&self, start: u64, end: u64) -> Vec<Edge> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner()).edges(start, end)
    }

    /// Seals everything acknowledged so far into blocks (tests, shutdown).
    pub async fn flush(&self) {
        self.sync(Duration::from_secs(30)).await;
        let s = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || s.seal()).await;
        if self.store.head_len() == 0 {
            let _ = self.tx.try_send(Job { spans: Vec::new(), ack: None, barrier: None, rotate: true });
        }
    }
}

/// Why a write did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Busy(Backpressure),
    #[error(transparent)]
    Failed(WriteFailed),
}

/// The gateway's spans enter without waiting for an acknowledgement; a full queue drops
/// them (counted by the gateway).
impl SpanSink for Traces {
    fn offer(&self, spans: Vec<Span>) -> Result<(), Refused> {
        let n = spans.len() as u64;
        match self.tx.try_send(Job { spans, ack: None, barrier: None, rotate: false }) {
            Ok(()) => {
                self.metrics.received.add(n);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(Refused::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Refused::NoConsumer),
        }
    }
}

/// The most one group commit gathers before writing.
const GROUP_BYTES: usize = 16 * 1024 * 1024;

fn writer_thread(
    mut w: wal::Writer,
    mut rx: mpsc::Receiver<Job>,
    out: mpsc::Sender<Flow>,
    replay: Vec<(u64, Vec<Span>)>,
    replay_done: oneshot::Sender<()>,
    tee: signalbox_core::export::TeeSlot,
) {
    for (seg, spans) in replay {
        if out.blocking_send(Flow::Spans(seg, spans)).is_err() {
            return;
        }
    }
    if out.blocking_send(Flow::Barrier(replay_done)).is_err() {
        return;
    }
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut bytes = 0usize;
        while bytes < GROUP_BYTES && jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += j.spans.len() * 300;
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let rotate = jobs.iter().any(|j| j.rotate);
        // Each batch is encoded straight into the log's buffer (one copy less than
        // encoding it apart: a fifth of this thread's time was copying, perf 2026-12-02).
        let with_spans: Vec<&[Span]> =
            jobs.iter().filter(|j| !j.spans.is_empty()).map(|j| j.spans.as_slice()).collect();
        let result = if with_spans.is_empty() {
            Ok(0)
        } else {
            w.append_each(&with_spans, |b| b.len() as u64, |b, out| codec::encode_batch_into(b, out))
                .and_then(|seg| w.sync().map(|_| seg))
        };
        match result {
            Ok(seg) => {
                if let Some(tee) = tee.get() {
                    for j in jobs.iter().filter(|j| !j.spans.is_empty()) {
                        tee.spans(&j.spans);
                    }
                }
                for j in jobs {
                    if let Some(a) = j.ack {
                        let _ = a.send(Ok(()));
                    }
                    let sent = match j.barrier {
                        Some(b) => out.blocking_send(Flow::Barrier(b)),
                        None if j.spans.is_empty() => Ok(()),
                        None => out.blocking_send(Flow::Spans(seg, j.spans)),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                if rotate && let Err(e) = w.rotate_if_settled() {
                    tracing::warn!(error = %e, "could not start a new trace log segment");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "trace write-ahead log write failed");
                for j in jobs {
                    if let Some(a) = j.ack {
                        let _ = a.send(Err(WriteFailed(e.to_string())));
                    }
                    // A barrier behind a failed write is released: nothing more will arrive.
                    if let Some(b) = j.barrier {
                        let _ = out.blocking_send(Flow::Barrier(b));
                    }
                }
            }
        }
    }
}

async fn sampler_task(
    mut sampler: Sampler,
    mut rx: mpsc::Receiver<Flow>,
    tx: mpsc::Sender<Output>,
    ledger: Arc<wal::Ledger>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut out = Output::default();
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(Flow::Spans(seg, spans)) => sampler.add(seg, spans, &mut out),
                Some(Flow::Barrier(b)) => out.barriers.push(b),
                None => {
                    sampler.tick(true, &mut out);
                    let _ = tx.send(out).await;
                    return;
                }
            },
            _ = tick.tick() => sampler.tick(false, &mut out),
        }
        for (kept, reason) in &out.decisions {
            if *kept {
                let i = REASONS.iter().position(|r| *r == reason.as_str()).unwrap_or(3);
                metrics.kept[i].inc();
            } else {
                metrics.dropped.inc();
            }
        }
        if sampler.passthrough() {
            // No per-trace decision is made: count traces by their root spans.
            let roots = out.keep.iter().flat_map(|(_, v)| v.iter()).filter(|s| s.parent_span_id.is_none()).count();
            if roots > 0 {
                metrics.kept[4].add(roots as u64);
            }
        }
        for (seg, n) in out.drop.drain(..) {
            metrics.spans_dropped.add(n);
            ledger.settle(seg, n);
        }
        if (!out.keep.is_empty() || !out.barriers.is_empty()) && tx.send(out).await.is_err() {
            return;
        }
    }
}

async fn store_task(
    store: Arc<SpanStore>,
    graph: Arc<Mutex<Graph>>,
    mut rx: mpsc::Receiver<Output>,
    wal: mpsc::WeakSender<Job>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retention = tokio::time::interval(Duration::from_secs(60));
    loop {
        let seal = tokio::select! {
            out = rx.recv() => match out {
                Some(out) => {
                    let mut full = false;
                    {
                        let mut g = graph.lock().unwrap_or_else(|e| e.into_inner());
                        for (_, spans) in &out.keep {
                            for s in spans {
                                g.observe(s);
                            }
                        }
                    }
                    for (seg, spans) in out.keep {
                        full |= store.insert(seg, spans);
                    }
                    for b in out.barriers {
                        let _ = b.send(());
                    }
                    full
                }
                None => true,
            },
            _ = tick.tick() => {
                graph.lock().unwrap_or_else(|e| e.into_inner()).tick(signalbox_core::time::unix_nanos());
                store.due()
            }
            _ = retention.tick() => {
                let s = store.clone();
                let _ = tokio::task::spawn_blocking(move || s.enforce_retention(signalbox_core::time::unix_nanos())).await;
                false
            }
        };
        if seal {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.seal()).await {
                Ok(Err(e)) => tracing::error!(error = %e, "sealing a trace block failed; will retry"),
                Err(e) => tracing::error!(error = %e, "sealing task failed"),
                Ok(Ok(())) => {
                    if store.head_len() == 0
                        && let Some(w) = wal.upgrade()
                    {
                        let _ = w.try_send(Job { spans: Vec::new(), ack: None, barrier: None, rotate: true });
                    }
                }
            }
        }
        if rx.is_closed() && rx.is_empty() {
            return;
        }
    }
}
