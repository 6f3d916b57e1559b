//! The log schema of the event store: the query language people type and its evaluation.
//! (The columns, blocks and queries of stored logs join here as the store is split into the
//! container both signals share and one module per schema.)
//!
//! # Layout
//! - [`lang`]: the log search language: parser, aggregations, errors with offsets.
//! - [`eval`]: filter evaluation against records and the words a match requires.

pub mod eval;
pub mod lang;
