//! The ingest buffer seen from the receivers: when the node is configured with one
//! (`[ingest] buffer = "nats://..."`), every receiver hands its decoded batch to
//! [`IngestBuffer`] instead of the local stores and answers its client only once the
//! buffer has acknowledged the batch. The implementation (NATS JetStream) lives in the
//! `signalbox-ingest` crate; this trait keeps the API crate free of it.

use signalbox_core::log::LogRecord;
use signalbox_core::span::Span;
use signalbox_metrics::storage::Labels;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Why the buffer did not take a batch. Nothing of the batch is to be considered stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The buffer is near its limits (storage is behind): retry after the delay
    /// (429 / RESOURCE_EXHAUSTED).
    Full { message: String, retry_after: Duration },
    /// The buffer cannot be reached or did not confirm in time (503 / UNAVAILABLE).
    Unavailable(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Full { message, .. } | Refusal::Unavailable(message) => message,
        }
    }
}

pub type Published<'a> = Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send + 'a>>;

/// A durable, replicated hand-off between receivers and storage.
pub trait IngestBuffer: Send + Sync + 'static {
    /// Resolves once every span is durably in the buffer.
    fn spans(&self, spans: Vec<Span>) -> Published<'_>;
    /// Resolves once every record is durably in the buffer.
    fn logs(&self, records: Vec<LogRecord>) -> Published<'_>;
    /// Resolves once every sample is durably in the buffer.
    fn samples(&self, samples: Vec<(Labels, i64, f64)>) -> Published<'_>;
}
