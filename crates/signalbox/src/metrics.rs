//! The node's metrics: the TSDB opened under the data directory, the scrape manager fed by
//! the registry and the static jobs, the node's own metrics (the gateway's RED metrics
//! included) stored in-process with no scrape hop, and the TSDB's upkeep (cutting blocks,
//! compaction, retention) on a timer.

use signalbox_api::metrics::MetricsState;
use signalbox_control::registry::{InstanceView, Registry as ServiceRegistry};
use signalbox_core::metrics::Registry;
use signalbox_metrics::config::MetricsConfig;
use signalbox_metrics::scrape::job::{Discovered, Job};
use signalbox_metrics::service::MetricsService;
use signalbox_metrics::storage::{Appender, Labels};
use signalbox_metrics::tsdb::Tsdb;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the registry is read for scrape targets.
const DISCOVERY_EVERY: Duration = Duration::from_secs(5);
/// How often the TSDB cuts, compacts and applies retention.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Opens the TSDB and starts the loops; they end with the runtime.
pub fn start(
    cfg: &MetricsConfig,
    data_dir: &Path,
    services: Arc<ServiceRegistry>,
    own: Registry,
    node_name: &str,
) -> anyhow::Result<Arc<MetricsState>> {
    let dir = MetricsConfig::dir(data_dir);
    let started = std::time::Instant::now();
    let (db, report) = Tsdb::open_with_report(&dir, cfg.tsdb())
        .map_err(|e| anyhow::anyhow!("cannot open the metrics store in {}: {e}", dir.display()))?;
    tracing::info!(
        blocks = report.blocks,
        skipped_samples = report.skipped_samples,
        took_ms = started.elapsed().as_millis() as u64,
        "metrics store opened"
    );
    let db = Arc::new(db);
    register_tsdb_metrics(&own, &db);
    let mut service = MetricsService::new(db.clone(), cfg.max_pushes);
    service.engine = cfg.engine();
    service.retention = cfg.retention.to_string();
    let service = Arc::new(service);
    register_push_metrics(&own, &service);
    let m = service.scrape.clone();
    own.gauge_fn(
        "signalbox_scrape_targets",
        "Scrape targets the jobs yield (every node of a cluster lists them all).",
        &[],
        move || m.counts().0 as f64,
    );
    let m = service.scrape.clone();
    own.gauge_fn(
        "signalbox_scrape_targets_scraped_here",
        "Scrape targets this node scrapes: all on a single node, its owned share in a cluster, none without its lease.",
        &[],
        move || m.counts().1 as f64,
    );
    let jobs = cfg.jobs().map_err(|m| anyhow::anyhow!("invalid config: metrics.scrape: {m}"))?;

    // In a cluster each target and each rule group has one live owner (the registry knows
    // the members from etcd); on a single node this node owns everything.
    let owners = services.work_owners();
    service.scrape.share_by(owners.clone());
    // Targets: the static ones at once, the registry's as it changes.
    let manager = service.scrape.clone();
    tokio::spawn(async move {
        let mut last: Option<HashMap<String, Vec<Discovered>>> = None;
        loop {
            let found = discover(&jobs, &services);
            if last.as_ref() != Some(&found) {
                manager.sync(&jobs, found.clone());
                last = Some(found);
            }
            tokio::time::sleep(DISCOVERY_EVERY).await;
        }
    });

    let upkeep = db.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(MAINTAIN_EVERY).await;
            let db = upkeep.clone();
            match tokio::task::spawn_blocking(move || db.maintain(now_ms())).await {
                Ok(Ok(r)) if r.blocks_cut + r.blocks_compacted + r.blocks_deleted > 0 => {
                    tracing::info!(
                        cut = r.blocks_cut,
                        compacted = r.blocks_compacted,
                        deleted = r.blocks_deleted,
                        "metrics blocks maintained"
                    );
                }
                Ok(Err(e)) => tracing::error!(error = %e, "metrics store upkeep failed"),
                _ => {}
            }
        }
    });

    if !cfg.self_interval.0.is_zero() {
        let every = cfg.self_interval.0;
        let node = node_name.to_string();
        let appender: Arc<dyn Appender> = service.db_arc();
        let own = own.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let samples = own_samples(&own, &node, now_ms());
                let appender = appender.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || appender.append(&samples)).await {
                    tracing::warn!(error = %e, "storing the node's own metrics failed");
                }
            }
        });
    }
    let rules = signalbox_metrics::rules::RuleManager::start(
        cfg.rules.clone(),
        service.db_arc(),
        cfg.engine(),
        dir.join("rules"),
    )
    .map_err(|m| anyhow::anyhow!("invalid config: metrics.rules: {m}"))?;
    rules.share_by(owners);
    register_rule_metrics(&own, &rules);
    // Rule files are re-read when one of them changes (or appears, or goes).
    let patterns = cfg.rules.files.clone();
    let watched = rules.clone();
    tokio::spawn(async move {
        let mut last = rule_files_stamp(&patterns);
        loop {
            tokio::time::sleep(RULES_CHECK_EVERY).await;
            let now = rule_files_stamp(&patterns);
            if now != last {
                last = now;
                let m = watched.clone();
                match tokio::task::spawn_blocking(move || m.reload()).await {
                    Ok(Ok(())) => tracing::info!("rule files reloaded"),
                    Ok(Err(e)) => {
                        tracing::error!(problems = %e, "rule files are invalid; the previous rules keep running")
                    }
                    Err(_) => {}
                }
            }
        }
    });
    Ok(MetricsState::new(service, Some(rules)))
}

