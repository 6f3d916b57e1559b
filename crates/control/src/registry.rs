//! The service registry: instances, their health as the control loop sees it, and the
//! channels through which the gateway and watchers follow changes.
//!
//! Registrations are durable (written to the store before they are acknowledged); health is
//! runtime state, recomputed by the checks after a restart. Every change bumps the global
//! [`Index`](crate::index::Index), which blocking queries and SSE watchers follow.

mod checks;
pub mod health;
pub mod model;
pub(crate) mod ownership;
mod replica;

use crate::error::{ControlError, Result};
use crate::index::Index;
use crate::store::{HEALTH, INSTANCES, Op, Store};
use model::{CheckKind, CheckSpec, RegisterRequest, Registration, Status};
use serde::Serialize;
use signalbox_core::discovery::{EndpointInfo, EndpointSet, EndpointSource};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Transitions within the flap window that mark a check as flapping.
const FLAP_TRANSITIONS: usize = 4;

/// Registry limits.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_instances: 100_000 }
    }
}

/// One change to the registry, as watchers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegistryChange {
    pub index: u64,
    pub service: String,
    pub instance: String,
    /// `registered`, `deregistered` or `health`.
    pub kind: &'static str,
}

const CHANGE_LOG: usize = 50_000;

/// A check's runtime state.
#[derive(Clone, Debug)]
pub struct CheckState {
    pub spec: CheckSpec,
    pub status: Status,
    pub output: String,
    pub since: Instant,
    pub since_unix_ms: u64,
    consecutive_ok: u32,
    consecutive_fail: u32,
    /// When the status last changed, for flap damping.
    transitions: VecDeque<Instant>,
    pub flapping: bool,
    /// TTL checks: when the instance last reported.
    pub last_report: Instant,
    /// TTL checks: the wall-clock time of that report, as shared with other nodes.
    reported_unix_ms: u64,
}

impl CheckState {
    fn new(spec: CheckSpec) -> Self {
        let now = Instant::now();
        CheckState {
            status: spec.initial_status,
            output: String::new(),
            since: now,
            since_unix_ms: unix_ms(),
            consecutive_ok: 0,
            consecutive_fail: 0,
            transitions: VecDeque::new(),
            flapping: false,
            last_report: now,
            reported_unix_ms: 0,
            spec,
        }
    }

    fn flap_window(&self) -> Duration {
        (self.spec.interval() * 20).clamp(Duration::from_secs(10), Duration::from_secs(300))
    }

    /// Applies one result; returns true when the status changed.
    ///
    /// Flap damping: a check that changed state [`FLAP_TRANSITIONS`] times within its flap
    /// window needs twice as many consecutive successes per extra transition (up to 8×) to
    /// turn passing again, so a service bouncing between up and down stays out of the load
    /// balancer until it holds steady.
    fn apply(&mut self, result: Status, output: String) -> bool {
        self.output = output;
        let now = Instant::now();
        let window = self.flap_window();
        while self.transitions.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.transitions.pop_front();
        }
        self.flapping = self.transitions.len() >= FLAP_TRANSITIONS;
        let damping = if self.flapping { 1u32 << (self.transitions.len() + 1 - FLAP_TRANSITIONS).min(3) } else { 1 };
        let next = match result {
            Status::Passing => {
                self.consecutive_ok += 1;
                self.consecutive_fail = 0;
                (self.consecutive_ok >= self.spec.success_threshold * damping).then_some(Status::Passing)
            }
            Status::Warning => {
                self.consecutive_ok = 0;
                self.consecutive_fail = 0;
                Some(Status::Warning)
            }
            Status::Critical => {
                self.consecutive_fail += 1;
                self.consecutive_ok = 0;
                (self.consecutive_fail >= self.spec.failure_threshold).then_some(Status::Critical)
            }
        };
        match next {
            Some(s) if s != self.status => {
                self.status = s;
                self.since = now;
                self.since_unix_ms = unix_ms();
                self.transitions.push_back(now);
                true
            }
            _ => false,
        }
    }
}

fn unix_ms() -> u64 {
    signalbox_core::time::unix_nanos() / 1_000_000
}

