//! The embedded transactional store (redb): the single node's default. A write returns
//! only after its transaction committed with redb's default immediate durability (fsync),
//! so an acknowledged write survives `kill -9`. Every commit runs on the blocking pool: it
//! waits for the disk. Reads are served from the file; the parts hold what they need in
//! memory anyway.

use super::{Backend, BoxFuture, Record};
use crate::error::{ControlError, Result};
use crate::store::{Op, TABLES, Table};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn def(t: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(t.0)
}

/// The redb file.
pub struct Embedded {
    db: Arc<Database>,
    path: std::path::PathBuf,
}

impl Embedded {
    /// Opens (or creates) `dir/control.redb`. redb recovers a file left by a crash on open.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ControlError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("control.redb");
        let db = Database::create(&path)?;
        let tx = db.begin_write()?;
        for t in TABLES {
            tx.open_table(def(t))?;
        }
        tx.open_table(META)?;
        tx.commit()?;
        Ok(Embedded { db: Arc::new(db), path })
    }
}

fn record(value: &[u8]) -> Record {
    Record { value: value.to_vec(), create_revision: 0, mod_revision: 0 }
}

impl Backend for Embedded {
    fn commit(&self, ops: Vec<Op>) -> BoxFuture<'_, Result<u64>> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> Result<u64> {
                let tx = db.begin_write()?;
                for op in ops {
                    match op {
                        Op::Put(t, k, v) => {
                            tx.open_table(def(t))?.insert(k.as_str(), v.as_slice())?;
                        }
                        Op::Delete(t, k) => {
                            tx.open_table(def(t))?.remove(k.as_str())?;
                        }
                        Op::Meta(k, v) => {
                            tx.open_table(META)?.insert(k, v)?;
                        }
                        Op::Absent(t, k) => {
                            if tx.open_table(def(t))?.get(k.as_str())?.is_some() {
                                tx.abort()?;
                                return Err(ControlError::Conflict { current: 0 });
                            }
                        }
                        Op::ModifiedAt(..) => {}
                    }
                }
                tx.commit()?;
                Ok(0)
            })
            .await?
        })
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Record>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(def(table))?;
        Ok(t.get(key)?.map(|v| record(v.value())))
    }

    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Record)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(def(table))?;
        let mut out = Vec::new();
        for row in t.range(prefix..)? {
            let (k, v) = row?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_owned(), record(v.value())));
        }
        Ok(out)
    }

    fn meta(&self, key: &str) -> Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value()))
    }

    fn replicated(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("embedded store {}", self.path.display())
    }
}
