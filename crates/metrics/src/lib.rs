//! Signalbox's metrics engine, written for the job as Prometheus's is: samples arrive by
//! scrape, remote_write and OTLP, live in memory as compressed chunks, become durable
//! through a write-ahead log and persist as immutable blocks with an inverted label index;
//! PromQL reads them.
//!
//! # Layout
//! - [`config`]: the `[metrics]` config section and its checks.
//! - [`exposition`]: the Prometheus text and OpenMetrics formats scrape targets serve.
//! - [`metadata`]: type, help and unit per metric family, for the metadata API.
//! - [`promql`]: PromQL evaluation (Prometheus 2.42 semantics) over any
//!   [`storage::Queryable`], parsed by `promql-parser`.
//! - [`remote_write`]: Prometheus remote_write 1.0 requests (snappy protobuf) to samples.
//! - [`rules`]: recording and alerting rules (Prometheus rule files), alert state and
//!   notifications to Alertmanager and webhooks.
//! - [`scrape`]: pull collection: jobs, relabeling, one loop per target, target health.
//! - [`service`]: the handle the node and the API share: database, metadata, scrapes, push
//!   backpressure.
//! - [`storage`]: the [`storage::Queryable`] trait PromQL reads through, label matchers,
//!   the staleness marker.
//! - [`tsdb`]: the time-series database.
//!   - [`tsdb::chunk`]: a chunk of one series' samples: delta-of-delta timestamps and XOR
//!     floats in a bit stream (the Gorilla encoding), with an iterator.
//!   - [`tsdb::head`]: in-memory series with postings and an out-of-order window.

pub mod config;
pub mod exposition;
pub mod metadata;
pub mod promql;
pub mod remote_write;
pub mod rules;
pub mod scrape;
pub mod service;
pub mod storage;
pub mod tsdb;
