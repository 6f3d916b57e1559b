//! Signalbox's metrics engine, written for the job as Prometheus's is: samples arrive by
//! scrape, remote_write and OTLP, live in memory as compressed chunks, become durable
//! through a write-ahead log and persist as immutable blocks with an inverted label index;
//! PromQL reads them.
//!
//! # Layout
//! - [`exposition`]: the Prometheus text and OpenMetrics formats scrape targets serve.
//! - [`promql`]: PromQL evaluation (Prometheus 2.42 semantics) over any
//!   [`storage::Queryable`], parsed by `promql-parser`.
//! - [`storage`]: the [`storage::Queryable`] trait PromQL reads through, label matchers,
//!   the staleness marker.
//! - [`tsdb`]: the time-series database.
//!   - [`tsdb::chunk`]: a chunk of one series' samples: delta-of-delta timestamps and XOR
//!     floats in a bit stream (the Gorilla encoding), with an iterator.
//!   - [`tsdb::head`]: in-memory series with postings and an out-of-order window.

pub mod exposition;
pub mod promql;
pub mod storage;
pub mod tsdb;
