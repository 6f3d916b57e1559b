//! The log schema of the event store: records in blocks of columns on the shared container
//! ([`crate::container`]), the query language people type and LogQL, and their evaluation.
//!
//! # Layout
//! - [`codec`]: the binary form of records (write-ahead log, block columns).
//! - [`block`]: sealed blocks: pages of compressed columns (frequent attributes in their
//!   own), each page with its time range and bloom of words and values.
//! - [`page`]: one page read column by column as a filter asks; whole records only for
//!   the rows returned.
//! - [`lang`]: the log search language: parser, aggregations, errors with offsets.
//! - [`eval`]: filter evaluation against records and the words a match requires.
//! - [`store`]: the log store: write-ahead log, head, sealing, retention, search, live tail.
//! - [`logql`]: LogQL (Loki's language) as Grafana's Loki data source uses it: the parser.
//! - [`logql_eval`]: LogQL pipelines, log streams and metric queries over records.

pub mod block;
pub mod codec;
pub mod eval;
pub mod lang;
pub mod logql;
pub mod logql_eval;
pub mod page;
pub mod store;
