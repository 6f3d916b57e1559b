//! Signalbox's event store: one container shared by two signal schemas, spans and log
//! records. Both are events with a time, a service, attributes and a body, and both need
//! cheap durable appends, compression, bloom filters for high-cardinality ids and words,
//! and pruning by time; the container does those things without knowing what a record is,
//! and each schema describes its records and columns and answers its own queries. The two
//! are joined by static dispatch: a schema calls the container's generic code, nothing is
//! looked up through `dyn` on a hot path.
//!
//! # Layout
//! - [`config`]: the `[traces]` and `[logs]` config sections, their checks and the
//!   settings they yield.
//! - [`container`]: what both schemas share: the write-ahead log, encoding primitives,
//!   bloom filters and hashing (see its own layout list).
//! - [`spans`]: the span schema: codec, blocks, sampler, store, queries, dependency graph
//!   and the ingest pipeline.
//! - [`logs`]: the log schema: codec, blocks, store, the search language and LogQL.

pub mod config;
pub mod container;
pub mod logs;
pub mod spans;