struct Instance {
    reg: Registration,
    checks: Vec<CheckState>,
    create_index: u64,
    modify_index: u64,
    registered_unix_ms: u64,
    tasks: Vec<AbortHandle>,
    /// Maintenance mode (Consul's `agent/service/maintenance`): the reason. Runtime only.
    maintenance: Option<String>,
    /// Replicated backend: the index of the health record last applied (0: none), which a
    /// health write must still find in place.
    health_index: u64,
}

impl Instance {
    fn status(&self) -> Status {
        if self.maintenance.is_some() {
            return Status::Critical;
        }
        self.checks.iter().map(|c| c.status).min().unwrap_or(Status::Passing)
    }

    fn critical_since(&self) -> Option<Instant> {
        self.checks.iter().filter(|c| c.status == Status::Critical).map(|c| c.since).min()
    }
}

#[derive(Default)]
struct State {
    services: BTreeMap<String, BTreeMap<String, Instance>>,
    by_id: HashMap<String, String>,
    /// Check id → instance id.
    checks: HashMap<String, String>,
    /// Last index that changed each service (for per-service blocking queries).
    service_index: HashMap<String, u64>,
    changes: VecDeque<RegistryChange>,
    /// The highest index whose change is not in `changes` (dropped, or before start).
    forgotten: u64,
}

impl State {
    fn log(&mut self, index: u64, service: &str, instance: &str, kind: &'static str) {
        self.changes.push_back(RegistryChange {
            index,
            service: service.to_owned(),
            instance: instance.to_owned(),
            kind,
        });
        while self.changes.len() > CHANGE_LOG {
            if let Some(c) = self.changes.pop_front() {
                self.forgotten = c.index;
            }
        }
    }
}

/// A check as shown by the API.
#[derive(Clone, Debug, Serialize)]
pub struct CheckView {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub kind: CheckKind,
    pub interval_ms: u64,
    pub status: Status,
    pub output: String,
    pub since_unix_ms: u64,
    pub flapping: bool,
}

/// An instance as shown by the API.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub service: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub weight: u32,
    pub status: Status,
    /// The reason, while in maintenance mode.
    pub maintenance: Option<String>,
    pub checks: Vec<CheckView>,
    pub create_index: u64,
    pub modify_index: u64,
    pub registered_unix_ms: u64,
}

/// A service as shown by the API.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub instances: usize,
    pub passing: usize,
    pub warning: usize,
    pub critical: usize,
    pub tags: Vec<String>,
}

/// The registry.
pub struct Registry {
    state: Mutex<State>,
    index: Arc<Index>,
    store: Store,
    writes: tokio::sync::Mutex<()>,
    endpoints: Mutex<HashMap<String, watch::Sender<EndpointSet>>>,
    limits: Limits,
    checker: health::Checker,
    /// Which instances' checks this node runs.
    ownership: Mutex<ownership::Ownership>,
    me: Weak<Registry>,
}

impl Registry {
    /// Loads registrations from the store and starts their checks. Must run inside a tokio
    /// runtime.
    pub fn load(store: Store, index: Arc<Index>, limits: Limits) -> Result<Arc<Self>> {
        let node = None;
        Self::load_as(store, index, limits, node)
    }

