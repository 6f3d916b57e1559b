//! The log schema of the event store: the query language people type and its evaluation.
//! (The columns, blocks and queries of stored logs join here as the store is split into the
//! container both signals share and one module per schema.)
//!
//! # Layout
//! - [`lang`]: the log search language: parser, aggregations, errors with offsets.
//! - [`eval`]: filter evaluation against records and the words a match requires.
//! - [`logql`]: LogQL (Loki's language) as Grafana's Loki data source uses it: the parser.
//! - [`logql_eval`]: LogQL pipelines, log streams and metric queries over records.

pub mod eval;
pub mod lang;
pub mod logql;
pub mod logql_eval;
