//! The machines, containers and processes behind a service's instances, from the host
//! series `signalbox agent` (or a node_exporter and cAdvisor) push: CPU, memory against the
//! machine's total or the container's limit, root filesystem, network, throttling and OOM
//! kills, and why a machine is in trouble.
//!
//! # Matching an instance to its machine
//! A registry instance runs on the host named by its meta `host`, else its meta `node`, else
//! its address. Host series (`node_*`) match when their `instance` label is that name, or
//! that name followed by `:port` (a node_exporter scraped at `host:9100`). Containers
//! (`container_*`) and processes (`process_*`) match on their `service` label and an
//! `instance` label that is the host name or the registry instance's id. A host that runs
//! containers or processes of the service but no registered instance is listed too.
//!
//! # Trouble
//! A machine is in trouble with a firing alert of the `signalbox-hosts` rule group whose
//! `instance` label is the host (and whose `service` label, when it has one, is the
//! service), or past a threshold: CPU, memory or root filesystem more than 90 % used, a
//! container over 90 % of its memory limit or throttled in more than 25 % of its CPU
//! periods, or an OOM kill in the window.

use super::{Window, num, promql_string};
use crate::AppState;
use serde_json::{Value, json};
use signalbox_control::registry::InstanceView;
use signalbox_metrics::promql::Value as PromValue;
use signalbox_metrics::service::MetricsService;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Share of CPU, memory or disk above which a machine is in trouble.
pub const USE_TROUBLE: f64 = 0.90;
/// Share of throttled CPU periods above which a container is in trouble.
pub const THROTTLE_TROUBLE: f64 = 0.25;
/// The rule group whose firing alerts mark a machine in trouble.
pub const HOST_RULE_GROUP: &str = "signalbox-hosts";
/// Longest range a rate of the figures "now" looks back.
const RATE_RANGE_MAX_S: f64 = 300.0;

/// One machine's figures now (`None` where its series are missing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Machine {
    pub cpu_cores: Option<f64>,
    /// Share of the cores busy (0..1).
    pub cpu_ratio: Option<f64>,
    pub memory_total: Option<f64>,
    pub memory_available: Option<f64>,
    pub disk_size: Option<f64>,
    pub disk_avail: Option<f64>,
    pub rx_bps: Option<f64>,
    pub tx_bps: Option<f64>,
}

impl Machine {
    pub fn memory_used(&self) -> Option<f64> {
        Some(self.memory_total? - self.memory_available?)
    }
    pub fn memory_ratio(&self) -> Option<f64> {
        let t = self.memory_total.filter(|t| *t > 0.0)?;
        Some((self.memory_used()? / t).clamp(0.0, 1.0))
    }
    pub fn disk_free_ratio(&self) -> Option<f64> {
        let s = self.disk_size.filter(|s| *s > 0.0)?;
        Some((self.disk_avail? / s).clamp(0.0, 1.0))
    }
}

/// One container (cgroup) of a service now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    pub service: String,
    pub instance: String,
    pub name: String,
    pub cpu_cores: Option<f64>,
    pub working_set: Option<f64>,
    /// `None` or 0: unlimited.
    pub limit: Option<f64>,
    pub throttled_ratio: Option<f64>,
    pub oom_kills: Option<f64>,
}

impl Container {
    pub fn memory_ratio(&self) -> Option<f64> {
        let l = self.limit.filter(|l| *l > 0.0)?;
        Some(self.working_set? / l)
    }
}

/// One process group of a service now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Process {
    pub service: String,
    pub instance: String,
    pub cpu_cores: Option<f64>,
    pub resident: Option<f64>,
    pub threads: Option<f64>,
    pub open_fds: Option<f64>,
}

/// A firing host alert.
#[derive(Clone, Debug, PartialEq)]
pub struct HostAlert {
    pub name: String,
    pub instance: String,
    pub service: Option<String>,
    pub summary: String,
}

