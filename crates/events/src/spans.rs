//! The span schema of the event store: how spans are encoded, sampled, sealed into blocks
//! of columns on the shared container ([`crate::container`]), queried, and counted into the
//! service dependency graph.
//!
//! Data flows one way: [`pipeline::Traces::submit`] takes decoded spans into a bounded
//! queue; the container's write-ahead log makes each batch ([`codec::encode_batch`])
//! durable before the sender is answered; tail sampling ([`sampler`]) keeps or drops whole
//! traces; the store ([`store`]) holds new spans in memory and seals them into blocks
//! ([`block`]); queries ([`query`]) read both; the dependency graph ([`deps`]) is counted
//! as spans pass.
//!
//! # Layout
//! - [`codec`]: the binary span encoding (log batches, block columns).
//! - [`block`]: the span columns of a block and reading them back.
//! - [`store`]: head, sealing, recovery deduplication, on the container's partitions.
//! - [`sampler`]: per-trace tail sampling (errors, slow spans, policies, rate).
//! - [`query`]: trace by id, search, tag keys and values.
//! - [`deps`]: the service dependency graph.
//! - [`pipeline`]: the threads and tasks that connect all of it, and the
//!   [`pipeline::Traces`] handle receivers and query APIs use.

pub mod block;
pub mod codec;
pub mod deps;
pub mod pipeline;
pub mod query;
pub mod sampler;
pub mod store;
