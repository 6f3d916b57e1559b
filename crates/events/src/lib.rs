//! Signalbox's event store, for spans now and log records later (they share the shape: a
//! time, a service, attributes, a body, and the need for cheap appends, compression, bloom
//! filters for high-cardinality ids, and pruning by time).
//!
//! Data flows one way: [`pipeline::Traces::submit`] takes decoded spans into a bounded
//! queue; the write-ahead log ([`wal`]) makes them durable before the sender is answered;
//! tail sampling ([`sampler`]) keeps or drops whole traces; the store ([`store`]) holds new
//! spans in memory and seals them into compressed columnar blocks ([`block`]) in hourly
//! partitions; queries ([`query`]) read both; the dependency graph ([`deps`]) is counted
//! as spans pass.
//!
//! # Layout
//! - [`config`]: the `[traces]` config section, its checks and the settings it yields.
//! - [`container`]: what both signals' stores are built from (a WAL of opaque batches...).
//! - [`codec`]: the binary span encoding shared by the log and the blocks.
//! - [`wal`]: segmented write-ahead log with group commit and a settlement ledger.
//! - [`sampler`]: per-trace tail sampling (errors, slow spans, policies, rate).
//! - [`store`]: head, sealing, partitions, retention, recovery deduplication.
//! - [`block`]: the block file format (columns, zstd, bloom filters).
//! - [`bloom`]: bloom filters.
//! - [`hash`]: the fast hash behind the filters and the in-memory maps.
//! - [`logs`]: the log schema: the search language and its evaluation.
//! - [`query`]: trace by id and search.
//! - [`deps`]: the service dependency graph.
//! - [`pipeline`]: the threads and tasks that connect all of it, and the [`pipeline::Traces`]
//!   handle receivers and query APIs use.

pub mod block;
pub mod bloom;
pub mod codec;
pub mod config;
pub mod container;
pub mod deps;
pub mod hash;
pub mod logs;
pub mod pipeline;
pub mod query;
pub mod sampler;
pub mod store;
pub mod wal;
