//! Atomic transactions over key/value entries, as Consul's `/v1/txn` runs its KV verbs:
//! every operation sees the effects of the ones before it, and either all writes commit in
//! one store transaction under one index, or none does and the failures are reported by
//! operation.

use super::{KvEntry, KvStore, MAX_KEYS};
use crate::error::{ControlError, Result};
use crate::store::{KV, Op};
use base64::Engine;
use std::collections::BTreeMap;

/// Most operations in one transaction (Consul's limit).
pub const MAX_OPS: usize = 128;

/// One operation, Consul's KV verbs without sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    Set {
        key: String,
        value: Vec<u8>,
        flags: u64,
    },
    /// Sets only if the modify index is `index` (0: only if absent).
    Cas {
        key: String,
        value: Vec<u8>,
        flags: u64,
        index: u64,
    },
    /// Fails if the key does not exist.
    Get {
        key: String,
    },
    /// Returns nothing if the key does not exist.
    GetOrEmpty {
        key: String,
    },
    GetTree {
        prefix: String,
    },
    CheckIndex {
        key: String,
        index: u64,
    },
    CheckNotExists {
        key: String,
    },
    Delete {
        key: String,
    },
    DeleteTree {
        prefix: String,
    },
    DeleteCas {
        key: String,
        index: u64,
    },
}

impl TxnOp {
    fn writes(&self) -> bool {
        matches!(
            self,
            TxnOp::Set { .. }
                | TxnOp::Cas { .. }
                | TxnOp::Delete { .. }
                | TxnOp::DeleteTree { .. }
                | TxnOp::DeleteCas { .. }
        )
    }
}

/// An entry an operation returns, and whether its value is included (only for reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    pub entry: KvEntry,
    pub with_value: bool,
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied; the results in operation order (deletes and checks return none).
    Applied { index: u64, results: Vec<TxnResult> },
    /// Rolled back: (operation number, why) for each failed operation.
    RolledBack(Vec<(usize, String)>),
}

/// The entries as the transaction sees them: the store's, overlaid by its own writes.
struct View<'a> {
    base: &'a BTreeMap<String, KvEntry>,
    writes: BTreeMap<String, Option<KvEntry>>,
}

impl View<'_> {
    fn get(&self, key: &str) -> Option<&KvEntry> {
        match self.writes.get(key) {
            Some(w) => w.as_ref(),
            None => self.base.get(key),
        }
    }

    fn tree(&self, prefix: &str) -> Vec<KvEntry> {
        let mut m: BTreeMap<&str, &KvEntry> = self
            .base
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for (k, w) in self.writes.range(prefix.to_owned()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match w {
                Some(e) => m.insert(k.as_str(), e),
                None => m.remove(k.as_str()),
            };
        }
        m.into_values().cloned().collect()
    }

    fn set(&mut self, key: &str, value: &[u8], flags: u64, index: u64) -> KvEntry {
        let entry = KvEntry {
            key: key.to_owned(),
            value_b64: base64::engine::general_purpose::STANDARD.encode(value),
            flags,
            create_index: self.get(key).map(|e| e.create_index).unwrap_or(index),
            modify_index: index,
        };
        self.writes.insert(key.to_owned(), Some(entry.clone()));
        entry
    }

    fn modify_index(&self, key: &str) -> u64 {
        self.get(key).map(|e| e.modify_index).unwrap_or(0)
    }
}

impl KvStore {
    /// Runs `ops` atomically.
    pub async fn txn(&self, ops: Vec<TxnOp>) -> Result<TxnOutcome> {
        if ops.len() > MAX_OPS {
            return Err(ControlError::limit("operations", format!("at most {MAX_OPS} per transaction")));
        }
        for (i, op) in ops.iter().enumerate() {
            let (key, value) = match op {
                TxnOp::Set { key, value, .. } | TxnOp::Cas { key, value, .. } => (key, value.as_slice()),
                TxnOp::Get { key }
                | TxnOp::GetOrEmpty { key }
                | TxnOp::CheckIndex { key, .. }
                | TxnOp::CheckNotExists { key }
                | TxnOp::Delete { key }
                | TxnOp::DeleteCas { key, .. } => (key, &[][..]),
                TxnOp::GetTree { .. } | TxnOp::DeleteTree { .. } => continue,
            };
            Self::check_size(key, value).map_err(|e| match e {
                ControlError::Invalid { field, message } => ControlError::invalid(format!("[{i}].{field}"), message),
                ControlError::Limit { field, message } => ControlError::limit(format!("[{i}].{field}"), message),
                other => other,
            })?;
        }
        let _g = self.writes.lock().await;
        if self.store.replicated() {
            return self.txn_replicated(ops).await;
        }
        let mut step = if ops.iter().any(TxnOp::writes) { Some(self.index.begin().await) } else { None };
        let index = step.as_ref().map(|s| s.index()).unwrap_or_else(|| self.index.current());
        // The writes lock keeps the entries as read here until the writes are applied.
        let (writes, results) = {
            let base = self.lock();
            let mut view = View { base: &base, writes: BTreeMap::new() };
            let mut results = Vec::new();
            let mut errors = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                run(&mut view, i, op, index, &mut results, &mut errors);
            }
            if !errors.is_empty() {
                return Ok(TxnOutcome::RolledBack(errors));
            }
            let added = view.writes.iter().filter(|(k, w)| w.is_some() && !base.contains_key(*k)).count();
            let removed = view.writes.iter().filter(|(k, w)| w.is_none() && base.contains_key(*k)).count();
            if added > removed && base.len() + added - removed > MAX_KEYS {
                return Err(ControlError::limit("key", format!("the store holds its maximum of {MAX_KEYS} keys")));
            }
            (view.writes, results)
        };
        let Some(mut step) = step.take() else {
            return Ok(TxnOutcome::Applied { index, results });
        };
        let mut store_ops = Vec::with_capacity(writes.len() + 1);
        for (k, w) in &writes {
            store_ops.push(match w {
                Some(e) => Op::put(KV, k.clone(), e)?,
                None => Op::Delete(KV, k.clone()),
            });
        }
        store_ops.extend(step.take_mark());
        self.store.commit(store_ops).await?;
        let mut st = self.lock();
        for (k, w) in writes {
            match w {
                Some(e) => st.insert(k, e),
                None => st.remove(&k),
            };
        }
        drop(st);
        step.publish();
        Ok(TxnOutcome::Applied { index, results })
    }
}

