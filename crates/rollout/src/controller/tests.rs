//! The controller against a real control store and a real TSDB in temporary directories:
//! the gateway's RED series are written as the node's own-metrics loop would store them.

use super::*;
use crate::state::Phase;
use signalbox_control::registry::model::RegisterRequest;
use signalbox_metrics::storage::Labels;
use signalbox_metrics::tsdb::{Tsdb, TsdbOptions};

struct Fixture {
    dir: tempfile::TempDir,
    control: Arc<ControlPlane>,
    db: Arc<Tsdb>,
    metrics: Arc<MetricsService>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    reopen(dir).await
}

async fn reopen(dir: tempfile::TempDir) -> Fixture {
    let control = Arc::new(ControlPlane::open(dir.path(), Default::default()).unwrap());
    let db = Arc::new(Tsdb::open(dir.path().join("metrics"), TsdbOptions::default()).unwrap());
    let metrics = Arc::new(MetricsService::new(db.clone(), 4));
    Fixture { dir, control, db, metrics }
}

impl Fixture {
    fn controller(&self) -> Arc<Controller> {
        Controller::new(self.control.clone(), Some(self.metrics.clone()), None, Settings::default())
    }

    async fn register(&self, service: &str, version: &str, port: i64) {
        let req: RegisterRequest = serde_json::from_value(serde_json::json!({
            "service": service, "address": "127.0.0.1", "port": port, "meta": {"version": version}
        }))
        .unwrap();
        self.control.registry.register(req).await.unwrap();
    }

    /// Requests of one version from `from_ms` to `to_ms`, one sample a second: `rps`
    /// requests a second, `err` of them failing, each taking `latency_s`.
    fn feed(&self, version: &str, from_ms: i64, to_ms: i64, rps: f64, err: f64, latency_s: f64) {
        let labels = |name: &str, extra: &[(&str, &str)]| -> Labels {
            let mut l: Labels = vec![
                ("__name__".into(), name.into()),
                ("service".into(), "shop".into()),
                ("version".into(), version.into()),
                ("route".into(), "shop".into()),
            ];
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l.sort();
            l
        };
        let mut samples = Vec::new();
        let mut t = from_ms;
        let mut n = 0.0;
        while t <= to_ms {
            let ok = n * rps * (1.0 - err);
            let bad = n * rps * err;
            samples.push((labels("signalbox_gateway_requests_total", &[("class", "2xx")]), t, ok));
            samples.push((labels("signalbox_gateway_requests_total", &[("class", "5xx")]), t, bad));
            for le in ["0.01", "0.05", "0.1", "0.5", "1", "+Inf"] {
                let bound: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
                let v = if latency_s <= bound { n * rps } else { 0.0 };
                samples.push((labels("signalbox_gateway_request_duration_seconds_bucket", &[("le", le)]), t, v));
            }
            t += 1000;
            n += 1.0;
        }
        self.db.append(&samples).unwrap();
    }

    fn weights(&self) -> BTreeMap<String, u8> {
        traffic::read(&self.control, "shop").unwrap().0.weights.into_iter().map(|(k, v)| (k, v as u8)).collect()
    }
}

fn request(interval: &str) -> StartRequest {
    StartRequest {
        to: "v2".into(),
        interval: Some(interval.into()),
        steps: Some(vec![10, 50, 100]),
        ..Default::default()
    }
}

#[tokio::test]
async fn start_is_refused_without_a_healthy_canary_and_while_one_runs() {
    let f = fixture().await;
    let c = f.controller();
    f.register("shop", "v1", 9001).await;
    let e = c.start("shop", request("10s"), "tester").await.unwrap_err();
    assert!(matches!(&e, RolloutError::NoHealthyInstance { field, .. } if field == "to"), "{e:?}");
    f.register("shop", "v2", 9002).await;
    let e = c.start("shop", StartRequest { steps: Some(vec![50, 10]), ..request("1s") }, "t").await.unwrap_err();
    assert!(matches!(&e, RolloutError::Invalid { field, .. } if field == "steps"), "{e:?}");
    let r = c.start("shop", request("10s"), "tester").await.unwrap();
    assert_eq!(r.spec.stable, "v1", "the one other registered version is stable");
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 90), ("v2".into(), 10)]));
    let e = c.start("shop", request("10s"), "tester").await.unwrap_err();
    assert!(matches!(e, RolloutError::Conflict(_)), "{e:?}");
}

