//! Every metric the agent reports, defined in one place, and the [`Progress`] snapshot built
//! from them. The same values are served on `/metrics` in the Prometheus text format.

use serde::Serialize;
use signalbox_core::metrics::{Counter, Gauge, Registry};
use std::fmt;
use std::sync::{Arc, Mutex};

/// The agent's counters and gauges. Cloning shares them.
#[derive(Clone)]
pub struct Stats {
    pub registry: Registry,
    pub files_followed: Gauge,
    pub lines_read: Counter,
    pub bytes_read: Counter,
    pub records_read: Counter,
    pub records_filtered: Counter,
    pub parse_errors: Counter,
    pub timestamp_errors: Counter,
    pub records_shipped: Counter,
    pub batches_shipped: Counter,
    pub records_invalid: Counter,
    pub records_rejected: Counter,
    pub send_failures: Counter,
    pub rotations: Counter,
    pub truncations: Counter,
    pub corrupt_batches: Counter,
    pub buffered_batches: Gauge,
    pub buffered_bytes: Gauge,
    pub lag_bytes: Gauge,
    pub reading_paused: Gauge,
    /// When the oldest unacknowledged batch was sealed (Unix ns; 0: none).
    pub oldest_sealed_ns: Gauge,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Stats {
    /// Registers every series in `registry`.
    pub fn new(registry: Registry) -> Stats {
        let r = &registry;
        let c = |name, help| r.counter(name, help, &[]);
        let g = |name, help| r.gauge(name, help, &[]);
        let oldest_sealed_ns = Gauge::default();
        let oldest = oldest_sealed_ns.clone();
        r.gauge_fn(
            "signalbox_agent_delivery_lag_seconds",
            "Age of the oldest batch not yet acknowledged (0 when all are).",
            &[],
            move || delivery_lag(oldest.get()).as_secs_f64(),
        );
        Stats {
            oldest_sealed_ns,
            files_followed: g("signalbox_agent_files_followed", "Files currently open and followed."),
            lines_read: c("signalbox_agent_lines_read_total", "Lines read from files."),
            bytes_read: c("signalbox_agent_bytes_read_total", "Bytes of lines read from files."),
            records_read: c("signalbox_agent_records_read_total", "Records formed from lines (before filters)."),
            records_filtered: c("signalbox_agent_records_filtered_total", "Records dropped by filter rules."),
            parse_errors: c(
                "signalbox_agent_parse_errors_total",
                "Records that did not match their parser (kept whole).",
            ),
            timestamp_errors: c(
                "signalbox_agent_timestamp_errors_total",
                "Timestamp fields that did not match their format (the read time was used).",
            ),
            records_shipped: c("signalbox_agent_records_shipped_total", "Records acknowledged by the output."),
            batches_shipped: c("signalbox_agent_batches_shipped_total", "Batches acknowledged by the output."),
            records_invalid: c(
                "signalbox_agent_records_invalid_total",
                "Records the output refused as invalid by naming them (logged, then taken out of their batch).",
            ),
            records_rejected: c(
                "signalbox_agent_records_rejected_total",
                "Records an OTLP receiver reported as rejected in a partial success.",
            ),
            send_failures: c("signalbox_agent_send_failures_total", "Failed delivery attempts (each is retried)."),
            rotations: c("signalbox_agent_rotations_total", "Followed files seen renamed, or leaving the globs."),
            truncations: c("signalbox_agent_truncations_total", "Files seen truncated (copytruncate) while followed."),
            corrupt_batches: c(
                "signalbox_agent_corrupt_batches_total",
                "Buffered batches found damaged on disk and set aside (.corrupt files in the buffer).",
            ),
            buffered_batches: g("signalbox_agent_buffered_batches", "Sealed batches on disk not yet acknowledged."),
            buffered_bytes: g(
                "signalbox_agent_buffered_bytes",
                "Bytes of sealed batches on disk not yet acknowledged.",
            ),
            lag_bytes: g("signalbox_agent_lag_bytes", "Bytes written to followed files and not read yet."),
            reading_paused: g("signalbox_agent_reading_paused", "1 while reading waits for room in the disk buffer."),
            last_error: Arc::new(Mutex::new(None)),
            registry,
        }
    }

    /// Records the latest delivery or file error for the progress line.
    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// The current values.
    pub fn progress(&self) -> Progress {
        let u = |c: &Counter| c.get();
        let g = |g: &Gauge| g.get().max(0) as u64;
        Progress {
            files_followed: g(&self.files_followed),
            lines_read: u(&self.lines_read),
            records_read: u(&self.records_read),
            records_filtered: u(&self.records_filtered),
            records_shipped: u(&self.records_shipped),
            records_invalid: u(&self.records_invalid),
            batches_shipped: u(&self.batches_shipped),
            buffered_batches: g(&self.buffered_batches),
            buffered_bytes: g(&self.buffered_bytes),
            lag_bytes: g(&self.lag_bytes),
            send_failures: u(&self.send_failures),
            rotations: u(&self.rotations),
            truncations: u(&self.truncations),
            reading_paused: self.reading_paused.get() > 0,
            delivery_lag_ms: delivery_lag(self.oldest_sealed_ns.get()).as_millis() as u64,
            last_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

fn delivery_lag(sealed_ns: i64) -> std::time::Duration {
    if sealed_ns <= 0 {
        return std::time::Duration::ZERO;
    }
    let now = signalbox_core::time::unix_nanos();
    std::time::Duration::from_nanos(now.saturating_sub(sealed_ns as u64))
}

/// What the agent has done so far, for the CLI to print.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Files open and followed now.
    pub files_followed: u64,
    /// Lines read since start.
    pub lines_read: u64,
    /// Records formed from those lines (a stack trace is one record).
    pub records_read: u64,
    /// Records dropped by filters.
    pub records_filtered: u64,
    /// Records the output acknowledged.
    pub records_shipped: u64,
    /// Records the output refused as invalid (logged and taken out of their batch).
    pub records_invalid: u64,
    /// Batches the output acknowledged.
    pub batches_shipped: u64,
    /// Batches on disk waiting for acknowledgement.
    pub buffered_batches: u64,
    /// Their size in bytes.
    pub buffered_bytes: u64,
    /// Bytes in followed files not read yet.
    pub lag_bytes: u64,
    /// Failed delivery attempts (all retried).
    pub send_failures: u64,
    /// Followed files seen renamed or deleted.
    pub rotations: u64,
    /// Followed files seen truncated in place.
    pub truncations: u64,
    /// Reading waits because the disk buffer is full.
    pub reading_paused: bool,
    /// Age of the oldest batch not yet acknowledged, in milliseconds (0 when all are).
    pub delivery_lag_ms: u64,
    /// The latest delivery error, cleared by the next success.
    pub last_error: Option<String>,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "files {} | lines read {} | records {} (filtered {}) | shipped {} in {} batches | buffered {} batches, {} bytes | lag {} bytes, {} ms",
            self.files_followed,
            self.lines_read,
            self.records_read,
            self.records_filtered,
            self.records_shipped,
            self.batches_shipped,
            self.buffered_batches,
            self.buffered_bytes,
            self.lag_bytes,
            self.delivery_lag_ms
        )?;
        if self.reading_paused {
            f.write_str(" | reading paused: buffer full")?;
        }
        if self.send_failures > 0 {
            write!(f, " | failed sends {}", self.send_failures)?;
        }
        if let Some(e) = &self.last_error {
            write!(f, " | last error: {e}")?;
        }
        Ok(())
    }
}
