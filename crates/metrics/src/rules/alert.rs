//! One alerting rule's alerts and their state machine, with Prometheus's semantics:
//! a new result is `pending`, becomes `firing` once it has been active for `for`, stays
//! firing for `keep_firing_for` after its result disappears, and is then `inactive`
//! (resolved). A resolved alert is kept 15 minutes so that its resolution is notified; a
//! pending one that disappears is dropped at once.

use super::file::{RuleDef, RuleKind};
use super::template::{TemplateData, go_float_e};
use crate::promql::Sample;
use crate::storage::Labels;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long a resolved alert is kept (and re-notified as resolved).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule (one label set of its result). Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// The result's value at the last evaluation, as Prometheus's API prints it (`1e+00`).
    pub value: String,
    pub active_at: i64,
    #[serde(default)]
    pub fired_at: Option<i64>,
    #[serde(default)]
    pub resolved_at: Option<i64>,
    #[serde(default)]
    pub keep_firing_since: Option<i64>,
    #[serde(default)]
    pub last_sent_at: Option<i64>,
    #[serde(default)]
    pub valid_until: i64,
}

/// A state change, for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// When (Unix milliseconds) and as RFC 3339.
    pub t_ms: i64,
    pub time: String,
    pub group: String,
    pub file: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub from: AlertState,
    pub to: AlertState,
    pub value: String,
}

/// What one evaluation of an alerting rule produced.
pub struct AlertOutcome {
    /// The `ALERTS` and `ALERTS_FOR_STATE` samples.
    pub series: Vec<(Labels, i64, f64)>,
    /// State changes, without group and file (the caller fills them).
    pub transitions: Vec<Transition>,
}

pub fn rfc3339(t_ms: i64) -> String {
    if t_ms <= 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    signalbox_core::time::rfc3339_millis(t_ms as u64 * 1_000_000)
}

fn transition(rule: &str, a: &Alert, from: AlertState, to: AlertState, t_ms: i64) -> Transition {
    Transition {
        t_ms,
        time: rfc3339(t_ms),
        group: String::new(),
        file: String::new(),
        rule: rule.to_owned(),
        labels: a.labels.clone(),
        from,
        to,
        value: a.value.clone(),
    }
}

/// Evaluates an alerting rule's result `vector` at `ts`, updating `active`. `limit` (0: none)
/// caps the alerts; past it every alert is dropped and the evaluation fails, as Prometheus.
pub fn eval_alerts(
    rule: &RuleDef,
    vector: Vec<Sample>,
    ts: i64,
    external_url: &str,
    limit: usize,
    active: &mut BTreeMap<Labels, Alert>,
) -> Result<AlertOutcome, String> {
    let RuleKind::Alerting { for_ms, keep_firing_for_ms, label_templates, annotation_templates, .. } = &rule.kind
    else {
        return Err("not an alerting rule".into());
    };
    let mut transitions = Vec::new();
    let mut seen: BTreeMap<Labels, ()> = BTreeMap::new();
    for s in vector {
        let value = go_float_e(s.v);
        let label_data = TemplateData {
            labels: s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            value: s.v,
            external_url,
            active_at_ms: ts,
        };
        let expand = |t: &super::template::Template, data: &TemplateData<'_>| {
            t.expand(data).unwrap_or_else(|e| format!("<error expanding template: {e}>"))
        };
        let mut labels: BTreeMap<String, String> =
            s.labels.iter().filter(|(k, _)| k != "__name__").map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, t) in label_templates {
            let v = expand(t, &label_data);
            if v.is_empty() {
                labels.remove(k);
            } else {
                labels.insert(k.clone(), v);
            }
        }
        labels.insert("alertname".into(), rule.name.clone());
        let key: Labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if seen.insert(key.clone(), ()).is_some() {
            return Err("vector contains metrics with the same labelset after applying alert labels".into());
        }
        // Annotations see when the alert became active (an ongoing one keeps its start).
        let active_at_ms = match active.get(&key) {
            Some(a) if a.state != AlertState::Inactive => a.active_at,
            _ => ts,
        };
        let data = TemplateData { active_at_ms, ..label_data };
        let annotations: BTreeMap<String, String> =
            annotation_templates.iter().map(|(k, t)| (k.clone(), expand(t, &data))).collect();
        match active.get_mut(&key) {
            Some(a) if a.state != AlertState::Inactive => {
                a.value = value;
                a.annotations = annotations;
            }
            _ => {
                let a = Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    keep_firing_since: None,
                    last_sent_at: None,
                    valid_until: 0,
                };
                transitions.push(transition(&rule.name, &a, AlertState::Inactive, AlertState::Pending, ts));
                active.insert(key, a);
            }
        }
    }

    let mut active_pending = 0;
    let mut remove = Vec::new();
    for (key, a) in active.iter_mut() {
        let mut keep_firing = false;
        if !seen.contains_key(key) {
            if *keep_firing_for_ms > 0 && a.state == AlertState::Firing {
                let since = *a.keep_firing_since.get_or_insert(ts);
                keep_firing = ts - since < *keep_firing_for_ms;
            }
            if !keep_firing {
                if a.state == AlertState::Pending || a.resolved_at.is_some_and(|r| ts - r > RESOLVED_RETENTION_MS) {
                    if a.state == AlertState::Pending {
                        transitions.push(transition(&rule.name, a, AlertState::Pending, AlertState::Inactive, ts));
                    }
                    remove.push(key.clone());
                    continue;
                }
                if a.state != AlertState::Inactive {
                    transitions.push(transition(&rule.name, a, a.state, AlertState::Inactive, ts));
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                continue;
            }
        } else {
            a.keep_firing_since = None;
        }
        active_pending += 1;
        if a.state == AlertState::Pending && ts - a.active_at >= *for_ms {
            a.state = AlertState::Firing;
            a.fired_at = Some(ts);
            transitions.push(transition(&rule.name, a, AlertState::Pending, AlertState::Firing, ts));
        }
    }
    for k in remove {
        active.remove(&k);
    }
    if limit > 0 && active_pending > limit {
        active.clear();
        return Err(format!("exceeded limit of {limit} with {active_pending} alerts"));
    }

    let mut series = Vec::new();
    for a in active.values().filter(|a| a.state != AlertState::Inactive) {
        let mut l: Labels = a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        l.push(("__name__".into(), "ALERTS".into()));
        l.push(("alertstate".into(), a.state.as_str().into()));
        l.sort();
        series.push((l, ts, 1.0));
        let mut l: Labels = a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        l.push(("__name__".into(), "ALERTS_FOR_STATE".into()));
        l.sort();
        series.push((l, ts, (a.active_at / 1000) as f64));
    }
    Ok(AlertOutcome { series, transitions })
}

/// The alerts of a rule to notify now (firing, or resolved and not yet notified as such,
/// or due for a resend), with their `valid_until` and `last_sent_at` updated.
pub fn alerts_to_send(
    active: &mut BTreeMap<Labels, Alert>,
    ts: i64,
    resend_delay_ms: i64,
    interval_ms: i64,
) -> Vec<Alert> {
    let mut out = Vec::new();
    for a in active.values_mut() {
        if a.state == AlertState::Pending {
            continue;
        }
        let due = match (a.resolved_at, a.last_sent_at) {
            (_, None) => true,
            (Some(r), Some(sent)) if r > sent => true,
            (_, Some(sent)) => sent + resend_delay_ms <= ts,
        };
        if !due {
            continue;
        }
        a.valid_until = ts + 4 * resend_delay_ms.max(interval_ms);
        a.last_sent_at = Some(ts);
        out.push(a.clone());
    }
    out
}