#[tokio::test]
async fn a_bad_canary_is_rolled_back_at_the_end_of_its_interval_with_the_numbers() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let c = f.controller();
    let r = c.start("shop", request("10s"), "tester").await.unwrap();
    let t0 = r.step_started_ms;
    // Too few requests for the early checks to act on; the full interval has enough.
    f.feed("v1", t0 - 1000, t0 + 10_000, 18.0, 0.0, 0.02);
    f.feed("v2", t0 - 1000, t0 + 10_000, 2.0, 0.05, 0.02);
    c.tick(t0 + 5_000).await;
    assert_eq!(c.get("shop").unwrap().phase, Phase::Progressing, "10 canary requests: not judged early");
    c.tick(t0 + 10_000).await;
    let r = c.get("shop").unwrap();
    assert_eq!(r.phase, Phase::RolledBack);
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 100)]));
    let last = r.history.last().unwrap();
    assert_eq!(last.decision, Decision::RolledBack);
    assert!(last.reason.contains("error rate 5.00%") && last.reason.contains("limit 1.00%"), "{}", last.reason);
    let m = last.measurements.as_ref().unwrap();
    assert!((m.canary.requests - 20.0).abs() < 3.0, "{m:?}");
    assert!(m.stable.error_rate == Some(0.0), "{m:?}");
    // The config history of the policy shows the controller's writes.
    let h = f.control.config.history("gateway", "traffic", "shop").unwrap();
    assert_eq!(h.len(), 2);
    assert!(h[1].comment.contains("rolled_back"), "{}", h[1].comment);
}

#[tokio::test]
async fn a_failing_canary_is_rolled_back_before_its_interval_ends() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let c = f.controller();
    let r = c.start("shop", request("60s"), "tester").await.unwrap();
    let t0 = r.step_started_ms;
    f.feed("v1", t0 - 1000, t0 + 5_000, 90.0, 0.0, 0.02);
    f.feed("v2", t0 - 1000, t0 + 5_000, 10.0, 0.2, 0.02);
    c.tick(t0 + 5_000).await;
    let r = c.get("shop").unwrap();
    assert_eq!(r.phase, Phase::RolledBack, "{:?}", r.history.last());
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 100)]));
}

#[tokio::test]
async fn a_healthy_canary_is_promoted_to_every_request() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let c = f.controller();
    let req = StartRequest { max_p99: Some("+20%".into()), ..request("5s") };
    let r = c.start("shop", req, "tester").await.unwrap();
    let t0 = r.step_started_ms;
    f.feed("v1", t0 - 1000, t0 + 20_000, 50.0, 0.002, 0.04);
    f.feed("v2", t0 - 1000, t0 + 20_000, 50.0, 0.002, 0.04);
    c.tick(t0 + 5_000).await;
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 50), ("v2".into(), 50)]));
    c.tick(t0 + 7_000).await;
    assert_eq!(c.get("shop").unwrap().step, 1, "not due yet");
    c.tick(t0 + 10_000).await;
    let r = c.get("shop").unwrap();
    assert_eq!(r.phase, Phase::Succeeded);
    assert_eq!(f.weights(), BTreeMap::from([("v2".into(), 100)]));
    let decisions: Vec<Decision> = r.history.iter().map(|e| e.decision).collect();
    assert_eq!(decisions, [Decision::Started, Decision::Promoted, Decision::Succeeded]);
    assert!(r.history[1].reason.contains("p99"), "{}", r.history[1].reason);
}

#[tokio::test]
async fn a_slow_canary_fails_the_relative_p99() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let c = f.controller();
    let req = StartRequest { max_p99: Some("+20%".into()), ..request("5s") };
    let r = c.start("shop", req, "tester").await.unwrap();
    let t0 = r.step_started_ms;
    f.feed("v1", t0 - 1000, t0 + 5_000, 50.0, 0.0, 0.04);
    f.feed("v2", t0 - 1000, t0 + 5_000, 50.0, 0.0, 0.4);
    c.tick(t0 + 5_000).await;
    let r = c.get("shop").unwrap();
    assert_eq!(r.phase, Phase::RolledBack);
    assert!(r.history.last().unwrap().reason.contains("above stable's"), "{}", r.history.last().unwrap().reason);
}

