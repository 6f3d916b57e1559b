//! The container both signals' stores are built from, independent of what a record is: a
//! write-ahead log of opaque record batches with group commit and settlement, and (as the
//! store is split, issue 9) block framing, partitions and retention. A schema (`logs`, and
//! the trace store as it moves over) encodes its records into batches and columns.
//!
//! # Layout
//! - [`wal`]: segmented write-ahead log of checksummed batches, a settlement ledger, replay.

pub mod wal;