/// Everything read from the store for a window's end.
#[derive(Clone, Debug, Default)]
pub struct HostData {
    /// By the host series' `instance` label.
    pub machines: BTreeMap<String, Machine>,
    pub containers: Vec<Container>,
    pub processes: Vec<Process>,
    pub alerts: Vec<HostAlert>,
}

impl HostData {
    /// Whether any host, container or process series was found.
    pub fn reporting(&self) -> bool {
        !self.machines.is_empty() || !self.containers.is_empty() || !self.processes.is_empty()
    }
}

/// The PromQL behind each figure of a machine (`host`: the series' `instance` label).
pub fn machine_queries(host: &str, range: &str) -> BTreeMap<&'static str, String> {
    let i = promql_string(host);
    BTreeMap::from([
        ("cpu_cores", format!("count(node_cpu_seconds_total{{instance={i},mode=\"idle\"}})")),
        (
            "cpu_ratio",
            format!(
                "1 - sum(rate(node_cpu_seconds_total{{instance={i},mode=\"idle\"}}[{range}])) / sum(rate(node_cpu_seconds_total{{instance={i}}}[{range}]))"
            ),
        ),
        (
            "memory_ratio",
            format!("1 - node_memory_MemAvailable_bytes{{instance={i}}} / node_memory_MemTotal_bytes{{instance={i}}}"),
        ),
        (
            "disk_free_ratio",
            format!(
                "node_filesystem_avail_bytes{{instance={i},mountpoint=\"/\"}} / node_filesystem_size_bytes{{instance={i},mountpoint=\"/\"}}"
            ),
        ),
        (
            "network_rx_bps",
            format!("sum(rate(node_network_receive_bytes_total{{instance={i},device!=\"lo\"}}[{range}]))"),
        ),
        (
            "network_tx_bps",
            format!("sum(rate(node_network_transmit_bytes_total{{instance={i},device!=\"lo\"}}[{range}]))"),
        ),
    ])
}

/// The PromQL behind each figure of a service's containers on one host.
pub fn container_queries(service: &str, host: &str, range: &str) -> BTreeMap<&'static str, String> {
    let sel = format!("service={},instance={}", promql_string(service), promql_string(host));
    BTreeMap::from([
        (
            "cpu_cores",
            format!("sum by (name) (rate(container_cpu_usage_seconds_total{{{sel},cpu=\"total\"}}[{range}]))"),
        ),
        ("memory", format!("container_memory_working_set_bytes{{{sel}}}")),
        ("memory_limit", format!("container_spec_memory_limit_bytes{{{sel}}}")),
        (
            "throttled_ratio",
            format!(
                "sum by (name) (rate(container_cpu_cfs_throttled_periods_total{{{sel}}}[{range}])) / sum by (name) (rate(container_cpu_cfs_periods_total{{{sel}}}[{range}]))"
            ),
        ),
        ("oom_kills", format!("sum by (name) (increase(container_oom_events_total{{{sel}}}[{range}]))")),
        ("process_cpu_cores", format!("rate(process_cpu_seconds_total{{{sel}}}[{range}])")),
        ("process_resident", format!("process_resident_memory_bytes{{{sel}}}")),
    ])
}

/// The rate range for figures "now" in a window: the window, at most 5 minutes, at least 30 s.
pub fn rate_range(w: Window) -> String {
    super::red::range_text(w.seconds().min(RATE_RANGE_MAX_S))
}

type Labels = Vec<(String, String)>;
/// A query by label set and where its value goes.
type Figure<T> = (String, fn(&mut T, f64));

fn vector(svc: &MetricsService, q: &str, t: i64) -> Result<Vec<(Labels, f64)>, String> {
    let db = svc.db_arc();
    match svc.engine.instant(&*db, q, t).map_err(|e| e.to_string())? {
        PromValue::Vector(v) => Ok(v.into_iter().filter(|s| s.v.is_finite()).map(|s| (s.labels, s.v)).collect()),
        _ => Ok(Vec::new()),
    }
}

