//! The container both signals' stores are built from, independent of what a record is. A
//! schema (`spans`, `logs`) encodes its records into log batches and block columns; the
//! container makes the batches durable and replays them, and gives both schemas the same
//! encoding primitives, bloom filters and hashing.
//!
//! # Layout
//! - [`wal`]: segmented write-ahead log of checksummed batches, a settlement ledger, replay.
//! - [`block`]: block framing: the schema's header parts, a column directory, a zstd frame
//!   and a crc32 per column, atomic writes.
//! - [`dict`]: dictionary columns (distinct strings, then an index per row).
//! - [`cache`]: the decompressed-column cache, bounded by bytes, least recently used out.
//! - [`partition`]: hourly partitions of blocks, and retention by age and by size.
//! - [`encoding`]: varints, length-prefixed strings and a bounds-checked reader.
//! - [`bloom`]: bloom filters.
//! - [`hash`]: the fast hash behind the filters and the in-memory maps.

pub mod block;
pub mod bloom;
pub mod cache;
pub mod dict;
pub mod encoding;
pub mod hash;
pub mod partition;
pub mod wal;
