//! `signalbox agent` pushing host metrics to a real node: the series are queryable with
//! PromQL over the Prometheus API, and a node killed and started again later loses none of
//! the collections made while it was down (the agent's metrics buffer holds them).

use crate::metrics::{enc, query};
use crate::*;
use std::time::Instant;

/// The agent's own `/metrics` value of a series without labels.
async fn agent_value(http: &Http, addr: &str, name: &str) -> Option<f64> {
    let r = http.try_send(http::Method::GET, &format!("http://{addr}/metrics"), &[], bytes::Bytes::new()).await.ok()?;
    r.text().lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn scalar(data: &serde_json::Value) -> f64 {
    data["result"][0]["value"][1].as_str().map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_pushes_host_metrics_and_loses_none_while_the_node_is_down() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{data}"
host = "e2e-host"
metrics_listen = "{listen}"
progress_interval = "0s"
[output]
endpoint = "http://{node}"
connect_timeout = "500ms"
timeout = "2s"
[retry]
initial_backoff = "100ms"
max_backoff = "500ms"
[host_metrics]
enabled = true
interval = "1s"
"#,
            data = dir.path().join("state").display(),
            node = node.console,
        ),
    )
    .unwrap();
    let mut agent = Command::new(BIN)
        .args(["agent", "-q", "-c", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The series arrive with node_exporter's names and the agent's job and instance.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d =
            query(&http, &node, r#"count(node_cpu_seconds_total{job="node",instance="e2e-host",mode="idle"})"#).await;
        if scalar(&d) > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no node_cpu_seconds_total from the agent after 30 s: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let busy =
        query(&http, &node, r#"1 - avg(rate(node_cpu_seconds_total{instance="e2e-host",mode="idle"}[1m]))"#).await;
    let busy = scalar(&busy);
    assert!((0.0..=1.0).contains(&busy), "CPU busy fraction {busy}");
    let mem =
        query(&http, &node, r#"node_memory_MemAvailable_bytes{instance="e2e-host"} / node_memory_MemTotal_bytes"#)
            .await;
    assert!((0.0..=1.0).contains(&scalar(&mem)), "{mem}");
    let me =
        query(&http, &node, r#"process_resident_memory_bytes{service="signalbox-agent",instance="e2e-host"}"#).await;
    assert!(scalar(&me) > 1e6, "the agent's own RSS: {me}");
    let root = query(&http, &node, r#"node_filesystem_size_bytes{instance="e2e-host",mountpoint="/"}"#).await;
    assert!(scalar(&root) > 0.0, "{root}");

    // Down for 5 s (about 5 collections), then up on the same address.
    let down_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let node = node.restart_kill9(&[], &[], Duration::from_secs(5)).await;
    let up_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let buffered = agent_value(&http, &listen, "signalbox_agent_host_snapshots_buffered").await;
        let failures = agent_value(&http, &listen, "signalbox_agent_host_push_failures_total").await.unwrap_or(0.0);
        if buffered == Some(0.0) && failures > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the agent's buffer did not drain: {buffered:?}, {failures} failures");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(agent_value(&http, &listen, "signalbox_agent_host_snapshots_dropped_total").await, Some(0.0));
    assert_eq!(agent_value(&http, &listen, "signalbox_agent_host_snapshots_refused_total").await, Some(0.0));
    // Every second of the outage has its sample (one collection a second; the window is
    // the outage less a second at each end for the ticks' phase).
    let window = (up_at - down_at - 2.0).floor();
    let q = format!(
        "http://{}/prometheus/api/v1/query?query={}&time={}",
        node.console,
        enc(&format!(r#"count_over_time(node_boot_time_seconds{{instance="e2e-host"}}[{}s])"#, window as u64)),
        down_at + 1.0 + window
    );
    let d = http.get(&q).await.json();
    let during = scalar(&d["data"]);
    assert!(during >= window - 1.0, "{during} samples in the {window} s the node was down: {d}");
    // And in total, at least as many samples as collections the agent has made but one
    // (the newest may still be on its way).
    let collections = agent_value(&http, &listen, "signalbox_agent_host_collect_seconds_count").await.unwrap();
    let total = query(&http, &node, r#"count_over_time(node_boot_time_seconds{instance="e2e-host"}[10m])"#).await;
    assert!(scalar(&total) >= collections - 2.0, "{} stored of {collections} collections", scalar(&total));
    let _ = agent.kill();
    let _ = agent.wait();
}
