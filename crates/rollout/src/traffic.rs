//! A service's traffic policy in central configuration (application [`APP`], profile
//! [`PROFILE`], key = service): the JSON the gateway follows with hot reload,
//! `{"weights": {"v1": 95, "v2": 5}, "pins": [...], "sticky": {...}, "mirror": {...}}`.
//!
//! The document is [`TrafficPolicy`] (its format and checks are the gateway's, in
//! `signalbox_core::traffic`). A rollout only changes `weights`; every other field (pins,
//! stickiness, mirroring) is kept as written, so a tester's `x-canary: always` pin survives
//! the rollout's steps. Also here: which versions the registry knows, and whether one has a
//! healthy instance.

use crate::error::{Result, RolloutError};
use signalbox_control::ControlPlane;
use signalbox_control::config::Write;
use signalbox_control::error::ControlError;
use signalbox_control::registry::InstanceView;
use signalbox_control::registry::model::Status;
pub use signalbox_core::traffic::TrafficPolicy;
use signalbox_core::traffic::{GATEWAY_APP as APP, TRAFFIC_PROFILE as PROFILE};
use std::collections::BTreeMap;

/// The version with the largest weight (ties: the first by name).
pub fn main_version(p: &TrafficPolicy) -> Option<&str> {
    let top = p.weights.values().copied().max()?;
    p.weights.iter().find(|(_, w)| **w == top).map(|(v, _)| v.as_str())
}

/// A rollout's weights as the policy holds them.
pub fn policy_weights(w: &BTreeMap<String, u8>) -> BTreeMap<String, u32> {
    w.iter().map(|(k, v)| (k.clone(), u32::from(*v))).collect()
}

/// The current policy and its config version (`None`: no policy yet).
pub fn read(control: &ControlPlane, service: &str) -> Result<(TrafficPolicy, Option<u64>)> {
    match control.config.get(APP, PROFILE, service, None) {
        Ok(e) => {
            let p = TrafficPolicy::parse(&e.value).unwrap_or_else(|err| {
                tracing::warn!(service, error = %err, "the traffic policy is invalid; a rollout rewrites it with its weights");
                TrafficPolicy::default()
            });
            Ok((p, Some(e.version)))
        }
        Err(ControlError::NotFound(_)) => Ok((TrafficPolicy::default(), None)),
        Err(e) => Err(e.into()),
    }
}

/// Who wrote the current policy (`None`: no policy).
pub fn author(control: &ControlPlane, service: &str) -> Option<String> {
    control.config.get(APP, PROFILE, service, None).ok().map(|e| e.author)
}

/// Writes `weights` into the policy (keeping its other fields); nothing is written when
/// they are already so. Returns whether a write happened.
pub async fn write_weights(
    control: &ControlPlane,
    service: &str,
    weights: &BTreeMap<String, u8>,
    author: &str,
    comment: &str,
) -> Result<bool> {
    let (mut policy, _) = read(control, service)?;
    let weights = policy_weights(weights);
    if policy.weights == weights {
        return Ok(false);
    }
    policy.weights = weights;
    if let Err(e) = policy.validate() {
        // A pin or mirror naming a version the rollout does not know stays as written; a
        // policy the gateway would refuse is not written.
        return Err(RolloutError::invalid("traffic", format!("the traffic policy of {service} would be invalid: {e}")));
    }
    let value = policy.to_json();
    let w = Write { value, author: author.to_string(), comment: comment.to_string(), expected_version: None };
    control.config.put(APP, PROFILE, service, w).await?;
    Ok(true)
}

/// An instance's version: its `version` meta, else a `version=...` tag (as the gateway
/// reads it).
pub fn instance_version(i: &InstanceView) -> Option<String> {
    signalbox_core::traffic::version_of(&i.meta, &i.tags)
}

/// Whether an instance takes traffic (passing or warning, not in maintenance), as the
/// gateway's endpoint set counts it.
pub fn instance_healthy(i: &InstanceView) -> bool {
    i.status != Status::Critical && i.maintenance.is_none()
}

/// Versions registered for `service`, with (healthy, total) instance counts.
pub fn versions(control: &ControlPlane, service: &str) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for i in control.registry.instances(service, false) {
        if let Some(v) = instance_version(&i) {
            let e = out.entry(v).or_default();
            e.1 += 1;
            if instance_healthy(&i) {
                e.0 += 1;
            }
        }
    }
    out
}

/// Fails unless `version` of `service` has a healthy instance; `field` names the input.
pub fn require_healthy(control: &ControlPlane, service: &str, version: &str, field: &str) -> Result<()> {
    match versions(control, service).get(version) {
        Some((healthy, _)) if *healthy > 0 => Ok(()),
        Some((_, total)) => Err(RolloutError::NoHealthyInstance {
            field: field.into(),
            message: format!("none of the {total} instance(s) of {service} version `{version}` is healthy"),
        }),
        None => Err(RolloutError::NoHealthyInstance {
            field: field.into(),
            message: format!(
                "no instance of {service} has version `{version}` (registry meta `version` or tag `version={version}`)"
            ),
        }),
    }
}
