//! The storage side: for every partition this node owns and every signal it stores, a
//! durable pull consumer (`signalbox-<signal>-<partition>`, filtered to that partition's
//! subject) moves batches from the stream into the local store.
//!
//! A message is acknowledged only after the store's write-ahead log has it on disk (the
//! span pipeline, the log store and the TSDB each resolve a write after their fsync) and
//! its id is in the consumer's [`Applied`] record; a message delivered again whose id is
//! recorded is acknowledged without being stored. Consumers start and stop as the owned set
//! changes; a stopping consumer finishes (stores and acknowledges) the batch in hand and
//! fetches nothing more before its partition is given up.

use crate::applied::Applied;
use crate::publish::Nats;
use crate::wire::{self, Signal};
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures_util::StreamExt;
use signalbox_core::metrics::{Counter, Registry};
use signalbox_core::partition::Owned;
use signalbox_core::shutdown::Shutdown;
use signalbox_events::logs::store::Logs;
use signalbox_events::spans::pipeline::{Traces, WriteError};
use signalbox_metrics::service::{MetricsService, PushError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most messages fetched at once by one consumer.
const FETCH: usize = 256;
/// How long one fetch waits for messages.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How long JetStream waits for an acknowledgement before delivering a message again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// The applied record is compacted after this many new entries.
const PRUNE_EVERY: usize = 2048;

/// The stores consumers write into (a signal without a store is not consumed here).
#[derive(Clone, Default)]
pub struct Stores {
    pub traces: Option<Traces>,
    pub logs: Option<Logs>,
    pub metrics: Option<Arc<MetricsService>>,
}

impl Stores {
    fn has(&self, s: Signal) -> bool {
        match s {
            Signal::Traces => self.traces.is_some(),
            Signal::Logs => self.logs.is_some(),
            Signal::Metrics => self.metrics.is_some(),
        }
    }
}

struct Ctx {
    nats: Nats,
    stores: Stores,
    dir: PathBuf,
    registry: Registry,
    stored: [Counter; 3],
    duplicates: [Counter; 3],
    undecodable: [Counter; 3],
}

/// Starts the consumers of the partitions in `owned` (and follows its changes) until
/// `shutdown`; the handle resolves once every consumer has stopped.
pub fn start(
    nats: Nats,
    stores: Stores,
    owned: Owned,
    dir: PathBuf,
    registry: &Registry,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let counter = |name: &'static str, help: &'static str| {
        Signal::ALL.map(|s| registry.counter(name, help, &[("signal", s.name())]))
    };
    let ctx = Arc::new(Ctx {
        nats,
        stores,
        dir,
        registry: registry.clone(),
        stored: counter(
            "signalbox_ingest_consumed_messages_total",
            "Batch parts moved from the ingest stream into this node's stores.",
        ),
        duplicates: counter(
            "signalbox_ingest_duplicates_skipped_total",
            "Batch parts delivered again after they were stored, acknowledged without storing.",
        ),
        undecodable: counter(
            "signalbox_ingest_undecodable_messages_total",
            "Batch parts that did not decode (dropped from the stream, logged).",
        ),
    });
    tokio::spawn(supervise(ctx, owned, shutdown))
}

type Running = BTreeMap<(Signal, u32), (watch::Sender<bool>, JoinHandle<()>)>;

async fn supervise(ctx: Arc<Ctx>, mut owned: Owned, mut shutdown: Shutdown) {
    let mut running: Running = BTreeMap::new();
    let mut follow = true;
    loop {
        let want: BTreeSet<u32> = (**owned.borrow_and_update()).clone();
        let gone: Vec<(Signal, u32)> = running.keys().filter(|(_, p)| !want.contains(p)).copied().collect();
        for key in gone {
            if let Some((stop, task)) = running.remove(&key) {
                let _ = stop.send(true);
                if tokio::time::timeout(ACK_WAIT, task).await.is_err() {
                    tracing::warn!(signal = key.0.name(), partition = key.1, "a consumer did not stop in time");
                }
                tracing::info!(signal = key.0.name(), partition = key.1, "stopped consuming a partition");
            }
        }
        for s in Signal::ALL.into_iter().filter(|s| ctx.stores.has(*s)) {
            for p in &want {
                running.entry((s, *p)).or_insert_with(|| {
                    let (tx, rx) = watch::channel(false);
                    (tx, tokio::spawn(consume(ctx.clone(), s, *p, rx)))
                });
            }
        }
        tokio::select! {
            changed = owned.changed(), if follow => {
                // The sender is gone (a single node's fixed set): keep the set, wait for shutdown.
                if changed.is_err() {
                    follow = false;
                }
            }
            _ = shutdown.wait() => break,
        }
    }
    for (stop, _) in running.values() {
        let _ = stop.send(true);
    }
    for (_, (_, task)) in running {
        let _ = tokio::time::timeout(ACK_WAIT, task).await;
    }
}

/// One partition of one signal.
async fn consume(ctx: Arc<Ctx>, signal: Signal, partition: u32, mut stop: watch::Receiver<bool>) {
    let name = format!("signalbox-{}-{partition}", signal.name());
    let path = ctx.dir.join(format!("{}-{partition}.applied", signal.name()));
    let applied = loop {
        match Applied::open(&path) {
            Ok(a) => break Arc::new(Mutex::new(a)),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the applied-batch record; retrying");
                if wait_or_stop(&mut stop, Duration::from_secs(5)).await {
                    return;
                }
            }
        }
    };
    let p = partition.to_string();
    let lag = ctx.registry.gauge(
        "signalbox_ingest_consumer_pending_messages",
        "Messages waiting in the ingest stream for this node's consumer of a partition.",
        &[("signal", signal.name()), ("partition", &p)],
    );
    let mut since_prune = 0usize;
    while !*stop.borrow() {
        let consumer = match consumer(&ctx.nats, signal, partition, &name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(consumer = %name, error = %e, "the ingest consumer is not ready; retrying");
                if wait_or_stop(&mut stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        while !*stop.borrow() {
            let msgs = match fetch(&consumer).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(consumer = %name, error = %e, "fetching from the ingest stream failed");
                    if wait_or_stop(&mut stop, Duration::from_millis(500)).await {
                        return;
                    }
                    break;
                }
            };
            if msgs.is_empty() {
                lag.set(0);
                continue;
            }
            if let Some(Ok(info)) = msgs.last().map(|m| m.info()) {
                lag.set(info.pending as i64);
            }
            let recorded = apply(&ctx, signal, &applied, &msgs).await;
            since_prune += recorded;
            if since_prune >= PRUNE_EVERY {
                since_prune = 0;
                prune(&consumer, &applied).await;
            }
        }
    }
}

