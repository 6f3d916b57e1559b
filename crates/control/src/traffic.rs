//! Blue-green switches over a service's traffic policy (the document format and its checks
//! are [`signalbox_core::traffic`]): [`switch`] sends every request to one version, refusing
//! a version with no healthy instance; [`switch_back`] restores the policy version before the
//! current one from the config history, so a rollback is one step; [`status`] shows the
//! policy beside the service's instances per version.

use crate::ControlPlane;
use crate::config::{Entry, Write};
use crate::error::{ControlError, Result};
use crate::registry::Registry;
use crate::registry::model::Status;
use serde::Serialize;
use signalbox_core::traffic::{self, GATEWAY_APP, TRAFFIC_PROFILE, TrafficPolicy};
use std::collections::BTreeMap;

/// Instances of one version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VersionCount {
    /// Instances the gateway balances over (passing or warning).
    pub healthy: usize,
    pub total: usize,
}

/// A service's traffic policy and its instances per version.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficStatus {
    pub service: String,
    /// The stored policy, if there is one.
    pub policy: Option<TrafficPolicy>,
    /// Its config version (0: none).
    pub policy_version: u64,
    /// Instances per version (registry metadata `version` or a `version=` tag).
    pub versions: BTreeMap<String, VersionCount>,
    /// Instances with no version.
    pub unversioned: VersionCount,
}

/// Instances of `service` per version, from the registry.
pub fn versions(reg: &Registry, service: &str) -> (BTreeMap<String, VersionCount>, VersionCount) {
    let mut by = BTreeMap::<String, VersionCount>::new();
    let mut none = VersionCount::default();
    for i in reg.instances(service, false) {
        let c = match traffic::version_of(&i.meta, &i.tags) {
            Some(v) => by.entry(v).or_default(),
            None => &mut none,
        };
        c.total += 1;
        if i.status != Status::Critical {
            c.healthy += 1;
        }
    }
    (by, none)
}

/// The policy of `service` and its instances per version.
pub fn status(cp: &ControlPlane, service: &str) -> Result<TrafficStatus> {
    let (policy, policy_version) = match cp.config.get(GATEWAY_APP, TRAFFIC_PROFILE, service, None) {
        Ok(e) => (TrafficPolicy::parse(&e.value).ok(), e.version),
        Err(ControlError::NotFound(_)) => (None, 0),
        Err(e) => return Err(e),
    };
    let (versions, unversioned) = versions(&cp.registry, service);
    Ok(TrafficStatus { service: service.to_owned(), policy, policy_version, versions, unversioned })
}

/// Sends every request of `service` to `to` (`{"weights": {to: 100}}`), keeping the other
/// versions registered; refused when `to` has no healthy instance.
pub async fn switch(cp: &ControlPlane, service: &str, to: &str, author: &str) -> Result<Entry> {
    crate::config::check_names(GATEWAY_APP, TRAFFIC_PROFILE, service)
        .map_err(|_| ControlError::invalid("service", "must be 1-256 letters, digits, `-`, `_`, `.`, `/` or `:`"))?;
    if !traffic::version_ok(to) {
        return Err(ControlError::invalid("to", "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
    }
    let (versions, _) = versions(&cp.registry, service);
    let healthy = versions.get(to).map_or(0, |c| c.healthy);
    if healthy == 0 {
        let known: Vec<&str> = versions.iter().filter(|(_, c)| c.healthy > 0).map(|(v, _)| v.as_str()).collect();
        return Err(ControlError::Refused(format!(
            "version `{to}` of `{service}` has no healthy instance (healthy versions: {}); traffic stays as it is",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        )));
    }
    let w = Write {
        value: TrafficPolicy::all_to(to).to_json(),
        author: author.to_owned(),
        comment: format!("switch {service} to {to}"),
        expected_version: None,
    };
    cp.config.put(GATEWAY_APP, TRAFFIC_PROFILE, service, w).await
}

/// Restores the policy of `service` before its current version (a rollback in the config
/// history); when the current version is the first, the policy is deleted, which returns the
/// service to plain balancing over every instance.
pub async fn switch_back(cp: &ControlPlane, service: &str, author: &str) -> Result<Entry> {
    let history = cp.config.history(GATEWAY_APP, TRAFFIC_PROFILE, service)?;
    let Some(head) = history.last() else {
        return Err(ControlError::NotFound(format!("traffic policy of `{service}`")));
    };
    let w = Write { author: author.to_owned(), ..Write::default() };
    if head.version <= 1 {
        return cp.config.delete(GATEWAY_APP, TRAFFIC_PROFILE, service, author, None).await;
    }
    let to = head.version - 1;
    let comment = format!("switch {service} back to policy version {to}");
    cp.config.rollback(GATEWAY_APP, TRAFFIC_PROFILE, service, to, Write { comment, ..w }).await
}
