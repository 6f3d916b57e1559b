//! One running exporter: the hand-off from the stores, the task that seals batches into the
//! durable queue, and the task that delivers the queue in order.
//!
//! ```text
//! store writer ──offer (never waits)──▶ hand-off ──batcher──▶ disk queue ──sender──▶ receiver
//!                  full: drop, count       (bounded)   full: refuse new, count   retry / drop 4xx
//! ```
//!
//! When the disk queue is full the batch being sealed is refused (refuse-new), not the
//! oldest queued one: what is in the queue is durable and promised to the receiver, and a
//! receiver that comes back gets a gap-free prefix rather than a history with holes cut at
//! random; the local store still holds what was refused, and
//! `signalbox_export_dropped_records_total{reason="queue_full"}` says how much.

use crate::config::{Exporter, Protocol, Signal};
use crate::encode::Batch;
use crate::metrics::{Drop, ExportMetrics};
use crate::send::{Outcome, Sender};
use serde::{Deserialize, Serialize};
use signalbox_core::metrics::Registry;
use signalbox_core::shutdown::Shutdown;
use signalbox_core::spool::Spool;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Batches the hand-off holds (each one store write).
const HANDOFF_BATCHES: usize = 1024;

/// What a queued batch carries besides its body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub signal: Signal,
    pub records: u32,
    /// When it was sealed (Unix ns): the lag metric's reference.
    pub sealed_ns: u64,
}

/// A started exporter.
pub struct Running {
    pub cfg: Arc<Exporter>,
    tx: mpsc::Sender<Batch>,
    /// Records handed over and not yet queued on disk.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    pub metrics: ExportMetrics,
    pub queue: Arc<Spool<Header>>,
}

impl Running {
    /// Opens the queue and starts the batcher and the sender. The batcher stops at
    /// `stop`, after queuing what it holds; the sender stops at `stop` too, leaving the
    /// queue for the next start.
    pub fn start(
        cfg: Exporter,
        registry: &Registry,
        stop: Shutdown,
    ) -> std::io::Result<(Arc<Running>, Vec<tokio::task::JoinHandle<()>>)> {
        let cfg = Arc::new(cfg);
        let queue = Arc::new(Spool::<Header>::open(&cfg.queue_dir, cfg.max_queue_bytes, |_| {})?);
        let (batches, bytes) = queue.usage();
        if batches > 0 {
            tracing::info!(exporter = %cfg.name, batches, bytes, "export queue found on disk; delivery resumes");
        }
        let metrics = ExportMetrics::new(registry, &cfg.name);
        let l = [("exporter", cfg.name.as_str())];
        let q = queue.clone();
        registry.gauge_fn("signalbox_export_queue_bytes", "Bytes in an exporter's disk queue.", &l, move || {
            q.usage().1 as f64
        });
        let q = queue.clone();
        registry.gauge_fn("signalbox_export_queue_batches", "Batches in an exporter's disk queue.", &l, move || {
            q.usage().0 as f64
        });
        let (tx, rx) = mpsc::channel(HANDOFF_BATCHES);
        let run = Arc::new(Running {
            max_pending: (cfg.batch_size * 8).max(100_000),
            cfg,
            tx,
            pending: Arc::new(AtomicUsize::new(0)),
            metrics,
            queue,
        });
        let tasks = vec![
            tokio::spawn(batcher(run.clone(), rx, stop.clone())),
            tokio::spawn(deliver(run.clone(), Sender::new(run.cfg.clone()), stop)),
        ];
        Ok((run, tasks))
    }

    pub fn wants(&self, s: Signal) -> bool {
        self.cfg.signals.contains(&s)
    }

