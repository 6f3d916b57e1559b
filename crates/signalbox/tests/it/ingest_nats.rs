//! The ingest buffer on NATS JetStream (`[ingest] buffer`), with real `nats-server`s
//! (Debian's 2.9, `-js`): receivers answer after JetStream's acknowledgement, storage
//! consumers move batches into the stores exactly once, a storage side that is down leaves
//! data waiting, a full stream answers 429 and a missing one 503, and a three-server
//! cluster with R3 keeps taking data with one server killed.

use crate::*;
use serde_json::json;
use signalbox_metrics::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use signalbox_testkit::nats::{Cluster, Server};
use signalbox_testkit::{eventually, python};

fn enc(s: &str) -> String {
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

fn env(buffer: &str, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut v = vec![("SIGNALBOX_INGEST__BUFFER", buffer.to_owned())];
    v.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
    v
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, val)| (*k, val.as_str())).collect()
}

/// `n` native log lines of service `svc`, tagged with the batch number.
fn log_lines(svc: &str, batch: usize, n: usize) -> String {
    (0..n).map(|i| json!({ "body": format!("{svc} batch {batch} line {i}"), "service": svc, "instance": format!("i-{}", i % 4) }).to_string() + "\n").collect()
}

async fn post_logs(http: &Http, node: &Node, body: String) -> signalbox_testkit::client::Resp {
    http.send(
        http::Method::POST,
        &format!("http://{}/api/logs", node.console),
        &[("content-type", "application/x-ndjson")],
        body,
    )
    .await
}

/// A remote_write body: `series` series of metric `name`, one sample each at `t` ms.
fn samples(name: &str, series: usize, t: i64) -> bytes::Bytes {
    let timeseries = (0..series)
        .map(|i| TimeSeries {
            labels: vec![
                Label { name: "__name__".into(), value: name.into() },
                Label { name: "series".into(), value: format!("s{i}") },
            ],
            samples: vec![Sample { value: i as f64, timestamp: t }],
            exemplars: vec![],
        })
        .collect();
    bytes::Bytes::from(remote_write::encode(&WriteRequest { timeseries, metadata: vec![] }))
}

async fn post_samples(http: &Http, node: &Node, body: bytes::Bytes) -> signalbox_testkit::client::Resp {
    http.send(
        http::Method::POST,
        &format!("http://{}/prometheus/api/v1/write", node.console),
        &[("content-type", "application/x-protobuf"), ("content-encoding", "snappy")],
        body,
    )
    .await
}

/// Records of service `svc` in the last hour, counted by the store.
async fn log_count(http: &Http, node: &Node, svc: &str) -> u64 {
    let url = format!(
        "http://{}/api/logs/aggregate?query={}&since=1h&step=1m",
        node.console,
        enc(&format!("service:{svc} | count by service"))
    );
    let r = http.get(&url).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["total"].as_u64().unwrap_or(0)
}

/// A PromQL instant query's single value (None when the result is empty).
async fn prom_value(http: &Http, node: &Node, q: &str) -> Option<f64> {
    let r = http.get(&format!("http://{}/prometheus/api/v1/query?query={}", node.console, enc(q))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok())
}

/// Waits until `f` returns exactly `want`, then checks it stays there (no late duplicate).
async fn settles_at<F, Fut>(what: &str, want: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    // Longer than the consumers' ack_wait (30 s): a batch a killed node had fetched but not
    // acknowledged is delivered again only after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    while std::time::Instant::now() < deadline {
        last = f().await;
        if last == want {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let again = f().await;
            assert_eq!(again, want, "{what}: reached {want} then moved to {again}");
            return;
        }
        assert!(last <= want, "{what}: {last} stored, more than the {want} acknowledged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: {last} stored after 60 s, {want} acknowledged");
}

