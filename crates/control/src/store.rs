//! The embedded transactional store (redb) for everything the control plane must not lose:
//! registrations, configuration versions, key/value entries, tokens, console sessions, and the index
//! high-water mark. A write returns only after its transaction committed with redb's
//! default immediate durability (fsync), so an acknowledged write survives `kill -9`.
//!
//! Values are JSON; keys are strings ordered so that prefix scans give the wanted order.
//! Every call runs on the blocking pool: a commit waits for the disk.

use crate::error::Result;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;

pub const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
pub const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config_versions");
pub const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// One change inside a write transaction.
pub enum Op {
    Put(TableDefinition<'static, &'static str, &'static [u8]>, String, Vec<u8>),
    Delete(TableDefinition<'static, &'static str, &'static [u8]>, String),
    Meta(&'static str, u64),
}

impl Op {
    pub fn put<T: Serialize>(
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: impl Into<String>,
        value: &T,
    ) -> Result<Op> {
        Ok(Op::Put(table, key.into(), serde_json::to_vec(value)?))
    }
}

/// The store. Cloning shares it.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) `dir/control.redb`. redb recovers a file left by a crash on open.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::error::ControlError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("control.redb"))?;
        let tx = db.begin_write()?;
        for t in [INSTANCES, CONFIG, KV, TOKENS, SESSIONS] {
            tx.open_table(t)?;
        }
        tx.open_table(META)?;
        tx.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Applies `ops` in one durable transaction.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let tx = db.begin_write()?;
            for op in ops {
                match op {
                    Op::Put(t, k, v) => {
                        tx.open_table(t)?.insert(k.as_str(), v.as_slice())?;
                    }
                    Op::Delete(t, k) => {
                        tx.open_table(t)?.remove(k.as_str())?;
                    }
                    Op::Meta(k, v) => {
                        tx.open_table(META)?.insert(k, v)?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await?
    }

    /// Every value of `table`, decoded, in key order (used at start-up).
    pub fn load_all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<(String, T)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_owned(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// One value.
    pub fn get<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<T>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        match t.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Values whose keys start with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for row in t.range(prefix..)? {
            let (k, v) = row?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_owned(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value()))
    }
}
