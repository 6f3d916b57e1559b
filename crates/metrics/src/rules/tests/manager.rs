//! The rule manager over a real head: recording rules with staleness, the alert state
//! machine with `for` and `keep_firing_for`, limits, the API shapes, and restarts.

use crate::promql::Engine;
use crate::rules::{AlertState, RuleManager, RulesConfig};
use crate::service::Db;
use crate::storage::{Labels, Matcher, Queryable, is_stale, stale_nan};
use crate::tsdb::head::Head;
use std::sync::Arc;

const T0: i64 = 1_700_000_000_000;
const S: i64 = 1000;

const RULES: &str = r#"groups:
  - name: g
    interval: 10s
    rules:
      - record: job:errors:sum
        expr: sum by (job) (errors)
      - alert: HighErrors
        expr: errors > 5
        for: 30s
        keep_firing_for: 20s
        labels:
          severity: page
          team: "{{ $labels.job }}-team"
        annotations:
          summary: "{{ $labels.job }} has {{ $value }} errors"
          console: "{{ $externalURL }}/services/{{ $labels.job }}"
  - name: limited
    limit: 1
    rules:
      - record: errors:copy
        expr: errors
"#;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.sort();
    l
}

struct Setup {
    head: Arc<Head>,
    dir: tempfile::TempDir,
    cfg: RulesConfig,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, RULES).unwrap();
    let cfg = RulesConfig {
        files: vec![dir.path().join("*.yml").display().to_string()],
        default_rules: false,
        external_url: "https://sb.example".into(),
        ..RulesConfig::default()
    };
    Setup { head: Arc::new(Head::new(3_600_000, 100_000)), dir, cfg }
}

impl Setup {
    fn manager(&self) -> Arc<RuleManager> {
        let db: Arc<dyn Db> = self.head.clone();
        RuleManager::new(self.cfg.clone(), db, Engine::default(), self.dir.path().join("state")).unwrap()
    }

    fn put(&self, job: &str, t: i64, v: f64) {
        crate::storage::Appender::append(&*self.head, &[(labels(&[("__name__", "errors"), ("job", job)]), t, v)])
            .unwrap();
    }

    fn series(&self, name: &str) -> Vec<crate::storage::Series> {
        Queryable::select(&*self.head, &[Matcher::Equal("__name__".into(), name.into())], 0, i64::MAX).unwrap()
    }
}

