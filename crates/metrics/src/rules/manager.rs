//! The rule manager: loads the rule files, evaluates each group every interval on its own
//! task, writes recording rules' results and the `ALERTS` series, sends notifications,
//! keeps the alert state file, and answers the rules and alerts APIs.

use super::alert::{self, Alert, AlertState, Transition, eval_alerts};
use super::file::{GroupDef, RuleDef, RuleKind, parse_rule_file};
use super::notifier::{Notification, Notifier, QUEUE_CAPACITY, now_ms};
use super::persist::{self, HISTORY_CAPACITY, SavedRule, SavedState};
use super::{DEFAULT_RULES, DEFAULT_RULES_FILE, RulesConfig};
use crate::promql::{Engine, Sample, Value};
use crate::service::Db;
use crate::storage::{Labels, stale_nan};
use serde_json::{Value as Json, json};
use signalbox_core::ownership::Owners;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A rule's evaluation state.
struct RuleState {
    def: RuleDef,
    /// Alerts by label set (alerting rules only).
    active: BTreeMap<Labels, Alert>,
    last_error: Option<String>,
    last_eval_ms: i64,
    eval_secs: f64,
    /// Series written by the last successful evaluation, to mark stale when they go.
    written: HashSet<Labels>,
}

/// A loaded group.
pub struct Group {
    pub name: String,
    pub file: String,
    pub interval_ms: i64,
    pub limit: usize,
    state: Mutex<GroupState>,
}

struct GroupState {
    rules: Vec<RuleState>,
    last_eval_ms: i64,
    eval_secs: f64,
    /// In a cluster: this node evaluated the group last time it was due (it owned it).
    held: bool,
}

impl Group {
    /// What a cluster shares groups out by: the file and the group name.
    pub fn owner_key(&self) -> String {
        owner_key(&self.file, &self.name)
    }
}

fn owner_key(file: &str, name: &str) -> String {
    format!("rules\x1f{file}\x1f{name}")
}

/// The rule manager. Create with [`RuleManager::start`] (evaluation tasks running) or
/// [`RuleManager::new`] (evaluated only by [`RuleManager::eval_group_at`], for tests).
pub struct RuleManager {
    cfg: RulesConfig,
    db: Arc<dyn Db>,
    engine: Engine,
    state_dir: PathBuf,
    groups: Mutex<Vec<Arc<Group>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    history: Mutex<VecDeque<Transition>>,
    /// Serialises state file writes.
    saving: Mutex<()>,
    /// Set by [`RuleManager::start`]: the runtime groups run on (again after a reload).
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    pub notifier: Arc<Notifier>,
    /// A generation bumped whenever the set or state of alerts changes (a transition, a
    /// reload): what the console's live stream waits on.
    alerts_changed: tokio::sync::watch::Sender<u64>,
    /// Who evaluates which group in a cluster (see [`RuleManager::share_by`]).
    owners: Mutex<Owners>,
}

impl RuleManager {
    /// Loads the rules and the saved alert state; evaluates nothing on its own.
    pub fn new(
        cfg: RulesConfig,
        db: Arc<dyn Db>,
        engine: Engine,
        state_dir: PathBuf,
    ) -> Result<Arc<RuleManager>, String> {
        let defs = load_groups(&cfg)?;
        let saved = persist::load(&state_dir)?;
        let notifier =
            Notifier::new(cfg.alertmanagers.clone(), cfg.webhooks.clone(), cfg.external_url.clone(), QUEUE_CAPACITY);
        let m = RuleManager {
            db,
            engine,
            state_dir,
            groups: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            history: Mutex::new(saved.history.iter().cloned().collect()),
            saving: Mutex::new(()),
            runtime: Mutex::new(None),
            notifier,
            alerts_changed: tokio::sync::watch::Sender::new(0),
            owners: Mutex::new(signalbox_core::ownership::single_node()),
            cfg,
        };
        let groups = defs
            .into_iter()
            .map(|d| m.build_group(d, |file, group, rule| restore(&saved, file, group, rule)))
            .collect();
        *lock(&m.groups) = groups;
        Ok(Arc::new(m))
    }

