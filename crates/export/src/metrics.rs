//! Every metric an exporter reports on the node's `/metrics`, labelled `exporter="<name>"`.

use signalbox_core::metrics::{Counter, Registry};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why records were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// The in-memory hand-off from the stores was full (the exporter is behind on sealing).
    HandoffFull,
    /// The disk queue was at `max_queue_bytes` when a batch was sealed.
    QueueFull,
    /// The receiver refused the batch with a 4xx other than 429 (or a non-retryable gRPC
    /// status): sending it again would fail again.
    Rejected,
    /// A queued batch could not be read back (damaged on disk) or written.
    Disk,
}

/// One exporter's counters.
#[derive(Clone)]
pub struct ExportMetrics {
    pub queued_records: Counter,
    pub sent_records: Counter,
    pub sent_requests: Counter,
    pub failed_requests: Counter,
    pub retries: Counter,
    dropped: [Counter; 4],
    /// When the oldest queued batch was sealed (Unix ns; 0: the queue is empty).
    pub oldest_sealed_ns: Arc<AtomicU64>,
}

impl ExportMetrics {
    pub fn new(reg: &Registry, name: &str) -> ExportMetrics {
        let l = [("exporter", name)];
        let dropped = |reason: &str| {
            reg.counter(
                "signalbox_export_dropped_records_total",
                "Records an exporter dropped, by reason: handoff_full, queue_full, rejected (a 4xx from the receiver), disk.",
                &[("exporter", name), ("reason", reason)],
            )
        };
        let oldest_sealed_ns = Arc::new(AtomicU64::new(0));
        let o = oldest_sealed_ns.clone();
        reg.gauge_fn(
            "signalbox_export_lag_seconds",
            "Age of the oldest batch waiting in an exporter's queue (0 when it is empty).",
            &l,
            move || match o.load(Ordering::Relaxed) {
                0 => 0.0,
                t => signalbox_core::time::unix_nanos().saturating_sub(t) as f64 / 1e9,
            },
        );
        ExportMetrics {
            queued_records: reg.counter(
                "signalbox_export_queued_records_total",
                "Records an exporter wrote to its disk queue (from then on they survive a crash).",
                &l,
            ),
            sent_records: reg.counter(
                "signalbox_export_sent_records_total",
                "Records (spans, log records, samples) an exporter delivered.",
                &l,
            ),
            sent_requests: reg.counter(
                "signalbox_export_sent_requests_total",
                "Requests an exporter's receiver accepted.",
                &l,
            ),
            failed_requests: reg.counter(
                "signalbox_export_failed_requests_total",
                "Requests that failed (connection error, timeout, 5xx, 429, or a 4xx that drops the batch).",
                &l,
            ),
            retries: reg.counter(
                "signalbox_export_retries_total",
                "Requests an exporter sent again after a retryable failure.",
                &l,
            ),
            dropped: [dropped("handoff_full"), dropped("queue_full"), dropped("rejected"), dropped("disk")],
            oldest_sealed_ns,
        }
    }

    pub fn dropped(&self, why: Drop, n: u64) {
        let i = match why {
            Drop::HandoffFull => 0,
            Drop::QueueFull => 1,
            Drop::Rejected => 2,
            Drop::Disk => 3,
        };
        self.dropped[i].add(n);
    }
}