/// How often rule files are checked for changes.
const RULES_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The rule files' names, sizes and modification times.
fn rule_files_stamp(patterns: &[String]) -> Vec<(std::path::PathBuf, u64, Option<SystemTime>)> {
    signalbox_metrics::rules::expand_globs(patterns)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
}

fn register_rule_metrics(reg: &Registry, rules: &Arc<signalbox_metrics::rules::RuleManager>) {
    use std::sync::atomic::Ordering::Relaxed;
    let r = rules.clone();
    reg.gauge_fn(
        "signalbox_rule_groups_evaluated_here",
        "Rule groups this node evaluates: all on a single node, its owned share (and the default rules) in a cluster.",
        &[],
        move || r.group_counts().1 as f64,
    );
    let r = rules.clone();
    reg.counter_fn("signalbox_alert_notifications_sent_total", "Alert notifications delivered.", &[], move || {
        r.notifier.stats.sent.load(Relaxed) as f64
    });
    let r = rules.clone();
    reg.counter_fn(
        "signalbox_alert_notifications_errors_total",
        "Alert notifications that failed after their retries.",
        &[],
        move || r.notifier.stats.errors.load(Relaxed) as f64,
    );
    let r = rules.clone();
    reg.counter_fn(
        "signalbox_alert_notifications_dropped_total",
        "Alert notifications dropped because the queue was full.",
        &[],
        move || r.notifier.stats.dropped.load(Relaxed) as f64,
    );
}

/// The node's registry as samples: `job="signalbox"`, `instance` = the node's name.
pub fn own_samples(own: &Registry, node: &str, t: i64) -> Vec<(Labels, i64, f64)> {
    let text = own.render();
    let limits = signalbox_metrics::exposition::Limits { max_samples: 200_000, ..Default::default() };
    let exp = match signalbox_metrics::exposition::parse(&text, false, limits) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "the node's own metrics do not parse");
            return Vec::new();
        }
    };
    exp.samples
        .into_iter()
        .map(|s| {
            let mut l: Labels = s.labels;
            l.retain(|(k, _)| k != "job" && k != "instance");
            l.push(("__name__".into(), s.name));
            l.push(("job".into(), "signalbox".into()));
            l.push(("instance".into(), node.to_string()));
            l.sort();
            (l, t, s.value)
        })
        .collect()
}

/// The registry's instances that declare a metrics path, per registry job.
fn discover(jobs: &[Arc<Job>], services: &ServiceRegistry) -> HashMap<String, Vec<Discovered>> {
    let mut out = HashMap::new();
    let all = services.all();
    for j in jobs {
        let Some(r) = &j.registry else { continue };
        let found: Vec<Discovered> = all
            .iter()
            .filter(|i| r.services.is_empty() || r.services.contains(&i.service))
            .filter(|i| r.include_unhealthy || i.status != signalbox_control::registry::model::Status::Critical)
            .filter_map(instance_labels)
            .collect();
        out.insert(j.name.clone(), found);
    }
    out
}

