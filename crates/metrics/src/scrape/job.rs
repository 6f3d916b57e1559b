//! Scrape jobs: a job's config (Prometheus's `scrape_config` names), its checks, and the
//! targets it yields from discovered label sets (static config or the registry) after
//! `relabel_configs`.

use super::relabel::{self, Rule, RuleConfig};
use crate::storage::Labels;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One `[[metrics.scrape]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub job_name: String,
    #[serde(default = "default_interval")]
    pub scrape_interval: String,
    #[serde(default = "default_timeout")]
    pub scrape_timeout: String,
    #[serde(default = "default_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// Most samples one scrape may hold (after metric relabeling); more fails the scrape.
    #[serde(default = "default_sample_limit")]
    pub sample_limit: usize,
    /// Most labels one sample may carry.
    #[serde(default = "default_label_limit")]
    pub label_limit: usize,
    /// Largest (uncompressed) body read: `10MB`, `512KiB` or a number of bytes.
    #[serde(default = "default_body_limit")]
    pub body_size_limit: String,
    /// Credentials sent with every scrape (`Authorization: <type> <credentials>`).
    #[serde(default)]
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Scrape the registry's instances that declare a metrics path (meta `metrics_path`).
    #[serde(default)]
    pub registry: Option<RegistryDiscovery>,
    #[serde(default)]
    pub relabel_configs: Vec<RuleConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RuleConfig>,
}

/// Prometheus's `authorization` block: a scheme (default `Bearer`) and the credentials.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default = "bearer", rename = "type")]
    pub kind: String,
    pub credentials: String,
}

fn bearer() -> String {
    "Bearer".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Which registry services a job scrapes (all when `services` is empty).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryDiscovery {
    #[serde(default)]
    pub services: Vec<String>,
    /// Also scrape instances whose checks are failing (Prometheus does; default true).
    #[serde(default = "yes")]
    pub include_unhealthy: bool,
}

/// Written by hand: a derived `Default` would turn `include_unhealthy` off, and the default
/// registry job would then never see a failing instance's `up == 0`.
impl Default for RegistryDiscovery {
    fn default() -> RegistryDiscovery {
        RegistryDiscovery { services: Vec::new(), include_unhealthy: true }
    }
}

impl JobConfig {
    /// A job with every key at its default.
    pub fn minimal(name: &str) -> JobConfig {
        JobConfig {
            job_name: name.into(),
            scrape_interval: default_interval(),
            scrape_timeout: default_timeout(),
            metrics_path: default_path(),
            scheme: default_scheme(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: default_sample_limit(),
            label_limit: default_label_limit(),
            body_size_limit: default_body_limit(),
            authorization: None,
            static_configs: Vec::new(),
            registry: None,
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }
}

fn default_interval() -> String {
    "15s".into()
}
fn default_timeout() -> String {
    "10s".into()
}
fn default_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn yes() -> bool {
    true
}
fn default_sample_limit() -> usize {
    50_000
}
fn default_label_limit() -> usize {
    64
}
fn default_body_limit() -> String {
    "50MB".into()
}

/// A checked job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: usize,
    pub label_limit: usize,
    pub body_limit: u64,
    /// The `Authorization` header value, when the job has credentials.
    pub authorization: Option<String>,
    pub static_configs: Vec<StaticConfig>,
    pub registry: Option<RegistryDiscovery>,
    pub relabel: Vec<Rule>,
    pub metric_relabel: Vec<Rule>,
}

/// A discovered target before relabeling: `__address__` and any `__meta_*` and static labels.
pub type Discovered = Labels;

/// A target to scrape, after relabeling.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub job: String,
    pub url: String,
    /// The labels every sample from it gets (`job`, `instance`, and the rest).
    pub labels: Labels,
    /// What discovery gave, for the targets API.
    pub discovered: Labels,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Target {
    /// Identifies a target across syncs.
    pub fn key(&self) -> String {
        format!("{}|{}|{:?}", self.job, self.url, self.labels)
    }

    /// What a cluster shares targets out by: the job and the URL (scheme, address, path,
    /// parameters), the same on every node.
    pub fn owner_key(&self) -> String {
        format!("scrape\x1f{}\x1f{}", self.job, self.url)
    }
}

/// A target relabeling dropped (for the targets API's `droppedTargets`).
#[derive(Debug, Clone)]
pub struct Dropped {
    pub discovered: Labels,
}

impl Job {
    /// Checks a job config; the error names the job and the key.
    pub fn new(cfg: JobConfig) -> Result<Job, String> {
        let name = cfg.job_name.clone();
        let err = |key: &str, m: String| format!("scrape job `{name}`: {key}: {m}");
        if name.is_empty() {
            return Err("scrape job: job_name: required".into());
        }
        let dur = |key: &str, v: &str| {
            signalbox_core::time::go_duration(v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| err(key, format!("`{v}` is not a duration such as 15s or 1m")))
        };
        let interval = dur("scrape_interval", &cfg.scrape_interval)?;
        let timeout = dur("scrape_timeout", &cfg.scrape_timeout)?;
        if timeout > interval {
            return Err(err("scrape_timeout", "must not be longer than scrape_interval".into()));
        }
        if cfg.scheme != "http" && cfg.scheme != "https" {
            return Err(err("scheme", format!("`{}` is not http or https", cfg.scheme)));
        }
        if !cfg.metrics_path.starts_with('/') {
            return Err(err("metrics_path", "must start with /".into()));
        }
        let body_limit =
            signalbox_core::config::parse_bytes(&cfg.body_size_limit).map_err(|m| err("body_size_limit", m))?;
        let rules = |key: &str, list: Vec<RuleConfig>| {
            list.into_iter()
                .enumerate()
                .map(|(i, r)| Rule::new(r).map_err(|m| err(&format!("{key}[{i}]"), m)))
                .collect::<Result<Vec<_>, _>>()
        };
        for (i, s) in cfg.static_configs.iter().enumerate() {
            for t in &s.targets {
                if t.contains('/') || !t.contains(':') {
                    return Err(err(&format!("static_configs[{i}].targets"), format!("`{t}` is not host:port")));
                }
            }
        }
        let authorization = match &cfg.authorization {
            None => None,
            Some(a) if a.credentials.is_empty() => {
                return Err(err("authorization.credentials", "must not be empty".into()));
            }
            Some(a) if a.kind.is_empty() || a.kind.contains(char::is_whitespace) => {
                return Err(err("authorization.type", format!("`{}` is not a scheme such as Bearer", a.kind)));
            }
            Some(a) => Some(format!("{} {}", a.kind, a.credentials)),
        };
        Ok(Job {
            authorization,
            relabel: rules("relabel_configs", cfg.relabel_configs)?,
            metric_relabel: rules("metric_relabel_configs", cfg.metric_relabel_configs)?,
            name: cfg.job_name,
            interval,
            timeout,
            metrics_path: cfg.metrics_path,
            scheme: cfg.scheme,
            params: cfg.params,
            honor_labels: cfg.honor_labels,
            honor_timestamps: cfg.honor_timestamps,
            sample_limit: cfg.sample_limit,
            label_limit: cfg.label_limit,
            body_limit,
            static_configs: cfg.static_configs,
            registry: cfg.registry,
        })
    }

    /// The static targets as discovered label sets.
    pub fn static_discovered(&self) -> Vec<Discovered> {
        let mut out = Vec::new();
        for s in &self.static_configs {
            for t in &s.targets {
                let mut l: Labels = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                l.push(("__address__".into(), t.clone()));
                out.push(l);
            }
        }
        out
    }

    /// Relabels discovered label sets into targets, as Prometheus does: the job's defaults
    /// (`job`, `__scheme__`, `__metrics_path__`, intervals) first, then `relabel_configs`,
    /// then `instance` defaults to `__address__` and `__` labels go.
    pub fn targets(&self, discovered: Vec<Discovered>) -> (Vec<Target>, Vec<Dropped>) {
        let mut targets = Vec::new();
        let mut dropped = Vec::new();
        for d in discovered {
            let mut l = d.clone();
            let mut default = |k: &str, v: String| {
                if !l.iter().any(|(n, _)| n == k) {
                    l.push((k.to_string(), v));
                }
            };
            default("job", self.name.clone());
            default("__scheme__", self.scheme.clone());
            default("__metrics_path__", self.metrics_path.clone());
            default("__scrape_interval__", format!("{}s", self.interval.as_secs_f64()));
            default("__scrape_timeout__", format!("{}s", self.timeout.as_secs_f64()));
            for (k, vs) in &self.params {
                if let Some(v) = vs.first() {
                    default(&format!("__param_{k}"), v.clone());
                }
            }
            let Some(l) = relabel::apply(&self.relabel, l) else {
                dropped.push(Dropped { discovered: d });
                continue;
            };
            let get = |k: &str| l.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
            let address = get("__address__");
            if address.is_empty() {
                dropped.push(Dropped { discovered: d });
                continue;
            }
            let mut query: Vec<String> = Vec::new();
            for (k, v) in &l {
                if let Some(p) = k.strip_prefix("__param_") {
                    query.push(format!("{p}={}", encode_query(v)));
                }
            }
            let path = get("__metrics_path__");
            let url = format!(
                "{}://{}{}{}{}",
                get("__scheme__"),
                address,
                if path.starts_with('/') { "" } else { "/" },
                path,
                if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) }
            );
            let interval = signalbox_core::time::go_duration(&get("__scrape_interval__")).unwrap_or(self.interval);
            let timeout = signalbox_core::time::go_duration(&get("__scrape_timeout__")).unwrap_or(self.timeout);
            let mut labels: Labels = l.iter().filter(|(k, _)| !k.starts_with("__")).cloned().collect();
            if !labels.iter().any(|(k, _)| k == "instance") {
                labels.push(("instance".into(), address));
            }
            labels.sort();
            targets.push(Target { job: self.name.clone(), url, labels, discovered: d, interval, timeout });
        }
        (targets, dropped)
    }
}

fn encode_query(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