    /// Hands `n` records over without waiting; `make` copies them only when there is room.
    pub fn offer(&self, n: usize, make: impl FnOnce() -> Batch) {
        if n == 0 {
            return;
        }
        if self.pending.fetch_add(n, Ordering::AcqRel) + n > self.max_pending {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            self.metrics.dropped(Drop::HandoffFull, n as u64);
            return;
        }
        if self.tx.try_send(make()).is_err() {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            self.metrics.dropped(Drop::HandoffFull, n as u64);
        }
    }

    fn encode(&self, batch: Batch) -> Vec<u8> {
        match self.cfg.protocol {
            Protocol::RemoteWrite { .. } => match batch {
                Batch::Samples(s) => crate::encode::remote_write(s),
                _ => Vec::new(),
            },
            Protocol::Loki { .. } => match batch {
                Batch::Logs(r) => crate::encode::loki(r),
                _ => Vec::new(),
            },
            Protocol::OtlpGrpc { .. } | Protocol::OtlpHttp { .. } => crate::encode::otlp(batch),
        }
    }
}

/// Records of one signal waiting to fill a batch.
struct Open {
    batch: Batch,
    since: Instant,
}

fn slot(s: Signal) -> usize {
    match s {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}

/// Appends `b` to `into` (same signal).
fn append(into: &mut Batch, b: Batch) {
    match (into, b) {
        (Batch::Spans(a), Batch::Spans(b)) => a.extend(b),
        (Batch::Logs(a), Batch::Logs(b)) => a.extend(b),
        (Batch::Samples(a), Batch::Samples(b)) => a.extend(b),
        _ => {}
    }
}

/// Takes the first `n` records off `b`.
fn split_front(b: &mut Batch, n: usize) -> Batch {
    fn take<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
        let rest = v.split_off(n.min(v.len()));
        std::mem::replace(v, rest)
    }
    match b {
        Batch::Spans(v) => Batch::Spans(take(v, n)),
        Batch::Logs(v) => Batch::Logs(take(v, n)),
        Batch::Samples(v) => Batch::Samples(take(v, n)),
    }
}

async fn batcher(run: Arc<Running>, mut rx: mpsc::Receiver<Batch>, mut stop: Shutdown) {
    let size = run.cfg.batch_size;
    let wait = run.cfg.batch_wait;
    let mut open: [Option<Open>; 3] = [None, None, None];
    loop {
        let due = open.iter().flatten().map(|o| o.since + wait).min();
        tokio::select! {
            b = rx.recv() => {
                let Some(b) = b else { break };
                let i = slot(b.signal());
                match &mut open[i] {
                    Some(o) => append(&mut o.batch, b),
                    None => open[i] = Some(Open { batch: b, since: Instant::now() }),
                }
                while let Some(o) = &mut open[i] && o.batch.len() >= size {
                    let full = split_front(&mut o.batch, size);
                    if o.batch.is_empty() {
                        open[i] = None;
                    }
                    seal(&run, full).await;
                }
            }
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                let now = Instant::now();
                for o in open.iter_mut() {
                    if o.as_ref().is_some_and(|o| o.since + wait <= now)
                        && let Some(o) = o.take()
                    {
                        seal(&run, o.batch).await;
                    }
                }
            }
            _ = stop.wait() => break,
        }
    }
    // Stopping: queue what the hand-off and the open batches hold.
    while let Ok(b) = rx.try_recv() {
        let i = slot(b.signal());
        match &mut open[i] {
            Some(o) => append(&mut o.batch, b),
            None => open[i] = Some(Open { batch: b, since: Instant::now() }),
        }
    }
    for o in open.iter_mut() {
        while let Some(x) = o {
            let part = split_front(&mut x.batch, size);
            if x.batch.is_empty() {
                *o = None;
            }
            seal(&run, part).await;
        }
    }
}

