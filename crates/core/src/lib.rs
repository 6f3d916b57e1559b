//! The bottom layer of Signalbox: the data model every component shares and the small traits
//! through which components talk without importing each other.
//!
//! A component crate (`gateway`, later `control`, `events`, `metrics`) depends only on this
//! crate; the `signalbox` binary wires concrete implementations of these traits together.
//!
//! # Layout
//! - [`config`]: duration and size types for config files, and validation problems.
//! - [`conn_limit`]: connection caps, total and per client address, for every listener.
//! - [`ids`]: trace and span identifiers (W3C sizes), hex encoding, random generation.
//! - [`span`]: the [`span::Span`] model shared by the gateway, receivers and the trace store.
//! - [`telemetry`]: [`telemetry::SpanSink`], the bounded hand-off for spans leaving a hot path.
//! - [`discovery`]: [`discovery::EndpointSource`], how the gateway learns service endpoints.
//! - [`log`]: the [`log::LogRecord`] model shared by log receivers and the log store.
//! - [`ownership`]: which live node runs work that must run once in a cluster (health
//!   checks, scrape targets, rule groups): rendezvous hashing over the members.
//! - [`partition`]: how a multi-node deployment splits traces, log streams and series into
//!   partitions, the same on every node.
//! - [`metrics`]: the node's own Prometheus-style counters, gauges and histograms.
//! - [`shutdown`]: a cloneable shutdown signal with a drain deadline.
//! - [`spool`]: a bounded on-disk queue of checksummed batches that survives kill -9 (the
//!   agent's buffer, the node's export queues).
//! - [`export`]: [`export::Tee`], how the stores hand what they made durable to exporters.
//! - [`time`]: wall-clock helpers in Unix nanoseconds.
//! - [`traffic`]: traffic policies (weights, pins, stickiness, mirroring by version) as
//!   stored in central configuration and applied by the gateway.
//! - [`views`]: read-only views components offer to the API layer.

pub mod config;
pub mod conn_limit;
pub mod discovery;
pub mod export;
pub mod ids;
pub mod log;
pub mod metrics;
pub mod ownership;
pub mod partition;
pub mod shutdown;
pub mod span;
pub mod spool;
pub mod telemetry;
pub mod time;
pub mod traffic;
pub mod views;
