//! A rollout's recorded state and decision history, as it is stored (JSON in central
//! configuration, application [`APP`], profile [`PROFILE`], key = service) and shown by the
//! API. Each change is a new config version, so the config history is an audit trail too.

use crate::spec::Spec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The central-configuration application holding rollout state.
pub const APP: &str = "signalbox-rollouts";
/// Its profile.
pub const PROFILE: &str = "state";
/// Decisions kept per rollout (the oldest go first; the config history keeps them all).
pub const MAX_HISTORY: usize = 500;

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Steps advance on the analysis (or on promotes, with `interval = pause`).
    Progressing,
    /// Waiting for a human: paused by one, or held too often for lack of traffic.
    Paused,
    /// Every request goes to the canary, which is now the stable version.
    Succeeded,
    /// The analysis failed; every request went back to stable.
    RolledBack,
    /// Stopped by a human; every request went back to stable.
    Aborted,
}

impl Phase {
    /// Whether the rollout still runs (only one may run per service).
    pub fn active(self) -> bool {
        matches!(self, Phase::Progressing | Phase::Paused)
    }
}

/// A canary rollout or a blue-green switch (a one-step rollout, done at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Canary,
    Switch,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Started,
    Promoted,
    Held,
    RolledBack,
    Paused,
    Resumed,
    Aborted,
    Succeeded,
    Switched,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Started => "started",
            Decision::Promoted => "promoted",
            Decision::Held => "held",
            Decision::RolledBack => "rolled_back",
            Decision::Paused => "paused",
            Decision::Resumed => "resumed",
            Decision::Aborted => "aborted",
            Decision::Succeeded => "succeeded",
            Decision::Switched => "switched",
        }
    }
}

/// One version's figures over an analysis window.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct VersionStats {
    /// Requests in the window.
    pub requests: f64,
    /// Failed requests (5xx or no response) in the window.
    pub errors: f64,
    /// `errors / requests`, `None` without requests.
    pub error_rate: Option<f64>,
    /// 99th percentile latency in milliseconds, `None` without requests.
    pub p99_ms: Option<f64>,
}

/// What an analysis measured.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Measurements {
    /// The window's length in seconds, ending at the analysis time.
    pub window_s: f64,
    pub stable: VersionStats,
    pub canary: VersionStats,
    /// The extra PromQL check's value (`None`: no check, or it returned nothing).
    pub query_value: Option<f64>,
    /// Why the extra check could not be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_error: Option<String>,
}

/// One entry of the decision history.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Event {
    pub t_ms: i64,
    pub decision: Decision,
    /// The step index after the decision.
    pub step: usize,
    /// The weights after the decision.
    pub weights: BTreeMap<String, u8>,
    /// Why, with the numbers.
    pub reason: String,
    /// `controller` for the analysis, else the token that asked.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Measurements>,
}

/// A rollout as stored.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Rollout {
    pub spec: Spec,
    pub kind: Kind,
    pub phase: Phase,
    /// Index into `spec.steps` of the current step.
    pub step: usize,
    /// The weights the rollout last wrote.
    pub weights: BTreeMap<String, u8>,
    pub started_ms: i64,
    pub step_started_ms: i64,
    /// When the current step is judged next (automatic intervals only).
    pub next_analysis_ms: Option<i64>,
    /// Consecutive holds in this step.
    pub holds: u32,
    pub finished_ms: Option<i64>,
    pub started_by: String,
    pub history: Vec<Event>,
    /// Decisions of the service's earlier rollouts (no holds), for chart annotations.
    #[serde(default)]
    pub earlier: Vec<Event>,
}

impl Rollout {
    /// The weights with `canary_percent` of requests on the canary.
    pub fn weights_at(spec: &Spec, canary_percent: u8) -> BTreeMap<String, u8> {
        let mut w = BTreeMap::new();
        if canary_percent < 100 {
            w.insert(spec.stable.clone(), 100 - canary_percent);
        }
        if canary_percent > 0 {
            w.insert(spec.canary.clone(), canary_percent);
        }
        w
    }

    /// The canary's share now.
    pub fn canary_percent(&self) -> u8 {
        self.weights.get(&self.spec.canary).copied().unwrap_or(0)
    }

    /// Appends a decision (dropping the oldest past [`MAX_HISTORY`]).
    pub fn record(&mut self, e: Event) {
        self.history.push(e);
        if self.history.len() > MAX_HISTORY {
            let extra = self.history.len() - MAX_HISTORY;
            self.history.drain(..extra);
        }
    }
}