    /// Loads the rules and starts evaluating every group on the current Tokio runtime.
    pub fn start(
        cfg: RulesConfig,
        db: Arc<dyn Db>,
        engine: Engine,
        state_dir: PathBuf,
    ) -> Result<Arc<RuleManager>, String> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Err("the rule manager must start inside a Tokio runtime".into());
        };
        let m = RuleManager::new(cfg, db, engine, state_dir)?;
        *lock(&m.runtime) = Some(rt);
        m.spawn_all();
        Ok(m)
    }

    fn build_group(
        &self,
        d: GroupDef,
        mut previous: impl FnMut(&str, &str, &RuleDef) -> Option<(BTreeMap<Labels, Alert>, HashSet<Labels>)>,
    ) -> Arc<Group> {
        let interval_ms = d.interval_ms.unwrap_or(self.cfg.evaluation_interval.0.as_millis() as i64).max(1);
        let rules = d
            .rules
            .into_iter()
            .map(|def| {
                let (active, written) = previous(&d.file, &d.name, &def).unwrap_or_default();
                RuleState { def, active, last_error: None, last_eval_ms: 0, eval_secs: 0.0, written }
            })
            .collect();
        Arc::new(Group {
            name: d.name,
            file: d.file,
            interval_ms,
            limit: d.limit,
            state: Mutex::new(GroupState { rules, last_eval_ms: 0, eval_secs: 0.0, held: true }),
        })
    }

    fn spawn_all(self: &Arc<Self>) {
        let Some(rt) = lock(&self.runtime).clone() else { return };
        let mut tasks = lock(&self.tasks);
        for t in tasks.drain(..) {
            t.abort();
        }
        for g in lock(&self.groups).iter() {
            let me = Arc::downgrade(self);
            let g = g.clone();
            tasks.push(rt.spawn(async move {
                let offset = group_offset(&g.name, &g.file, g.interval_ms);
                loop {
                    // The next aligned time after now, as Prometheus spreads groups.
                    let now = now_ms();
                    let next = now - (now - offset).rem_euclid(g.interval_ms) + g.interval_ms;
                    tokio::time::sleep(std::time::Duration::from_millis((next - now).max(0) as u64)).await;
                    let Some(m) = me.upgrade() else { return };
                    let g2 = g.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        if m.evaluates_here(&g2) {
                            m.eval_group(&g2, next);
                        } else {
                            m.release(&g2, next);
                        }
                    })
                    .await;
                }
            }));
        }
    }

    /// Shares the rule groups out over the members `owners` reports: each group from the
    /// rule files is evaluated only by the live member that owns it (its alerts' labels do
    /// not depend on the node, so Alertmanager sees the same alerts whoever sends them).
    /// The default rules are over each node's own metrics, so every node keeps evaluating
    /// them. A node that loses its lease owns nothing and evaluates no shared group from
    /// its next tick on.
    pub fn share_by(&self, owners: Owners) {
        *lock(&self.owners) = owners;
    }

    /// Whether this node evaluates `g` now.
    fn evaluates_here(&self, g: &Group) -> bool {
        g.file == DEFAULT_RULES_FILE || lock(&self.owners).borrow().owns(&g.owner_key())
    }

    /// The member that evaluates `g` (`None` on a single node and for the default rules,
    /// which every node evaluates).
    fn owner_of(&self, g: &Group) -> Option<String> {
        if g.file == DEFAULT_RULES_FILE {
            return None;
        }
        lock(&self.owners).borrow().owner(&g.owner_key()).map(str::to_owned)
    }

    /// Another node owns `g` now: forget its alerts here (the owner keeps them, with the
    /// same labels, so nothing is resolved) and mark its series stale, once.
    fn release(&self, g: &Group, ts: i64) {
        let mut st = lock(&g.state);
        if !st.held {
            return;
        }
        st.held = false;
        let mut stale = Vec::new();
        for r in st.rules.iter_mut() {
            r.active.clear();
            stale.extend(r.written.drain().map(|l| (l, ts, stale_nan())));
        }
        drop(st);
        tracing::info!(group = %g.name, file = %g.file, "another node evaluates this rule group now");
        if !stale.is_empty()
            && let Err(e) = self.db.append(&stale)
        {
            tracing::warn!(error = %e, "marking a released group's series stale failed");
        }
        self.alerts_changed.send_modify(|g| *g += 1);
        self.save_state();
    }

    /// Re-reads the rule files; alerts of rules whose name, query and labels are unchanged
    /// keep their state. On error the running rules stay. May be called from any thread.
    pub fn reload(self: &Arc<Self>) -> Result<(), String> {
        let defs = load_groups(&self.cfg)?;
        let old: Vec<Arc<Group>> = lock(&self.groups).clone();
        let groups: Vec<Arc<Group>> =
            defs.into_iter()
                .map(|d| {
                    self.build_group(d, |file, group, rule| {
                        let g = old.iter().find(|g| g.file == file && g.name == group)?;
                        let st = lock(&g.state);
                        let r = st.rules.iter().find(|r| {
                            r.def.name == rule.name && r.def.expr == rule.expr && r.def.labels == rule.labels
                        })?;
                        Some((r.active.clone(), r.written.clone()))
                    })
                })
                .collect();
        // Series of rules that are gone (or changed) go stale, as Prometheus marks them.
        let mut stale = Vec::new();
        let now = now_ms();
        for g in &old {
            let st = lock(&g.state);
            for r in &st.rules {
                let kept = groups.iter().any(|n| {
                    n.file == g.file
                        && n.name == g.name
                        && lock(&n.state).rules.iter().any(|x| {
                            x.def.name == r.def.name && x.def.expr == r.def.expr && x.def.labels == r.def.labels
                        })
                });
                if !kept {
                    stale.extend(r.written.iter().map(|l| (l.clone(), now, stale_nan())));
                }
            }
        }
        *lock(&self.groups) = groups;
        self.spawn_all();
        self.alerts_changed.send_modify(|g| *g += 1);
        if !stale.is_empty()
            && let Err(e) = self.db.append(&stale)
        {
            tracing::warn!(error = %e, "marking removed rules' series stale failed");
        }
        self.save_state();
        Ok(())
    }

    /// Evaluates group `name` at `t_ms` now (what the tasks do at each tick).
    pub fn eval_group_at(&self, name: &str, t_ms: i64) -> Result<(), String> {
        let g = lock(&self.groups).iter().find(|g| g.name == name).cloned();
        let g = g.ok_or_else(|| format!("no rule group named {name:?}"))?;
        self.eval_group(&g, t_ms);
        Ok(())
    }

    /// How many groups are loaded, and how many of them this node evaluates.
    pub fn group_counts(&self) -> (usize, usize) {
        let groups = lock(&self.groups).clone();
        (groups.len(), groups.iter().filter(|g| self.evaluates_here(g)).count())
    }

    /// The loaded groups' names.
    pub fn group_names(&self) -> Vec<String> {
        lock(&self.groups).iter().map(|g| g.name.clone()).collect()
    }

    fn eval_group(&self, g: &Group, ts: i64) {
        let started = Instant::now();
        let mut st = lock(&g.state);
        st.held = true;
        let mut transitions = Vec::new();
        let mut notifications = Vec::new();
        let resend_ms = self.cfg.resend_delay.0.as_millis() as i64;
        for r in st.rules.iter_mut() {
            let t0 = Instant::now();
            let result = self.eval_rule(r, g, ts, &mut transitions);
            r.eval_secs = t0.elapsed().as_secs_f64();
            r.last_eval_ms = ts;
            // As Prometheus, a rule whose query failed sends nothing this round.
            let evaluated = result.is_ok();
            match result {
                Ok(series) => {
                    r.last_error = None;
                    let now: HashSet<Labels> = series.iter().map(|(l, _, _)| l.clone()).collect();
                    let mut batch = series;
                    for gone in r.written.difference(&now) {
                        batch.push((gone.clone(), ts, stale_nan()));
                    }
                    match self.db.append(&batch) {
                        Ok(_) => r.written = now,
                        Err(e) => r.last_error = Some(format!("storing the results: {e}")),
                    }
                }
                Err(e) => r.last_error = Some(e),
            }
            if evaluated && matches!(r.def.kind, RuleKind::Alerting { .. }) {
                let sends = alert::alerts_to_send(&mut r.active, ts, resend_ms, g.interval_ms);
                notifications.extend(sends.iter().map(|a| Notification::of(a, &r.def.expr, &self.cfg.external_url)));
            }
        }
        st.last_eval_ms = ts;
        st.eval_secs = started.elapsed().as_secs_f64();
        drop(st);
        self.notifier.send(notifications);
        if !transitions.is_empty() {
            for t in &mut transitions {
                t.group = g.name.clone();
                t.file = g.file.clone();
            }
            {
                let mut h = lock(&self.history);
                h.extend(transitions);
                while h.len() > HISTORY_CAPACITY {
                    h.pop_front();
                }
            }
            self.alerts_changed.send_modify(|g| *g += 1);
            self.save_state();
        }
    }

    /// Evaluates one rule: the samples to write, or the rule's error.
    fn eval_rule(
        &self,
        r: &mut RuleState,
        g: &Group,
        ts: i64,
        transitions: &mut Vec<Transition>,
    ) -> Result<Vec<(Labels, i64, f64)>, String> {
        let vector = match self.engine.instant(&*self.db, &r.def.expr, ts).map_err(|e| e.to_string())? {
            Value::Vector(v) => v,
            Value::Scalar { v, .. } => vec![Sample { labels: Vec::new(), t: ts, v }],
            _ => return Err("rule result is not a vector or scalar".into()),
        };
        match &r.def.kind {
            RuleKind::Recording => {
                let mut seen = HashSet::new();
                let mut out = Vec::with_capacity(vector.len());
                for s in vector {
                    let mut labels: BTreeMap<String, String> = s.labels.into_iter().collect();
                    labels.insert("__name__".into(), r.def.name.clone());
                    for (k, v) in &r.def.labels {
                        if v.is_empty() {
                            labels.remove(k);
                        } else {
                            labels.insert(k.clone(), v.clone());
                        }
                    }
                    let labels: Labels = labels.into_iter().collect();
                    if !seen.insert(labels.clone()) {
                        return Err("vector contains metrics with the same labelset after applying rule labels".into());
                    }
                    out.push((labels, ts, s.v));
                }
                if g.limit > 0 && out.len() > g.limit {
                    return Err(format!("exceeded limit {} with {} series", g.limit, out.len()));
                }
                Ok(out)
            }
            RuleKind::Alerting { .. } => {
                let outcome = eval_alerts(&r.def, vector, ts, &self.cfg.external_url, g.limit, &mut r.active)?;
                transitions.extend(outcome.transitions);
                Ok(outcome.series)
            }
        }
    }

    fn save_state(&self) {
        let _guard = lock(&self.saving);
        let mut state =
            SavedState { version: 1, rules: Vec::new(), history: lock(&self.history).iter().cloned().collect() };
        for g in lock(&self.groups).iter() {
            let st = lock(&g.state);
            for r in st.rules.iter().filter(|r| !r.active.is_empty()) {
                state.rules.push(SavedRule {
                    file: g.file.clone(),
                    group: g.name.clone(),
                    rule: r.def.name.clone(),
                    alerts: r.active.values().cloned().collect(),
                });
            }
        }
        if let Err(e) = persist::save(&self.state_dir, &state) {
            tracing::warn!(error = %e, "saving the alert state failed");
        }
    }

    /// The data of Prometheus's `GET /api/v1/rules`.
    pub fn groups_json(&self) -> Json {
        let groups: Vec<Json> = lock(&self.groups)
            .iter()
            .map(|g| {
                let st = lock(&g.state);
                let rules: Vec<Json> = st.rules.iter().map(rule_json).collect();
                json!({
                    "name": g.name,
                    "file": g.file,
                    "rules": rules,
                    "interval": g.interval_ms as f64 / 1000.0,
                    "limit": g.limit,
                    "evaluationTime": st.eval_secs,
                    "lastEvaluation": alert::rfc3339(st.last_eval_ms),
                    "owner": self.owner_of(g),
                    "evaluatedHere": self.evaluates_here(g),
                })
            })
            .collect();
        json!({ "groups": groups })
    }

    /// The data of Prometheus's `GET /api/v1/alerts`: pending and firing alerts.
    pub fn alerts_json(&self) -> Json {
        let mut alerts = Vec::new();
        for g in lock(&self.groups).iter() {
            for r in lock(&g.state).rules.iter() {
                alerts.extend(r.active.values().filter(|a| a.state != AlertState::Inactive).map(alert_json));
            }
        }
        json!({ "alerts": alerts })
    }

    /// Wakes (`changed()`) whenever an alert changes state or the rules are reloaded; the
    /// value is a generation number with no meaning beyond "something changed".
    pub fn watch_alerts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.alerts_changed.subscribe()
    }

    /// The state changes kept (oldest first), for the console.
    pub fn history(&self) -> Vec<Transition> {
        lock(&self.history).iter().cloned().collect()
    }
}

