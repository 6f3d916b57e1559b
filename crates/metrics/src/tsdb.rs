//! The time-series database, organised as Prometheus's: recent samples in an in-memory
//! head of compressed chunks made durable by a write-ahead log, older ones in immutable
//! blocks with a symbol table and postings, compacted into larger blocks and deleted by
//! retention. [`Tsdb`] ties them together; PromQL reads it through
//! [`crate::storage::Queryable`].
//!
//! # Layout
//! - [`block`]: immutable persisted blocks (symbol table, series, chunks, postings, meta).
//! - [`chunk`]: one series' samples, compressed.
//! - [`db`]: [`Tsdb`], the durable database: head + WAL + blocks, compaction, retention.
//! - [`head`]: the in-memory series, their chunks, out-of-order buffers and postings.
//! - [`postings`]: label matchers resolved to series ids through an inverted index.
//! - [`wal`]: the write-ahead log (series and sample records, group commit, checkpoints).
//! - `encoding`: varints and a bounds-checked reader the WAL and blocks share.

pub mod block;
pub mod chunk;
pub mod db;
mod encoding;
pub mod head;
pub mod postings;
pub mod wal;

pub use db::{AppendOutcome, MaintainReport, OpenReport, Sample, Tsdb, TsdbError, TsdbOptions, TsdbStats};