#[tokio::test]
async fn holds_without_traffic_then_pauses_for_a_human() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let c = f.controller();
    let req = StartRequest { max_holds: Some(2), ..request("2s") };
    let r = c.start("shop", req, "tester").await.unwrap();
    let t0 = r.step_started_ms;
    for k in 1..=3 {
        c.tick(t0 + 2_000 * k).await;
    }
    let r = c.get("shop").unwrap();
    assert_eq!(r.phase, Phase::Paused);
    let decisions: Vec<Decision> = r.history.iter().map(|e| e.decision).collect();
    assert_eq!(decisions, [Decision::Started, Decision::Held, Decision::Paused], "holds are one entry");
    assert!(r.history[2].reason.contains("too few requests"), "{}", r.history[2].reason);
    // A human takes over.
    let r = c.promote("shop", false, "alice").await.unwrap();
    assert_eq!((r.phase, r.canary_percent()), (Phase::Progressing, 50));
    let r = c.abort("shop", "alice").await.unwrap();
    assert_eq!(r.phase, Phase::Aborted);
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 100)]));
    assert!(matches!(c.abort("shop", "alice").await, Err(RolloutError::Conflict(_))));
}

#[tokio::test]
async fn a_rollout_resumes_after_a_restart_from_its_recorded_state() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let r = f.controller().start("shop", request("5s"), "tester").await.unwrap();
    let t0 = r.step_started_ms;
    let Fixture { dir, control, db, metrics } = f;
    drop((control, metrics));
    drop(db);
    let f = reopen(dir).await;
    let c = f.controller();
    let r = c.get("shop").unwrap();
    assert_eq!((r.phase, r.step, r.step_started_ms), (Phase::Progressing, 0, t0));
    f.feed("v1", t0 - 1000, t0 + 5_000, 50.0, 0.0, 0.04);
    f.feed("v2", t0 - 1000, t0 + 5_000, 10.0, 0.0, 0.04);
    c.tick(t0 + 5_000).await;
    assert_eq!(c.get("shop").unwrap().canary_percent(), 50);
}

#[tokio::test]
async fn a_switch_moves_everything_and_needs_a_healthy_target() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    let c = f.controller();
    let e = c.switch("shop", "v2", "tester").await.unwrap_err();
    assert!(matches!(&e, RolloutError::NoHealthyInstance { field, .. } if field == "to"), "{e:?}");
    f.register("shop", "v2", 9002).await;
    let r = c.switch("shop", "v2", "tester").await.unwrap();
    assert_eq!((r.kind, r.phase), (Kind::Switch, Phase::Succeeded));
    assert_eq!(f.weights(), BTreeMap::from([("v2".into(), 100)]));
    let r = c.switch("shop", "v1", "tester").await.unwrap();
    assert_eq!(r.spec.stable, "v2", "the policy's main version is the one switched from");
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 100)]));
    let a = c.annotations(Some("shop"), 0, i64::MAX);
    assert_eq!(a.iter().map(|a| a.decision).collect::<Vec<_>>(), [Decision::Switched, Decision::Switched]);
}

#[tokio::test]
async fn weights_keep_the_policy_s_other_fields() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let policy = r#"{"weights":{"v1":100},"pins":[{"header":"x-canary","value":"always","version":"v2"}]}"#;
    let w = Write { value: policy.into(), author: "t".into(), comment: String::new(), expected_version: None };
    f.control.config.put("gateway", "traffic", "shop", w).await.unwrap();
    f.controller().start("shop", StartRequest { from: None, ..request("pause") }, "t").await.unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&f.control.config.get("gateway", "traffic", "shop", None).unwrap().value).unwrap();
    assert_eq!(v["weights"], serde_json::json!({"v1": 90, "v2": 10}));
    assert_eq!(v["pins"][0]["header"], "x-canary");
}

#[tokio::test]
async fn a_policy_changed_outside_the_rollout_pauses_it_and_resume_takes_over_again() {
    let f = fixture().await;
    f.register("shop", "v1", 9001).await;
    f.register("shop", "v2", 9002).await;
    let c = f.controller();
    let r = c.start("shop", request("5s"), "tester").await.unwrap();
    let policy = r#"{"weights":{"v1":100}}"#;
    let w = Write { value: policy.into(), author: "alice".into(), comment: String::new(), expected_version: None };
    f.control.config.put("gateway", "traffic", "shop", w).await.unwrap();
    c.tick(r.step_started_ms + 1_000).await;
    let r = c.get("shop").unwrap();
    assert_eq!(r.phase, Phase::Paused);
    assert!(r.history.last().unwrap().reason.contains("by alice"), "{:?}", r.history.last());
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 100)]), "alice's weights stay");
    c.resume("shop", "alice").await.unwrap();
    assert_eq!(f.weights(), BTreeMap::from([("v1".into(), 90), ("v2".into(), 10)]));
}
