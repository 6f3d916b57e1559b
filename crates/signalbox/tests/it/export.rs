//! Export out of a node (docs/export.md): remote_write into a real Prometheus, OTLP and Loki
//! push into other Signalbox nodes, through receiver outages and a kill -9 of the exporting
//! node; a receiver's 400 drops the batch once, counted, with no retries.

use crate::{Node, free_port, wait_ready};
use prost::Message;
use serde_json::{Value, json};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{KeyValue, Span, SpanKind};
use signalbox_testkit::client::Http;
use signalbox_testkit::eventually;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Prometheus with its remote-write receiver on, at a chosen address.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn prometheus(addr: &str) -> Prometheus {
    assert!(std::path::Path::new("/usr/bin/prometheus").exists(), "prometheus is missing: run scripts/test-deps.sh");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), "global:\n  scrape_interval: 1h\n").unwrap();
    let mut child = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start prometheus");
    wait_ready(&mut child, &format!("http://{addr}/-/ready"))
        .await
        .unwrap_or_else(|log| panic!("prometheus exited:\n{log}"));
    Prometheus { child, _dir: dir }
}

/// The value of `name{labels}` on a node's `/metrics` (0 when absent).
async fn metric(http: &Http, node: &Node, series: &str) -> f64 {
    let text = http.get(&format!("http://{}/metrics", node.console)).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("signalbox.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

type Samples = Vec<(Vec<(String, String)>, i64, f64)>;

/// Samples of three series, `n` each, at 1 s steps from `t0` (ms), pushed into `node`'s
/// remote_write receiver.
async fn push_samples(http: &Http, node: &Node, batch: &str, t0: i64, n: i64) -> Samples {
    let mut samples = Vec::new();
    for s in 0..3 {
        for i in 0..n {
            let labels = vec![
                ("__name__".to_owned(), "export_test_requests".to_owned()),
                ("batch".to_owned(), batch.to_owned()),
                ("series".to_owned(), s.to_string()),
            ];
            samples.push((labels, t0 + i * 1000, (s * 100 + i) as f64 + 0.5));
        }
    }
    let body = signalbox_export::encode::remote_write(samples.clone());
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/prometheus/api/v1/write", node.console),
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "snappy"),
                ("x-prometheus-remote-write-version", "0.1.0"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    samples
}

/// Prometheus's stored samples of `export_test_requests`, as (batch, series, ms, value).
async fn stored(http: &Http, prom: &str, at_s: i64) -> Vec<(String, String, i64, f64)> {
    let r = http.get(&format!("http://{prom}/api/v1/query?query=export_test_requests%5B1h%5D&time={at_s}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for p in s["values"].as_array().unwrap() {
            out.push((
                s["metric"]["batch"].as_str().unwrap().to_owned(),
                s["metric"]["series"].as_str().unwrap().to_owned(),
                (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                p[1].as_str().unwrap().parse().unwrap(),
            ));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn expected(batches: &[(&str, &Samples)]) -> Vec<(String, String, i64, f64)> {
    let mut out: Vec<_> = batches
        .iter()
        .flat_map(|(b, samples)| samples.iter().map(move |(l, t, v)| (b.to_string(), l[2].1.clone(), *t, *v)))
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_out_survives_a_receiver_outage_and_kill_9_and_a_400_is_dropped_once() {
    let http = Http::new();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &cfg_dir,
        &format!(
            r#"
[[export.remote_write]]
url = "http://{prom_addr}/api/v1/write"
batch_wait = "100ms"
min_backoff = "50ms"
max_backoff = "500ms"

# Prometheus answers a Loki body with 400: the batch is dropped, not retried.
[[export.loki]]
name = "wrong-receiver"
url = "http://{prom_addr}/api/v1/write"
batch_wait = "100ms"
min_backoff = "50ms"
"#
        ),
    );
    let args = ["-c", cfg.as_str()];
    // The node's own metrics are appended (and exported) once at start, not again meanwhile.
    let env = [("SIGNALBOX_METRICS__SELF_INTERVAL", "1h")];
    let node = Node::start(&args, &env).await;
    let now_ms = (signalbox_core::time::unix_nanos() / 1_000_000) as i64;
    let queued = r#"signalbox_export_queued_records_total{exporter="remote_write-0"}"#;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = metric(&http, &node, queued).await;
    // The receiver is down: the first batch waits in the queue, retried with backoff.
    let first = push_samples(&http, &node, "before-kill", now_ms - 120_000, 20).await;
    eventually(Duration::from_secs(10), "the batch queued on disk and failed requests", || async {
        let failed = metric(&http, &node, r#"signalbox_export_failed_requests_total{exporter="remote_write-0"}"#).await;
        (failed >= 2.0 && metric(&http, &node, queued).await >= before + 60.0).then_some(())
    })
    .await;
    assert!(metric(&http, &node, r#"signalbox_export_retries_total{exporter="remote_write-0"}"#).await >= 1.0);
    assert!(metric(&http, &node, r#"signalbox_export_lag_seconds{exporter="remote_write-0"}"#).await > 0.0);
    // kill -9 with the batch queued, the receiver still down; the node comes back.
    let node = node.restart_kill9(&args, &env, Duration::from_millis(200)).await;
    let second = push_samples(&http, &node, "after-restart", now_ms - 60_000, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The receiver comes up: both batches arrive, each sample once, exactly.
    let _prom = prometheus(&prom_addr).await;
    let want = expected(&[("before-kill", &first), ("after-restart", &second)]);
    let at = now_ms / 1000 + 5;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = stored(&http, &prom_addr, at).await;
        if got == want {
            break;
        }
        if std::time::Instant::now() > deadline {
            let m = http.get(&format!("http://{}/metrics", node.console)).await.text();
            let export: Vec<&str> = m.lines().filter(|l| l.starts_with("signalbox_export")).collect();
            panic!(
                "Prometheus holds {} of {} samples: {got:?}\nexport metrics:\n{}",
                got.len(),
                want.len(),
                export.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(Duration::from_secs(10), "the queue drained", || async {
        (metric(&http, &node, r#"signalbox_export_lag_seconds{exporter="remote_write-0"}"#).await == 0.0).then_some(())
    })
    .await;
    assert!(metric(&http, &node, r#"signalbox_export_sent_records_total{exporter="remote_write-0"}"#).await >= 60.0);

    // A 400: dropped once and counted, never retried.
    let now = signalbox_core::time::unix_nanos();
    let lines: String = (0..5)
        .map(|i| json!({"timestamp": signalbox_core::time::rfc3339_nanos(now - i), "body": format!("line {i}"), "service": "x"}).to_string() + "\n")
        .collect();
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/logs", node.console),
            &[("content-type", "application/x-ndjson")],
            lines,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dropped = r#"signalbox_export_dropped_records_total{exporter="wrong-receiver",reason="rejected"}"#;
    eventually(Duration::from_secs(10), "the refused batch counted", || async {
        (metric(&http, &node, dropped).await == 5.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(metric(&http, &node, r#"signalbox_export_failed_requests_total{exporter="wrong-receiver"}"#).await, 1.0);
    assert_eq!(metric(&http, &node, r#"signalbox_export_retries_total{exporter="wrong-receiver"}"#).await, 0.0);
    assert_eq!(metric(&http, &node, r#"signalbox_export_queue_batches{exporter="wrong-receiver"}"#).await, 0.0);
}

fn spans(trace: TraceId, n: u8, base: u64) -> Vec<Span> {
    (0..n)
        .map(|i| Span {
            trace_id: trace,
            span_id: SpanId([i + 1; 8]),
            parent_span_id: (i > 0).then_some(SpanId([1; 8])),
            service: "exp-svc".into(),
            name: format!("op-{i}"),
            kind: SpanKind::Server,
            start_unix_nanos: base + u64::from(i) * 1000,
            end_unix_nanos: base + u64::from(i) * 1000 + 500,
            attributes: vec![KeyValue::str("http.route", format!("/r/{i}")), KeyValue::int("attempt", i64::from(i))],
            ..Default::default()
        })
        .collect()
}

async fn post_spans(http: &Http, node: &Node, spans: Vec<Span>) {
    let body = signalbox_otlp::traces::to_request(spans).encode_to_vec();
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/v1/traces", node.otlp_http),
            &[("content-type", "application/x-protobuf")],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn post_logs(http: &Http, node: &Node, tag: &str, base: u64, trace: TraceId) {
    let lines: String = (0..4u64)
        .map(|i| {
            json!({
                "timestamp": signalbox_core::time::rfc3339_nanos(base + i),
                "severity": if i == 0 { "ERROR" } else { "INFO" },
                "body": format!("{tag} line {i}"),
                "service": "exp-svc",
                "instance": "pod-1",
                "trace_id": trace.to_hex(),
            })
            .to_string()
                + "\n"
        })
        .collect();
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/logs", node.console),
            &[("content-type", "application/x-ndjson")],
            lines,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// (name, span id, parent, start, end, http.route) of a stored trace, by start.
async fn trace_on(
    http: &Http,
    node: &Node,
    trace: TraceId,
) -> Option<Vec<(String, String, Value, String, String, Value)>> {
    let r = http.get(&format!("http://{}/api/traces/{}", node.console, trace.to_hex())).await;
    if r.status != 200 {
        return None;
    }
    let v = r.json();
    let mut out: Vec<_> = v["spans"]
        .as_array()?
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["span_id"].as_str().unwrap().to_owned(),
                s["parent_span_id"].clone(),
                s["start_unix_nanos"].as_str().unwrap().to_owned(),
                s["end_unix_nanos"].as_str().unwrap().to_owned(),
                s["attributes"]["http.route"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.3.cmp(&b.3));
    Some(out)
}

fn trace_want(spans: &[Span]) -> Vec<(String, String, Value, String, String, Value)> {
    spans
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.span_id.to_hex(),
                s.parent_span_id.map_or(Value::Null, |p| json!(p.to_hex())),
                s.start_unix_nanos.to_string(),
                s.end_unix_nanos.to_string(),
                json!(format!("/r/{}", s.name.trim_start_matches("op-"))),
            )
        })
        .collect()
}

/// (unix ns, body, severity, trace id) of the node's records of `exp-svc`, by time.
async fn logs_on(http: &Http, node: &Node) -> Vec<(String, String, String, String)> {
    let r = http.get(&format!("http://{}/api/logs?query=service:exp-svc&since=24h&limit=100", node.console)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut out: Vec<_> = r.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unix_nanos"].as_str().unwrap().to_owned(),
                r["body"].as_str().unwrap().to_owned(),
                r["severity"].as_str().unwrap().to_owned(),
                r["trace_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn logs_want(tags: &[(&str, u64)], trace: TraceId) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = tags
        .iter()
        .flat_map(|(tag, base)| {
            (0..4u64).map(move |i| {
                (
                    (base + i).to_string(),
                    format!("{tag} line {i}"),
                    if i == 0 { "ERROR" } else { "INFO" }.to_owned(),
                    trace.to_hex(),
                )
            })
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_and_loki_out_into_other_nodes_through_a_receiver_restart() {
    let http = Http::new();
    // B takes OTLP/gRPC (traces and logs); C takes OTLP/HTTP (traces) and Loki push (logs).
    let b = Node::start(&[], &[]).await;
    let c = Node::start(&[], &[]).await;
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &cfg_dir,
        &format!(
            r#"
[[export.otlp]]
name = "node-b"
endpoint = "http://{}"
batch_wait = "100ms"
min_backoff = "50ms"
max_backoff = "500ms"

[[export.otlp]]
name = "node-c-traces"
endpoint = "http://{}"
protocol = "http/protobuf"
signals = ["traces"]
batch_wait = "100ms"

[[export.loki]]
name = "node-c-loki"
url = "http://{}/loki/api/v1/push"
batch_wait = "100ms"
"#,
            b.otlp_grpc, c.otlp_http, c.console
        ),
    );
    let a = Node::start(&["-c", cfg.as_str()], &[]).await;
    let now = signalbox_core::time::unix_nanos();
    let t1 = TraceId([0x11; 16]);
    let s1 = spans(t1, 3, now - 10_000_000_000);
    post_spans(&http, &a, s1.clone()).await;
    post_logs(&http, &a, "first", now - 9_000_000_000, t1).await;
    for node in [&b, &c] {
        let want = trace_want(&s1);
        eventually(Duration::from_secs(20), "the trace on the receiving node", || async {
            trace_on(&http, node, t1).await.filter(|got| *got == want)
        })
        .await;
    }
    let want = logs_want(&[("first", now - 9_000_000_000)], t1);
    eventually(Duration::from_secs(20), "the records on node B", || async {
        (logs_on(&http, &b).await == want).then_some(())
    })
    .await;
    // Loki push: the same records, as Loki's query API answers on C.
    let loki_query = format!(
        "http://{}/loki/api/v1/query_range?query=%7Bservice_name%3D%22exp-svc%22%7D&start={}&limit=100",
        c.console,
        now - 3_600_000_000_000
    );
    eventually(Duration::from_secs(20), "the Loki records on node C", || async {
        let v = http.get(&loki_query).await.json();
        let mut got: Vec<(String, String)> = v["data"]["result"]
            .as_array()?
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap().iter())
            .map(|e| (e[0].as_str().unwrap().to_owned(), e[1].as_str().unwrap().to_owned()))
            .collect();
        got.sort();
        let want: Vec<(String, String)> =
            (0..4u64).map(|i| ((now - 9_000_000_000 + i).to_string(), format!("first line {i}"))).collect();
        (got == want).then_some(())
    })
    .await;
    let v = http.get(&loki_query).await.json();
    let levels: Vec<&str> =
        v["data"]["result"].as_array().unwrap().iter().map(|s| s["stream"]["level"].as_str().unwrap()).collect();
    assert!(levels.contains(&"error") && levels.contains(&"info"), "{v}");

    // B goes down (kill -9) for a while; what A stores meanwhile reaches it once it is back.
    let t2 = TraceId([0x22; 16]);
    let s2 = spans(t2, 2, now - 5_000_000_000);
    let ports = [&b.gateway, &b.console, &b.consul, &b.otlp_grpc, &b.otlp_http, &b.zipkin]
        .map(|a| a.rsplit(':').next().unwrap().parse::<u16>().unwrap());
    let b_data = b.kill9();
    post_spans(&http, &a, s2.clone()).await;
    post_logs(&http, &a, "during-outage", now - 4_000_000_000, t2).await;
    eventually(Duration::from_secs(10), "failed requests to the stopped node", || async {
        (metric(&http, &a, r#"signalbox_export_failed_requests_total{exporter="node-b"}"#).await >= 2.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = Node::try_start_on(b_data, &[], &[], ports)
        .await
        .unwrap_or_else(|(_, log)| panic!("node B did not come back on its ports:\n{log}"));
    let want = trace_want(&s2);
    eventually(Duration::from_secs(30), "the outage's trace on node B", || async {
        trace_on(&http, &b, t2).await.filter(|got| *got == want)
    })
    .await;
    let mut want = logs_want(&[("first", now - 9_000_000_000)], t1);
    want.extend(logs_want(&[("during-outage", now - 4_000_000_000)], t2));
    want.sort();
    eventually(Duration::from_secs(30), "every record on node B, once", || async {
        (logs_on(&http, &b).await == want).then_some(())
    })
    .await;
    assert_eq!(trace_on(&http, &b, t1).await.unwrap(), trace_want(&s1), "the first trace survived B's restart once");
}
