//! `signalbox agent` pushing host metrics to a real node: the series are queryable with
//! PromQL over the Prometheus API, and a node killed and started again later loses none of
//! the collections made while it was down (the agent's metrics buffer holds them); the node
//! measures each pushing agent's clock offset, and the default `HostClockSkew` rule's
//! expression picks out the agents whose clocks are off.

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
    // The kernel's clock state (timex, adjtimex(2)) and the TCP states (tcpstat) arrive too:
    // the kernel's tick is 1 to 10 ms, sync status 0 or 1, and this test's own connection
    // to the node is established.
    let tick = query(&http, &node, r#"node_timex_tick_seconds{instance="e2e-host"}"#).await;
    assert!((0.001..=0.01).contains(&scalar(&tick)), "{tick}");
    let sync = query(&http, &node, r#"node_timex_sync_status{instance="e2e-host"}"#).await;
    assert!([0.0, 1.0].contains(&scalar(&sync)) && !sync["result"].as_array().unwrap().is_empty(), "{sync}");
    let est = query(&http, &node, r#"node_tcp_connection_states{instance="e2e-host",state="established"}"#).await;
    assert!(scalar(&est) >= 1.0, "{est}");

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

/// Starts `signalbox agent` pushing host metrics every second to `node` as `host`, its clock
/// shifted by `skew_ms` (the `host_metrics.test_clock_skew_ms` hook: the agent's real
/// clock source, offset; the network and the node are real).
fn start_skewed_agent(dir: &std::path::Path, node: &Node, host: &str, skew_ms: i64) -> std::process::Child {
    let cfg = dir.join(format!("{host}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{data}"
host = "{host}"
metrics_listen = "127.0.0.1:{port}"
progress_interval = "0s"
[output]
endpoint = "http://{node}"
connect_timeout = "500ms"
timeout = "2s"
[host_metrics]
enabled = true
interval = "1s"
collectors = ["loadavg", "time"]
test_clock_skew_ms = {skew_ms}
"#,
            data = dir.join(host).display(),
            port = free_port(),
            node = node.console,
        ),
    )
    .unwrap();
    Command::new(BIN)
        .args(["agent", "-q", "-c", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The `expr` of alert `name` in the shipped default rules (the block under `expr: |`).
fn default_rule_expr(name: &str) -> String {
    let rules = include_str!("../../../metrics/src/rules/defaults.yml");
    let at = rules.find(&format!("- alert: {name}\n")).unwrap_or_else(|| panic!("no default rule {name}"));
    let block = &rules[at..];
    let expr = &block[block.find("expr: |\n").unwrap() + "expr: |\n".len()..];
    expr.lines().take_while(|l| !l.trim_start().starts_with("for:")).map(str::trim).collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_measures_each_agents_clock_offset_and_the_clock_skew_rule_picks_the_skewed_ones() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let agents = [("behind-host", -20_000i64), ("ahead-host", 3_000), ("true-host", 0)];
    let mut children: Vec<_> =
        agents.iter().map(|(host, skew)| start_skewed_agent(dir.path(), &node, host, *skew)).collect();

    // A few pushes each, so that the round trip of the previous push is known.
    let deadline = Instant::now() + Duration::from_secs(40);
    let offsets = loop {
        let d = query(&http, &node, r#"count_over_time(signalbox_agent_clock_offset_seconds{job="node"}[1m])"#).await;
        let counts: Vec<(String, f64)> = d["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (r["metric"]["instance"].as_str().unwrap().to_owned(), r["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect();
        if counts.len() == agents.len() && counts.iter().all(|(_, n)| *n >= 4.0) {
            let d = query(&http, &node, "signalbox_agent_clock_offset_seconds").await;
            break d["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["metric"]["instance"].as_str().unwrap().to_owned(),
                        r["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect::<std::collections::BTreeMap<String, f64>>();
        }
        assert!(Instant::now() < deadline, "not 4 offset measurements of each agent after 40 s: {counts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Loopback: the error is half the round trip's asymmetry, milliseconds; 0.25 s leaves
    // room for scheduling delays on this shared machine and is still half the rule's bound.
    for (host, skew_ms) in agents {
        let measured = offsets[host];
        let want = skew_ms as f64 / 1000.0;
        assert!((measured - want).abs() < 0.25, "{host}: measured {measured} s, clock set {want} s off");
    }
    // The agent's own stamps follow its clock: the skewed agent's node_time_seconds is
    // 20 s behind the sample's arrival.
    let t = query(&http, &node, r#"time() - node_time_seconds{instance="behind-host"}"#).await;
    assert!(scalar(&t) > 19.0, "{t}");

    // The shipped rule's expression (its `for: 10m` aside) selects exactly the agents whose
    // clocks are more than 0.5 s off.
    let expr = default_rule_expr("HostClockSkew");
    assert!(expr.contains("signalbox_agent_clock_offset_seconds"), "{expr}");
    let d = query(&http, &node, &expr).await;
    let mut firing: Vec<&str> =
        d["result"].as_array().unwrap().iter().map(|r| r["metric"]["instance"].as_str().unwrap()).collect();
    firing.sort();
    assert_eq!(firing, ["ahead-host", "behind-host"], "{expr}: {d}");

    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
