//! Consul-style key/value entries (`/v1/kv`): raw bytes with flags and create/modify
//! indexes, compare-and-set on the modify index, recursive reads and deletes, and atomic
//! transactions of several operations ([`txn`], Consul's `/v1/txn`).

pub mod txn;

use crate::error::{ControlError, Result};
use crate::index::Index;
use crate::store::{KV, Op, Store};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const MAX_VALUE: usize = 512 * 1024;
pub const MAX_KEY: usize = 512;
pub const MAX_KEYS: usize = 100_000;

/// One entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    /// Base64 of the value, as Consul returns it.
    pub value_b64: String,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

impl KvEntry {
    pub fn value(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(&self.value_b64).unwrap_or_default()
    }
}

/// The key/value store.
pub struct KvStore {
    store: Store,
    index: Arc<Index>,
    state: Mutex<BTreeMap<String, KvEntry>>,
    writes: tokio::sync::Mutex<()>,
}

impl KvStore {
    pub fn load(store: Store, index: Arc<Index>) -> Result<Self> {
        let state = store.load_all::<KvEntry>(KV)?.into_iter().collect();
        Ok(KvStore { store, index, state: Mutex::new(state), writes: tokio::sync::Mutex::new(()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, KvEntry>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    pub fn get(&self, key: &str) -> Option<KvEntry> {
        self.lock().get(key).cloned()
    }

    /// Entries under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<KvEntry> {
        self.lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Keys under `prefix`; with a separator, keys are cut after the first separator past
    /// the prefix and deduplicated (Consul's `?keys&separator=/`).
    pub fn keys(&self, prefix: &str, separator: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.list(prefix) {
            let k = match separator
                .filter(|s| !s.is_empty())
                .and_then(|s| e.key[prefix.len()..].find(s).map(|i| (i, s.len())))
            {
                Some((i, n)) => e.key[..prefix.len() + i + n].to_owned(),
                None => e.key.clone(),
            };
            if out.last() != Some(&k) {
                out.push(k);
            }
        }
        out
    }

    /// Checks a key and a value against the limits.
    fn check_size(key: &str, value: &[u8]) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(ControlError::invalid("key", format!("must be 1-{MAX_KEY} bytes")));
        }
        if value.len() > MAX_VALUE {
            return Err(ControlError::limit("value", format!("is {} bytes; the limit is {MAX_VALUE}", value.len())));
        }
        Ok(())
    }

    /// Writes `value`; with `cas`, only if the modify index matches (0: only if absent).
    /// Returns false when the CAS fails.
    pub async fn put(&self, key: &str, value: &[u8], flags: u64, cas: Option<u64>) -> Result<bool> {
        Self::check_size(key, value)?;
        let _g = self.writes.lock().await;
        let existing = self.get(key);
        if let Some(c) = cas {
            let cur = existing.as_ref().map(|e| e.modify_index).unwrap_or(0);
            if c != cur {
                return Ok(false);
            }
        }
        if existing.is_none() && self.lock().len() >= MAX_KEYS {
            return Err(ControlError::limit("key", format!("the store holds its maximum of {MAX_KEYS} keys")));
        }
        if self.store.replicated() {
            // The indexes are etcd's revisions, set when the watch applies the entry.
            let entry = KvEntry {
                key: key.to_owned(),
                value_b64: base64::engine::general_purpose::STANDARD.encode(value),
                flags,
                create_index: 0,
                modify_index: 0,
            };
            let mut ops: Vec<Op> = cas.map(|c| Op::ModifiedAt(KV, key.to_owned(), c)).into_iter().collect();
            ops.push(Op::put(KV, key, &entry)?);
            return conflict_is_false(self.store.commit(ops).await);
        }
        let mut step = self.index.begin().await;
        let idx = step.index();
        let entry = KvEntry {
            key: key.to_owned(),
            value_b64: base64::engine::general_purpose::STANDARD.encode(value),
            flags,
            create_index: existing.map(|e| e.create_index).unwrap_or(idx),
            modify_index: idx,
        };
        let mut ops = vec![Op::put(KV, key, &entry)?];
        ops.extend(step.take_mark());
        self.store.commit(ops).await?;
        self.lock().insert(key.to_owned(), entry);
        step.publish();
        Ok(true)
    }

    /// Deletes `key` (or everything under it with `recurse`); with `cas`, only if the modify
    /// index matches. Returns false when the CAS fails.
    pub async fn delete(&self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool> {
        let _g = self.writes.lock().await;
        let victims: Vec<String> = if recurse {
            self.list(key).into_iter().map(|e| e.key).collect()
        } else {
            self.get(key).into_iter().map(|e| e.key).collect()
        };
        if let Some(c) = cas {
            let cur = self.get(key).map(|e| e.modify_index).unwrap_or(0);
            if c != cur {
                return Ok(false);
            }
        }
        if victims.is_empty() {
            return Ok(true);
        }
        if self.store.replicated() {
            let mut ops: Vec<Op> = cas.map(|c| Op::ModifiedAt(KV, key.to_owned(), c)).into_iter().collect();
            ops.extend(victims.iter().map(|k| Op::Delete(KV, k.clone())));
            return conflict_is_false(self.store.commit(ops).await);
        }
        let mut step = self.index.begin().await;
        let mut ops: Vec<Op> = victims.iter().map(|k| Op::Delete(KV, k.clone())).collect();
        ops.extend(step.take_mark());
        self.store.commit(ops).await?;
        let mut st = self.lock();
        for k in &victims {
            st.remove(k);
        }
        drop(st);
        step.publish();
        Ok(true)
    }
}

impl KvStore {
    /// An entry written (by any node, with a replicated backend) at `modified`, first
    /// created at `created`; `None` deletes it.
    pub(crate) fn apply(&self, key: &str, entry: Option<KvEntry>, created: u64, modified: u64) {
        let mut st = self.lock();
        match entry {
            Some(mut e) => {
                e.create_index = created;
                e.modify_index = modified;
                st.insert(key.to_owned(), e);
            }
            None => {
                st.remove(key);
            }
        }
    }
}

/// A lost compare-and-set is `false`, as Consul answers it.
fn conflict_is_false(r: Result<u64>) -> Result<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(ControlError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
