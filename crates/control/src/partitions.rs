//! Which storage node owns which partition of stored telemetry (etcd only).
//!
//! Every trace, log stream and series belongs to one of a fixed number of partitions
//! ([`signalbox_core::partition`]). Each live member owns the partitions whose rendezvous
//! hash over the live members' names picks it (the same hash that shares out health
//! checks), so a member joining or leaving moves only its own share.
//!
//! - **Claims**: a node records each partition it owns as `partitions/<p>` → its name,
//!   written under its membership lease only if no one holds the key. A node takes a
//!   partition only once the key is free: after the previous owner released it (a member
//!   joined and the previous owner saw it) or after its lease expired (the owner died).
//! - **Giving up**: a node publishes the smaller set to its consumers first and deletes its
//!   claims after; a node that loses its lease publishes the empty set at once, before its
//!   lease can expire (see [`crate::backend::Apply::live`]), so two nodes never own a
//!   partition at once.
//! - **Storage nodes**: `storage/<node>` keeps every node that has stored telemetry with
//!   its internal query address and the partitions it last owned. The record outlives the
//!   node's lease: data written to a node stays on it when its partitions move, so queries
//!   keep asking it until an operator removes the record.
//!
//! The owned set reaches consumers as a [`signalbox_core::partition::Owned`] watch.

use crate::backend::etcd::Etcd;
use crate::backend::{Apply, Change};
use crate::error::Result;
use crate::store::{MEMBERS, Op, PARTITIONS, STORAGE, Store};
use serde::{Deserialize, Serialize};
use signalbox_core::ownership::owner;
use signalbox_core::partition::Owned;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

/// How often ownership is checked even without a change (a claim that lost a race, an
/// etcd call that failed).
const RECHECK: Duration = Duration::from_secs(1);

/// What `storage/<node>` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageNode {
    pub node: String,
    /// Base URL of the node's internal query endpoints (`http://host:port`).
    pub address: String,
    /// The partitions it owned when it last wrote this record.
    pub partitions: Vec<u32>,
    pub updated_unix_ms: u64,
}

/// What `partitions/<p>` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub node: String,
}

/// This node's share of the partitions.
pub struct Partitions {
    etcd: Arc<Etcd>,
    store: Store,
    me: String,
    count: u32,
    address: String,
    live: AtomicBool,
    wake: Notify,
    owned: watch::Sender<Arc<BTreeSet<u32>>>,
    task: Mutex<Option<AbortHandle>>,
}

/// The partition key (`partitions/0007`: zero-padded so a scan lists them in order).
fn key(p: u32) -> String {
    format!("{p:04}")
}

/// The owner of partition `p` among `members` (rendezvous hashing).
pub fn owner_of(members: &BTreeSet<String>, p: u32) -> Option<&str> {
    owner(members, &format!("partition-{p}"))
}

