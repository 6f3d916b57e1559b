//! How spans leave a hot path: a bounded, non-blocking hand-off.
//!
//! The gateway hands over finished spans in batches (each worker thread buffers its own and
//! flushes every few milliseconds, so the hand-off costs one queue operation per batch, not
//! per span). An implementation must never block or allocate without bound: when its queue
//! is full it refuses the batch and the caller counts the drop. `signalbox serve` plugs the trace store in here; until a consumer
//! exists, [`DroppingSink`] counts what it discards.

use crate::metrics::Counter;
use crate::span::Span;
use tokio::sync::mpsc;

/// Why a span was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("span queue is full")]
    Full,
    #[error("no span consumer is configured")]
    NoConsumer,
}

/// A bounded destination for finished spans.
pub trait SpanSink: Send + Sync + 'static {
    /// Hands `spans` over without waiting.
    fn offer(&self, spans: Vec<Span>) -> Result<(), Refused>;
}

/// A sink that accepts nothing: used when no trace store or exporter is configured.
#[derive(Default)]
pub struct DroppingSink;

impl SpanSink for DroppingSink {
    fn offer(&self, _spans: Vec<Span>) -> Result<(), Refused> {
        Err(Refused::NoConsumer)
    }
}

/// A sink backed by a bounded tokio channel of batches; the receiving half belongs to the
/// consumer.
pub struct ChannelSink {
    tx: mpsc::Sender<Vec<Span>>,
    accepted: Counter,
}

impl ChannelSink {
    /// A sink with room for `capacity` batches, and the receiver its consumer drains.
    pub fn new(capacity: usize, accepted: Counter) -> (Self, mpsc::Receiver<Vec<Span>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ChannelSink { tx, accepted }, rx)
    }
}

impl SpanSink for ChannelSink {
    fn offer(&self, spans: Vec<Span>) -> Result<(), Refused> {
        let n = spans.len() as u64;
        match self.tx.try_send(spans) {
            Ok(()) => {
                self.accepted.add(n);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(Refused::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Refused::NoConsumer),
        }
    }
}
