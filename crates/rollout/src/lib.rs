//! Progressive delivery for Signalbox: canary rollouts that the node judges on the gateway's
//! own RED metrics and promotes or rolls back by itself, and blue-green switches (a
//! one-step rollout). The gateway does the traffic split; this crate decides the weights.
//!
//! A rollout moves a service's requests from a stable version to a canary version in steps
//! (5, 25, 50, 100 % by default) by rewriting the `weights` of the service's traffic policy
//! in central configuration (`gateway/traffic/<service>`), which the gateway follows with
//! hot reload. Between steps the canary's error rate, p99 and an optional PromQL check are
//! compared with the thresholds and with the stable version over the step's interval; every
//! decision is recorded with its reason and numbers, sent to the alert receivers as a
//! `RolloutDecision` notification, and shown as a marker on the service's charts.
//!
//! State lives in central configuration too (`signalbox-rollouts/state/<service>`), one
//! version per decision, so a restarted node resumes a rollout where it was and the config
//! history is the audit trail.
//!
//! # Layout
//! - [`spec`]: the start request (`"1%"`, `"+20%"`, `"1m"`), validated into a [`spec::Spec`].
//! - [`analysis`]: the pure judgement of one analysis (pass, hold, fail and why).
//! - [`measure`]: the PromQL behind the numbers, evaluated in-process on the node's TSDB.
//! - [`state`]: the recorded rollout, its phase and decision history.
//! - [`traffic`]: the traffic policy's weights, and the registry's versions and health.
//! - [`controller`]: the loop and the commands (start, switch, pause, resume, promote, abort).
//! - [`error`]: the crate's error type.

pub mod analysis;
pub mod controller;
pub mod error;
pub mod measure;
pub mod spec;
pub mod state;
pub mod traffic;

pub use controller::{Controller, Settings};
pub use error::RolloutError;
