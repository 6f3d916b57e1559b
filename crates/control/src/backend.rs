//! Where the control state lives: the [`Backend`] trait the [`Store`](crate::store::Store)
//! wraps, its two implementations, and the `[control]` configuration that picks one.
//!
//! - The embedded store ([`embedded`], the default): one redb file; the parts apply their
//!   own changes in memory after each commit.
//! - etcd ([`etcd`]): every node reads and writes the same cluster. The backend keeps a
//!   local mirror of the keys under its prefix, fed by one etcd watch stream; every change,
//!   this node's own included, reaches the parts through [`Apply`] in revision order, and the
//!   revision is the change index. A part that writes commits and waits until the watch
//!   has brought its change back; it never applies it itself, so each change is applied
//!   exactly once, in the same order on every node.
//!
//! # Layout
//! - [`config`]: `[control]` and `[control.etcd]` as written in the file, and validated.
//! - [`embedded`]: the redb backend.
//! - [`etcd`]: the etcd v3 backend, its mirror and watch, node membership by lease.

pub mod config;
pub mod embedded;
pub mod etcd;

use crate::error::Result;
use crate::store::{Op, Table};
use std::future::Future;
use std::pin::Pin;

/// A stored value and the revisions etcd gave it (0 in the embedded store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
}

/// One change as the watch delivers it.
#[derive(Clone, Debug)]
pub struct Change {
    pub table: Table,
    pub key: String,
    /// The new value, or `None` for a delete.
    pub record: Option<Record>,
    /// The revision of the change.
    pub revision: u64,
}

/// Receives every change of a replicated backend, in revision order, each exactly once.
pub trait Apply: Send + Sync {
    /// Applies the changes of one or more revisions; `revision` is the last of them. Runs
    /// on the watch task: it must not wait on the store.
    fn apply(&self, changes: &[Change], revision: u64);

    /// Whether this node holds its membership lease. A node that is not live runs no
    /// work that must happen once; it turns not-live before its lease can expire.
    fn live(&self, live: bool);
}

/// A boxed future, for the trait's async method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Storage of the control state.
pub trait Backend: Send + Sync {
    /// Commits `ops` atomically; see [`Store::commit`](crate::store::Store::commit).
    fn commit(&self, ops: Vec<Op>) -> BoxFuture<'_, Result<u64>>;
    /// One record.
    fn get(&self, table: Table, key: &str) -> Result<Option<Record>>;
    /// Records whose keys start with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Record)>>;
    /// A number kept by the embedded store (the index high-water mark); `None` elsewhere.
    fn meta(&self, key: &str) -> Result<Option<u64>>;
    /// True when changes reach the parts only through [`Apply`].
    fn replicated(&self) -> bool;
    /// The name shown in logs and errors.
    fn describe(&self) -> String;
}
