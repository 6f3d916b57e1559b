//! Export for users who already run clustered backends: what the node stored goes on to
//! Prometheus remote_write receivers, OTLP collectors and Loki, each exporter through its
//! own durable queue, with retries.
//!
//! The stores call [`Exporters`] (a [`signalbox_core::export::Tee`]) right after a write is
//! durable locally; the hand-off never waits, so exporting never slows or fails ingest.
//! Each exporter seals batches into a disk queue ([`signalbox_core::spool`]) and a sender
//! delivers them in order, retrying what may succeed later and dropping (and counting) what
//! the receiver refuses for good. See docs/export.md.
//!
//! # Layout
//! - [`config`]: the `[export]` section and its checks.
//! - [`encode`]: batches in each receiver's wire format (remote_write, OTLP, Loki JSON).
//! - [`exporter`]: one exporter's hand-off, batcher, queue and delivery loop.
//! - [`send`]: one request and what its answer means (retry, drop).
//! - [`metrics`]: the per-exporter metrics on `/metrics`.

pub mod config;
pub mod encode;
pub mod exporter;
pub mod metrics;
pub mod send;

use crate::config::Signal;
use crate::encode::Batch;
use signalbox_core::export::{Sample, Tee};
use signalbox_core::log::LogRecord;
use signalbox_core::metrics::Registry;
use signalbox_core::shutdown::Shutdown;
use signalbox_core::span::Span;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the exporters could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("exporter `{name}`: cannot open its queue in {}: {source}", .dir.display())]
    Queue {
        name: String,
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Every configured exporter, running.
pub struct Exporters {
    running: Vec<Arc<exporter::Running>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Exporters {
    /// Opens each exporter's queue and starts it. Must run inside a Tokio runtime. The
    /// exporters stop at `stop`: trigger it after the stores wrote their last records.
    pub fn start(cfgs: Vec<config::Exporter>, registry: &Registry, stop: Shutdown) -> Result<Exporters, ExportError> {
        let mut running = Vec::new();
        let mut tasks = Vec::new();
        for c in cfgs {
            let (name, dir) = (c.name.clone(), c.queue_dir.clone());
            let (r, t) = exporter::Running::start(c, registry, stop.clone()).map_err(|source| ExportError::Queue {
                name,
                dir,
                source,
            })?;
            running.push(r);
            tasks.extend(t);
        }
        Ok(Exporters { running, tasks: Mutex::new(tasks) })
    }

    /// Whether some exporter sends `signal`.
    pub fn wants(&self, signal: Signal) -> bool {
        self.running.iter().any(|r| r.wants(signal))
    }

    /// Waits (up to `timeout`) for the exporters to queue what they hold, after `stop`.
    pub async fn join(&self, timeout: Duration) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("exporters did not stop within {timeout:?}");
        }
    }
}

impl Tee for Exporters {
    fn spans(&self, spans: &[Span]) {
        for r in self.running.iter().filter(|r| r.wants(Signal::Traces)) {
            r.offer(spans.len(), || Batch::Spans(spans.to_vec()));
        }
    }

    fn logs(&self, records: &[LogRecord]) {
        for r in self.running.iter().filter(|r| r.wants(Signal::Logs)) {
            r.offer(records.len(), || Batch::Logs(records.to_vec()));
        }
    }

    fn samples(&self, samples: &[Sample]) {
        for r in self.running.iter().filter(|r| r.wants(Signal::Metrics)) {
            r.offer(samples.len(), || Batch::Samples(samples.to_vec()));
        }
    }
}