fn label<'a>(labels: &'a Labels, k: &str) -> &'a str {
    labels.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Reads every machine, container and process series at the window's end. The busy share
/// of the CPUs is the non-idle share of all CPU seconds (not `1 - idle rate`), so a
/// machine that began reporting inside the range does not look busy.
pub fn read(svc: &Arc<MetricsService>, w: Window) -> Result<HostData, String> {
    let range = rate_range(w);
    let t = w.end_ms;
    let mut out = HostData::default();
    let by_instance = |q: &str| -> Result<Vec<(String, f64)>, String> {
        Ok(vector(svc, q, t)?.into_iter().map(|(l, v)| (label(&l, "instance").to_string(), v)).collect())
    };
    let machine_figures: [Figure<Machine>; 8] = [
        ("count by (instance) (node_cpu_seconds_total{mode=\"idle\"})".into(), |m, v| m.cpu_cores = Some(v)),
        (
            format!(
                "1 - sum by (instance) (rate(node_cpu_seconds_total{{mode=\"idle\"}}[{range}])) / sum by (instance) (rate(node_cpu_seconds_total[{range}]))"
            ),
            |m, v| m.cpu_ratio = Some(v.clamp(0.0, 1.0)),
        ),
        ("max by (instance) (node_memory_MemTotal_bytes)".into(), |m, v| m.memory_total = Some(v)),
        ("max by (instance) (node_memory_MemAvailable_bytes)".into(), |m, v| m.memory_available = Some(v)),
        ("max by (instance) (node_filesystem_size_bytes{mountpoint=\"/\"})".into(), |m, v| m.disk_size = Some(v)),
        ("max by (instance) (node_filesystem_avail_bytes{mountpoint=\"/\"})".into(), |m, v| m.disk_avail = Some(v)),
        (format!("sum by (instance) (rate(node_network_receive_bytes_total{{device!=\"lo\"}}[{range}]))"), |m, v| {
            m.rx_bps = Some(v)
        }),
        (format!("sum by (instance) (rate(node_network_transmit_bytes_total{{device!=\"lo\"}}[{range}]))"), |m, v| {
            m.tx_bps = Some(v)
        }),
    ];
    for (q, set) in machine_figures {
        for (instance, v) in by_instance(&q)? {
            set(out.machines.entry(instance).or_default(), v);
        }
    }

    let by = "service, instance, name";
    let mut containers: BTreeMap<(String, String, String), Container> = BTreeMap::new();
    let container_figures: [Figure<Container>; 5] = [
        (format!("sum by ({by}) (rate(container_cpu_usage_seconds_total{{cpu=\"total\"}}[{range}]))"), |c, v| {
            c.cpu_cores = Some(v)
        }),
        (format!("max by ({by}) (container_memory_working_set_bytes)"), |c, v| c.working_set = Some(v)),
        (format!("max by ({by}) (container_spec_memory_limit_bytes)"), |c, v| c.limit = Some(v)),
        (
            format!(
                "sum by ({by}) (rate(container_cpu_cfs_throttled_periods_total[{range}])) / sum by ({by}) (rate(container_cpu_cfs_periods_total[{range}]))"
            ),
            |c, v| c.throttled_ratio = Some(v.clamp(0.0, 1.0)),
        ),
        (format!("sum by ({by}) (increase(container_oom_events_total[{range}]))"), |c, v| c.oom_kills = Some(v)),
    ];
    for (q, set) in container_figures {
        for (l, v) in vector(svc, &q, t)? {
            let key =
                (label(&l, "service").to_string(), label(&l, "instance").to_string(), label(&l, "name").to_string());
            if key.0.is_empty() {
                continue;
            }
            let c = containers.entry(key.clone()).or_insert_with(|| Container {
                service: key.0,
                instance: key.1,
                name: key.2,
                ..Container::default()
            });
            set(c, v);
        }
    }
    out.containers = containers.into_values().collect();

    let mut processes: BTreeMap<(String, String), Process> = BTreeMap::new();
    let process_figures: [Figure<Process>; 4] = [
        (format!("sum by (service, instance) (rate(process_cpu_seconds_total[{range}]))"), |p, v| {
            p.cpu_cores = Some(v)
        }),
        ("sum by (service, instance) (process_resident_memory_bytes)".into(), |p, v| p.resident = Some(v)),
        ("sum by (service, instance) (process_threads)".into(), |p, v| p.threads = Some(v)),
        ("sum by (service, instance) (process_open_fds)".into(), |p, v| p.open_fds = Some(v)),
    ];
    for (q, set) in process_figures {
        for (l, v) in vector(svc, &q, t)? {
            let key = (label(&l, "service").to_string(), label(&l, "instance").to_string());
            if key.0.is_empty() {
                continue;
            }
            let p = processes.entry(key.clone()).or_insert_with(|| Process {
                service: key.0,
                instance: key.1,
                ..Process::default()
            });
            set(p, v);
        }
    }
    out.processes = processes.into_values().collect();
    Ok(out)
}

