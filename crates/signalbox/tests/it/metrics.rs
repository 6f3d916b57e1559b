//! Metrics end to end on the real binary: a real Prometheus 2.42 remote-writing into the
//! node, the OpenTelemetry Python SDK exporting over OTLP, a `prometheus_client` target
//! found through the registry and scraped (then going away: `up` 0 and staleness), the
//! node's own `/metrics` checked by `promtool`, the requests Grafana's Prometheus data
//! source sends, and kill -9 keeping every acknowledged sample.

use crate::*;
use serde_json::Value;
use signalbox_metrics::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use signalbox_testkit::eventually;

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// An instant query's `data` (status checked).
pub(crate) async fn query(http: &Http, node: &Node, q: &str) -> Value {
    let r = http.get(&format!("http://{}/prometheus/api/v1/query?query={}", node.console, enc(q))).await;
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

/// The vector result's values by the value of label `by`.
fn values_by(data: &Value, by: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"][by].as_str().unwrap_or("").to_string(), s["value"][1].as_str().unwrap().parse().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Runs `prometheus` until dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn prometheus(config: &str) -> Prometheus {
    assert!(std::path::Path::new("/usr/bin/prometheus").exists(), "prometheus is missing: run scripts/test-deps.sh");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start prometheus");
    wait_ready(&mut child, &format!("http://{addr}/-/ready"))
        .await
        .unwrap_or_else(|log| panic!("prometheus exited:\n{log}"));
    Prometheus { child, url: format!("http://{addr}"), _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_remote_writes_and_grafana_reads_it_back() {
    let node = Node::start(&[], &[("SIGNALBOX_METRICS__SELF_INTERVAL", "1s")]).await;
    let http = Http::new();
    // Prometheus scrapes the node's own /metrics and remote-writes what it scraped.
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: via-prometheus\n    static_configs:\n      - targets: ['{console}']\nremote_write:\n  - url: http://{console}/prometheus/api/v1/write\n    queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 100ms\n    metadata_config:\n      send_interval: 1s\n",
        console = node.console
    );
    let prom = prometheus(&config).await;
    let up = eventually(Duration::from_secs(60), "up from Prometheus's remote_write", || async {
        let d = query(&http, &node, "up{job=\"via-prometheus\"}").await;
        (!d["result"].as_array().unwrap().is_empty()).then_some(d)
    })
    .await;
    assert_eq!(up["resultType"], "vector");
    assert_eq!(up["result"][0]["metric"]["instance"], node.console.as_str());
    assert_eq!(up["result"][0]["value"][1], "1");
    // The same count of a remote-written family on both sides, once both have a sample.
    let q = "count(signalbox_tsdb_head_series{job=\"via-prometheus\"})";
    let theirs = http.get(&format!("{}/api/v1/query?query={}", prom.url, enc(q))).await.json();
    assert_eq!(theirs["data"]["result"][0]["value"][1], "1", "{theirs}");
    assert_eq!(query(&http, &node, q).await["result"][0]["value"][1], "1");
    // Metadata sent by Prometheus reaches the metadata API.
    eventually(Duration::from_secs(30), "remote_write metadata", || async {
        let r = http
            .get(&format!("http://{}/prometheus/api/v1/metadata?metric=signalbox_tsdb_head_series", node.console))
            .await;
        let v = r.json();
        (v["data"]["signalbox_tsdb_head_series"][0]["type"] == "gauge").then_some(())
    })
    .await;

    // The node's own metrics are stored in-process (job="signalbox").
    eventually(Duration::from_secs(30), "the node's own metrics", || async {
        let d = query(&http, &node, "signalbox_tsdb_head_series{job=\"signalbox\"}").await;
        (!d["result"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;

    // What Grafana's Prometheus data source sends: buildinfo, the health check as a form
    // POST, the metric browser's labels/values/series, a range query, and an error.
    let base = format!("http://{}/prometheus", node.console);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let b = http.get(&format!("{base}/api/v1/status/buildinfo")).await.json();
    assert_eq!(b["data"]["version"], "2.42.0");
    let now = now_s();
    let health = http
        .send(http::Method::POST, &format!("{base}/api/v1/query"), &form, format!("query=1%2B1&time={now}"))
        .await
        .json();
    assert_eq!(health["data"]["resultType"], "scalar", "{health}");
    assert_eq!(health["data"]["result"][1], "2");
    let range = format!("start={}&end={}", (now - 600.0) as i64, now as i64 + 60);
    let labels = http.get(&format!("{base}/api/v1/labels?{range}")).await.json();
    let labels = labels["data"].as_array().unwrap();
    assert!(labels.contains(&Value::from("__name__")) && labels.contains(&Value::from("job")), "{labels:?}");
    let names = http.get(&format!("{base}/api/v1/label/__name__/values?{range}")).await.json();
    assert!(names["data"].as_array().unwrap().contains(&Value::from("up")), "{names}");
    let series = http
        .send(http::Method::POST, &format!("{base}/api/v1/series"), &form, format!("match%5B%5D=up&{range}"))
        .await
        .json();
    assert_eq!(series["data"][0]["__name__"], "up", "{series}");
    let matrix = eventually(Duration::from_secs(20), "a range query with two points", || async {
        let now = now_s() as i64;
        let body = format!("query={}&start={}&end={}&step=1", enc("sum by (job) (up)"), now - 60, now + 1);
        let m = http.send(http::Method::POST, &format!("{base}/api/v1/query_range"), &form, body).await.json();
        assert_eq!(m["data"]["resultType"], "matrix", "{m}");
        (m["data"]["result"][0]["values"].as_array().map_or(0, |v| v.len()) >= 2).then_some(m)
    })
    .await;
    assert!(matrix["data"]["result"][0]["metric"]["job"].is_string(), "{matrix}");
    let bad = http.get(&format!("{base}/api/v1/query?query={}", enc("rate(up)"))).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["errorType"], "bad_data");
    let targets = http.get(&format!("{base}/api/v1/targets")).await.json();
    assert!(targets["data"]["activeTargets"].is_array(), "{targets}");

    // promtool accepts the node's own exposition.
    let text = http.get(&format!("http://{}/metrics", node.console)).await.text();
    let mut lint = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_sdk_exports_metrics_over_otlp() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let script = format!("{}/tests/it/metrics_py/otel_metrics.py", env!("CARGO_MANIFEST_DIR"));
    let out = signalbox_testkit::python::run(
        "",
        &script,
        &[&format!("http://{}/v1/metrics", node.otlp_http)],
        Duration::from_secs(60),
    )
    .await;
    assert!(out.contains("exported"), "{out}");
    // Delta counter points accumulate: 3 then 3 + 4.
    let orders = query(&http, &node, "orders_placed_total{job=\"shop/checkout\",instance=\"pod-7\"}").await;
    assert_eq!(values_by(&orders, "payment_method"), vec![("card".to_string(), 7.0)], "{orders}");
    let inflight = query(&http, &node, "orders_inflight").await;
    assert_eq!(values_by(&inflight, "job"), vec![("shop/checkout".to_string(), 3.0)]);
    let count = query(&http, &node, "http_server_duration_seconds_count{http_route=\"/pay\"}").await;
    assert_eq!(values_by(&count, "http_route"), vec![("/pay".to_string(), 4.0)]);
    let p = query(&http, &node, "histogram_quantile(0.5, sum by (le) (http_server_duration_seconds_bucket))").await;
    // The SDK's default bounds are 0, 5, 10, ...: all four observations fall in (0, 5], so
    // the median interpolates to 2.5 as Prometheus computes it.
    assert_eq!(values_by(&p, ""), vec![(String::new(), 2.5)], "{p}");
    let gauge = query(&http, &node, "queue_depth").await;
    assert_eq!(values_by(&gauge, "queue"), vec![("emails".to_string(), 7.0)]);
    let info = query(&http, &node, "target_info").await;
    assert_eq!(info["result"][0]["metric"]["host_name"], "node-3", "{info}");
    let meta =
        http.get(&format!("http://{}/prometheus/api/v1/metadata?metric=orders_placed", node.console)).await.json();
    assert_eq!(meta["data"]["orders_placed"][0]["type"], "counter", "{meta}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_instance_is_scraped_until_it_goes_away() {
    let node = Node::start(&[], &[("SIGNALBOX_METRICS__REGISTRY_INTERVAL", "1s")]).await;
    let http = Http::new();
    let port = free_port();
    let script = format!("{}/tests/it/metrics_py/client_target.py", env!("CARGO_MANIFEST_DIR"));
    let dir = signalbox_testkit::python::package_dir("prometheus-client");
    assert!(dir.is_dir(), "{} is missing: run scripts/test-deps.sh", dir.display());
    let mut target = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .env("PYTHONPATH", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(target.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let reg = serde_json::json!({
        "service": "inventory", "id": "inventory-1", "address": "127.0.0.1", "port": port,
        "meta": {"metrics_path": "/metrics"}
    });
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/registry/instances", node.console),
            &[("content-type", "application/json")],
            reg.to_string(),
        )
        .await;
    assert!(r.status < 300, "{}", r.text());
    let reqs = eventually(Duration::from_secs(30), "the registry target scraped", || async {
        let d = query(&http, &node, "app_requests_total{service=\"inventory\"}").await;
        (d["result"].as_array().unwrap().len() == 2).then_some(d)
    })
    .await;
    assert_eq!(values_by(&reqs, "method"), vec![("GET".to_string(), 41.0), ("POST".to_string(), 1.0)]);
    assert_eq!(reqs["result"][0]["metric"]["instance"], "inventory-1");
    assert_eq!(reqs["result"][0]["metric"]["job"], "services");
    let le = query(&http, &node, "app_latency_seconds_bucket{le=\"0.5\"}").await;
    assert_eq!(values_by(&le, "le"), vec![("0.5".to_string(), 2.0)]);
    let up = query(&http, &node, "up{instance=\"inventory-1\"}").await;
    assert_eq!(values_by(&up, "instance"), vec![("inventory-1".to_string(), 1.0)]);
    let targets = http.get(&format!("http://{}/prometheus/api/v1/targets", node.console)).await.json();
    let active = targets["data"]["activeTargets"].as_array().unwrap();
    let t = active.iter().find(|t| t["labels"]["instance"] == "inventory-1").expect("the target is listed");
    assert_eq!(t["health"], "up");
    assert_eq!(t["scrapeUrl"], format!("http://127.0.0.1:{port}/metrics"));

    // The target dies: up drops to 0 with a reason, and its series go stale.
    let _ = target.kill();
    let _ = target.wait();
    eventually(Duration::from_secs(30), "up=0 after the target died", || async {
        let up = query(&http, &node, "up{instance=\"inventory-1\"}").await;
        (values_by(&up, "instance") == vec![("inventory-1".to_string(), 0.0)]).then_some(())
    })
    .await;
    let stale = query(&http, &node, "app_requests_total{service=\"inventory\"}").await;
    assert!(stale["result"].as_array().unwrap().is_empty(), "stale series are not returned: {stale}");
    let targets = http.get(&format!("http://{}/prometheus/api/v1/targets", node.console)).await.json();
    let t = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["instance"] == "inventory-1")
        .cloned()
        .unwrap();
    assert_eq!(t["health"], "down");
    assert!(!t["lastError"].as_str().unwrap().is_empty(), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_every_acknowledged_sample() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let url = format!("http://{}/prometheus/api/v1/write", node.console);
    let base = (now_s() as i64 - 3_000) * 1000;
    // Write batches until ~1.5 s have passed, then kill -9 while another is in flight.
    let writer = {
        let url = url.clone();
        tokio::spawn(async move {
            let http = Http::new();
            let mut acked = 0u32;
            for batch in 0..10_000u32 {
                let timeseries = (0..50)
                    .map(|s| TimeSeries {
                        labels: vec![
                            Label { name: "__name__".into(), value: "durable_total".into() },
                            Label { name: "series".into(), value: s.to_string() },
                        ],
                        samples: vec![Sample { value: batch as f64, timestamp: base + batch as i64 * 100 }],
                        exemplars: vec![],
                    })
                    .collect();
                let body = remote_write::encode(&WriteRequest { timeseries, metadata: vec![] });
                match http
                    .try_send(
                        http::Method::POST,
                        &url,
                        &[("content-type", "application/x-protobuf"), ("content-encoding", "snappy")],
                        bytes::Bytes::from(body),
                    )
                    .await
                {
                    Ok(r) if r.status == 204 => acked = batch + 1,
                    Ok(r) => panic!("batch {batch}: {} {}", r.status, r.text()),
                    Err(_) => break,
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = node.kill9();
    let acked = writer.await.unwrap();
    assert!(acked > 0, "nothing was acknowledged before the kill");
    let node = Node::start_in(dir, &[], &[]).await;
    let end = base / 1000 + 1_100;
    let q = format!(
        "http://{}/prometheus/api/v1/query?query={}&time={end}",
        node.console,
        enc("count_over_time(durable_total{series=\"7\"}[2h])")
    );
    let d = http.get(&q).await.json();
    let stored: f64 = d["data"]["result"][0]["value"][1].as_str().unwrap_or("0").parse().unwrap();
    assert!(stored >= acked as f64, "{acked} batches acknowledged, {stored} samples after restart: {d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_metrics_are_stored_and_bad_pushes_are_named() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let t = (now_s() * 1e9) as u64;
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "pool.size".into(),
                    unit: "By".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: t,
                            value: Some(number_data_point::Value::AsInt(42)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut client = MetricsServiceClient::connect(format!("http://{}", node.otlp_grpc)).await.unwrap();
    let resp = client.export(req).await.unwrap().into_inner();
    assert!(resp.partial_success.is_none(), "{resp:?}");
    let d = query(&http, &node, "pool_size_bytes").await;
    assert_eq!(values_by(&d, "__name__"), vec![("pool_size_bytes".to_string(), 42.0)]);

    // remote_write refusals name the problem.
    let url = format!("http://{}/prometheus/api/v1/write", node.console);
    let bad = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label { name: "job".into(), value: "x".into() }],
            samples: vec![Sample { value: 1.0, timestamp: 1 }],
            exemplars: vec![],
        }],
        metadata: vec![],
    };
    let r = http.send(http::Method::POST, &url, &[], bytes::Bytes::from(remote_write::encode(&bad))).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("timeseries[0]: the series has no metric name"), "{}", r.text());
    let r = http.send(http::Method::POST, &url, &[], "not snappy").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("snappy"), "{}", r.text());
}

/// Runs `prometheus-alertmanager` until dropped.
struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn alertmanager() -> Alertmanager {
    let bin = "/usr/bin/prometheus-alertmanager";
    assert!(std::path::Path::new(bin).exists(), "prometheus-alertmanager is missing: run scripts/test-deps.sh");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: none\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(bin)
        .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start alertmanager");
    wait_ready(&mut child, &format!("http://{addr}/-/ready"))
        .await
        .unwrap_or_else(|log| panic!("alertmanager exited:\n{log}"));
    Alertmanager { child, url: format!("http://{addr}"), _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_files_fire_alerts_that_reach_a_real_alertmanager() {
    let am = alertmanager().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: orders\n    interval: 1s\n    rules:\n      - record: job:queue_depth:max\n        expr: max by (job) (queue_depth)\n      - alert: QueueBacklog\n        expr: queue_depth > 100\n        labels: {severity: page}\n        annotations:\n          summary: \"{{ $labels.service }} has {{ $value }} queued\"\n",
    )
    .unwrap();
    let cfg = dir.path().join("signalbox.toml");
    std::fs::write(
        &cfg,
        format!(
            "[metrics.rules]\nfiles = [\"{}\"]\nevaluation_interval = \"1s\"\nresend_delay = \"1s\"\nalertmanagers = [\"{}\"]\n",
            rules.display(),
            am.url
        ),
    )
    .unwrap();
    let node = Node::start(&["-c", cfg.to_str().unwrap()], &[]).await;
    let http = Http::new();
    // A queue that is over the threshold, pushed with remote_write at the current time.
    let push = |depth: f64| {
        let ts = TimeSeries {
            labels: vec![
                Label { name: "__name__".into(), value: "queue_depth".into() },
                Label { name: "job".into(), value: "orders".into() },
                Label { name: "service".into(), value: "orders".into() },
            ],
            samples: vec![Sample { value: depth, timestamp: (now_s() * 1000.0) as i64 }],
            exemplars: vec![],
        };
        remote_write::encode(&WriteRequest { timeseries: vec![ts], metadata: vec![] })
    };
    let url = format!("http://{}/prometheus/api/v1/write", node.console);
    let r = http.send(http::Method::POST, &url, &[], bytes::Bytes::from(push(250.0))).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let firing = eventually(Duration::from_secs(30), "QueueBacklog firing", || async {
        let v = http.get(&format!("http://{}/prometheus/api/v1/alerts", node.console)).await.json();
        let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
        alerts.into_iter().find(|a| a["labels"]["alertname"] == "QueueBacklog" && a["state"] == "firing")
    })
    .await;
    assert_eq!(firing["annotations"]["summary"], "orders has 250 queued", "{firing}");
    assert_eq!(firing["labels"]["severity"], "page");
    // The recording rule's series and the ALERTS series are queryable.
    let rec = query(&http, &node, "job:queue_depth:max").await;
    assert_eq!(values_by(&rec, "job"), vec![("orders".to_string(), 250.0)]);
    let alerts = query(&http, &node, "ALERTS{alertname=\"QueueBacklog\",alertstate=\"firing\"}").await;
    assert_eq!(alerts["result"].as_array().unwrap().len(), 1, "{alerts}");
    // Alertmanager has it.
    let got = eventually(Duration::from_secs(30), "the alert in Alertmanager", || async {
        let v = http.get(&format!("{}/api/v2/alerts", am.url)).await.json();
        v.as_array().and_then(|a| a.iter().find(|x| x["labels"]["alertname"] == "QueueBacklog").cloned())
    })
    .await;
    assert_eq!(got["labels"]["service"], "orders");
    assert_eq!(got["annotations"]["summary"], "orders has 250 queued");
    // The rules API lists both rules of the file; the history has the transition.
    let groups = http.get(&format!("http://{}/prometheus/api/v1/rules", node.console)).await.json();
    let orders = groups["data"]["groups"].as_array().unwrap().iter().find(|g| g["name"] == "orders").cloned().unwrap();
    assert_eq!(orders["rules"].as_array().unwrap().len(), 2, "{orders}");
    let history = http.get(&format!("http://{}/api/alerts/history", node.console)).await.json();
    assert!(history["history"].as_array().unwrap().iter().any(|t| t["rule"] == "QueueBacklog"), "{history}");

    // A changed rule file is picked up while running.
    std::fs::write(
        &rules,
        "groups:\n  - name: orders\n    interval: 1s\n    rules:\n      - alert: QueueBacklog\n        expr: queue_depth > 1000\n      - alert: QueueSeen\n        expr: queue_depth > 0\n",
    )
    .unwrap();
    eventually(Duration::from_secs(30), "the reloaded rules", || async {
        let g = http.get(&format!("http://{}/prometheus/api/v1/rules?type=alert", node.console)).await.json();
        let names: Vec<String> = g["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["name"] == "orders")
            .flat_map(|g| g["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()))
            .collect();
        (names.contains(&"QueueSeen".to_string())).then_some(())
    })
    .await;

    // check-rules names the file, line and key of a broken rule.
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: rate(up)\n").unwrap();
    let out = Command::new(BIN).args(["check-rules", broken.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5:", broken.display())), "{err}");
    let out = Command::new(BIN).args(["check-rules", rules.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
