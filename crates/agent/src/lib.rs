//! `signalbox agent`: follows log files and ships their records to a Signalbox node (or any
//! OTLP logs receiver) with no loss.
//!
//! Two workers share a disk buffer. The reader thread expands the sources' globs, follows
//! files across rotation (rename, copytruncate, deletion), groups stack traces into one
//! record, parses, filters and labels records, and seals them into gzip NDJSON batches that
//! it writes to the buffer durably; when the buffer is full it waits, so reading pauses and
//! nothing is dropped. The sender posts the oldest batch until the output acknowledges it,
//! with jittered exponential backoff and `Retry-After`, then stores the file positions the
//! batch reached in the checkpoint (write, fsync, rename) and removes the batch. After a crash
//! or restart, reading resumes after the newest buffered batch, and buffered batches are sent
//! again: delivery is at least once.
//!
//! # Layout
//! - [`config`]: the raw config as users write it, with a doc on every field.
//! - [`compile`]: validation into the runtime tables, every problem with its key path.
//! - [`tail`]: the reader: file discovery, rotation handling, lines into records.
//! - [`sink`]: records through parser and filters into the open batch, sealed into the buffer.
//! - [`position`]: file identity (device, inode, head and tail fingerprints) and positions.
//! - [`multiline`]: grouping lines into records, with the `java` and `python` presets.
//! - [`parse`]: JSON, logfmt and regex parsing, timestamps and trace ids.
//! - [`filter`]: keep and drop rules.
//! - [`record`]: the shipped record and its NDJSON line.
//! - [`batch`]: the open batch and gzip.
//! - [`spool`]: the disk buffer and the checkpoint, written durably.
//! - [`stop`]: the reader thread's stop signal, which wakes its waits at once.
//! - [`ship`]: the sender: HTTP delivery, answers, retries, acknowledgement.
//! - [`otlp`]: batches re-encoded as OTLP `ExportLogsServiceRequest`.
//! - [`metrics`]: every metric the agent reports and the [`Progress`] snapshot.
//! - [`server`]: the `/metrics` listener.
//! - [`host`]: host, container and process metrics (node_exporter, cAdvisor and `process_*`
//!   names), served on `/metrics` and pushed by remote_write through their own disk buffer.
//! - [`error`]: the crate's error type, [`AgentError`].

pub mod batch;
pub mod compile;
pub mod config;
pub mod error;
pub mod filter;
pub mod host;
pub mod metrics;
pub mod multiline;
pub mod otlp;
pub mod parse;
pub mod position;
pub mod record;
pub mod server;
pub mod ship;
pub mod sink;
pub mod spool;
pub mod stop;
pub mod tail;

pub use config::AgentConfig;
pub use error::AgentError;
pub use metrics::Progress;

use crate::compile::Compiled;
use crate::metrics::Stats;
use crate::spool::{Recovered, Spool};
use signalbox_core::metrics::Registry;
use signalbox_core::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;

/// A read-only view of the agent's progress, cheap to clone and poll.
#[derive(Clone)]
pub struct ProgressHandle(Stats);

impl ProgressHandle {
    /// The current counts.
    pub fn snapshot(&self) -> Progress {
        self.0.progress()
    }
}

/// An agent ready to run: config validated, data directory locked, state recovered.
pub struct Agent {
    cfg: Arc<Compiled>,
    spool: Arc<Spool>,
    recovered: Recovered,
    stats: Stats,
    host: Option<HostParts>,
    _lock: std::fs::File,
}

/// The host-metrics side: its buffer (when pushing), counters and newest collection.
struct HostParts {
    spool: Option<Arc<Spool>>,
    stats: host::push::HostStats,
    latest: host::run::Latest,
}