/// The firing alerts of the host rule group (empty when the node runs no rules).
pub fn host_alerts(s: &AppState) -> Vec<HostAlert> {
    let Some(rules) = s.metric_store.as_ref().and_then(|m| m.rules.as_ref()) else {
        return Vec::new();
    };
    let groups = rules.groups_json();
    let mut out = Vec::new();
    for g in groups["groups"].as_array().into_iter().flatten().filter(|g| g["name"] == HOST_RULE_GROUP) {
        for r in g["rules"].as_array().into_iter().flatten() {
            for a in r["alerts"].as_array().into_iter().flatten().filter(|a| a["state"] == "firing") {
                let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
                let instance = label("instance");
                if instance.is_empty() {
                    continue;
                }
                out.push(HostAlert {
                    name: label("alertname"),
                    service: Some(label("service")).filter(|s| !s.is_empty()),
                    summary: a["annotations"]["summary"].as_str().unwrap_or_default().to_string(),
                    instance,
                });
            }
        }
    }
    out
}

/// Whether a series' `instance` label names `host` (exactly, or as `host:port`).
pub fn names_host(label: &str, host: &str) -> bool {
    !host.is_empty()
        && (label == host
            || label.strip_prefix(host).and_then(|r| r.strip_prefix(':')).is_some_and(|p| p.parse::<u16>().is_ok()))
}

/// The host an instance runs on, and which field named it.
pub fn host_of(i: &InstanceView) -> (String, &'static str) {
    for key in ["host", "node"] {
        if let Some(h) = i.meta.get(key).map(|h| h.trim()).filter(|h| !h.is_empty()) {
            return (h.to_string(), if key == "host" { "meta.host" } else { "meta.node" });
        }
    }
    (i.address.clone(), "address")
}

/// One place a service runs: a registry instance's machine, or a host its containers or
/// processes report from.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The registry instance's id (`None`: seen from container or process series alone).
    pub instance_id: Option<String>,
    pub address: Option<String>,
    pub host: String,
    pub matched_by: &'static str,
    /// The host series' `instance` label that matched, with its figures.
    pub machine: Option<(String, Machine)>,
    pub containers: Vec<Container>,
    pub processes: Vec<Process>,
    pub trouble: Vec<Trouble>,
}

