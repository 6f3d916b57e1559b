//! The time-series database. Built up in stages (issue 10): chunks first; the head with
//! out-of-order windows, the write-ahead log with checkpoints, blocks with postings and a
//! symbol table, compaction and retention follow.
//!
//! # Layout
//! - [`block`]: immutable persisted blocks (symbol table, series, chunks, postings, meta).
//! - [`chunk`]: one series' samples, compressed.
//! - [`db`]: [`Tsdb`], the durable database: head + WAL + blocks, compaction, retention.
//! - [`head`]: the in-memory series, their chunks, out-of-order buffers and postings.
//! - [`postings`]: label matchers resolved to series ids through an inverted index.
//! - [`wal`]: the write-ahead log (series and sample records, group commit, checkpoints).

pub mod block;
pub mod chunk;
pub mod db;
mod encoding;
pub mod head;
pub mod postings;
pub mod wal;

pub use db::{AppendOutcome, Tsdb, TsdbError, TsdbOptions, TsdbStats};