impl Agent {
    /// Validates `config`, locks its data directory and reads its checkpoint and buffer.
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        Agent::with_registry(config, Registry::new())
    }

    /// Like [`Agent::new`], registering the agent's metrics in `registry`.
    pub fn with_registry(config: AgentConfig, registry: Registry) -> Result<Agent, AgentError> {
        let cfg = compile::compile(&config, "").map_err(AgentError::Config)?;
        std::fs::create_dir_all(&cfg.data_dir).map_err(AgentError::io("create", &cfg.data_dir))?;
        let lock_path = cfg.data_dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(AgentError::io("open", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(AgentError::Locked(cfg.data_dir.clone()));
        }
        let (spool, recovered) = crate::spool::open(&cfg.data_dir, cfg.buffer_max_bytes)?;
        let host = match &cfg.host_metrics {
            None => None,
            Some(hm) => {
                let spool = match &hm.push_url {
                    Some(_) => Some(Arc::new(crate::spool::open_plain(
                        &cfg.data_dir.join("metrics-buffer"),
                        hm.buffer_max_bytes,
                    )?)),
                    None => None,
                };
                let stats = host::push::HostStats::new(&registry);
                if let Some(s) = &spool {
                    stats.buffered.set(s.usage().0 as i64);
                }
                let latest: host::run::Latest = Arc::default();
                let shown = latest.clone();
                registry.add_collector(move |out| {
                    if let Some(snap) = shown.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        snap.render(out);
                    }
                });
                Some(HostParts { spool, stats, latest })
            }
        };
        let stats = Stats::new(registry);
        let (batches, bytes) = spool.usage();
        stats.buffered_batches.set(batches as i64);
        stats.buffered_bytes.set(bytes as i64);
        Ok(Agent { cfg: Arc::new(cfg), spool: Arc::new(spool), recovered, stats, host, _lock: lock })
    }

    /// Progress counters, readable while the agent runs.
    pub fn progress(&self) -> ProgressHandle {
        ProgressHandle(self.stats.clone())
    }

    /// Runs until `shutdown`: reading stops, the open batch is buffered, and buffered batches
    /// may be delivered for up to `drain_timeout` (the rest is sent on the next start).
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), AgentError> {
        let Agent { cfg, spool, recovered, stats, host, _lock } = self;
        let mut tasks = Vec::new();
        // The followed files, for the host collector to find the processes writing them.
        let tailed = cfg
            .host_metrics
            .as_ref()
            .filter(|m| m.settings.log_processes && m.settings.enabled.contains("process") && !cfg.sources.is_empty())
            .map(|_| host::logproc::TailedFiles::default());
        if let Some(h) = host {
            tasks.push(tokio::spawn(host::run::run(
                cfg.clone(),
                h.spool.clone(),
                h.stats.clone(),
                h.latest,
                tailed.clone(),
                shutdown.clone(),
            )));
            if let (Some(spool), Some(url)) = (h.spool, cfg.host_metrics.as_ref().and_then(|m| m.push_url.clone())) {
                let pusher = host::push::Pusher::new(cfg.clone(), url, spool, h.stats);
                tasks.push(tokio::spawn(pusher.run(shutdown.clone())));
            }
        }
        if let Some(addr) = cfg.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Bind { addr: addr.to_string(), source })?;
            tracing::info!(%addr, "agent metrics listening");
            tasks.push(tokio::spawn(server::serve(listener, stats.registry.clone(), shutdown.clone())));
        }
        if let Some(every) = cfg.progress_interval {
            let stats = stats.clone();
            let mut sd = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => tracing::info!(progress = %stats.progress(), "agent progress"),
                        _ = sd.wait() => return,
                    }
                }
            }));
        }

        let stop = Arc::new(stop::StopSignal::new());
        let sink = sink::Sink::new(cfg.clone(), spool.clone(), stats.clone(), stop.clone());
        let mut reader = tail::Reader::new(sink, recovered.resume, recovered.first_start);
        if let Some(t) = tailed {
            reader = reader.publish_to(t);
        }
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let reader_thread = std::thread::Builder::new()
            .name("signalbox-agent-reader".into())
            .spawn(move || {
                reader.run();
                let _ = done_tx.send(());
            })
            .map_err(|e| AgentError::Task(format!("starting the reader: {e}")))?;

        let (deadline_tx, deadline_rx) = tokio::sync::watch::channel(None);
        let sender = ship::Sender::new(cfg.clone(), spool.clone(), stats.clone(), recovered.acked);
        let mut sender = tokio::spawn(sender.run(deadline_rx));

        let mut failure = None;
        let mut sender_done = false;
        tokio::select! {
            _ = shutdown.wait() => {}
            r = &mut done_rx => if r.is_err() { failure = Some("the reader stopped unexpectedly".to_owned()) },
            r = &mut sender => {
                sender_done = true;
                failure = Some(format!("the sender stopped unexpectedly: {r:?}"));
            }
        }
        stop.set();
        spool.wake_waiters();
        // The reader wakes at once and stops, after one fsync if it was sealing.
        let joined = tokio::task::spawn_blocking(move || reader_thread.join());
        match tokio::time::timeout(Duration::from_secs(30), joined).await {
            Ok(Ok(Ok(()))) => {}
            _ => failure = failure.or(Some("the reader did not stop cleanly".to_owned())),
        }
        let drain = cfg.drain_timeout;
        let _ = deadline_tx.send(Some(tokio::time::Instant::now() + drain));
        // An attempt in flight may outlast the deadline by its own timeout.
        if !sender_done && tokio::time::timeout(drain + cfg.output.timeout, &mut sender).await.is_err() {
            sender.abort();
        }
        for t in tasks {
            t.abort();
        }
        let p = stats.progress();
        tracing::info!(progress = %p, "agent stopped");
        match failure {
            Some(f) => Err(AgentError::Task(f)),
            None => Ok(()),
        }
    }
}

/// Runs the agent described by `config` until `shutdown`.
pub async fn run(config: AgentConfig, shutdown: Shutdown) -> Result<(), AgentError> {
    Agent::new(config)?.run(shutdown).await
}