fn states(m: &RuleManager) -> Vec<(String, String)> {
    let a = m.alerts_json();
    a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["labels"]["job"].as_str().unwrap().to_owned(), a["state"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn alerts_go_pending_firing_keep_firing_and_resolve() {
    let s = setup();
    let m = s.manager();
    for k in 0..5 {
        s.put("api", T0 + k * 10 * S, 10.0);
    }
    for k in 5..9 {
        s.put("api", T0 + k * 10 * S, 0.0);
    }
    let at = |k: i64| T0 + k * 10 * S;
    m.eval_group_at("g", at(0)).unwrap();
    assert_eq!(states(&m), vec![("api".into(), "pending".into())]);
    let a = &m.alerts_json()["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "HighErrors");
    assert_eq!(a["labels"]["team"], "api-team");
    assert_eq!(a["labels"]["severity"], "page");
    assert!(a["labels"].get("__name__").is_none());
    assert_eq!(a["annotations"]["summary"], "api has 10 errors");
    assert_eq!(a["annotations"]["console"], "https://sb.example/services/api");
    assert_eq!(a["value"], "1e+01");
    assert_eq!(a["activeAt"], "2023-11-14T22:13:20.000Z");

    m.eval_group_at("g", at(2)).unwrap();
    assert_eq!(states(&m), vec![("api".into(), "pending".into())], "20s < for");
    m.eval_group_at("g", at(3)).unwrap();
    assert_eq!(states(&m), vec![("api".into(), "firing".into())], "30s >= for");
    // The result disappears at 50s; keep_firing_for holds it until 70s.
    m.eval_group_at("g", at(5)).unwrap();
    assert_eq!(states(&m), vec![("api".into(), "firing".into())]);
    assert_eq!(m.alerts_json()["alerts"][0]["keepFiringSince"], "2023-11-14T22:14:10.000Z");
    m.eval_group_at("g", at(6)).unwrap();
    assert_eq!(states(&m), vec![("api".into(), "firing".into())]);
    m.eval_group_at("g", at(7)).unwrap();
    assert!(states(&m).is_empty(), "resolved after keep_firing_for");

    let h: Vec<(AlertState, AlertState, i64)> = m.history().iter().map(|t| (t.from, t.to, t.t_ms)).collect();
    assert_eq!(
        h,
        vec![
            (AlertState::Inactive, AlertState::Pending, at(0)),
            (AlertState::Pending, AlertState::Firing, at(3)),
            (AlertState::Firing, AlertState::Inactive, at(7)),
        ]
    );
    assert_eq!(m.history()[0].group, "g");

    // ALERTS as Prometheus writes them: the pending series goes stale when it fires, the
    // firing one when it resolves; ALERTS_FOR_STATE holds activeAt in seconds.
    let alerts = s.series("ALERTS");
    let pending = alerts.iter().find(|x| x.labels.contains(&("alertstate".into(), "pending".into()))).unwrap();
    assert_eq!(pending.samples[..2], [(at(0), 1.0), (at(2), 1.0)]);
    assert_eq!(pending.samples[2].0, at(3));
    assert!(is_stale(pending.samples[2].1));
    let firing = alerts.iter().find(|x| x.labels.contains(&("alertstate".into(), "firing".into()))).unwrap();
    assert_eq!(firing.samples.len(), 4);
    assert!(is_stale(firing.samples[3].1) && firing.samples[3].0 == at(7));
    let for_state = s.series("ALERTS_FOR_STATE");
    assert_eq!(for_state[0].samples[0], (at(0), (at(0) / 1000) as f64));
    assert!(for_state[0].labels.contains(&("team".into(), "api-team".into())));

    // A pending alert that disappears is dropped without firing.
    s.put("web", at(8), 9.0);
    m.eval_group_at("g", at(8)).unwrap();
    assert_eq!(states(&m), vec![("web".into(), "pending".into())]);
    s.put("web", at(9), 1.0);
    m.eval_group_at("g", at(9)).unwrap();
    assert!(states(&m).is_empty());
}

#[test]
fn recording_rules_write_results_and_stale_markers() {
    let s = setup();
    let m = s.manager();
    s.put("api", T0, 1.0);
    s.put("web", T0, 2.0);
    m.eval_group_at("g", T0).unwrap();
    s.put("api", T0 + 10 * S, 3.0);
    s.put("web", T0 + 10 * S, stale_nan());
    m.eval_group_at("g", T0 + 10 * S).unwrap();
    let out = s.series("job:errors:sum");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].labels, labels(&[("__name__", "job:errors:sum"), ("job", "api")]));
    assert_eq!(out[0].samples, vec![(T0, 1.0), (T0 + 10 * S, 3.0)]);
    assert_eq!(out[1].samples[0], (T0, 2.0));
    assert!(is_stale(out[1].samples[1].1), "web is gone: {:?}", out[1].samples);

    let rules = m.groups_json();
    let g = &rules["groups"][0];
    assert_eq!(g["name"], "g");
    assert_eq!(g["interval"], 10.0);
    assert_eq!(g["lastEvaluation"], "2023-11-14T22:13:30.000Z");
    let rec = &g["rules"][0];
    assert_eq!(rec["type"], "recording");
    assert_eq!(rec["name"], "job:errors:sum");
    assert_eq!(rec["query"], "sum by (job) (errors)");
    assert_eq!(rec["health"], "ok");
    let al = &g["rules"][1];
    assert_eq!(al["type"], "alerting");
    assert_eq!(al["duration"], 30.0);
    assert_eq!(al["keepFiringFor"], 20.0);
    assert_eq!(al["state"], "inactive");
    assert_eq!(al["labels"]["severity"], "page");
    assert!(al["alerts"].as_array().unwrap().is_empty());
    for key in ["evaluationTime", "lastEvaluation", "annotations", "name", "query", "health"] {
        assert!(al.get(key).is_some(), "{key} missing: {al}");
    }
    // The limited group is never evaluated yet: health unknown, zero time.
    let lim = &rules["groups"][1];
    assert_eq!(lim["limit"], 1);
    assert_eq!(lim["interval"], 60.0, "the configured evaluation interval");
    assert_eq!(lim["rules"][0]["health"], "unknown");
    assert_eq!(lim["lastEvaluation"], "0001-01-01T00:00:00Z");
}

#[test]
fn the_limit_fails_a_rule_that_produces_too_many_series() {
    let s = setup();
    let m = s.manager();
    s.put("api", T0, 1.0);
    m.eval_group_at("limited", T0).unwrap();
    assert_eq!(m.groups_json()["groups"][1]["rules"][0]["health"], "ok");
    s.put("web", T0 + S, 1.0);
    m.eval_group_at("limited", T0 + S).unwrap();
    let r = &m.groups_json()["groups"][1]["rules"][0];
    assert_eq!(r["health"], "err");
    assert_eq!(r["lastError"], "exceeded limit 1 with 2 series");
    assert!(m.eval_group_at("nope", T0).is_err());
}

#[test]
fn alert_state_and_history_survive_a_restart() {
    let s = setup();
    let m = s.manager();
    for k in 0..4 {
        s.put("api", T0 + k * 10 * S, 10.0);
    }
    m.eval_group_at("g", T0).unwrap();
    m.eval_group_at("g", T0 + 30 * S).unwrap();
    assert_eq!(states(&m), vec![("api".into(), "firing".into())]);
    assert!(s.dir.path().join("state/alerts.json").exists());
    drop(m);

    let m = s.manager();
    assert_eq!(states(&m), vec![("api".into(), "firing".into())]);
    assert_eq!(m.alerts_json()["alerts"][0]["activeAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(m.history().len(), 2);
    // Evaluation continues from the restored state (no new pending period).
    s.put("api", T0 + 40 * S, 10.0);
    m.eval_group_at("g", T0 + 40 * S).unwrap();
    assert_eq!(states(&m), vec![("api".into(), "firing".into())]);
    assert_eq!(m.history().len(), 2);

    // A damaged state file is an error at start, not silently dropped state.
    std::fs::write(s.dir.path().join("state/alerts.json"), "{not json").unwrap();
    let db: Arc<dyn Db> = s.head.clone();
    let e = RuleManager::new(s.cfg.clone(), db, Engine::default(), s.dir.path().join("state")).err().unwrap();
    assert!(e.contains("alerts.json"), "{e}");
}

#[test]
fn reload_keeps_unchanged_alerts_and_reports_broken_files() {
    let s = setup();
    let m = s.manager();
    s.put("api", T0, 10.0);
    m.eval_group_at("g", T0).unwrap();
    assert_eq!(states(&m).len(), 1);
    // Add a rule; the existing alert keeps its state.
    std::fs::write(
        s.dir.path().join("rules.yml"),
        RULES.replace("  - name: limited\n", "      - alert: Other\n        expr: errors > 100\n  - name: limited\n"),
    )
    .unwrap();
    m.reload().unwrap();
    assert_eq!(states(&m), vec![("api".into(), "pending".into())]);
    assert_eq!(m.groups_json()["groups"][0]["rules"].as_array().unwrap().len(), 3);
    std::fs::write(s.dir.path().join("rules.yml"), "groups:\n  - name: x\n    rules:\n      - alert: A\n").unwrap();
    let e = m.reload().unwrap_err();
    assert!(e.contains("rules.yml:4: groups[0].rules[0].expr: field 'expr' must be set in rule"), "{e}");
    assert_eq!(m.group_names(), vec!["g", "limited"], "the old rules stay");
    // A removed rule's series go stale.
    std::fs::write(
        s.dir.path().join("rules.yml"),
        "groups:\n  - name: limited\n    rules:\n      - record: errors:copy\n        expr: errors\n",
    )
    .unwrap();
    m.reload().unwrap();
    assert_eq!(m.group_names(), vec!["limited"]);
    let recorded = s.series("job:errors:sum");
    assert!(is_stale(recorded[0].samples.last().unwrap().1), "{:?}", recorded[0].samples);
}

#[test]
fn config_checks_name_the_field() {
    let mut p = signalbox_core::config::Problems::default();
    let cfg = RulesConfig {
        files: vec!["/nonexistent/rules.yml".into()],
        alertmanagers: vec!["am:9093".into()],
        evaluation_interval: signalbox_core::config::Dur::secs(0),
        ..RulesConfig::default()
    };
    cfg.check("metrics.rules", &mut p);
    let got: Vec<String> = p.list.iter().map(|x| format!("{}: {}", x.path, x.message)).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "metrics.rules.evaluation_interval: must be more than 0");
    assert!(got[1].starts_with("metrics.rules.alertmanagers[0]: \"am:9093\" is not"), "{got:?}");
    assert!(got[2].starts_with("metrics.rules.files: /nonexistent/rules.yml:0: file: cannot read it"), "{got:?}");
    let parsed: RulesConfig = toml::from_str("files = [\"a.yml\"]\nresend_delay = \"30s\"\n").unwrap();
    assert_eq!(parsed.resend_delay.0.as_secs(), 30);
    assert!(parsed.default_rules);
    assert!(toml::from_str::<RulesConfig>("nope = 1").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_groups_evaluate_on_their_own_every_interval() {
    let s = setup();
    let cfg = RulesConfig { evaluation_interval: signalbox_core::config::Dur::secs(1), ..s.cfg.clone() };
    let now = crate::rules::notifier::now_ms();
    s.put("api", now, 10.0);
    let db: Arc<dyn Db> = s.head.clone();
    let m = RuleManager::start(cfg, db, Engine::default(), s.dir.path().join("state")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The "limited" group has no interval of its own, so it runs every configured second.
    loop {
        let g = m.groups_json();
        if g["groups"][1]["rules"][0]["health"] == "ok" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no evaluation within 10s: {g}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(s.series("errors:copy").len(), 1);
}

#[test]
fn the_default_rules_fire_on_the_nodes_own_metrics() {
    let head = Arc::new(Head::new(3_600_000, 100_000));
    let put = |pairs: &[(&str, &str)], t: i64, v: f64| {
        crate::storage::Appender::append(&*head, &[(labels(pairs), t, v)]).unwrap();
    };
    let req = |class| {
        [("__name__", "signalbox_gateway_requests_total"), ("route", "r"), ("service", "checkout"), ("class", class)]
    };
    let bucket = |le| {
        [
            ("__name__", "signalbox_gateway_request_duration_seconds_bucket"),
            ("route", "r"),
            ("service", "checkout"),
            ("le", le),
        ]
    };
    for k in 0..=80 {
        let t = T0 + k * 15 * S;
        let k = k as f64;
        put(&req("2xx"), t, k * 100.0);
        put(&req("5xx"), t, k * 20.0);
        put(&bucket("0.5"), t, k * 10.0);
        put(&bucket("2"), t, k * 10.0);
        put(&bucket("+Inf"), t, k * 100.0);
        put(
            &[
                ("__name__", "signalbox_gateway_circuit_state"),
                ("scope", "service"),
                ("service", "checkout"),
                ("endpoint", ""),
            ],
            t,
            1.0,
        );
        put(&[("__name__", "up"), ("job", "services"), ("service", "checkout"), ("instance", "i-1")], t, 0.0);
        put(&[("__name__", "signalbox_metrics_samples_refused_total"), ("reason", "too_old")], t, k * 5.0);
        put(&[("__name__", "signalbox_traces_spans_refused_total")], t, k * 3.0);
        put(&[("__name__", "signalbox_data_disk_free_bytes"), ("instance", "n1")], t, 5e9);
        put(&[("__name__", "signalbox_data_disk_size_bytes"), ("instance", "n1")], t, 100e9);
        // A machine in trouble, as `signalbox agent` pushes it (node_exporter's names).
        let h = |name| [("__name__", name), ("instance", "h1"), ("job", "node")];
        let fs = |name, mp| {
            [("__name__", name), ("instance", "h1"), ("device", "/dev/vda"), ("fstype", "ext4"), ("mountpoint", mp)]
        };
        put(&fs("node_filesystem_avail_bytes", "/"), t, 30e9 - k * 0.1e9);
        put(&fs("node_filesystem_size_bytes", "/"), t, 100e9);
        put(&fs("node_filesystem_readonly", "/"), t, 0.0);
        put(&fs("node_filesystem_readonly", "/data"), t, if k < 10.0 { 0.0 } else { 1.0 });
        put(&h("node_memory_MemAvailable_bytes"), t, 0.5e9);
        put(&h("node_memory_MemTotal_bytes"), t, 10e9);
        put(&[("__name__", "node_cpu_seconds_total"), ("instance", "h1"), ("cpu", "0"), ("mode", "idle")], t, k * 0.5);
        put(&h("node_vmstat_oom_kill"), t, k);
        put(&h("node_timex_offset_seconds"), t, 0.2);
        put(&h("node_timex_sync_status"), t, 1.0);
        put(&h("node_boot_time_seconds"), t, 1.6e9);
        if k < 4.0 {
            put(&[("__name__", "node_boot_time_seconds"), ("instance", "gone"), ("job", "node")], t, 1.6e9);
        }
        let c = |name| [("__name__", name), ("id", "/c1"), ("name", "c1"), ("service", "checkout"), ("instance", "h1")];
        put(&c("container_cpu_cfs_periods_total"), t, k * 100.0);
        put(&c("container_cpu_cfs_throttled_periods_total"), t, k * 50.0);
        put(&c("container_memory_working_set_bytes"), t, 0.95e9);
        put(&c("container_spec_memory_limit_bytes"), t, 1e9);
        put(&c("container_oom_events_total"), t, k);
    }
    let dir = tempfile::tempdir().unwrap();
    let db: Arc<dyn Db> = head.clone();
    let m = RuleManager::new(RulesConfig::default(), db, Engine::default(), dir.path().into()).unwrap();
    assert_eq!(
        m.group_names(),
        vec!["signalbox-gateway", "signalbox-registry", "signalbox-ingest", "signalbox-node", "signalbox-hosts"]
    );
    for t in [T0 + 5 * 60 * S, T0 + 20 * 60 * S] {
        for g in m.group_names() {
            m.eval_group_at(&g, t).unwrap();
        }
    }
    let alerts = m.alerts_json();
    let mut got: Vec<(String, String)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["labels"]["alertname"].as_str().unwrap().to_owned(), a["state"].as_str().unwrap().to_owned()))
        .collect();
    got.sort();
    let want: Vec<(String, String)> = [
        "CircuitOpen",
        "ContainerCpuThrottled",
        "ContainerMemoryNearLimit",
        "ContainerOomKilled",
        "DiskNearlyFull",
        "HostClockSkew",
        "HostCpuSaturated",
        "HostDiskWillFillIn4Hours",
        "HostFilesystemReadOnly",
        "HostMemoryPressure",
        "HostOomKill",
        "HostStoppedReporting",
        "InstanceDown",
        "MetricsIngestRefused",
        "ServiceHighErrorRate",
        "ServiceHighLatency",
        "TraceIngestRefused",
    ]
    .iter()
    .map(|n| (n.to_string(), "firing".to_string()))
    .collect();
    assert_eq!(got, want, "{alerts}");
    for g in m.groups_json()["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{r}");
        }
    }
    let find = |name: &str| {
        alerts["alerts"].as_array().unwrap().iter().find(|a| a["labels"]["alertname"] == name).cloned().unwrap()
    };
    let errors = find("ServiceHighErrorRate");
    assert_eq!(errors["annotations"]["summary"], "checkout: 16.67% of requests fail");
    // The links show the alert's window: from 15 minutes before it became active.
    let service_url = errors["annotations"]["service_url"].as_str().unwrap();
    let start: i64 = service_url.strip_prefix("/services/checkout?start=").unwrap().parse().unwrap();
    assert_eq!(crate::rules::alert::rfc3339(start + 15 * 60 * 1000), errors["activeAt"].as_str().unwrap());
    assert_eq!(
        errors["annotations"]["logs_url"],
        format!("/logs?query=service:checkout%20level:error&start={start}").as_str()
    );
    assert_eq!(
        errors["annotations"]["traces_url"],
        format!("/traces?service=checkout&errors=1&start={start}").as_str()
    );
    assert_eq!(find("ServiceHighLatency")["annotations"]["summary"], "checkout: p99 latency is 2s");
    assert_eq!(
        find("MetricsIngestRefused")["annotations"]["summary"],
        "The metrics store refuses pushed samples (333.3m/s)"
    );
    assert_eq!(find("InstanceDown")["annotations"]["summary"], "checkout instance i-1 is down");
    assert_eq!(find("DiskNearlyFull")["annotations"]["summary"], "n1: 5% of the data disk is free");
    assert_eq!(find("TraceIngestRefused")["annotations"]["summary"], "The trace pipeline refuses spans (200m/s)");
}

/// `HostClockSkew` on the kernel's NTP state as `signalbox agent`'s timex collector (or a
/// node_exporter) reports it: an unsynchronised clock and an offset that does not shrink
/// fire; a large offset that the NTP daemon is slewing away and a small one do not.
#[test]
fn the_clock_skew_rule_follows_the_kernels_sync_status_and_offset() {
    let head = Arc::new(Head::new(3_600_000, 100_000));
    let put = |pairs: &[(&str, &str)], t: i64, v: f64| {
        crate::storage::Appender::append(&*head, &[(labels(pairs), t, v)]).unwrap();
    };
    for k in 0..=80 {
        let t = T0 + k * 15 * S;
        let k = k as f64;
        for (host, sync, offset) in
            [("unsynced", 0.0, 0.0), ("stuck", 1.0, 0.2), ("converging", 1.0, 0.3 - k * 0.002), ("fine", 1.0, 0.001)]
        {
            put(&[("__name__", "node_timex_sync_status"), ("instance", host), ("job", "node")], t, sync);
            put(&[("__name__", "node_timex_offset_seconds"), ("instance", host), ("job", "node")], t, offset);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let db: Arc<dyn Db> = head.clone();
    let m = RuleManager::new(RulesConfig::default(), db, Engine::default(), dir.path().into()).unwrap();
    for t in [T0 + 5 * 60 * S, T0 + 20 * 60 * S] {
        m.eval_group_at("signalbox-hosts", t).unwrap();
    }
    let alerts = m.alerts_json();
    let mut firing: Vec<(&str, &str)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["labels"]["alertname"].as_str().unwrap(), a["labels"]["instance"].as_str().unwrap()))
        .collect();
    firing.sort();
    assert_eq!(firing, [("HostClockSkew", "stuck"), ("HostClockSkew", "unsynced")], "{alerts}");
    assert!(alerts["alerts"].as_array().unwrap().iter().all(|a| a["state"] == "firing"), "{alerts}");
}

#[test]
fn watch_alerts_wakes_on_transitions_only() {
    let s = setup();
    let m = s.manager();
    let mut rx = m.watch_alerts();
    let at = |k: i64| T0 + k * 10 * S;
    for k in 0..3 {
        s.put("api", at(k), 10.0);
    }
    m.eval_group_at("g", at(0)).unwrap();
    assert!(rx.has_changed().unwrap(), "inactive -> pending wakes the watcher");
    let first = *rx.borrow_and_update();
    // Still pending, same alert: no transition, no wake-up.
    m.eval_group_at("g", at(1)).unwrap();
    assert!(!rx.has_changed().unwrap(), "an evaluation without a transition is quiet");
    // A rule reload wakes it too (the set of alerts may have changed).
    m.reload().unwrap();
    assert!(rx.has_changed().unwrap());
    assert!(*rx.borrow_and_update() > first);
}
