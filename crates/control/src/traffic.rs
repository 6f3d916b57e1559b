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
    switch_counting(cp, service, to, author, 0).await
}

/// [`switch`], counting `elsewhere` more healthy endpoints of `to` that the registry does not
/// know (a gateway's static endpoints).
pub async fn switch_counting(
    cp: &ControlPlane,
    service: &str,
    to: &str,
    author: &str,
    elsewhere: usize,
) -> Result<Entry> {
    crate::config::check_names(GATEWAY_APP, TRAFFIC_PROFILE, service)
        .map_err(|_| ControlError::invalid("service", "must be 1-256 letters, digits, `-`, `_`, `.`, `/` or `:`"))?;
    if !traffic::version_ok(to) {
        return Err(ControlError::invalid("to", "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
    }
    let (versions, _) = versions(&cp.registry, service);
    let healthy = versions.get(to).map_or(0, |c| c.healthy) + elsewhere;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::RegisterRequest;
    use serde_json::json;

    async fn register(cp: &ControlPlane, id: &str, version: &str, critical: bool) {
        let mut req = json!({"service": "shop", "id": id, "address": "127.0.0.1", "port": 9000,
            "meta": {"version": version}});
        if critical {
            // A TTL check starts critical until the instance reports.
            req["checks"] = json!([{"ttl": "60s"}]);
        }
        let req: RegisterRequest = serde_json::from_value(req).unwrap();
        cp.registry.register(req).await.unwrap();
    }

    fn policy(cp: &ControlPlane) -> Option<TrafficPolicy> {
        status(cp, "shop").unwrap().policy
    }

    #[tokio::test]
    async fn switch_refuses_a_version_without_healthy_instances_and_back_restores() {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::open(dir.path(), Default::default()).unwrap();
        register(&cp, "a", "v1", false).await;
        register(&cp, "b", "v2", true).await;
        let st = status(&cp, "shop").unwrap();
        assert_eq!(st.versions["v1"], VersionCount { healthy: 1, total: 1 });
        assert_eq!(st.versions["v2"], VersionCount { healthy: 0, total: 1 });
        for to in ["v2", "v3"] {
            let e = switch(&cp, "shop", to, "me").await.unwrap_err();
            assert!(matches!(&e, ControlError::Refused(m) if m.contains("no healthy instance")), "{e}");
        }
        assert!(
            matches!(switch(&cp, "shop", "v 1", "me").await, Err(ControlError::Invalid { field, .. }) if field == "to")
        );
        assert_eq!(policy(&cp), None, "a refused switch changes nothing");

        // The first switch writes version 1; back deletes it.
        switch(&cp, "shop", "v1", "me").await.unwrap();
        assert_eq!(policy(&cp), Some(TrafficPolicy::all_to("v1")));
        let e = switch_back(&cp, "shop", "me").await.unwrap();
        assert!(e.deleted);
        assert_eq!(policy(&cp), None);

        // A canary policy, then a switch, then back: the canary policy returns.
        let canary = r#"{"weights": {"v1": 90, "v2": 10}}"#;
        let w = Write { value: canary.into(), author: "me".into(), ..Write::default() };
        cp.config.put(GATEWAY_APP, TRAFFIC_PROFILE, "shop", w).await.unwrap();
        switch(&cp, "shop", "v1", "me").await.unwrap();
        let e = switch_back(&cp, "shop", "me").await.unwrap();
        assert_eq!(e.value, canary);
        assert!(e.comment.contains("back"), "{}", e.comment);
        assert_eq!(policy(&cp), Some(TrafficPolicy::parse(canary).unwrap()));
    }

    #[tokio::test]
    async fn bad_policies_are_refused_at_write_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::open(dir.path(), Default::default()).unwrap();
        let put = |v: &str| {
            let w = Write { value: v.into(), author: "me".into(), ..Write::default() };
            cp.config.put(GATEWAY_APP, TRAFFIC_PROFILE, "shop", w)
        };
        for (doc, field) in [
            (r#"{"weights": {"v1": 90}}"#, "value.weights"),
            (r#"{"pins": [{"header": "x", "cookie": "y", "value": "1", "version": "v2"}]}"#, "value.pins[0]"),
            ("not json", "value"),
        ] {
            match put(doc).await {
                Err(ControlError::Invalid { field: f, .. }) => assert_eq!(f, field, "{doc}"),
                other => panic!("{doc} was not refused: {other:?}"),
            }
        }
        put(r#"{"weights": {"v1": 90, "v2": 10}}"#).await.unwrap();
        // Other profiles of the gateway application are not traffic policies.
        let w = Write { value: "not json".into(), author: "me".into(), ..Write::default() };
        cp.config.put(GATEWAY_APP, "default", "shop", w).await.unwrap();
    }
}
