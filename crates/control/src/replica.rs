//! Applies the changes a replicated backend (etcd) delivers to the parts, in revision
//! order, then publishes the revision as the change index: a blocking query or SSE
//! watcher woken by index N on any node reads a state holding every change up to N.
//!
//! Every change arrives here exactly once, this node's own writes included (the writer
//! waits for it in [`Store::commit`](crate::store::Store::commit) and never applies it
//! itself). Tokens and sessions are the exception that proves nothing breaks: their local
//! apply and this one both set the same value.

use crate::access::Access;
use crate::backend::{Apply, Change};
use crate::config::ConfigStore;
use crate::index::Index;
use crate::kv::KvStore;
use crate::registry::Registry;
use crate::store::{CONFIG, HEALTH, INSTANCES, KV, MEMBERS, SESSIONS, TOKENS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};

/// The parts a change can reach.
pub struct Replica {
    registry: Weak<Registry>,
    config: Weak<ConfigStore>,
    kv: Weak<KvStore>,
    access: Weak<Access>,
    index: Weak<Index>,
    /// Other receivers of every change and of liveness (partition ownership).
    followers: RwLock<Vec<Weak<dyn Apply>>>,
    /// The last liveness the backend reported.
    live_now: AtomicBool,
}

impl Replica {
    pub fn new(
        registry: &Arc<Registry>,
        config: &Arc<ConfigStore>,
        kv: &Arc<KvStore>,
        access: &Arc<Access>,
        index: &Arc<Index>,
    ) -> Self {
        Replica {
            registry: Arc::downgrade(registry),
            config: Arc::downgrade(config),
            kv: Arc::downgrade(kv),
            access: Arc::downgrade(access),
            index: Arc::downgrade(index),
            followers: RwLock::new(Vec::new()),
            live_now: AtomicBool::new(false),
        }
    }

    /// Adds a receiver of every later change and liveness report; returns whether this
    /// node is live now.
    pub fn follow(&self, f: Weak<dyn Apply>) -> bool {
        self.followers.write().unwrap_or_else(|e| e.into_inner()).push(f);
        self.live_now.load(Ordering::Acquire)
    }

    fn followers(&self) -> Vec<Arc<dyn Apply>> {
        self.followers.read().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect()
    }

    fn apply_one(&self, c: &Change) -> Result<(), serde_json::Error> {
        let value = c.record.as_ref().map(|r| r.value.as_slice());
        let (created, modified) = c.record.as_ref().map(|r| (r.create_revision, r.mod_revision)).unwrap_or((0, 0));
        match c.table {
            INSTANCES => {
                if let Some(reg) = self.registry.upgrade() {
                    match value {
                        Some(v) => reg.apply_registration(serde_json::from_slice(v)?, created, c.revision),
                        None => reg.apply_deregistration(&c.key, c.revision),
                    }
                }
            }
            HEALTH => {
                if let Some(reg) = self.registry.upgrade() {
                    let rec = value.map(serde_json::from_slice).transpose()?;
                    reg.apply_health(&c.key, rec, c.revision);
                }
            }
            MEMBERS => {
                if let Some(reg) = self.registry.upgrade() {
                    reg.set_member(&c.key, value.is_some());
                }
            }
            CONFIG => {
                if let (Some(cfg), Some(v)) = (self.config.upgrade(), value) {
                    cfg.apply(serde_json::from_slice(v)?, c.revision);
                }
            }
            KV => {
                if let Some(kv) = self.kv.upgrade() {
                    let entry = value.map(serde_json::from_slice).transpose()?;
                    kv.apply(&c.key, entry, created, modified);
                }
            }
            TOKENS => {
                if let Some(a) = self.access.upgrade() {
                    a.apply_token(&c.key, value);
                }
            }
            SESSIONS => {
                if let Some(a) = self.access.upgrade() {
                    a.apply_session(&c.key, value);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Apply for Replica {
    fn apply(&self, changes: &[Change], revision: u64) {
        for c in changes {
            if let Err(e) = self.apply_one(c) {
                tracing::error!(table = c.table.0, key = %c.key, revision = c.revision, error = %e, "cannot apply a change from etcd");
            }
        }
        for f in self.followers() {
            f.apply(changes, revision);
        }
        if let Some(index) = self.index.upgrade() {
            index.advance(revision);
        }
    }

    fn live(&self, live: bool) {
        self.live_now.store(live, Ordering::Release);
        if let Some(reg) = self.registry.upgrade() {
            reg.set_live(live);
        }
        for f in self.followers() {
            f.live(live);
        }
    }
}