impl KvStore {
    /// [`KvStore::txn`] on a replicated backend: the writes commit only if no key they
    /// touch changed since this node read it; if one did, the transaction runs again on the
    /// newer state. Written entries take the commit's revision as their index.
    async fn txn_replicated(&self, ops: Vec<TxnOp>) -> Result<TxnOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let placeholder = self.index.current() + 1;
            let (writes, mut results, guards) = {
                let base = self.lock();
                let mut view = View { base: &base, writes: BTreeMap::new() };
                let mut results = Vec::new();
                let mut errors = Vec::new();
                for (i, op) in ops.iter().cloned().enumerate() {
                    run(&mut view, i, op, placeholder, &mut results, &mut errors);
                }
                if !errors.is_empty() {
                    return Ok(TxnOutcome::RolledBack(errors));
                }
                let added = view.writes.iter().filter(|(k, w)| w.is_some() && !base.contains_key(*k)).count();
                let removed = view.writes.iter().filter(|(k, w)| w.is_none() && base.contains_key(*k)).count();
                if added > removed && base.len() + added - removed > MAX_KEYS {
                    return Err(ControlError::limit("key", format!("the store holds its maximum of {MAX_KEYS} keys")));
                }
                let guards: Vec<Op> = view
                    .writes
                    .keys()
                    .map(|k| Op::ModifiedAt(KV, k.clone(), base.get(k).map(|e| e.modify_index).unwrap_or(0)))
                    .collect();
                (view.writes, results, guards)
            };
            if writes.is_empty() {
                return Ok(TxnOutcome::Applied { index: self.index.current(), results });
            }
            let mut store_ops = guards;
            for (k, w) in &writes {
                store_ops.push(match w {
                    Some(e) => Op::put(KV, k.clone(), e)?,
                    None => Op::Delete(KV, k.clone()),
                });
            }
            match self.store.commit(store_ops).await {
                Ok(index) => {
                    for r in &mut results {
                        if r.entry.modify_index == placeholder {
                            r.entry.modify_index = index;
                        }
                        if r.entry.create_index == placeholder {
                            r.entry.create_index = index;
                        }
                    }
                    return Ok(TxnOutcome::Applied { index, results });
                }
                Err(ControlError::Conflict { .. }) if attempt < 5 => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs operation `i` against the view.
fn run(
    view: &mut View,
    i: usize,
    op: TxnOp,
    index: u64,
    results: &mut Vec<TxnResult>,
    errors: &mut Vec<(usize, String)>,
) {
    let read = |e: &KvEntry| TxnResult { entry: e.clone(), with_value: true };
    let written = |e: KvEntry| TxnResult { entry: e, with_value: false };
    match op {
        TxnOp::Set { key, value, flags } => results.push(written(view.set(&key, &value, flags, index))),
        TxnOp::Cas { key, value, flags, index: want } => {
            if view.modify_index(&key) == want {
                results.push(written(view.set(&key, &value, flags, index)));
            } else {
                errors.push((i, format!("failed to set key {key:?}, index is stale")));
            }
        }
        TxnOp::Get { key } => match view.get(&key) {
            Some(e) => results.push(read(e)),
            None => errors.push((i, format!("key {key:?} doesn't exist"))),
        },
        TxnOp::GetOrEmpty { key } => results.extend(view.get(&key).map(read)),
        TxnOp::GetTree { prefix } => results.extend(view.tree(&prefix).iter().map(read)),
        TxnOp::CheckIndex { key, index: want } => match view.get(&key) {
            Some(e) if e.modify_index == want => results.push(TxnResult { entry: e.clone(), with_value: false }),
            Some(_) => errors.push((i, format!("current modify index for key {key:?} is not {want}"))),
            None => errors.push((i, format!("key {key:?} doesn't exist"))),
        },
        TxnOp::CheckNotExists { key } => {
            if view.get(&key).is_some() {
                errors.push((i, format!("key {key:?} exists")));
            }
        }
        TxnOp::Delete { key } => {
            view.writes.insert(key, None);
        }
        TxnOp::DeleteTree { prefix } => {
            for e in view.tree(&prefix) {
                view.writes.insert(e.key, None);
            }
        }
        TxnOp::DeleteCas { key, index: want } => {
            if view.modify_index(&key) == want {
                view.writes.insert(key, None);
            } else {
                errors.push((i, format!("failed to delete key {key:?}, index is stale")));
            }
        }
    }
}
