//! The rollout controller: one loop that, every tick, judges each running rollout on the
//! gateway's metrics and moves its traffic weights, plus the commands (start, switch, pause,
//! resume, promote, abort) the API calls.
//!
//! Every state change is serialised by one lock and follows the same order: the traffic
//! policy first (so a rollback reaches the gateway as soon as possible), then the rollout's
//! recorded state, then the notification. Nothing is held in memory between ticks: the
//! recorded state is the truth, so a restarted node resumes every rollout where it was.
//!
//! Timing of a step with an automatic interval `I`:
//! - at `step start + I` the canary is judged over the last `I`: pass promotes, fail rolls
//!   back, too few requests holds (judged again `I` later; after `max_holds` consecutive
//!   holds the rollout pauses for a human);
//! - before that, every tick judges the window since the step started, and a *failing*
//!   verdict rolls back at once (a pass or a hold waits for the end of the interval). With
//!   `interval = pause` these early checks are the only automatic decisions.

use crate::analysis::{Verdict, judge};
use crate::error::{Result, RolloutError};
use crate::spec::StartRequest;
use crate::state::{self, Decision, Event, Kind, Measurements, Phase, Rollout};
use crate::{measure, traffic};
use signalbox_control::ControlPlane;
use signalbox_control::config::Write;
use signalbox_control::error::ControlError;
use signalbox_metrics::rules::notifier::{Notification, Notifier};
use signalbox_metrics::service::MetricsService;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The author of the controller's own writes.
pub const CONTROLLER: &str = "rollout-controller";
/// Early checks need at least this much of a step (two samples of the node's metrics).
pub const EARLY_MIN_WINDOW_MS: i64 = 2_000;
/// The window of early checks with `interval = pause`.
pub const PAUSE_WINDOW_MS: i64 = 300_000;
/// How long a decision's notification stays firing at the receivers.
pub const NOTIFICATION_TTL_MS: i64 = 300_000;
/// Earlier rollouts' decisions kept for chart annotations.
pub const MAX_EARLIER: usize = 100;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often running rollouts are looked at.
    pub tick: Duration,
    /// The console's external URL, for the notifications' links.
    pub external_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { tick: Duration::from_secs(1), external_url: String::new() }
    }
}

/// A marker on a service's charts: one rollout decision.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Annotation {
    pub t_ms: i64,
    pub service: String,
    pub decision: Decision,
    pub text: String,
}