/// Sleeps `d`; true if told to stop meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let _ = tokio::time::timeout(d, stop.changed()).await;
    *stop.borrow()
}

async fn consumer(nats: &Nats, signal: Signal, partition: u32, name: &str) -> Result<PullConsumer, String> {
    let stream = match nats.js.get_stream(&nats.cfg.nats.stream).await {
        Ok(s) => s,
        Err(_) => {
            nats.ensure_stream().await?;
            nats.js.get_stream(&nats.cfg.nats.stream).await.map_err(|e| e.to_string())?
        }
    };
    let cfg = pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: nats.subject(signal, partition),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: ACK_WAIT,
        max_ack_pending: (FETCH * 4) as i64,
        ..Default::default()
    };
    stream.get_or_create_consumer(name, cfg).await.map_err(|e| e.to_string())
}

async fn fetch(c: &PullConsumer) -> Result<Vec<async_nats::jetstream::Message>, String> {
    let mut batch = c.batch().max_messages(FETCH).expires(FETCH_WAIT).messages().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let deadline = Instant::now() + FETCH_WAIT + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, batch.next()).await {
            Ok(Some(Ok(m))) => out.push(m),
            Ok(Some(Err(e))) => {
                if out.is_empty() {
                    return Err(e.to_string());
                }
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    Ok(out)
}

/// What a fetched batch holds once decoded.
#[derive(Default)]
struct Pile {
    spans: Vec<signalbox_core::span::Span>,
    logs: Vec<signalbox_core::log::LogRecord>,
    samples: Vec<(signalbox_metrics::storage::Labels, i64, f64)>,
}

/// Stores the new messages of `msgs`, records their ids, acknowledges all of them.
/// Returns how many ids were recorded. On a store failure nothing is acknowledged (the
/// messages come again after a delay).
async fn apply(
    ctx: &Ctx,
    signal: Signal,
    applied: &Arc<Mutex<Applied>>,
    msgs: &[async_nats::jetstream::Message],
) -> usize {
    let i = signal as usize;
    let mut pile = Pile::default();
    let mut fresh: Vec<(u64, String)> = Vec::new();
    let mut settled: Vec<&async_nats::jetstream::Message> = Vec::new();
    let mut bad: Vec<&async_nats::jetstream::Message> = Vec::new();
    {
        let a = applied.lock().unwrap_or_else(|e| e.into_inner());
        for m in msgs {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| format!("seq-{seq}"));
            if a.contains(&id) || fresh.iter().any(|(_, f)| *f == id) {
                ctx.duplicates[i].inc();
                settled.push(m);
                continue;
            }
            let decoded = match signal {
                Signal::Traces => wire::decode_spans(&m.payload).map(|s| pile.spans.extend(s)),
                Signal::Logs => wire::decode_logs(&m.payload).map(|r| pile.logs.extend(r)),
                Signal::Metrics => wire::decode_samples(&m.payload).map(|s| pile.samples.extend(s)),
            };
            if let Err(e) = decoded {
                // It will never decode: keeping it would block nothing (other messages
                // pass) but redeliver forever; it is dropped and counted.
                tracing::error!(id = %id, error = %e.0, "dropping an undecodable ingest message");
                ctx.undecodable[i].inc();
                bad.push(m);
                continue;
            }
            fresh.push((seq, id));
            settled.push(m);
        }
    }
    for m in bad {
        let _ = m.ack_with(AckKind::Term).await;
    }
    if let Err(e) = store(ctx, signal, pile).await {
        tracing::warn!(signal = signal.name(), error = %e, "storing consumed batches failed; they will be delivered again");
        for m in msgs {
            let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
        return 0;
    }
    let n = fresh.len();
    let record = {
        let applied = applied.clone();
        tokio::task::spawn_blocking(move || applied.lock().unwrap_or_else(|e| e.into_inner()).record(&fresh)).await
    };
    match record {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            // Stored but not recorded: acknowledging now is still right (the batch is on
            // disk); only a redelivery could store it twice, and acknowledging prevents it.
            tracing::error!(error = %e, "cannot record applied ingest batches");
        }
        Err(e) => tracing::error!(error = %e, "recording applied ingest batches panicked"),
    }
    ctx.stored[i].add(n as u64);
    for m in settled {
        // A lost acknowledgement means a redelivery, which the record turns into an ack.
        let _ = m.ack().await;
    }
    n
}

