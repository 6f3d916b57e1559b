//! Notifications against a real Alertmanager (Debian's `prometheus-alertmanager`, started
//! as a child process on loopback) and a webhook server on loopback: an alert fires, shows
//! up in Alertmanager's API, Alertmanager delivers it to the webhook, and it resolves.

use crate::promql::Engine;
use crate::rules::notifier::now_ms;
use crate::rules::{RuleManager, RulesConfig};
use crate::service::Db;
use crate::storage::{Appender, Labels};
use crate::tsdb::head::Head;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A loopback webhook receiver: every POSTed JSON body, with its path.
async fn webhook_server() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let g = g.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        g.lock().unwrap().push((path, v));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (base, got)
}

/// The Alertmanager child process, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_json(url: &str) -> Option<(u16, Value)> {
    let client = crate::scrape::scraper::http_client::<http_body_util::Empty<bytes::Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(url.parse().ok()?)).await.ok()?.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Polls `check` every 100 ms until it returns something, failing after `secs`.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn errors(v: f64, t: i64) -> (Labels, i64, f64) {
    (vec![("__name__".into(), "errors".into()), ("job".into(), "api".into())], t, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_real_alertmanager_and_webhooks_and_resolve() {
    if !std::path::Path::new(ALERTMANAGER).exists() {
        assert!(std::env::var_os("CI").is_none(), "{ALERTMANAGER} is missing (scripts/test-deps.sh installs it)");
        eprintln!(
            "\n\n!!! SKIPPED: {ALERTMANAGER} is missing; install prometheus-alertmanager to run this test !!!\n\n"
        );
        return;
    }
    let (hook, received) = webhook_server().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}/from-alertmanager\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
    let _am = Child(
        std::process::Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", dir.path().join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{port}");
    let ready = format!("{am}/-/ready");
    wait_for("Alertmanager to be ready", 30, || {
        let ready = ready.clone();
        async move {
            let client = crate::scrape::scraper::http_client::<http_body_util::Empty<bytes::Bytes>>();
            let r =
                tokio::time::timeout(Duration::from_secs(2), client.get(ready.parse().unwrap())).await.ok()?.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;

    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Boom\n        expr: errors > 5\n        labels: {severity: page}\n        annotations:\n          summary: \"{{ $labels.job }} has {{ $value }} errors\"\n",
    )
    .unwrap();
    let cfg = RulesConfig {
        files: vec![rules.display().to_string()],
        default_rules: false,
        alertmanagers: vec![am.clone()],
        webhooks: vec![format!("{hook}/direct")],
        external_url: "http://signalbox.test".into(),
        evaluation_interval: signalbox_core::config::Dur::secs(3600),
        ..RulesConfig::default()
    };
    let head = Arc::new(Head::new(3_600_000, 1000));
    let db: Arc<dyn Db> = head.clone();
    let m = RuleManager::start(cfg, db, Engine::default(), dir.path().join("state")).unwrap();

    let t1 = now_ms();
    Appender::append(&*head, &[errors(10.0, t1)]).unwrap();
    m.eval_group_at("g", t1).unwrap();
    assert_eq!(m.alerts_json()["alerts"][0]["state"], "firing", "for 0s fires at once");

    let api = format!("{am}/api/v2/alerts");
    let in_am = wait_for("the alert in Alertmanager's API", 20, || {
        let api = api.clone();
        async move {
            let (_, v) = get_json(&api).await?;
            v.as_array()?.iter().find(|a| a["labels"]["alertname"] == "Boom").cloned()
        }
    })
    .await;
    assert_eq!(in_am["labels"]["severity"], "page");
    assert_eq!(in_am["labels"]["job"], "api");
    assert_eq!(in_am["annotations"]["summary"], "api has 10 errors");
    assert_eq!(in_am["status"]["state"], "active");
    assert_eq!(in_am["generatorURL"], "http://signalbox.test/graph?g0.expr=errors+%3E+5&g0.tab=1");

    let delivered = |path: &'static str, status: &'static str| {
        let received = received.clone();
        async move {
            received.lock().unwrap().iter().find(|(p, v)| p == path && v["status"] == status).map(|(_, v)| v.clone())
        }
    };
    let from_am = wait_for("Alertmanager's firing webhook", 20, || delivered("/from-alertmanager", "firing")).await;
    assert_eq!(from_am["version"], "4");
    assert_eq!(from_am["alerts"][0]["labels"]["alertname"], "Boom");
    assert_eq!(from_am["commonAnnotations"]["summary"], "api has 10 errors");
    let direct = wait_for("the direct firing webhook", 20, || delivered("/direct", "firing")).await;
    assert_eq!(direct["version"], "4");
    assert_eq!(direct["receiver"], "signalbox");
    assert_eq!(direct["groupKey"], "{}:{alertname=\"Boom\"}");
    assert_eq!(direct["groupLabels"]["alertname"], "Boom");
    assert_eq!(direct["commonLabels"]["severity"], "page");
    assert_eq!(direct["externalURL"], "http://signalbox.test");
    assert_eq!(direct["alerts"][0]["status"], "firing");
    assert_eq!(direct["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(direct["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);

    // Resolve: the result goes away; the notification carries endsAt.
    let t2 = now_ms().max(t1 + 1);
    Appender::append(&*head, &[errors(0.0, t2)]).unwrap();
    m.eval_group_at("g", t2).unwrap();
    assert!(m.alerts_json()["alerts"].as_array().unwrap().is_empty());
    wait_for("the alert to leave Alertmanager's active alerts", 20, || {
        let api = api.clone();
        async move {
            let (_, v) = get_json(&api).await?;
            (!v.as_array()?.iter().any(|a| a["labels"]["alertname"] == "Boom")).then_some(())
        }
    })
    .await;
    let resolved =
        wait_for("Alertmanager's resolved webhook", 20, || delivered("/from-alertmanager", "resolved")).await;
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    // Alertmanager prints times its own way (trailing zeros dropped): compare the instants.
    let ends_at = |v: &Value| signalbox_core::time::parse_rfc3339(v.as_str().unwrap_or_default());
    assert_eq!(ends_at(&resolved["alerts"][0]["endsAt"]), Some(t2 as u64 * 1_000_000), "{resolved}");
    let direct = wait_for("the direct resolved webhook", 20, || delivered("/direct", "resolved")).await;
    assert_eq!(direct["alerts"][0]["endsAt"], crate::rules::alert::rfc3339(t2));
    assert_eq!(m.notifier.stats.errors.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_an_unreachable_target_counts_errors() {
    use crate::rules::notifier::{Notification, Notifier};
    // A port nothing listens on.
    let port = free_port();
    let n = Notifier::new(vec![], vec![format!("http://127.0.0.1:{port}/hook")], String::new(), 3);
    let alert = |i: i64| Notification {
        labels: [("alertname".to_string(), format!("A{i}"))].into_iter().collect(),
        annotations: Default::default(),
        starts_at_ms: 1,
        ends_at_ms: 2,
        generator_url: String::new(),
    };
    // Queued without yielding, so the sender has not taken any yet.
    n.send((0..5).map(alert).collect());
    assert_eq!(n.stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(n.queued(), 3);
    wait_for("the failed send to be counted", 20, || {
        let n = n.clone();
        async move { (n.stats.errors.load(std::sync::atomic::Ordering::Relaxed) == 1).then_some(()) }
    })
    .await;
    assert_eq!(n.queued(), 0);
}
