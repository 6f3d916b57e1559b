//! The ingest buffer on NATS JetStream (`[ingest] buffer = "nats://..."`): receivers on any
//! node publish each decoded batch, split by partition, to a replicated stream and answer
//! their client once JetStream has acknowledged it; storage nodes consume the partitions
//! they own with durable consumers and acknowledge a message only once their write-ahead
//! log has it on disk. A batch delivered twice is stored once (message ids deduplicated by
//! JetStream's window on publish and by a persistent record on the storage side).
//!
//! # Layout
//! - [`config`]: the `[ingest]` and `[ingest.nats]` sections and their validation.
//! - [`wire`]: partitioning and the compact encodings of a batch part.
//! - [`publish`]: the connection, the stream, and the receivers' publisher
//!   ([`publish::Buffer`], an [`signalbox_api::buffer::IngestBuffer`]).
//! - [`consume`]: the storage side's consumers, following the owned partitions.
//! - [`applied`]: the persistent record of stored batch ids.

pub mod applied;
pub mod config;
pub mod consume;
pub mod publish;
pub mod wire;

pub use config::IngestConfig;
pub use publish::{Buffer, Nats};