impl Drop for RuleManager {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        self.notifier.stop();
    }
}

fn restore(
    saved: &SavedState,
    file: &str,
    group: &str,
    rule: &RuleDef,
) -> Option<(BTreeMap<Labels, Alert>, HashSet<Labels>)> {
    if !matches!(rule.kind, RuleKind::Alerting { .. }) {
        return None;
    }
    let r = saved.rules.iter().find(|r| r.file == file && r.group == group && r.rule == rule.name)?;
    let active = r
        .alerts
        .iter()
        .map(|a| (a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Labels>(), a.clone()))
        .collect();
    Some((active, HashSet::new()))
}

fn alert_json(a: &Alert) -> Json {
    let mut j = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": alert::rfc3339(a.active_at),
        "value": a.value,
    });
    if let Some(k) = a.keep_firing_since {
        j["keepFiringSince"] = json!(alert::rfc3339(k));
    }
    j
}

fn rule_json(r: &RuleState) -> Json {
    let health = match (&r.last_error, r.last_eval_ms) {
        (Some(_), _) => "err",
        (None, 0) => "unknown",
        (None, _) => "ok",
    };
    let mut j = match &r.def.kind {
        RuleKind::Recording => json!({
            "name": r.def.name,
            "query": r.def.expr,
            "labels": r.def.labels,
            "type": "recording",
        }),
        RuleKind::Alerting { for_ms, keep_firing_for_ms, annotations, .. } => {
            let state = r.active.values().map(|a| a.state).fold(AlertState::Inactive, |s, a| match (s, a) {
                (AlertState::Firing, _) | (_, AlertState::Firing) => AlertState::Firing,
                (AlertState::Pending, _) | (_, AlertState::Pending) => AlertState::Pending,
                _ => AlertState::Inactive,
            });
            let alerts: Vec<Json> =
                r.active.values().filter(|a| a.state != AlertState::Inactive).map(alert_json).collect();
            json!({
                "state": state.as_str(),
                "name": r.def.name,
                "query": r.def.expr,
                "duration": *for_ms as f64 / 1000.0,
                "keepFiringFor": *keep_firing_for_ms as f64 / 1000.0,
                "labels": r.def.labels,
                "annotations": annotations,
                "alerts": alerts,
                "type": "alerting",
            })
        }
    };
    j["health"] = json!(health);
    if let Some(e) = &r.last_error {
        j["lastError"] = json!(e);
    }
    j["evaluationTime"] = json!(r.eval_secs);
    j["lastEvaluation"] = json!(alert::rfc3339(r.last_eval_ms));
    j
}

/// Spreads groups over their interval, stably (FNV-1a of file and name).
fn group_offset(name: &str, file: &str, interval_ms: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in file.bytes().chain([0xff]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % interval_ms.max(1) as u64) as i64
}

/// The rule files the config names (globs in file names expanded), parsed, plus the
/// default rules when on. Group names must be unique per file.
pub fn load_groups(cfg: &RulesConfig) -> Result<Vec<GroupDef>, String> {
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    if cfg.default_rules {
        match parse_rule_file(DEFAULT_RULES_FILE, DEFAULT_RULES) {
            Ok(g) => groups.extend(g),
            Err(e) => problems.extend(e),
        }
    }
    for path in super::expand_globs(&cfg.files)? {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(src) => match parse_rule_file(&name, &src) {
                Ok(g) => groups.extend(g),
                Err(e) => problems.extend(e),
            },
            Err(e) => problems.push(format!("{name}:0: file: cannot read it: {e}")),
        }
    }
    if problems.is_empty() { Ok(groups) } else { Err(problems.join("\n")) }
}