/// Why a machine is in trouble.
#[derive(Clone, Debug, PartialEq)]
pub struct Trouble {
    /// `alert` or `threshold`.
    pub kind: &'static str,
    pub reason: String,
    pub alert: Option<String>,
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn troubles(service: &str, p: &Placement, alerts: &[HostAlert]) -> Vec<Trouble> {
    let mut out = Vec::new();
    let host_label = p.machine.as_ref().map(|(l, _)| l.as_str()).unwrap_or(&p.host);
    for a in alerts {
        let same_host = names_host(&a.instance, &p.host) || a.instance == host_label;
        if same_host && a.service.as_deref().is_none_or(|s| s == service) {
            let reason = if a.summary.is_empty() { format!("{} firing", a.name) } else { a.summary.clone() };
            out.push(Trouble { kind: "alert", reason, alert: Some(a.name.clone()) });
        }
    }
    let mut threshold = |reason: String| out.push(Trouble { kind: "threshold", reason, alert: None });
    if let Some((_, m)) = &p.machine {
        if let Some(c) = m.cpu_ratio.filter(|c| *c > USE_TROUBLE) {
            threshold(format!("CPU {} busy", pct(c)));
        }
        if let Some(r) = m.memory_ratio().filter(|r| *r > USE_TROUBLE) {
            threshold(format!("memory {} used", pct(r)));
        }
        if let Some(f) = m.disk_free_ratio().filter(|f| 1.0 - f > USE_TROUBLE) {
            threshold(format!("root filesystem {} full", pct(1.0 - f)));
        }
    }
    for c in &p.containers {
        if let Some(r) = c.memory_ratio().filter(|r| *r > USE_TROUBLE) {
            threshold(format!("container {}: memory {} of its limit", c.name, pct(r)));
        }
        if let Some(t) = c.throttled_ratio.filter(|t| *t > THROTTLE_TROUBLE) {
            threshold(format!("container {}: CPU throttled {} of periods", c.name, pct(t)));
        }
        if let Some(k) = c.oom_kills.filter(|k| *k >= 0.5) {
            threshold(format!("container {}: {:.0} OOM kill{}", c.name, k, if k.round() == 1.0 { "" } else { "s" }));
        }
    }
    out
}

/// Where `service` runs: one placement per registry instance, then one per other host its
/// containers or processes report from.
pub fn placements(service: &str, instances: &[InstanceView], data: &HostData) -> Vec<Placement> {
    let mut out = Vec::new();
    let mut seen_hosts: BTreeSet<String> = BTreeSet::new();
    let of_service = |host: &str, id: Option<&str>| {
        let matches = |label: &str| names_host(label, host) || id.is_some_and(|id| label == id);
        let containers: Vec<Container> =
            data.containers.iter().filter(|c| c.service == service && matches(&c.instance)).cloned().collect();
        let processes: Vec<Process> =
            data.processes.iter().filter(|p| p.service == service && matches(&p.instance)).cloned().collect();
        (containers, processes)
    };
    let machine_of = |host: &str| {
        data.machines
            .get(host)
            .map(|m| (host.to_string(), m.clone()))
            .or_else(|| data.machines.iter().find(|(l, _)| names_host(l, host)).map(|(l, m)| (l.clone(), m.clone())))
    };
    for i in instances {
        let (host, matched_by) = host_of(i);
        let (containers, processes) = of_service(&host, Some(&i.id));
        seen_hosts.insert(host.clone());
        seen_hosts.extend(containers.iter().map(|c| c.instance.clone()));
        seen_hosts.extend(processes.iter().map(|p| p.instance.clone()));
        out.push(Placement {
            instance_id: Some(i.id.clone()),
            address: Some(i.address.clone()),
            machine: machine_of(&host),
            host,
            matched_by,
            containers,
            processes,
            trouble: Vec::new(),
        });
    }
    let others: BTreeSet<String> = data
        .containers
        .iter()
        .filter(|c| c.service == service)
        .map(|c| c.instance.clone())
        .chain(data.processes.iter().filter(|p| p.service == service).map(|p| p.instance.clone()))
        .filter(|h| !h.is_empty() && !seen_hosts.contains(h))
        .collect();
    for host in others {
        let (containers, processes) = of_service(&host, None);
        out.push(Placement {
            instance_id: None,
            address: None,
            machine: machine_of(&host),
            host,
            matched_by: "container or process labels",
            containers,
            processes,
            trouble: Vec::new(),
        });
    }
    for p in &mut out {
        p.trouble = troubles(service, p, &data.alerts);
    }
    out
}

/// A machine in trouble under one of a service's instances, as the overview and the map
/// carry it.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineTrouble {
    pub instance: Option<String>,
    pub host: String,
    pub reasons: Vec<String>,
}

