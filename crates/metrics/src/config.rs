//! The `[metrics]` config section: the TSDB's place and limits, the query engine's limits,
//! the node's own metrics, and scrape jobs (`[[metrics.scrape]]`, with Prometheus's
//! `scrape_config` keys).

use crate::scrape::job::{Job, JobConfig};
use crate::tsdb::TsdbOptions;
use serde::{Deserialize, Serialize};
use signalbox_core::config::{ByteSize, Dur, Problems};
use std::path::Path;
use std::sync::Arc;

/// The `[metrics]` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Store metrics (scrapes, remote_write, OTLP, the node's own).
    pub enabled: bool,
    /// Delete blocks whose samples are all older than this.
    pub retention: Dur,
    /// Delete the oldest blocks while all of them take more than this (0: no limit).
    pub max_disk: ByteSize,
    /// The time range of a freshly cut block.
    pub block_range: Dur,
    /// How far behind a series' newest sample an older one is still accepted.
    pub out_of_order_window: Dur,
    /// Most active series in memory; samples of new series past it are refused and counted.
    pub max_series: usize,
    /// Pushes (remote_write, OTLP) written at once; more are answered 429.
    pub max_pushes: usize,
    /// Longest a PromQL query may run.
    pub query_timeout: Dur,
    /// How far back an instant selector looks for a sample.
    pub lookback_delta: Dur,
    /// Most samples one query may hold.
    pub query_max_samples: usize,
    /// How often the node's own metrics (the gateway's RED metrics included) are stored;
    /// 0 turns it off.
    pub self_interval: Dur,
    /// Scrape every registry instance that declares `metrics_path` in its meta, as job
    /// `services` (a `[[metrics.scrape]]` job with `registry` set replaces it).
    pub scrape_registry: bool,
    /// The interval of that job.
    pub registry_interval: Dur,
    /// Scrape jobs.
    pub scrape: Vec<JobConfig>,
    /// Recording and alerting rules, and where alerts go (`[metrics.rules]`).
    pub rules: crate::rules::RulesConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            retention: Dur::secs(15 * 86_400),
            max_disk: ByteSize(0),
            block_range: Dur::secs(2 * 3600),
            out_of_order_window: Dur::secs(600),
            max_series: 2_000_000,
            max_pushes: 64,
            query_timeout: Dur::secs(120),
            lookback_delta: Dur::secs(300),
            query_max_samples: 50_000_000,
            self_interval: Dur::secs(15),
            scrape_registry: true,
            registry_interval: Dur::secs(15),
            scrape: Vec::new(),
            rules: Default::default(),
        }
    }
}

impl MetricsConfig {
    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        if self.block_range.0.as_secs() < 60 {
            p.add(format!("{prefix}.block_range"), "must be at least 1m");
        }
        if self.max_series == 0 {
            p.add(format!("{prefix}.max_series"), "must be at least 1");
        }
        if self.max_pushes == 0 {
            p.add(format!("{prefix}.max_pushes"), "must be at least 1");
        }
        if self.query_timeout.0.is_zero() {
            p.add(format!("{prefix}.query_timeout"), "must be more than 0");
        }
        if self.lookback_delta.0.is_zero() {
            p.add(format!("{prefix}.lookback_delta"), "must be more than 0");
        }
        if self.registry_interval.0.is_zero() {
            p.add(format!("{prefix}.registry_interval"), "must be more than 0");
        }
        self.rules.check(&format!("{prefix}.rules"), p);
        let mut names = std::collections::HashSet::new();
        for (i, j) in self.scrape.iter().enumerate() {
            if !names.insert(j.job_name.clone()) {
                p.add(format!("{prefix}.scrape[{i}].job_name"), format!("`{}` is used by another job", j.job_name));
            }
            if let Err(m) = Job::new(j.clone()) {
                p.add(format!("{prefix}.scrape[{i}]"), m);
            }
        }
    }

    /// The TSDB's options.
    pub fn tsdb(&self) -> TsdbOptions {
        TsdbOptions {
            block_range_ms: self.block_range.0.as_millis() as i64,
            ooo_window_ms: self.out_of_order_window.0.as_millis() as i64,
            max_series: self.max_series,
            retention_ms: self.retention.0.as_millis() as i64,
            retention_bytes: self.max_disk.0,
            ..TsdbOptions::default()
        }
    }

    /// The query engine.
    pub fn engine(&self) -> crate::promql::Engine {
        crate::promql::Engine {
            lookback_delta_ms: self.lookback_delta.0.as_millis() as i64,
            timeout: self.query_timeout.0,
            max_samples: self.query_max_samples,
        }
    }

    /// The checked scrape jobs, with the registry job when it is on and no job of the
    /// config discovers from the registry.
    pub fn jobs(&self) -> Result<Vec<Arc<Job>>, String> {
        let mut jobs: Vec<Arc<Job>> =
            self.scrape.iter().map(|j| Job::new(j.clone()).map(Arc::new)).collect::<Result<_, _>>()?;
        if self.scrape_registry && !jobs.iter().any(|j| j.registry.is_some()) {
            let secs = self.registry_interval.0.as_secs().max(1);
            let cfg: JobConfig = JobConfig {
                job_name: "services".into(),
                scrape_interval: format!("{secs}s"),
                scrape_timeout: format!("{}s", secs.min(10)),
                registry: Some(Default::default()),
                ..JobConfig::minimal("services")
            };
            jobs.push(Arc::new(Job::new(cfg)?));
        }
        Ok(jobs)
    }

    /// Where the TSDB lives under the node's data directory.
    pub fn dir(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join("metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::MetricsConfig;

    #[test]
    fn the_default_registry_job_scrapes_failing_instances_too() {
        // A failing instance must read `up == 0` (as in Prometheus), or `InstanceDown` never fires.
        let cfg: MetricsConfig = toml::from_str("").unwrap();
        let jobs = cfg.jobs().unwrap();
        let registry = jobs.iter().find_map(|j| j.registry.as_ref()).expect("the registry job");
        assert!(registry.include_unhealthy);
        assert!(registry.services.is_empty());
    }
}
