//! The registry on a replicated backend (etcd): changes that every node applies as the
//! watch delivers them, health shared as records, and the checks each node runs.
//!
//! Registrations and health records come back to the node that wrote them like any other
//! node's; they are applied here only, in revision order. A health record is the whole
//! health of one instance (every check's status, output and last TTL report, and
//! maintenance), written by the node that runs its checks when a status changes, and by
//! any node that takes a TTL report or a maintenance change. Applying a record sets state,
//! so applying what this node already holds changes nothing but the index.

use super::model::{CheckKind, Registration, Status};
use super::{Instance, Registry, State, unix_ms};
use crate::error::Result;
use crate::store::{HEALTH, Op};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The health of one instance, as stored under `health/<instance id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub checks: Vec<CheckHealth>,
    pub maintenance: Option<String>,
}

/// One check's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckHealth {
    pub id: String,
    pub status: Status,
    pub output: String,
    pub since_unix_ms: u64,
    pub flapping: bool,
    /// TTL checks: when the instance last reported (0: never).
    pub reported_unix_ms: u64,
}

impl Registry {
    pub(super) fn owns(&self, instance: &str) -> bool {
        self.ownership.lock().unwrap_or_else(|e| e.into_inner()).owns(instance)
    }

    /// This node's name and the live members it knows, for status pages and tests.
    pub fn members(&self) -> Vec<String> {
        self.ownership.lock().unwrap_or_else(|e| e.into_inner()).members()
    }

    /// This node's view of the live members as it changes: what the other work that must
    /// run once in a cluster (scrape targets, rule groups) is shared out by. On a single
    /// node it never changes and owns everything.
    pub fn work_owners(&self) -> signalbox_core::ownership::Owners {
        self.ownership.lock().unwrap_or_else(|e| e.into_inner()).subscribe()
    }

    /// Whether this node runs `instance`'s checks.
    pub fn runs_checks_of(&self, instance: &str) -> bool {
        let st = self.lock();
        st.by_id
            .get(instance)
            .and_then(|svc| st.services.get(svc))
            .and_then(|s| s.get(instance))
            .is_some_and(|i| !i.tasks.is_empty())
    }

    /// A registration written (by any node) at `idx`; `created` is the index it was first
    /// written at.
    pub(crate) fn apply_registration(&self, reg: Registration, created: u64, idx: u64) {
        let id = reg.id.clone();
        let service = reg.service.clone();
        let moved = self.lock().by_id.get(&id).is_some_and(|s| *s != service);
        if moved {
            self.remove(&id, idx);
        }
        let mut st = self.lock();
        match st.services.get_mut(&service).and_then(|s| s.get_mut(&id)) {
            Some(inst) => {
                let removed = self.replace_checks(inst, reg, idx);
                for c in removed {
                    st.checks.remove(&c);
                }
                let ids: Vec<String> = st.services[&service][&id].reg.checks.iter().map(|c| c.id.clone()).collect();
                for c in ids {
                    st.checks.insert(c, id.clone());
                }
                st.log(idx, &service, &id, "registered");
                st.service_index.insert(service.clone(), idx);
                self.refresh_endpoints(&st, &service);
            }
            None => {
                drop(st);
                self.insert(reg, idx);
                let mut st = self.lock();
                if let Some(i) = st.services.get_mut(&service).and_then(|s| s.get_mut(&id)) {
                    i.create_index = created.min(idx).max(1);
                }
            }
        }
    }

    /// A registration deleted at `idx`.
    pub(crate) fn apply_deregistration(&self, id: &str, idx: u64) {
        self.remove(id, idx);
    }

    /// A health record written (or deleted) at `idx`.
    pub(crate) fn apply_health(&self, id: &str, rec: Option<HealthRecord>, idx: u64) {
        let Some(rec) = rec else { return };
        let mut st = self.lock();
        let Some(svc) = st.by_id.get(id).cloned() else { return };
        let Some(inst) = st.services.get_mut(&svc).and_then(|s| s.get_mut(id)) else { return };
        let now = Instant::now();
        // The node that runs the instance's active checks is their authority: a record
        // another node wrote (for a TTL report or maintenance) carries its older view of
        // them, which must not undo a result here that is still being shared.
        let runs = !inst.tasks.is_empty();
        for h in rec.checks {
            let Some(c) = inst.checks.iter_mut().find(|c| c.spec.id == h.id) else { continue };
            if runs && !matches!(c.spec.kind, CheckKind::Ttl { .. }) {
                continue;
            }
            if c.status != h.status {
                c.status = h.status;
                c.since = now;
            }
            c.since_unix_ms = h.since_unix_ms;
            c.output = h.output;
            c.flapping = h.flapping;
            // Any other report time is a new report (nodes' clocks need not agree).
            if h.reported_unix_ms != 0 && h.reported_unix_ms != c.reported_unix_ms {
                c.reported_unix_ms = h.reported_unix_ms;
                c.last_report = now;
            }
        }
        inst.maintenance = rec.maintenance;
        inst.modify_index = idx;
        inst.health_index = idx;
        st.log(idx, &svc, id, "health");
        st.service_index.insert(svc.clone(), idx);
        self.refresh_endpoints(&st, &svc);
    }

    /// Writes `instance`'s health as this node sees it. Health writes are serialised on
    /// the registry's write lock, so a later record never loses to an earlier one.
    ///
    /// The write is a compare-and-set on the record this node last applied: if another
    /// node wrote one meanwhile (a TTL report, maintenance), this node applies it first and
    /// writes again from the merged state.
    pub(super) async fn share_health(&self, instance: &str) {
        let _w = self.writes.lock().await;
        for _ in 0..5 {
            let (rec, seen) = {
                let st = self.lock();
                let Some(i) = st.by_id.get(instance).and_then(|svc| st.services.get(svc)).and_then(|s| s.get(instance))
                else {
                    return;
                };
                (health_record(i), i.health_index)
            };
            match self.commit_health(instance, &rec, seen).await {
                Err(crate::error::ControlError::Conflict { .. }) => continue,
                Err(e) => return tracing::error!(instance, error = %e, "cannot share a health change"),
                Ok(()) => return,
            }
        }
        tracing::warn!(instance, "a health change lost five races to other nodes' writes; the next change shares it");
    }

    async fn commit_health(&self, instance: &str, rec: &HealthRecord, seen: u64) -> Result<()> {
        let ops = vec![Op::ModifiedAt(HEALTH, instance.to_owned(), seen), Op::put(HEALTH, instance, rec)?];
        self.store.commit(ops).await.map(|_| ())
    }

    /// This node's lease was granted or lost.
    pub(crate) fn set_live(&self, live: bool) {
        let changed = self.ownership.lock().unwrap_or_else(|e| e.into_inner()).set_live(live);
        if changed {
            tracing::info!(live, "this node's membership changed");
            self.rebalance();
        }
    }

    /// A member key appeared or went (its lease ended).
    pub(crate) fn set_member(&self, node: &str, present: bool) {
        let changed = self.ownership.lock().unwrap_or_else(|e| e.into_inner()).set_member(node, present);
        if changed {
            tracing::info!(node, present, "cluster membership changed");
            self.rebalance();
        }
    }

    /// Starts the checks of instances this node now owns and stops the others.
    fn rebalance(&self) {
        let mut st = self.lock();
        let State { services, .. } = &mut *st;
        let (mut started, mut stopped) = (0usize, 0usize);
        for inst in services.values_mut().flat_map(|s| s.values_mut()) {
            let owns = self.owns(&inst.reg.id);
            if owns && inst.tasks.is_empty() && !inst.reg.checks.is_empty() {
                inst.tasks = self.spawn_checks(&inst.reg);
                started += 1;
            } else if !owns && !inst.tasks.is_empty() {
                for t in inst.tasks.drain(..) {
                    t.abort();
                }
                stopped += 1;
            }
        }
        if started + stopped > 0 {
            tracing::info!(started, stopped, "health checks moved");
        }
    }
}

fn health_record(i: &Instance) -> HealthRecord {
    HealthRecord {
        checks: i
            .checks
            .iter()
            .map(|c| CheckHealth {
                id: c.spec.id.clone(),
                status: c.status,
                output: c.output.clone(),
                since_unix_ms: if c.since_unix_ms == 0 { unix_ms() } else { c.since_unix_ms },
                flapping: c.flapping,
                reported_unix_ms: c.reported_unix_ms,
            })
            .collect(),
        maintenance: i.maintenance.clone(),
    }
}