impl MachineTrouble {
    pub fn json(&self) -> Value {
        json!({ "instance": self.instance, "host": self.host, "reasons": self.reasons })
    }
}

/// The placements in trouble.
pub fn machine_trouble(placements: &[Placement]) -> Vec<MachineTrouble> {
    placements
        .iter()
        .filter(|p| !p.trouble.is_empty())
        .map(|p| MachineTrouble {
            instance: p.instance_id.clone(),
            host: p.host.clone(),
            reasons: p.trouble.iter().map(|t| t.reason.clone()).collect(),
        })
        .collect()
}

fn container_json(c: &Container) -> Value {
    json!({
        "name": c.name,
        "instance": c.instance,
        "cpu_cores": num(c.cpu_cores),
        "memory_working_set_bytes": num(c.working_set),
        "memory_limit_bytes": num(c.limit.filter(|l| *l > 0.0)),
        "memory_ratio": num(c.memory_ratio()),
        "throttled_ratio": num(c.throttled_ratio),
        "oom_kills": num(c.oom_kills),
    })
}

fn process_json(p: &Process) -> Value {
    json!({
        "instance": p.instance,
        "cpu_cores": num(p.cpu_cores),
        "resident_bytes": num(p.resident),
        "threads": num(p.threads),
        "open_fds": num(p.open_fds),
    })
}

/// The service page's `hosts` section.
pub fn section_json(service: &str, placements: &[Placement], data: &HostData, w: Window) -> Value {
    let range = rate_range(w);
    let list: Vec<Value> = placements
        .iter()
        .map(|p| {
            let machine = p.machine.as_ref().map(|(l, m)| {
                json!({
                    "series_instance": l,
                    "cpu_cores": num(m.cpu_cores),
                    "cpu_used_cores": num(m.cpu_ratio.zip(m.cpu_cores).map(|(r, c)| r * c)),
                    "cpu_ratio": num(m.cpu_ratio),
                    "memory_used_bytes": num(m.memory_used()),
                    "memory_total_bytes": num(m.memory_total),
                    "memory_ratio": num(m.memory_ratio()),
                    "disk_size_bytes": num(m.disk_size),
                    "disk_free_ratio": num(m.disk_free_ratio()),
                    "network_rx_bps": num(m.rx_bps),
                    "network_tx_bps": num(m.tx_bps),
                })
            });
            let series_host = p.machine.as_ref().map(|(l, _)| l.as_str()).unwrap_or(&p.host);
            let container_host = p.containers.first().map(|c| c.instance.as_str()).unwrap_or(&p.host);
            json!({
                "instance": p.instance_id,
                "address": p.address,
                "host": p.host,
                "matched_by": p.matched_by,
                "machine": machine,
                "containers": p.containers.iter().map(container_json).collect::<Vec<_>>(),
                "processes": p.processes.iter().map(process_json).collect::<Vec<_>>(),
                "trouble": p.trouble.iter().map(|t| json!({ "kind": t.kind, "reason": t.reason, "alert": t.alert })).collect::<Vec<_>>(),
                "queries": {
                    "machine": machine_queries(series_host, &range),
                    "containers": container_queries(service, container_host, &range),
                },
            })
        })
        .collect();
    json!({
        "reporting": data.reporting(),
        "thresholds": { "use": USE_TROUBLE, "throttled": THROTTLE_TROUBLE },
        "instances": list,
    })
}