async fn node_metric(http: &Http, node: &Node, name: &str) -> f64 {
    let text = http.get(&format!("http://{}/metrics", node.console)).await.text();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_logs_and_samples_from_real_clients_are_stored_once() {
    let nats = Server::start().await;
    let e = env(&nats.url, &[]);
    let node = Node::start(&[], &as_refs(&e)).await;
    let http = Http::new();

    // Spans: the OpenTelemetry Python SDK over OTLP/HTTP (protobuf, gzip).
    let script = format!("{}/tests/python/otel_send.py", env!("CARGO_MANIFEST_DIR"));
    let out = python::run("", &script, &[&format!("http://{}", node.otlp_http)], Duration::from_secs(60)).await;
    let tid = out.split_whitespace().next().unwrap().to_owned();
    let t = eventually(Duration::from_secs(20), "the Python SDK's trace", || {
        let (http, u) = (http.clone(), format!("http://{}/api/traces/{tid}", node.console));
        async move {
            let r = http.try_send(http::Method::GET, &u, &[], bytes::Bytes::new()).await.ok()?;
            (r.status == 200 && r.json()["spans"].as_array().map(Vec::len) == Some(2)).then(|| r.json())
        }
    })
    .await;
    let names: Vec<&str> = t["spans"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"POST /checkout") && names.contains(&"charge card"), "{t}");

    // Logs: python-logging-loki's handler, and Loki's JSON push.
    let script = format!("{}/tests/python/loki_handler.py", env!("CARGO_MANIFEST_DIR"));
    let loki = format!("http://{}/loki/api/v1/push", node.console);
    python::run("python-logging-loki", &script, &[&loki, "7"], Duration::from_secs(60)).await;
    let now = signalbox_core::time::unix_nanos();
    let body = json!({ "streams": [{ "stream": { "job": "nats-loki" }, "values": (0..30u64).map(|i| json!([(now - (30 - i) * 1_000_000).to_string(), format!("loki line {i}")])).collect::<Vec<_>>() }] });
    let r = http.send(http::Method::POST, &loki, &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let query_range = |q: &'static str| {
        let http = http.clone();
        let url = format!(
            "http://{}/loki/api/v1/query_range?query={}&start={}&limit=1000",
            node.console,
            enc(q),
            now - 3_600_000_000_000
        );
        async move {
            let v = http.get(&url).await.json();
            v["data"]["result"]
                .as_array()
                .map(|s| s.iter().map(|s| s["values"].as_array().unwrap().len() as u64).sum())
                .unwrap_or(0)
        }
    };
    settles_at("Loki JSON push lines", 30, || query_range(r#"{job="nats-loki"}"#)).await;
    settles_at("python-logging-loki lines", 7, || query_range(r#"{application="billing"}"#)).await;

    // Native logs over several partitions (instances spread the stream).
    for b in 0..5 {
        let r = post_logs(&http, &node, log_lines("nats-native", b, 40)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["accepted"], 40);
    }
    settles_at("native log lines", 200, || log_count(&http, &node, "nats-native")).await;

    // Samples: remote_write of 50 series.
    let t0 = signalbox_core::time::unix_nanos() as i64 / 1_000_000;
    let r = post_samples(&http, &node, samples("nats_ingest_test", 50, t0)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    settles_at("series", 50, || async {
        prom_value(&http, &node, "count(nats_ingest_test)").await.unwrap_or(0.0) as u64
    })
    .await;
    assert_eq!(prom_value(&http, &node, "sum(nats_ingest_test)").await, Some((0..50).sum::<u64>() as f64));

    // The node's own metrics tell the story.
    assert!(node_metric(&http, &node, "signalbox_ingest_buffer_published_batches_total").await >= 8.0);
    assert!(node_metric(&http, &node, "signalbox_ingest_consumed_messages_total").await >= 8.0);
    assert!(node_metric(&http, &node, "signalbox_ingest_buffer_publish_seconds_count").await >= 8.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_waits_in_the_stream_while_storage_is_down_and_kill_9_loses_and_duplicates_nothing() {
    let nats = Server::start().await;
    // A receiver that does not consume: what it acknowledges waits in the stream.
    let receiver_env = env(&nats.url, &[("SIGNALBOX_INGEST__NATS__CONSUME", "false")]);
    let node = Node::start(&[], &as_refs(&receiver_env)).await;
    let http = Http::new();
    for b in 0..10 {
        let r = post_logs(&http, &node, log_lines("waiting", b, 25)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let t0 = signalbox_core::time::unix_nanos() as i64 / 1_000_000;
    for k in 0..4 {
        let r = post_samples(&http, &node, samples("waiting_metric", 30, t0 + k)).await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(log_count(&http, &node, "waiting").await, 0, "nothing is stored while nobody consumes");
    assert!(node_metric(&http, &node, "signalbox_ingest_buffer_stream_messages").await > 0.0);

    // Kill -9 and start the same node as a storage node: the stream's data arrives, once.
    let storage_env = env(&nats.url, &[]);
    let node = node.restart_kill9(&[], &as_refs(&storage_env), Duration::from_millis(100)).await;
    settles_at("waiting log lines", 250, || log_count(&http, &node, "waiting")).await;
    settles_at("waiting samples", 120, || async {
        prom_value(&http, &node, "sum(count_over_time(waiting_metric[1h]))").await.unwrap_or(0.0) as u64
    })
    .await;

    // Kill -9 right after acknowledgements, while the consumers are moving them, many times.
    let mut node = node;
    let mut acked = 0u64;
    for round in 0..4 {
        for b in 0..6 {
            let r = post_logs(&http, &node, log_lines("crashy", round * 100 + b, 30)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            acked += 30;
        }
        node = node.restart_kill9(&[], &as_refs(&storage_env), Duration::from_millis(50)).await;
    }
    settles_at("log lines acknowledged before kill -9", acked, || log_count(&http, &node, "crashy")).await;
    assert_eq!(log_count(&http, &node, "waiting").await, 250, "nothing stored twice after the restarts");
    // Everything consumed: the stream is empty (a work queue keeps only unacknowledged data).
    eventually(Duration::from_secs(10), "an empty stream", || {
        let (http, node) = (http.clone(), &node);
        async move { (node_metric(&http, node, "signalbox_ingest_buffer_stream_messages").await == 0.0).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_answers_429_and_nats_down_answers_503_with_json_bodies() {
    let mut nats = Server::start().await;
    let e = env(
        &nats.url,
        &[
            ("SIGNALBOX_INGEST__NATS__CONSUME", "false"),
            ("SIGNALBOX_INGEST__NATS__MAX_BYTES", "\"256KiB\""),
            ("SIGNALBOX_INGEST__NATS__HIGH_WATER", "0.5"),
        ],
    );
    let node = Node::start(&[], &as_refs(&e)).await;
    let http = Http::new();
    let mut refused = None;
    for b in 0..200 {
        let r = post_logs(&http, &node, log_lines("filler", b, 50)).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
        // Let the cached stream state catch up, as steady traffic would.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = refused.expect("the stream filled up");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let v = r.json();
    assert_eq!(v["code"], "busy", "{v}");
    // OTLP/HTTP JSON traces get RESOURCE_EXHAUSTED (8) in the OTLP error shape.
    let otlp = json!({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"full"}}]},"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"x","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]});
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/v1/traces", node.otlp_http),
            &[("content-type", "application/json")],
            otlp.to_string(),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["code"], 8, "{}", r.text());
    // remote_write too.
    let r = post_samples(&http, &node, samples("full_metric", 3, 1)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.json()["error"].is_string(), "{}", r.text());
    assert!(node_metric(&http, &node, "signalbox_ingest_buffer_refused_total").await >= 3.0);

    // NATS gone: 503 with a JSON error, for every receiver.
    nats.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = post_logs(&http, &node, log_lines("down", 0, 2)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("NATS"), "{}", r.text());
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/v1/traces", node.otlp_http),
            &[("content-type", "application/json")],
            otlp.to_string(),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], 14, "{}", r.text());
    let r = post_samples(&http, &node, samples("down_metric", 3, 1)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("unavailable"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_comes_back_when_nats_restarts() {
    let mut nats = Server::start().await;
    let e = env(&nats.url, &[]);
    let node = Node::start(&[], &as_refs(&e)).await;
    let http = Http::new();
    let r = post_logs(&http, &node, log_lines("comeback", 0, 10)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    nats.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(post_logs(&http, &node, log_lines("comeback", 1, 10)).await.status, 503);
    nats.restart().await;
    // The client reconnects on its own; the first 2xx comes within a few seconds.
    let mut batch = 2;
    eventually(Duration::from_secs(20), "ingest after NATS restarts", || {
        batch += 1;
        let (http, node, b) = (http.clone(), &node, batch);
        async move { (post_logs(&http, node, log_lines("comeback", b, 10)).await.status == 200).then_some(()) }
    })
    .await;
    settles_at("lines acknowledged around the restart", 20, || log_count(&http, &node, "comeback")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_cluster_with_r3_survives_one_server_killed() {
    let mut cluster = Cluster::start().await;
    let e = env(&cluster.urls(), &[("SIGNALBOX_INGEST__NATS__REPLICAS", "3")]);
    let node = Node::start(&[], &as_refs(&e)).await;
    let http = Http::new();
    // The stream is created once the meta leader answers; wait for the first 2xx.
    let mut acked = 0u64;
    let mut b = 0;
    eventually(Duration::from_secs(30), "the R3 stream accepts", || {
        b += 1;
        let (http, node, n) = (http.clone(), &node, b);
        async move { (post_logs(&http, node, log_lines("r3", n, 20)).await.status == 200).then_some(()) }
    })
    .await;
    acked += 20;
    for _ in 0..5 {
        b += 1;
        let r = post_logs(&http, &node, log_lines("r3", b, 20)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        acked += 20;
    }
    // Kill one server (whichever the client is on): acknowledged data stays, new data
    // flows again once the client has moved and the stream has its leader.
    cluster.servers[0].kill9();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut ok_after = 0;
    while ok_after < 10 {
        assert!(std::time::Instant::now() < deadline, "ingest did not resume within 30 s after a server died");
        b += 1;
        let r = post_logs(&http, &node, log_lines("r3", b, 20)).await;
        match r.status {
            200 => {
                acked += 20;
                ok_after += 1;
            }
            503 | 429 => tokio::time::sleep(Duration::from_millis(200)).await,
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    settles_at("lines acknowledged by the R3 stream", acked, || log_count(&http, &node, "r3")).await;
    // The killed server comes back and catches up; ingest goes on.
    cluster.servers[0].restart().await;
    b += 1;
    let r = post_logs(&http, &node, log_lines("r3", b, 20)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    settles_at("lines after the server returned", acked + 20, || log_count(&http, &node, "r3")).await;
}

#[tokio::test]
async fn bad_ingest_settings_are_refused_at_start_naming_the_key() {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir", "/nonexistent/sb"])
        .env("SIGNALBOX_INGEST__BUFFER", "http://127.0.0.1:4222")
        .env("SIGNALBOX_INGEST__NATS__REPLICAS", "9")
        .env("SIGNALBOX_INGEST__NATS__HIGH_WATER", "2.0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.buffer") && err.contains("http://127.0.0.1:4222"), "{err}");
    assert!(err.contains("ingest.nats.replicas"), "{err}");
    assert!(err.contains("ingest.nats.high_water"), "{err}");
}