/// The controller.
pub struct Controller {
    control: Arc<ControlPlane>,
    metrics: Option<Arc<MetricsService>>,
    notifier: Option<Arc<Notifier>>,
    settings: Settings,
    ops: tokio::sync::Mutex<()>,
}

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Controller {
    pub fn new(
        control: Arc<ControlPlane>,
        metrics: Option<Arc<MetricsService>>,
        notifier: Option<Arc<Notifier>>,
        settings: Settings,
    ) -> Arc<Controller> {
        Arc::new(Controller { control, metrics, notifier, settings, ops: tokio::sync::Mutex::new(()) })
    }

    /// Runs the loop until `stop` fires.
    pub fn spawn(self: &Arc<Self>, mut stop: signalbox_core::shutdown::Shutdown) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(me.settings.tick.max(Duration::from_millis(50)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => me.tick(now_ms()).await,
                    _ = stop.wait() => break,
                }
            }
        })
    }

    /// Every recorded rollout (the latest per service).
    pub fn list(&self) -> Vec<Rollout> {
        self.control
            .config
            .list(Some(state::APP), Some(state::PROFILE))
            .into_iter()
            .filter_map(|e| match serde_json::from_str::<Rollout>(&e.value) {
                Ok(r) => Some(r),
                Err(err) => {
                    tracing::warn!(service = %e.key, error = %err, "a recorded rollout does not parse; it is ignored");
                    None
                }
            })
            .collect()
    }

    /// The latest rollout of `service`.
    pub fn get(&self, service: &str) -> Result<Rollout> {
        if !crate::spec::name_ok(service) {
            return Err(RolloutError::invalid("service", "must be 1-128 letters, digits, `-`, `_` or `.`"));
        }
        match self.control.config.get(state::APP, state::PROFILE, service, None) {
            Ok(e) => serde_json::from_str(&e.value)
                .map_err(|err| ControlError::Storage(format!("rollout of {service} does not parse: {err}")).into()),
            Err(ControlError::NotFound(_)) => Err(RolloutError::NotFound(service.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    fn latest(&self, service: &str) -> Result<Option<Rollout>> {
        match self.get(service) {
            Ok(r) => Ok(Some(r)),
            Err(RolloutError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn save(&self, r: &Rollout, comment: &str) -> Result<()> {
        let value = serde_json::to_string(r).map_err(|e| ControlError::Storage(e.to_string()))?;
        let author = r.history.last().map(|e| e.by.clone()).unwrap_or_else(|| CONTROLLER.into());
        let w = Write { value, author, comment: comment.chars().take(500).collect(), expected_version: None };
        self.control.config.put(state::APP, state::PROFILE, &r.spec.service, w).await?;
        Ok(())
    }

    /// Chooses the stable version: the one asked for, else the traffic policy's main
    /// version, else the one other version registered.
    fn stable_of(&self, service: &str, req: &StartRequest) -> Result<String> {
        if let Some(f) = &req.from {
            return Ok(f.clone());
        }
        let (policy, _) = traffic::read(&self.control, service)?;
        if let Some(v) = traffic::main_version(&policy).filter(|v| *v != req.to) {
            return Ok(v.to_string());
        }
        let others: Vec<String> =
            traffic::versions(&self.control, service).into_keys().filter(|v| *v != req.to).collect();
        match others.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(RolloutError::invalid(
                "from",
                format!("no other version of {service} is registered; give the stable version"),
            )),
            many => Err(RolloutError::invalid(
                "from",
                format!("{service} has versions {}; say which one is stable", many.join(", ")),
            )),
        }
    }

    /// Starts a canary rollout of `service` (refused while one runs, or when the canary has
    /// no healthy instance). Its first step's weights are written at once.
    pub async fn start(&self, service: &str, req: StartRequest, by: &str) -> Result<Rollout> {
        let _g = self.ops.lock().await;
        if !signalbox_core::traffic::version_ok(&req.to) {
            return Err(RolloutError::invalid("to", "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
        }
        let previous = self.latest(service)?;
        if let Some(p) = previous.as_ref().filter(|p| p.phase.active()) {
            return Err(RolloutError::Conflict(format!(
                "a rollout of {service} to {} is already {:?}; abort it first",
                p.spec.canary, p.phase
            )));
        }
        // The canary first: with no healthy instance nothing else matters.
        traffic::require_healthy(&self.control, service, &req.to, "to")?;
        let stable = self.stable_of(service, &req)?;
        let spec = req.validate(service, &stable)?;
        let now = now_ms();
        let weights = Rollout::weights_at(&spec, spec.steps[0]);
        let reason = format!(
            "canary {} at {}% (stable {}); steps {:?}, {}, max error rate {}",
            spec.canary,
            spec.steps[0],
            spec.stable,
            spec.steps,
            spec.interval_ms.map(|ms| format!("interval {}s", ms as f64 / 1000.0)).unwrap_or("promote by hand".into()),
            crate::analysis::pct(spec.thresholds.max_error_rate)
        );
        let mut r = Rollout {
            kind: Kind::Canary,
            phase: if spec.steps[0] == 100 { Phase::Succeeded } else { Phase::Progressing },
            step: 0,
            weights: weights.clone(),
            started_ms: now,
            step_started_ms: now,
            next_analysis_ms: spec.interval_ms.map(|i| now + i as i64),
            holds: 0,
            finished_ms: (spec.steps[0] == 100).then_some(now),
            started_by: by.to_string(),
            history: Vec::new(),
            earlier: earlier_of(previous),
            spec,
        };
        r.record(Event {
            t_ms: now,
            decision: Decision::Started,
            step: 0,
            weights,
            reason,
            by: by.to_string(),
            measurements: None,
        });
        self.apply(&mut r).await?;
        Ok(r)
    }

    /// A blue-green switch: every request of `service` to `to` in one step, the old version
    /// kept registered (a switch back is another switch). Refused when `to` has no healthy
    /// instance or a canary rollout runs.
    pub async fn switch(&self, service: &str, to: &str, by: &str) -> Result<Rollout> {
        let _g = self.ops.lock().await;
        let req = StartRequest { to: to.to_string(), steps: Some(vec![100]), ..Default::default() };
        let previous = self.latest(service)?;
        if let Some(p) = previous.as_ref().filter(|p| p.phase.active()) {
            return Err(RolloutError::Conflict(format!(
                "a rollout of {service} to {} is running; abort it first",
                p.spec.canary
            )));
        }
        let (policy, _) = traffic::read(&self.control, service)?;
        let from = traffic::main_version(&policy).map(str::to_string).filter(|v| v != to);
        let stable = match from {
            Some(f) => f,
            None => self.stable_of(service, &req)?,
        };
        let spec = req.validate(service, &stable)?;
        traffic::require_healthy(&self.control, service, to, "to")?;
        let now = now_ms();
        let weights = Rollout::weights_at(&spec, 100);
        let mut r = Rollout {
            kind: Kind::Switch,
            phase: Phase::Succeeded,
            step: 0,
            weights: weights.clone(),
            started_ms: now,
            step_started_ms: now,
            next_analysis_ms: None,
            holds: 0,
            finished_ms: Some(now),
            started_by: by.to_string(),
            history: Vec::new(),
            earlier: earlier_of(previous),
            spec,
        };
        r.record(Event {
            t_ms: now,
            decision: Decision::Switched,
            step: 0,
            weights,
            reason: format!("every request of {service} from {stable} to {to}; {stable} stays registered"),
            by: by.to_string(),
            measurements: None,
        });
        self.apply(&mut r).await?;
        Ok(r)
    }

    /// Stops automatic decisions until resumed (the weights stay).
    pub async fn pause(&self, service: &str, by: &str) -> Result<Rollout> {
        self.command(service, by, |r, now| {
            if r.phase != Phase::Progressing {
                return Err(format!("the rollout is {:?}, not progressing", r.phase));
            }
            r.phase = Phase::Paused;
            r.next_analysis_ms = None;
            Ok((Decision::Paused, format!("paused at {}% by {by}", r.canary_percent()), now))
        })
        .await
    }

    /// Resumes a paused rollout: the current step is watched for a full interval again.
    pub async fn resume(&self, service: &str, by: &str) -> Result<Rollout> {
        self.command(service, by, |r, now| {
            if r.phase != Phase::Paused {
                return Err(format!("the rollout is {:?}, not paused", r.phase));
            }
            r.phase = Phase::Progressing;
            r.holds = 0;
            r.step_started_ms = now;
            r.next_analysis_ms = r.spec.interval_ms.map(|i| now + i as i64);
            Ok((Decision::Resumed, format!("resumed at {}% by {by}", r.canary_percent()), now))
        })
        .await
    }

    /// Moves to the next step without analysis (`full`: straight to 100 %).
    pub async fn promote(&self, service: &str, full: bool, by: &str) -> Result<Rollout> {
        self.command(service, by, |r, now| {
            if !r.phase.active() {
                return Err(format!("the rollout is {:?}; only a running one can be promoted", r.phase));
            }
            let to = if full { r.spec.steps.len() - 1 } else { (r.step + 1).min(r.spec.steps.len() - 1) };
            let d = advance(r, to, now);
            Ok((d, format!("promoted by {by} to {}%", r.canary_percent()), now))
        })
        .await
    }

    /// Stops the rollout: every request back on stable.
    pub async fn abort(&self, service: &str, by: &str) -> Result<Rollout> {
        self.command(service, by, |r, now| {
            if !r.phase.active() {
                return Err(format!("the rollout is {:?}; nothing to abort", r.phase));
            }
            r.phase = Phase::Aborted;
            r.weights = Rollout::weights_at(&r.spec, 0);
            r.next_analysis_ms = None;
            r.finished_ms = Some(now);
            Ok((Decision::Aborted, format!("aborted by {by}: every request back on {}", r.spec.stable), now))
        })
        .await
    }

    async fn command(
        &self,
        service: &str,
        by: &str,
        f: impl FnOnce(&mut Rollout, i64) -> std::result::Result<(Decision, String, i64), String>,
    ) -> Result<Rollout> {
        let _g = self.ops.lock().await;
        let mut r = self.get(service)?;
        let now = now_ms();
        let (decision, reason, t_ms) = f(&mut r, now).map_err(RolloutError::Conflict)?;
        let e = Event {
            t_ms,
            decision,
            step: r.step,
            weights: r.weights.clone(),
            reason,
            by: by.to_string(),
            measurements: None,
        };
        r.record(e);
        self.apply(&mut r).await?;
        Ok(r)
    }

    /// Writes the rollout's weights, then its state, then notifies its last decision.
    async fn apply(&self, r: &mut Rollout) -> Result<()> {
        let Some(last) = r.history.last().cloned() else { return Ok(()) };
        let comment = format!("{} {}: {}", r.spec.canary, last.decision.as_str(), last.reason);
        traffic::write_weights(&self.control, &r.spec.service, &r.weights, CONTROLLER, &comment).await?;
        self.save(r, &comment).await?;
        tracing::info!(
            service = %r.spec.service, canary = %r.spec.canary, decision = last.decision.as_str(),
            weights = ?r.weights, reason = %last.reason, "rollout decision"
        );
        if last.decision != Decision::Held {
            self.notify(r, &last);
        }
        Ok(())
    }

    fn notify(&self, r: &Rollout, e: &Event) {
        let Some(n) = &self.notifier else { return };
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), "RolloutDecision".to_string());
        labels.insert("service".to_string(), r.spec.service.clone());
        labels.insert("decision".to_string(), e.decision.as_str().to_string());
        labels.insert("canary".to_string(), r.spec.canary.clone());
        labels.insert("stable".to_string(), r.spec.stable.clone());
        let severity = if e.decision == Decision::RolledBack { "warning" } else { "info" };
        labels.insert("severity".to_string(), severity.to_string());
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "summary".to_string(),
            format!("{}: rollout of {} {}", r.spec.service, r.spec.canary, e.decision.as_str().replace('_', " ")),
        );
        annotations.insert("description".to_string(), e.reason.clone());
        annotations.insert("weights".to_string(), format!("{:?}", e.weights));
        let base = self.settings.external_url.trim_end_matches('/');
        n.send(vec![Notification {
            labels,
            annotations,
            starts_at_ms: e.t_ms,
            ends_at_ms: e.t_ms + NOTIFICATION_TTL_MS,
            generator_url: format!("{base}/rollouts/{}", r.spec.service),
        }]);
    }

    /// One pass over the running rollouts at `now` (the loop calls it every tick).
    pub async fn tick(&self, now: i64) {
        for r in self.list().into_iter().filter(|r| r.phase == Phase::Progressing) {
            if let Err(e) = self.step(&r.spec.service, now).await {
                tracing::error!(service = %r.spec.service, error = %e, "rollout analysis failed");
            }
        }
    }

    async fn step(&self, service: &str, now: i64) -> Result<()> {
        let _g = self.ops.lock().await;
        let mut r = self.get(service)?;
        if r.phase != Phase::Progressing {
            return Ok(());
        }
        let (policy, _) = traffic::read(&self.control, service)?;
        if policy.weights != traffic::policy_weights(&r.weights) {
            match traffic::author(&self.control, service) {
                // Someone else changed the weights (`signalbox switch`, a config edit): the
                // rollout stops deciding rather than fight them; resume re-applies its own.
                Some(who) if who != CONTROLLER => {
                    r.phase = Phase::Paused;
                    r.next_analysis_ms = None;
                    r.record(Event {
                        t_ms: now,
                        decision: Decision::Paused,
                        step: r.step,
                        weights: r.weights.clone(),
                        reason: format!(
                            "the traffic policy was changed outside the rollout (by {who}); paused: resume re-applies the rollout's weights, abort sends every request to {}",
                            r.spec.stable
                        ),
                        by: CONTROLLER.into(),
                        measurements: None,
                    });
                    let comment = format!("{} paused: the traffic policy was changed by {who}", r.spec.canary);
                    self.save(&r, &comment).await?;
                    if let Some(last) = r.history.last() {
                        self.notify(&r, last);
                    }
                    return Ok(());
                }
                // The rollout's own write was lost (a restart between the two writes).
                _ => {
                    traffic::write_weights(
                        &self.control,
                        service,
                        &r.weights,
                        CONTROLLER,
                        "rollout resumed: its weights",
                    )
                    .await?;
                }
            }
        }
        let elapsed = now - r.step_started_ms;
        let due = r.next_analysis_ms.is_some_and(|t| now >= t);
        let window = match (due, r.spec.interval_ms) {
            (true, Some(i)) => i as i64,
            (false, Some(i)) => elapsed.min(i as i64),
            (_, None) => elapsed.min(PAUSE_WINDOW_MS),
        };
        if !due && elapsed < EARLY_MIN_WINDOW_MS {
            return Ok(());
        }
        let (verdict, m) = match &self.metrics {
            None => (Verdict::Hold("metrics are not enabled on this node; nothing to judge".into()), None),
            Some(svc) => match measure::measure_async(svc.clone(), r.spec.clone(), now, window).await {
                Ok(m) => (judge(&r.spec.thresholds, &m), Some(m)),
                Err(e) => (Verdict::Hold(format!("the metrics could not be read: {e}")), None),
            },
        };
        let decision = match (&verdict, due) {
            (Verdict::Fail(_), _) => {
                r.phase = Phase::RolledBack;
                r.weights = Rollout::weights_at(&r.spec, 0);
                r.next_analysis_ms = None;
                r.finished_ms = Some(now);
                Decision::RolledBack
            }
            (_, false) => return Ok(()),
            (Verdict::Pass(_), true) => {
                let next = r.step + 1;
                advance(&mut r, next, now)
            }
            (Verdict::Hold(_), true) => {
                r.holds += 1;
                r.next_analysis_ms = r.spec.interval_ms.map(|i| now + i as i64);
                if r.holds > r.spec.thresholds.max_holds {
                    r.phase = Phase::Paused;
                    r.next_analysis_ms = None;
                    Decision::Paused
                } else {
                    Decision::Held
                }
            }
        };
        let reason = match decision {
            Decision::RolledBack => {
                format!("canary failed: {}; every request back on {}", verdict.reason(), r.spec.stable)
            }
            Decision::Paused => {
                format!("held {} times in a row ({}); paused: promote or abort", r.holds, verdict.reason())
            }
            Decision::Held => format!("hold {} of {}: {}", r.holds, r.spec.thresholds.max_holds, verdict.reason()),
            _ => format!("canary passed: {}; now {}%", verdict.reason(), r.canary_percent()),
        };
        let e = Event {
            t_ms: now,
            decision,
            step: r.step,
            weights: r.weights.clone(),
            reason,
            by: CONTROLLER.into(),
            measurements: m,
        };
        // Consecutive holds in a step are one entry (the latest), not one per interval.
        if decision == Decision::Held
            && r.history.last().is_some_and(|l| l.decision == Decision::Held && l.step == r.step)
        {
            r.history.pop();
        }
        r.record(e);
        self.apply(&mut r).await
    }

    /// Decisions of `service` (or every service) between `start_ms` and `end_ms`, for the
    /// charts' markers; holds are left out.
    pub fn annotations(&self, service: Option<&str>, start_ms: i64, end_ms: i64) -> Vec<Annotation> {
        let mut out = Vec::new();
        for r in self.list() {
            if service.is_some_and(|s| s != r.spec.service) {
                continue;
            }
            for e in r.earlier.iter().chain(r.history.iter()) {
                if e.decision == Decision::Held || e.t_ms < start_ms || e.t_ms > end_ms {
                    continue;
                }
                out.push(Annotation {
                    t_ms: e.t_ms,
                    service: r.spec.service.clone(),
                    decision: e.decision,
                    text: e.reason.clone(),
                });
            }
        }
        out.sort_by_key(|a| a.t_ms);
        out
    }
}

/// Moves `r` to step `to` at `now`: the last step finishes the rollout.
fn advance(r: &mut Rollout, to: usize, now: i64) -> Decision {
    r.step = to.min(r.spec.steps.len() - 1);
    r.weights = Rollout::weights_at(&r.spec, r.spec.steps[r.step]);
    r.holds = 0;
    r.step_started_ms = now;
    if r.spec.steps[r.step] == 100 {
        r.phase = Phase::Succeeded;
        r.next_analysis_ms = None;
        r.finished_ms = Some(now);
        Decision::Succeeded
    } else {
        r.phase = Phase::Progressing;
        r.next_analysis_ms = r.spec.interval_ms.map(|i| now + i as i64);
        Decision::Promoted
    }
}

/// The decisions of a previous rollout worth keeping as annotations (no holds), with its
/// own earlier ones, newest [`MAX_EARLIER`].
fn earlier_of(previous: Option<Rollout>) -> Vec<Event> {
    let Some(p) = previous else { return Vec::new() };
    let canary = p.spec.canary.clone();
    let mut out = p.earlier;
    out.extend(p.history.into_iter().filter(|e| e.decision != Decision::Held).map(|mut e| {
        e.reason = format!("{canary}: {}", e.reason);
        e.measurements = None;
        e
    }));
    let extra = out.len().saturating_sub(MAX_EARLIER);
    out.drain(..extra);
    out
}

/// The measurements of the last analysis, if any (for the API).
pub fn last_measurements(r: &Rollout) -> Option<&Measurements> {
    r.history.iter().rev().find_map(|e| e.measurements.as_ref())
}

#[cfg(test)]
mod tests;
