//! The console's one live stream, `/api/live`, on the real binary over a real socket: one
//! connection carries the registry's, the alerts' and the configuration's events, each
//! tagged with its topic.

use crate::*;
use serde_json::{Value, json};
use signalbox_metrics::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw SSE reader: the JSON of each `data:` event, in order.
struct SseReader {
    sock: tokio::net::TcpStream,
    buf: String,
}

impl SseReader {
    async fn open(addr: &str, path: &str) -> SseReader {
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n").as_bytes())
            .await
            .unwrap();
        SseReader { sock, buf: String::new() }
    }

    /// Reads events until `want` returns true for one (giving it), or panics after `limit`
    /// naming what arrived.
    async fn until(&mut self, limit: Duration, what: &str, mut want: impl FnMut(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + limit;
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("bad event {data}: {e}"));
                        if want(&v) {
                            return v;
                        }
                        seen.push(format!("{}/{}", v["topic"], v["kind"]));
                    }
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "no {what} within {limit:?}; events seen: {seen:?}; pending: {}", self.buf);
            match tokio::time::timeout(left.min(Duration::from_millis(500)), self.sock.read(&mut chunk)).await {
                Ok(Ok(0)) => panic!("the stream closed before {what}; events seen: {seen:?}"),
                Ok(Ok(n)) => self.buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Ok(Err(e)) => panic!("reading the stream: {e}"),
                Err(_) => {}
            }
        }
    }
}

fn queue_depth(depth: f64) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let ts = TimeSeries {
        labels: vec![
            Label { name: "__name__".into(), value: "queue_depth".into() },
            Label { name: "service".into(), value: "orders".into() },
        ],
        samples: vec![Sample { value: depth, timestamp: now_ms }],
        exemplars: vec![],
    };
    remote_write::encode(&WriteRequest { timeseries: vec![ts], metadata: vec![] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_registry_and_alert_changes() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: orders\n    interval: 1s\n    rules:\n      - alert: QueueBacklog\n        expr: queue_depth > 100\n",
    )
    .unwrap();
    let cfg = dir.path().join("signalbox.toml");
    std::fs::write(&cfg, format!("[metrics.rules]\nfiles = [\"{}\"]\nevaluation_interval = \"1s\"\n", rules.display()))
        .unwrap();
    let node = Node::start(&["-c", cfg.to_str().unwrap()], &[]).await;
    let http = Http::new();

    // A topic that does not exist is refused, naming it.
    let bad = http.get(&format!("http://{}/api/live?topics=registry,nope", node.console)).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("`nope` is not a topic"), "{}", bad.text());

    let mut live = SseReader::open(&node.console, "/api/live?topics=registry,alerts,config").await;
    let limit = Duration::from_secs(30);
    live.until(limit, "the registry snapshot", |v| v["topic"] == "registry" && v["kind"] == "snapshot").await;
    let first = live.until(limit, "the alerts snapshot", |v| v["topic"] == "alerts" && v["kind"] == "snapshot").await;
    assert_eq!(first["data"]["alerts"], json!([]), "{first}");

    // A registry change arrives on the connection.
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/registry/instances", node.console),
            &[("content-type", "application/json")],
            json!({"service": "orders", "id": "orders-1", "address": "127.0.0.1", "port": 9}).to_string(),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text());
    let change = live
        .until(limit, "the registration", |v| {
            v["topic"] == "registry"
                && v["kind"] == "change"
                && v["data"]["instances"].as_array().is_some_and(|a| a.iter().any(|i| i["id"] == "orders-1"))
        })
        .await;
    assert_eq!(change["data"]["instances"][0]["service"], "orders", "{change}");

    // An alert that starts firing arrives on the same connection.
    let url = format!("http://{}/prometheus/api/v1/write", node.console);
    let r = http.send(http::Method::POST, &url, &[], bytes::Bytes::from(queue_depth(250.0))).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let firing = live
        .until(limit, "QueueBacklog firing", |v| {
            v["topic"] == "alerts"
                && v["data"]["alerts"].as_array().is_some_and(|a| {
                    a.iter().any(|x| x["labels"]["alertname"] == "QueueBacklog" && x["state"] == "firing")
                })
        })
        .await;
    assert!(firing["data"]["generation"].as_u64().unwrap() > first["data"]["generation"].as_u64().unwrap());

    // A config write arrives on it too, with its value.
    let r = http
        .send(
            http::Method::PUT,
            &format!("http://{}/api/config/orders/default/pool.size", node.console),
            &[("content-type", "application/json")],
            json!({"value": "8"}).to_string(),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text());
    let cfg = live
        .until(limit, "the config change", |v| {
            v["topic"] == "config"
                && v["kind"] == "change"
                && v["data"]["changes"].as_array().is_some_and(|c| c.iter().any(|x| x["key"] == "pool.size"))
        })
        .await;
    assert_eq!(cfg["data"]["changes"][0]["value"], "8", "{cfg}");

    // And the registry keeps flowing on it after the alert: the instance leaves.
    let r = http
        .send(http::Method::DELETE, &format!("http://{}/api/registry/instances/orders-1", node.console), &[], "")
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text());
    live.until(limit, "the deregistration", |v| {
        v["topic"] == "registry" && v["data"]["removed"].as_array().is_some_and(|a| a.iter().any(|i| i == "orders-1"))
    })
    .await;
}
