//! How the stores hand what they have made durable to the node's exporters (remote_write,
//! OTLP, Loki push out), without knowing about them.
//!
//! Each store calls its [`Tee`] right after a write is durable in its own log, on its writer
//! path, so an implementation must return at once: copy what it wants into a bounded queue
//! and, when that is full, drop and count. It never blocks and never fails the write.

use crate::log::LogRecord;
use crate::span::Span;
use std::sync::{Arc, OnceLock};

/// A sample as the metrics store keeps it: sorted labels (with `__name__`), Unix
/// milliseconds, value.
pub type Sample = (Vec<(String, String)>, i64, f64);

/// Where stored spans, log records and samples are copied for export.
pub trait Tee: Send + Sync + 'static {
    /// Spans just made durable by the trace store (before tail sampling).
    fn spans(&self, spans: &[Span]);
    /// Log records just made durable by the log store.
    fn logs(&self, records: &[LogRecord]);
    /// Samples just appended by the metrics store.
    fn samples(&self, samples: &[Sample]);
}

/// A store's place for its tee: set once at start-up, before ingest begins, and read on
/// every write (one atomic load when nothing is set).
#[derive(Clone, Default)]
pub struct TeeSlot(Arc<OnceLock<Arc<dyn Tee>>>);

impl TeeSlot {
    /// Sets the tee; false if one was set already.
    pub fn set(&self, tee: Arc<dyn Tee>) -> bool {
        self.0.set(tee).is_ok()
    }

    pub fn get(&self) -> Option<&Arc<dyn Tee>> {
        self.0.get()
    }
}