impl Partitions {
    pub(crate) fn start(etcd: Arc<Etcd>, store: Store, count: u32, address: String, live: bool) -> Arc<Partitions> {
        let me = etcd.node().to_owned();
        let p = Arc::new(Partitions {
            etcd,
            store,
            me,
            count: count.max(1),
            address,
            live: AtomicBool::new(live),
            wake: Notify::new(),
            owned: watch::channel(Arc::new(BTreeSet::new())).0,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&p))).abort_handle();
        *p.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        p
    }

    /// The partitions this node owns now, as a watch for consumers.
    pub fn owned(&self) -> Owned {
        self.owned.subscribe()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.me
    }

    /// Where peers reach this node.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// How many partitions the cluster has.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Every node that has stored telemetry (this one included), by name.
    pub fn storage_nodes(&self) -> Vec<StorageNode> {
        self.store.scan::<StorageNode>(STORAGE, "").map(|v| v.into_iter().map(|(_, n)| n).collect()).unwrap_or_default()
    }

    /// The recorded owner of every claimed partition.
    pub fn assignment(&self) -> BTreeMap<u32, String> {
        self.store
            .scan::<Claim>(PARTITIONS, "")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, c)| Some((k.parse().ok()?, c.node)))
            .collect()
    }

    /// The live members.
    pub fn members(&self) -> BTreeSet<String> {
        self.store.scan::<serde_json::Value>(MEMBERS, "").unwrap_or_default().into_iter().map(|(k, _)| k).collect()
    }

    fn publish(&self, set: BTreeSet<u32>) {
        self.owned.send_if_modified(|cur| {
            if **cur == set {
                false
            } else {
                tracing::info!(node = %self.me, partitions = ?set, "this node's partitions changed");
                *cur = Arc::new(set);
                true
            }
        });
    }

    /// Brings the owned set and the claims in line with the live members.
    async fn reconcile(&self) -> Result<()> {
        if !self.live.load(Ordering::Acquire) {
            self.publish(BTreeSet::new());
            return Ok(());
        }
        let members = self.members();
        let desired: BTreeSet<u32> =
            (0..self.count).filter(|p| owner_of(&members, *p) == Some(self.me.as_str())).collect();
        let current: BTreeSet<u32> = (**self.owned.borrow()).clone();
        // Give up first (consumers stop), then free the keys for the new owners.
        let keep: BTreeSet<u32> = current.intersection(&desired).copied().collect();
        if keep.len() != current.len() {
            self.publish(keep.clone());
        }
        for (k, claim, at) in self.store.scan_indexed::<Claim>(PARTITIONS, "")? {
            let p: u32 = k.parse().unwrap_or(u32::MAX);
            if claim.node == self.me && !desired.contains(&p) {
                self.etcd.release(PARTITIONS, &k, at).await?;
            }
        }
        let mut now = keep;
        for p in desired.difference(&current) {
            let taken = match self.store.get::<Claim>(PARTITIONS, &key(*p))? {
                Some(c) => c.node == self.me,
                None => {
                    let value = serde_json::to_vec(&Claim { node: self.me.clone() })?;
                    self.etcd.claim(PARTITIONS, &key(*p), value).await?
                }
            };
            if taken {
                now.insert(*p);
            }
        }
        // A claim of ours whose key went with an old lease: write it again.
        for p in &now {
            if self.store.get::<Claim>(PARTITIONS, &key(*p))?.is_none() {
                let value = serde_json::to_vec(&Claim { node: self.me.clone() })?;
                self.etcd.claim(PARTITIONS, &key(*p), value).await?;
            }
        }
        let changed = now != current;
        self.publish(now.clone());
        let record = self.store.get::<StorageNode>(STORAGE, &self.me)?;
        let stale = record.as_ref().is_none_or(|r| r.address != self.address || (changed && !now.is_empty()));
        if stale {
            let rec = StorageNode {
                node: self.me.clone(),
                address: self.address.clone(),
                partitions: now.iter().copied().collect(),
                updated_unix_ms: signalbox_core::time::unix_nanos() / 1_000_000,
            };
            self.store.commit(vec![Op::put(STORAGE, self.me.clone(), &rec)?]).await?;
        }
        Ok(())
    }

    /// Writes this node's storage record now (at start, before any partition is owned), so
    /// queries on other nodes ask it from the first write on.
    pub async fn register(&self) -> Result<()> {
        if self.store.get::<StorageNode>(STORAGE, &self.me)?.is_some_and(|r| r.address == self.address) {
            return Ok(());
        }
        let rec = StorageNode {
            node: self.me.clone(),
            address: self.address.clone(),
            partitions: Vec::new(),
            updated_unix_ms: signalbox_core::time::unix_nanos() / 1_000_000,
        };
        self.store.commit(vec![Op::put(STORAGE, self.me.clone(), &rec)?]).await.map(|_| ())
    }

    /// Stops following ownership and publishes the empty set.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        self.publish(BTreeSet::new());
    }
}

async fn run(p: Weak<Partitions>) {
    loop {
        let Some(parts) = p.upgrade() else { return };
        if let Err(e) = parts.reconcile().await {
            tracing::warn!(error = %e, "cannot settle this node's partitions; trying again");
        }
        let woken = async {
            let _ = tokio::time::timeout(RECHECK, parts.wake.notified()).await;
        };
        woken.await;
    }
}

impl Apply for Partitions {
    fn apply(&self, changes: &[Change], _revision: u64) {
        if changes.iter().any(|c| c.table == MEMBERS || c.table == PARTITIONS) {
            self.wake.notify_one();
        }
    }

    fn live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        if !live {
            // Before the lease can expire: no other node may take a partition this one
            // still serves.
            self.publish(BTreeSet::new());
        }
        self.wake.notify_one();
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaving_member_moves_only_its_partitions() {
        let three: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let two: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut c_had = 0;
        for p in 0..256 {
            let before = owner_of(&three, p).unwrap();
            let after = owner_of(&two, p).unwrap();
            if before == "c" {
                c_had += 1;
            } else {
                assert_eq!(before, after, "partition {p} moved although its owner stayed");
            }
        }
        assert!((50..120).contains(&c_had), "c owned {c_had} of 256");
    }
}