    /// [`Registry::load`] for a node of a replicated backend named `node`: it runs the checks
    /// of the instances it owns among the live members (none until it is live).
    pub fn load_as(store: Store, index: Arc<Index>, limits: Limits, node: Option<String>) -> Result<Arc<Self>> {
        let stored = store.scan_indexed::<Registration>(INSTANCES, "")?;
        let health =
            if store.replicated() { store.scan_indexed::<replica::HealthRecord>(HEALTH, "")? } else { Vec::new() };
        let reg = Arc::new_cyclic(|me| Registry {
            state: Mutex::new(State::default()),
            index,
            store,
            writes: tokio::sync::Mutex::new(()),
            endpoints: Mutex::new(HashMap::new()),
            limits,
            checker: health::Checker::new(),
            ownership: Mutex::new(ownership::Ownership::new(node)),
            me: me.clone(),
        });
        let start = reg.index.current();
        reg.lock().forgotten = start;
        for (_, r, at) in stored {
            let at = if at == 0 { start } else { at };
            reg.insert(r, at);
        }
        for (id, h, at) in health {
            reg.apply_health(&id, Some(h), at);
        }
        tracing::info!(instances = reg.lock().by_id.len(), "registry loaded");
        Ok(reg)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation below completes before unlocking; a panic elsewhere leaves
        // consistent data, so keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Registers (or replaces) an instance; returns it once durable.
    pub async fn register(&self, req: RegisterRequest) -> Result<InstanceView> {
        let reg = req.validate()?;
        let _w = self.writes.lock().await;
        {
            let st = self.lock();
            if let Some(svc) = st.by_id.get(&reg.id) {
                if *svc != reg.service {
                    return Err(ControlError::invalid(
                        "id",
                        format!("`{}` is already registered for service `{svc}`", reg.id),
                    ));
                }
            } else if st.by_id.len() >= self.limits.max_instances {
                return Err(ControlError::limit(
                    "instances",
                    format!("the registry holds its maximum of {} instances", self.limits.max_instances),
                ));
            }
            for c in &reg.checks {
                if st.checks.get(&c.id).is_some_and(|owner| *owner != reg.id) {
                    return Err(ControlError::invalid(
                        "checks.id",
                        format!("check id `{}` is used by another instance", c.id),
                    ));
                }
            }
        }
        if self.store.replicated() {
            let id = reg.id.clone();
            self.store.commit(vec![Op::put(INSTANCES, reg.id.clone(), &reg)?]).await?;
            return self.instance(&id).ok_or_else(|| ControlError::NotFound(format!("instance `{id}`")));
        }
        let mut step = self.index.begin().await;
        let idx = step.index();
        let mut ops = vec![Op::put(INSTANCES, reg.id.clone(), &reg)?];
        ops.extend(step.take_mark());
        self.store.commit(ops).await?;
        let id = reg.id.clone();
        self.insert(reg, idx);
        step.publish();
        self.instance(&id).ok_or_else(|| ControlError::NotFound(format!("instance `{id}`")))
    }

    /// Inserts into memory and starts checks (replacing an instance with the same id).
    fn insert(&self, reg: Registration, idx: u64) {
        let service = reg.service.clone();
        let id = reg.id.clone();
        let mut st = self.lock();
        let create_index = match st.services.get_mut(&service).and_then(|s| s.remove(&id)) {
            Some(old) => {
                for t in &old.tasks {
                    t.abort();
                }
                for c in &old.reg.checks {
                    st.checks.remove(&c.id);
                }
                old.create_index
            }
            None => idx,
        };
        let checks: Vec<CheckState> = reg.checks.iter().cloned().map(CheckState::new).collect();
        for c in &reg.checks {
            st.checks.insert(c.id.clone(), id.clone());
        }
        let tasks = self.spawn_checks(&reg);
        st.by_id.insert(id.clone(), service.clone());
        st.log(idx, &service, &id, "registered");
        st.services.entry(service.clone()).or_default().insert(
            id,
            Instance {
                reg,
                checks,
                create_index,
                modify_index: idx,
                registered_unix_ms: unix_ms(),
                tasks,
                maintenance: None,
                health_index: 0,
            },
        );
        st.service_index.insert(service.clone(), idx);
        self.refresh_endpoints(&st, &service);
    }

    /// The tasks of `reg`'s checks, if this node runs them.
    fn spawn_checks(&self, reg: &Registration) -> Vec<AbortHandle> {
        if !self.owns(&reg.id) {
            return Vec::new();
        }
        reg.checks
            .iter()
            .enumerate()
            .map(|(i, spec)| self.checker.spawn(self.me.clone(), reg.id.clone(), i, spec.clone()))
            .collect()
    }

    /// Removes an instance; true if it existed.
    pub async fn deregister(&self, id: &str) -> Result<bool> {
        let _w = self.writes.lock().await;
        if !self.lock().by_id.contains_key(id) {
            return Ok(false);
        }
        if self.store.replicated() {
            self.store.commit(vec![Op::Delete(INSTANCES, id.to_owned()), Op::Delete(HEALTH, id.to_owned())]).await?;
            return Ok(true);
        }
        let mut step = self.index.begin().await;
        let idx = step.index();
        let mut ops = vec![Op::Delete(INSTANCES, id.to_owned())];
        ops.extend(step.take_mark());
        self.store.commit(ops).await?;
        self.remove(id, idx);
        step.publish();
        Ok(true)
    }

    /// Removes an instance from memory and stops its checks.
    fn remove(&self, id: &str, idx: u64) {
        let mut st = self.lock();
        if let Some(service) = st.by_id.remove(id) {
            let mut emptied = false;
            if let Some(svc) = st.services.get_mut(&service) {
                if let Some(inst) = svc.remove(id) {
                    for t in &inst.tasks {
                        t.abort();
                    }
                    for c in &inst.reg.checks {
                        st.checks.remove(&c.id);
                    }
                }
                emptied = st.services.get(&service).is_some_and(|s| s.is_empty());
            }
            if emptied {
                st.services.remove(&service);
            }
            st.log(idx, &service, id, "deregistered");
            st.service_index.insert(service.clone(), idx);
            self.refresh_endpoints(&st, &service);
        }
    }

    /// A TTL report from the instance (`PUT .../ttl`, Consul's `check/pass|warn|fail`).
    /// `check` is a check id or an instance id (its first TTL check).
    pub async fn report_ttl(&self, check: &str, status: Status, note: Option<String>) -> Result<()> {
        let changed = {
            let mut st = self.lock();
            let (inst_id, idx) = match st.checks.get(check) {
                Some(inst) => {
                    let inst = inst.clone();
                    let svc = st.by_id.get(&inst).cloned().unwrap_or_default();
                    let i = st
                        .services
                        .get(&svc)
                        .and_then(|s| s.get(&inst))
                        .and_then(|x| x.checks.iter().position(|c| c.spec.id == check));
                    (inst, i)
                }
                None => {
                    let svc = st
                        .by_id
                        .get(check)
                        .cloned()
                        .ok_or_else(|| ControlError::NotFound(format!("check `{check}`")))?;
                    let i = st
                        .services
                        .get(&svc)
                        .and_then(|s| s.get(check))
                        .and_then(|x| x.checks.iter().position(|c| matches!(c.spec.kind, CheckKind::Ttl { .. })));
                    (check.to_owned(), i)
                }
            };
            let idx = idx.ok_or_else(|| ControlError::NotFound(format!("TTL check of `{check}`")))?;
            let svc = st.by_id.get(&inst_id).cloned().unwrap_or_default();
            let c = st
                .services
                .get_mut(&svc)
                .and_then(|s| s.get_mut(&inst_id))
                .map(|i| &mut i.checks[idx])
                .ok_or_else(|| ControlError::NotFound(format!("check `{check}`")))?;
            if !matches!(c.spec.kind, CheckKind::Ttl { .. }) {
                return Err(ControlError::invalid("check", format!("`{check}` is not a TTL check")));
            }
            c.last_report = Instant::now();
            c.reported_unix_ms = unix_ms();
            let output = note.unwrap_or_else(|| format!("TTL reported {}", status.as_str()));
            // A TTL report sets the status directly: the instance speaks for itself.
            let changed = c.status != status;
            c.output = output;
            c.consecutive_ok = 0;
            c.consecutive_fail = 0;
            if changed {
                c.status = status;
                c.since = Instant::now();
                c.since_unix_ms = unix_ms();
            }
            // With a replicated backend every report is shared: the node that runs the TTL
            // check moves its deadline when the report arrives through the watch.
            (changed || self.store.replicated()).then_some((inst_id, idx))
        };
        if let Some((inst, _)) = changed {
            self.changed(&inst).await;
        }
        Ok(())
    }

    /// Puts an instance in or out of maintenance: while in, it is critical (out of every load
    /// balancer) whatever its checks say.
    pub async fn set_maintenance(&self, id: &str, reason: Option<String>) -> Result<()> {
        {
            let mut st = self.lock();
            let svc = st.by_id.get(id).cloned().ok_or_else(|| ControlError::NotFound(format!("instance `{id}`")))?;
            if let Some(i) = st.services.get_mut(&svc).and_then(|s| s.get_mut(id)) {
                i.maintenance = reason;
            }
        }
        self.changed(id).await;
        Ok(())
    }

    /// Applies a check result from the control loop.
    pub(crate) async fn report(&self, instance: &str, check: usize, result: Status, output: String) {
        let changed = {
            let mut st = self.lock();
            let Some(svc) = st.by_id.get(instance).cloned() else { return };
            let Some(inst) = st.services.get_mut(&svc).and_then(|s| s.get_mut(instance)) else { return };
            let Some(c) = inst.checks.get_mut(check) else { return };
            c.apply(result, output)
        };
        if changed {
            self.changed(instance).await;
        }
        self.maybe_deregister(instance).await;
    }

    /// A TTL check whose instance stopped reporting turns critical. Returns when to look
    /// again: the TTL's deadline while the check is healthy (one wake-up per TTL, not a
    /// polling tick), or soon while it is critical (for `deregister_after`); `None` once the
    /// instance is gone.
    pub(crate) async fn expire_ttl(&self, instance: &str, check: usize, ttl: Duration) -> Option<Instant> {
        let (changed, next) = {
            let mut st = self.lock();
            let svc = st.by_id.get(instance).cloned()?;
            let c =
                st.services.get_mut(&svc).and_then(|s| s.get_mut(instance)).and_then(|i| i.checks.get_mut(check))?;
            let deadline = c.last_report + ttl;
            if c.status == Status::Critical {
                (false, Instant::now() + ttl.min(Duration::from_secs(1)))
            } else if Instant::now() < deadline {
                (false, deadline)
            } else {
                c.status = Status::Critical;
                c.output = format!("TTL of {ttl:?} expired");
                c.since = Instant::now();
                c.since_unix_ms = unix_ms();
                (true, Instant::now() + ttl.min(Duration::from_secs(1)))
            }
        };
        if changed {
            self.changed(instance).await;
        }
        self.maybe_deregister(instance).await;
        Some(next)
    }

    /// Records a health change: the change log, indexes and endpoint sets are updated first,
    /// and only then is the new index published, so a watcher woken by it sees the change.
    async fn changed(&self, instance: &str) {
        if self.store.replicated() {
            return self.share_health(instance).await;
        }
        let mut step = self.index.begin().await;
        let idx = step.index();
        {
            let mut st = self.lock();
            let Some(svc) = st.by_id.get(instance).cloned() else { return };
            if let Some(i) = st.services.get_mut(&svc).and_then(|s| s.get_mut(instance)) {
                i.modify_index = idx;
                tracing::info!(service = %svc, instance, status = i.status().as_str(), "instance health changed");
            }
            st.log(idx, &svc, instance, "health");
            st.service_index.insert(svc.clone(), idx);
            self.refresh_endpoints(&st, &svc);
        }
        self.index.commit_mark(&mut step).await;
        step.publish();
    }

    async fn maybe_deregister(&self, instance: &str) {
        let expired = {
            let st = self.lock();
            let Some(svc) = st.by_id.get(instance) else { return };
            let Some(i) = st.services.get(svc).and_then(|s| s.get(instance)) else { return };
            let limit = i.reg.checks.iter().filter_map(|c| c.deregister_after_ms).min();
            match (limit, i.critical_since()) {
                (Some(ms), Some(since)) => since.elapsed() >= Duration::from_millis(ms),
                _ => false,
            }
        };
        if expired {
            tracing::warn!(instance, "deregistering an instance critical for longer than its deregister_after");
            if let Err(e) = self.deregister(instance).await {
                tracing::error!(instance, error = %e, "deregistration failed");
            }
        }
    }

    /// Passing and warning instances of `service` as gateway endpoints. Critical instances
    /// are left out; warning ones keep serving (degraded is not down).
    fn endpoint_set(st: &State, service: &str) -> Vec<EndpointInfo> {
        st.services
            .get(service)
            .map(|s| {
                s.values()
                    .filter(|i| i.status() != Status::Critical)
                    .map(|i| EndpointInfo {
                        address: i.reg.authority(),
                        id: i.reg.id.clone(),
                        weight: i.reg.weight,
                        version: signalbox_core::traffic::version_of(&i.reg.meta, &i.reg.tags),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn refresh_endpoints(&self, st: &State, service: &str) {
        let eps = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = eps.get(service) {
            let set = Self::endpoint_set(st, service);
            tx.send_if_modified(|cur| {
                if **cur != set {
                    *cur = Arc::new(set);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Changes after `index`; `None` when the log no longer reaches back that far (the
    /// caller should re-read everything).
    pub fn changes_since(&self, index: u64) -> Option<Vec<RegistryChange>> {
        let st = self.lock();
        // Indexes have gaps (other parts' changes), so only what was dropped counts.
        if index != 0 && index < st.forgotten {
            return None;
        }
        Some(st.changes.iter().filter(|c| c.index > index).cloned().collect())
    }

    /// Current endpoints (passing and warning instances) of `service`.
    pub fn endpoints(&self, service: &str) -> Vec<EndpointInfo> {
        Self::endpoint_set(&self.lock(), service)
    }

    /// The index that last changed `service` (0 if never).
    pub fn service_index(&self, service: &str) -> u64 {
        self.lock().service_index.get(service).copied().unwrap_or(0)
    }

    pub fn services(&self) -> Vec<ServiceView> {
        let st = self.lock();
        st.services
            .iter()
            .map(|(name, insts)| {
                let count = |s: Status| insts.values().filter(|i| i.status() == s).count();
                let mut tags: Vec<String> = insts.values().flat_map(|i| i.reg.tags.iter().cloned()).collect();
                tags.sort();
                tags.dedup();
                ServiceView {
                    name: name.clone(),
                    instances: insts.len(),
                    passing: count(Status::Passing),
                    warning: count(Status::Warning),
                    critical: count(Status::Critical),
                    tags,
                }
            })
            .collect()
    }

    /// Instances of `service`; `passing_only` keeps only passing ones.
    pub fn instances(&self, service: &str, passing_only: bool) -> Vec<InstanceView> {
        let st = self.lock();
        st.services
            .get(service)
            .map(|s| s.values().filter(|i| !passing_only || i.status() == Status::Passing).map(view).collect())
            .unwrap_or_default()
    }

    pub fn instance(&self, id: &str) -> Option<InstanceView> {
        let st = self.lock();
        let svc = st.by_id.get(id)?;
        st.services.get(svc)?.get(id).map(view)
    }

    /// Every instance (for the console's overview and snapshots).
    pub fn all(&self) -> Vec<InstanceView> {
        let st = self.lock();
        st.services.values().flat_map(|s| s.values().map(view)).collect()
    }
}

fn view(i: &Instance) -> InstanceView {
    InstanceView {
        id: i.reg.id.clone(),
        service: i.reg.service.clone(),
        address: i.reg.address.clone(),
        port: i.reg.port,
        tags: i.reg.tags.clone(),
        meta: i.reg.meta.clone(),
        weight: i.reg.weight,
        status: i.status(),
        maintenance: i.maintenance.clone(),
        checks: i
            .checks
            .iter()
            .map(|c| CheckView {
                id: c.spec.id.clone(),
                name: c.spec.name.clone(),
                kind: c.spec.kind.clone(),
                interval_ms: c.spec.interval_ms,
                status: c.status,
                output: c.output.clone(),
                since_unix_ms: c.since_unix_ms,
                flapping: c.flapping,
            })
            .collect(),
        create_index: i.create_index,
        modify_index: i.modify_index,
        registered_unix_ms: i.registered_unix_ms,
    }
}

impl EndpointSource for Registry {
    /// Every service name is known: one that has no instances yet gets an empty set that
    /// fills as instances register.
    fn subscribe(&self, service: &str) -> Option<watch::Receiver<EndpointSet>> {
        let st = self.lock();
        let mut eps = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let tx = eps
            .entry(service.to_owned())
            .or_insert_with(|| watch::channel(Arc::new(Self::endpoint_set(&st, service))).0);
        Some(tx.subscribe())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for s in st.services.values() {
            for i in s.values() {
                for t in &i.tasks {
                    t.abort();
                }
            }
        }
    }
}
