//! Traffic splitting by version: weights, pins, stickiness and mirroring, following the
//! policies kept in central configuration ([`signalbox_core::traffic`] has the document
//! format and its checks).
//!
//! Policies are held apart from the compiled config ([`TrafficState`], one atomic map by
//! service name), so a gateway config reload keeps them and a policy change swaps one map:
//! a request reads the map once, so it sees one policy from start to end and no request is
//! dropped while weights change. A document that does not validate is refused and counted;
//! the last good policy of the service stays.
//!
//! # Layout
//! - [`policy`]: a policy compiled for the request path, and the per-request decision
//!   (pin, sticky point or weighted draw, fallback when a version has no available endpoint).
//! - [`mirror`]: fire-and-forget copies of requests to the mirror version, on a bounded
//!   in-flight budget.
//! - [`metrics`]: per-version RED series of routes, and the mirror's series.

pub mod metrics;
pub mod mirror;
pub mod policy;

use crate::Gateway;
use arc_swap::ArcSwap;
use policy::CompiledPolicy;
use serde_json::{Value, json};
use signalbox_core::metrics::{Counter, Registry};
use signalbox_core::traffic::{PolicyError, TrafficPolicy};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The policies in force and what mirroring shares across requests.
pub struct TrafficState {
    policies: ArcSwap<HashMap<String, Arc<CompiledPolicy>>>,
    /// Serialises updates (readers never wait).
    update: Mutex<()>,
    registry: Registry,
    applied: Counter,
    rejected: Counter,
    pub(crate) mirrors: mirror::Mirrors,
}

impl TrafficState {
    pub fn new(registry: &Registry, mirror_max_inflight: usize) -> Self {
        let policy_updates = |result| {
            registry.counter(
                "signalbox_gateway_traffic_policy_updates_total",
                "Traffic policies applied (`ok`) or refused because the document is invalid (`rejected`).",
                &[("result", result)],
            )
        };
        TrafficState {
            policies: ArcSwap::from_pointee(HashMap::new()),
            update: Mutex::new(()),
            registry: registry.clone(),
            applied: policy_updates("ok"),
            rejected: policy_updates("rejected"),
            mirrors: mirror::Mirrors::new(registry.clone(), mirror_max_inflight),
        }
    }

    /// The policy of `service`, if it has one.
    pub fn policy(&self, service: &str) -> Option<Arc<CompiledPolicy>> {
        self.policies.load().get(service).cloned()
    }

    fn set(&self, service: &str, compiled: Option<CompiledPolicy>) {
        let _g = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::clone(&self.policies.load());
        match compiled {
            Some(c) => next.insert(service.to_owned(), Arc::new(c)),
            None => next.remove(service),
        };
        self.policies.store(Arc::new(next));
    }
}

impl Gateway {
    /// Applies the stored policy document of `service` (`None`: the policy was deleted, the
    /// service is balanced over all its endpoints again). An invalid document is refused,
    /// counted and logged; the service keeps its last good policy.
    pub fn apply_traffic_policy(&self, service: &str, document: Option<&str>) -> Result<(), PolicyError> {
        let t = &self.shared.traffic;
        let Some(doc) = document else {
            t.set(service, None);
            t.applied.inc();
            tracing::info!(service, "traffic policy removed");
            return Ok(());
        };
        match TrafficPolicy::parse(doc) {
            Ok(p) => {
                tracing::info!(service, policy = %doc, "traffic policy applied");
                t.set(service, Some(CompiledPolicy::new(service, p, &t.registry)));
                t.applied.inc();
                Ok(())
            }
            Err(e) => {
                t.rejected.inc();
                tracing::warn!(service, error = %e, "traffic policy refused; the last good one stays");
                Err(e)
            }
        }
    }

    /// Replaces every policy at once (a full re-read of central configuration): services
    /// missing from `documents` lose their policy; invalid documents keep the last good one.
    pub fn apply_traffic_policies(&self, documents: &BTreeMap<String, String>) {
        let current: Vec<String> = self.shared.traffic.policies.load().keys().cloned().collect();
        for s in current.iter().filter(|s| !documents.contains_key(*s)) {
            let _ = self.apply_traffic_policy(s, None);
        }
        for (s, doc) in documents {
            let _ = self.apply_traffic_policy(s, Some(doc));
        }
    }

    /// The policy in force for `service`.
    pub fn traffic_policy(&self, service: &str) -> Option<TrafficPolicy> {
        self.shared.traffic.policy(service).map(|c| c.policy.clone())
    }

    /// The policy in force and the gateway's endpoints of `service` per version
    /// (`available`: not ejected, circuit not open).
    pub fn traffic_view(&self, service: &str) -> Value {
        let snap = self.shared.snapshot.load();
        let versions: serde_json::Map<String, Value> = snap
            .services
            .get(service)
            .map(|up| up.version_counts())
            .unwrap_or_default()
            .into_iter()
            .map(|(v, available, total)| (v.to_string(), json!({ "available": available, "total": total })))
            .collect();
        json!({
            "service": service,
            "known": snap.services.contains_key(service),
            "policy": self.traffic_policy(service),
            "endpoints": versions,
            "mirror_inflight": self.shared.traffic.mirrors.inflight.load(Ordering::Relaxed),
        })
    }
}

/// A slot of the mirror budget, given back when the mirror ends.
pub(crate) struct MirrorSlot(Arc<AtomicUsize>);

impl Drop for MirrorSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
