//! The store of everything the control plane must not lose: registrations, configuration
//! versions, key/value entries, tokens, console sessions, and (with etcd) health. A write
//! returns only once it is durable.
//!
//! [`Store`] is the one handle the parts hold; the [`Backend`](crate::backend::Backend)
//! behind it is the embedded redb file ([`crate::backend::embedded`], the default) or an
//! etcd cluster ([`crate::backend::etcd`]). Values are JSON; keys are strings ordered so
//! that prefix scans give the wanted order.

use crate::backend::Backend;
use crate::error::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;

/// A table of the store: a name, which is also the key segment under etcd's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Table(pub &'static str);

pub const INSTANCES: Table = Table("instances");
pub const CONFIG: Table = Table("config_versions");
pub const KV: Table = Table("kv");
pub const TOKENS: Table = Table("tokens");
pub const SESSIONS: Table = Table("sessions");
/// Health of instances (etcd only: the embedded node keeps health in memory).
pub const HEALTH: Table = Table("health");
/// Live nodes, each key held by its node's lease (etcd only).
pub const MEMBERS: Table = Table("members");
/// Which live node owns each partition of stored telemetry, each key held by its owner's
/// lease (etcd only; see [`crate::partitions`]).
pub const PARTITIONS: Table = Table("partitions");
/// Every node that has stored telemetry, with its internal query address: kept after the
/// node leaves, because its data stays on it (etcd only).
pub const STORAGE: Table = Table("storage");

/// Every table, in the order a change is applied when one commit touches several.
pub const TABLES: [Table; 9] = [INSTANCES, HEALTH, CONFIG, KV, TOKENS, SESSIONS, MEMBERS, PARTITIONS, STORAGE];

impl Table {
    pub fn by_name(name: &str) -> Option<Table> {
        TABLES.into_iter().find(|t| t.0 == name)
    }
}

/// One change inside a write transaction, or a condition it depends on.
#[derive(Clone, Debug)]
pub enum Op {
    Put(Table, String, Vec<u8>),
    Delete(Table, String),
    /// The embedded store's index high-water mark (ignored by etcd, whose revision is the
    /// index).
    Meta(&'static str, u64),
    /// The transaction commits only if the key does not exist.
    Absent(Table, String),
    /// The transaction commits only if the key was last changed at this index (0: absent).
    /// The embedded store, whose parts check this in memory under their write lock, ignores it.
    ModifiedAt(Table, String, u64),
}

impl Op {
    pub fn put<T: Serialize>(table: Table, key: impl Into<String>, value: &T) -> Result<Op> {
        Ok(Op::Put(table, key.into(), serde_json::to_vec(value)?))
    }
}

/// The store. Cloning shares it.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Opens (or creates) the embedded store `dir/control.redb`.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Store { backend: Arc::new(crate::backend::embedded::Embedded::open(dir)?) })
    }

    pub fn with_backend(backend: Arc<dyn Backend>) -> Self {
        Store { backend }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// True when every change reaches the parts through [`crate::backend::Apply`] (etcd):
    /// a part then commits and does not apply its own change, which comes back like
    /// any other node's.
    pub fn replicated(&self) -> bool {
        self.backend.replicated()
    }

    /// Applies `ops` in one durable transaction. Returns the index of the change when the
    /// backend assigns it (etcd's revision, once every part has applied it), else 0. A
    /// failed condition ([`Op::Absent`], [`Op::ModifiedAt`]) is
    /// [`ControlError::Conflict`](crate::error::ControlError::Conflict) and changes nothing.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<u64> {
        self.backend.commit(ops).await
    }

    /// Every value of `table`, decoded, in key order (used at start-up).
    pub fn load_all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>> {
        self.scan(table, "")
    }

    /// One value.
    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>> {
        match self.backend.get(table, key)? {
            Some(r) => Ok(Some(serde_json::from_slice(&r.value)?)),
            None => Ok(None),
        }
    }

    /// One value and the index it was last written at (0 for the embedded store).
    pub fn get_indexed<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<(T, u64)>> {
        match self.backend.get(table, key)? {
            Some(r) => Ok(Some((serde_json::from_slice(&r.value)?, r.mod_revision))),
            None => Ok(None),
        }
    }

    /// Values whose keys start with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, table: Table, prefix: &str) -> Result<Vec<(String, T)>> {
        Ok(self.scan_indexed(table, prefix)?.into_iter().map(|(k, v, _)| (k, v)).collect())
    }

    /// Values whose keys start with `prefix` with the index each was last written at (0 for
    /// the embedded store), in key order.
    pub fn scan_indexed<T: DeserializeOwned>(&self, table: Table, prefix: &str) -> Result<Vec<(String, T, u64)>> {
        let mut out = Vec::new();
        for (k, r) in self.backend.scan(table, prefix)? {
            out.push((k, serde_json::from_slice(&r.value)?, r.mod_revision));
        }
        Ok(out)
    }

    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        self.backend.meta(key)
    }
}