/// Encodes a batch and queues it durably (off the async threads: it fsyncs).
async fn seal(run: &Arc<Running>, batch: Batch) {
    let n = batch.len();
    if n == 0 {
        return;
    }
    let r = run.clone();
    let pushed = tokio::task::spawn_blocking(move || {
        let header =
            Header { signal: batch.signal(), records: n as u32, sealed_ns: signalbox_core::time::unix_nanos() };
        let payload = r.encode(batch);
        r.queue.try_push(&header, &payload)
    })
    .await;
    run.pending.fetch_sub(n, Ordering::AcqRel);
    match pushed {
        Ok(Ok(true)) => run.metrics.queued_records.add(n as u64),
        Ok(Ok(false)) => {
            tracing::warn!(exporter = %run.cfg.name, records = n, "export queue full; batch dropped");
            run.metrics.dropped(Drop::QueueFull, n as u64);
        }
        Ok(Err(e)) => {
            tracing::error!(exporter = %run.cfg.name, records = n, error = %e, "cannot write to the export queue; batch dropped");
            run.metrics.dropped(Drop::Disk, n as u64);
        }
        Err(e) => {
            tracing::error!(exporter = %run.cfg.name, records = n, error = %e, "export batch task failed");
            run.metrics.dropped(Drop::Disk, n as u64);
        }
    }
}

/// Jittered exponential backoff.
struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let exp = self.min.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt += 1;
        let d = exp.min(self.max);
        // Equal jitter: half fixed, half random, so many nodes' retries spread out.
        let half = d / 2;
        half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

async fn deliver(run: Arc<Running>, sender: Sender, mut stop: Shutdown) {
    let name = run.cfg.name.clone();
    let mut backoff = Backoff { min: run.cfg.min_backoff, max: run.cfg.max_backoff, attempt: 0 };
    loop {
        if stop.is_triggered() {
            return;
        }
        let q = run.queue.clone();
        let entry = match blocking(move || q.oldest()).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                run.metrics.oldest_sealed_ns.store(0, Ordering::Relaxed);
                tokio::select! {
                    _ = run.queue.ready.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait() => return,
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::error!(exporter = %name, error = %e, "a queued export batch is damaged; set aside");
                let q = run.queue.clone();
                let _ = blocking(move || q.set_aside_oldest()).await;
                run.metrics.dropped(Drop::Disk, 0);
                continue;
            }
            Err(e) => {
                tracing::error!(exporter = %name, error = %e, "cannot read the export queue");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait() => return,
                }
            }
        };
        run.metrics.oldest_sealed_ns.store(entry.header.sealed_ns.max(1), Ordering::Relaxed);
        let records = u64::from(entry.header.records);
        loop {
            // A stop does not wait for a slow receiver: the batch stays queued.
            let outcome = tokio::select! {
                o = sender.send(entry.header.signal, &entry.payload) => o,
                _ = stop.wait() => return,
            };
            match outcome {
                Outcome::Delivered => {
                    run.metrics.sent_records.add(records);
                    run.metrics.sent_requests.inc();
                    backoff.attempt = 0;
                    break;
                }
                Outcome::Rejected { error } => {
                    tracing::warn!(exporter = %name, records, error, "the receiver refused an export batch; dropped");
                    run.metrics.failed_requests.inc();
                    run.metrics.dropped(Drop::Rejected, records);
                    break;
                }
                Outcome::Retry { after, error } => {
                    run.metrics.failed_requests.inc();
                    let delay = match after {
                        Some(a) => a.min(run.cfg.max_backoff),
                        None => backoff.next(),
                    };
                    tracing::debug!(exporter = %name, error, ?delay, "export failed; retrying");
                    if backoff.attempt == 3 {
                        tracing::warn!(exporter = %name, error, "export keeps failing; retrying with backoff");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => run.metrics.retries.inc(),
                        _ = stop.wait() => return,
                    }
                }
            }
        }
        let q = run.queue.clone();
        let seq = entry.seq;
        if let Err(e) = blocking(move || q.remove(seq)).await {
            // Left in place it would go out again: better twice than lost, but say so.
            tracing::error!(exporter = %name, error = %e, "cannot remove a delivered batch from the export queue");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests;