/// A registry instance as a discovered target: `__address__`, `__metrics_path__` (meta
/// `metrics_path`, required), `__scheme__` (meta `metrics_scheme`), the `service` and
/// `instance` labels, and `__meta_signalbox_*` for relabeling.
pub fn instance_labels(i: &InstanceView) -> Option<Discovered> {
    let path = i.meta.get("metrics_path").or_else(|| i.meta.get("prometheus_path"))?;
    let port = i.meta.get("metrics_port").cloned().unwrap_or_else(|| i.port.to_string());
    let host = if i.address.contains(':') { format!("[{}]", i.address) } else { i.address.clone() };
    let mut l: Labels = vec![
        ("__address__".into(), format!("{host}:{port}")),
        ("__metrics_path__".into(), if path.starts_with('/') { path.clone() } else { format!("/{path}") }),
        ("service".into(), i.service.clone()),
        ("instance".into(), i.id.clone()),
        ("__meta_signalbox_service".into(), i.service.clone()),
        ("__meta_signalbox_instance_id".into(), i.id.clone()),
        ("__meta_signalbox_address".into(), i.address.clone()),
        ("__meta_signalbox_port".into(), i.port.to_string()),
        ("__meta_signalbox_health".into(), i.status.as_str().into()),
        ("__meta_signalbox_tags".into(), format!(",{},", i.tags.join(","))),
    ];
    if let Some(s) = i.meta.get("metrics_scheme") {
        l.push(("__scheme__".into(), s.clone()));
    }
    for (k, v) in &i.meta {
        let key: String = k.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        l.push((format!("__meta_signalbox_meta_{key}"), v.clone()));
    }
    Some(l)
}

fn register_tsdb_metrics(reg: &Registry, db: &Arc<Tsdb>) {
    let d = db.clone();
    reg.gauge_fn("signalbox_tsdb_head_series", "Active series in the metrics store's head.", &[], move || {
        d.stats().active_series as f64
    });
    let d = db.clone();
    reg.gauge_fn("signalbox_tsdb_head_chunk_bytes", "Bytes of compressed chunks in the head.", &[], move || {
        d.stats().head_chunk_bytes as f64
    });
    let d = db.clone();
    reg.gauge_fn("signalbox_tsdb_blocks", "Persisted metrics blocks.", &[], move || d.stats().blocks as f64);
    let d = db.clone();
    reg.gauge_fn("signalbox_tsdb_block_bytes", "Bytes of persisted metrics blocks.", &[], move || {
        d.stats().block_bytes as f64
    });
    let d = db.clone();
    reg.counter_fn("signalbox_tsdb_samples_appended_total", "Samples stored in the metrics store.", &[], move || {
        d.stats().samples_appended as f64
    });
    let d = db.clone();
    reg.gauge_fn("signalbox_tsdb_wal_bytes", "Bytes of the metrics write-ahead log.", &[], move || {
        d.stats().wal_bytes as f64
    });
}

fn register_push_metrics(reg: &Registry, svc: &Arc<MetricsService>) {
    use std::sync::atomic::Ordering::Relaxed;
    for reason in ["too_old", "duplicate", "series_limit"] {
        let s = svc.clone();
        reg.counter_fn(
            "signalbox_metrics_samples_refused_total",
            "Samples the metrics store refused, by reason (older than the out-of-order window, another value at a stored time, the series limit), from scrapes, pushes, rules and the node itself.",
            &[("reason", reason)],
            move || {
                let r = &s.refusals;
                (match reason {
                    "too_old" => &r.too_old,
                    "duplicate" => &r.duplicate,
                    _ => &r.over_limit,
                })
                .load(Relaxed) as f64
            },
        );
    }
    let s = svc.clone();
    reg.counter_fn(
        "signalbox_metrics_push_samples_refused_total",
        "Pushed samples the store refused (out of order, duplicate, series limit).",
        &[],
        move || s.stats.samples_refused.load(Relaxed) as f64,
    );
    let s = svc.clone();
    reg.counter_fn(
        "signalbox_metrics_push_busy_total",
        "Pushes answered 429 because the store was busy.",
        &[],
        move || s.stats.requests_busy.load(Relaxed) as f64,
    );
}

/// `signalbox_data_disk_free_bytes` and `signalbox_data_disk_size_bytes` of the file system
/// holding the data directory (for the disk-nearly-full alert).
pub fn register_disk_metrics(reg: &Registry, data_dir: &Path) {
    let dir = data_dir.to_path_buf();
    reg.gauge_fn(
        "signalbox_data_disk_free_bytes",
        "Bytes available to the node on the data directory's file system.",
        &[],
        move || rustix::fs::statvfs(&dir).map(|s| (s.f_bavail * s.f_frsize) as f64).unwrap_or(f64::NAN),
    );
    let dir = data_dir.to_path_buf();
    reg.gauge_fn("signalbox_data_disk_size_bytes", "Size of the data directory's file system.", &[], move || {
        rustix::fs::statvfs(&dir).map(|s| (s.f_blocks * s.f_frsize) as f64).unwrap_or(f64::NAN)
    });
}