/// Writes a pile into its store, retrying while the store is busy (bounded).
async fn store(ctx: &Ctx, signal: Signal, pile: Pile) -> Result<(), String> {
    let deadline = Instant::now() + ACK_WAIT / 2;
    let mut delay = Duration::from_millis(50);
    let busy = |what: String, delay: &mut Duration| -> Result<Duration, String> {
        if Instant::now() + *delay > deadline {
            return Err(what);
        }
        let d = *delay;
        *delay = (*delay * 2).min(Duration::from_secs(2));
        Ok(d)
    };
    match signal {
        Signal::Traces => {
            let (Some(t), false) = (&ctx.stores.traces, pile.spans.is_empty()) else { return Ok(()) };
            loop {
                match t.write(pile.spans.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(WriteError::Busy(_)) => {
                        tokio::time::sleep(busy("the trace pipeline stayed busy".into(), &mut delay)?).await
                    }
                    Err(WriteError::Failed(f)) => return Err(f.0),
                }
            }
        }
        Signal::Logs => {
            let (Some(l), false) = (&ctx.stores.logs, pile.logs.is_empty()) else { return Ok(()) };
            loop {
                match l.write(pile.logs.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(signalbox_core::log::LogWriteError::Busy { .. }) => {
                        tokio::time::sleep(busy("the log store stayed busy".into(), &mut delay)?).await
                    }
                    Err(signalbox_core::log::LogWriteError::Failed(m)) => return Err(m),
                }
            }
        }
        Signal::Metrics => {
            let (Some(m), false) = (&ctx.stores.metrics, pile.samples.is_empty()) else { return Ok(()) };
            loop {
                match m.push(pile.samples.clone()).await {
                    // Samples the TSDB refuses (too old, another value at a stored time)
                    // are refused for good, as they would be on a direct write.
                    Ok(_) | Err(PushError::Invalid(_)) => return Ok(()),
                    Err(PushError::Busy { .. }) => {
                        tokio::time::sleep(busy("the metrics store stayed busy".into(), &mut delay)?).await
                    }
                    Err(PushError::Failed(e)) => return Err(e),
                }
            }
        }
    }
}

/// Drops applied ids JetStream can no longer deliver (at or below the ack floor).
async fn prune(c: &PullConsumer, applied: &Arc<Mutex<Applied>>) {
    let Ok(info) = c.get_info().await else { return };
    let floor = info.ack_floor.stream_sequence;
    let applied = applied.clone();
    let _ = tokio::task::spawn_blocking(move || applied.lock().unwrap_or_else(|e| e.into_inner()).prune(floor)).await;
}
