//! The config: the documented example loads, problems name their key paths, the agent's
//! `/metrics` listener serves its progress.

use crate::receiver::Receiver;
use crate::support::{config, start};
use signalbox_agent::AgentConfig;
use signalbox_testkit::eventually;
use std::time::Duration;

#[test]
fn documented_example_loads_and_matches_the_defaults() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agent.toml")).unwrap();
    let cfg: AgentConfig = toml::from_str(&text).unwrap();
    cfg.check().unwrap();
    let defaults = AgentConfig::default();
    assert_eq!(cfg.batch, defaults.batch);
    assert_eq!(cfg.buffer, defaults.buffer);
    assert_eq!(cfg.retry, defaults.retry);
    assert_eq!(cfg.output, defaults.output);
    assert_eq!((cfg.scan_interval, cfg.poll_interval), (defaults.scan_interval, defaults.poll_interval));
    assert_eq!(cfg.sources.len(), 1);
    assert_eq!(cfg.sources[0].filters.len(), 2);
    let h = cfg.host_metrics;
    assert_eq!(h.processes.len(), 1);
    assert_eq!(signalbox_agent::config::HostMetricsConfig { processes: Vec::new(), ..h }, defaults.host_metrics);
}

#[test]
fn problems_name_their_key_paths() {
    let cfg: AgentConfig = toml::from_str(
        r#"
        data_dir = "/tmp/x"
        metrics_listen = "nowhere"
        [output]
        kind = "kafka"
        token = "a"
        token_file = "/nonexistent"
        [batch]
        max_records = 0
        [[sources]]
        include = ["/var/log/[.log"]
        read_from = "middle"
        [sources.parser]
        format = "regex"
        pattern = "(unclosed"
        timestamp_format = "%Q"
        [sources.multiline]
        preset = "cobol"
        [[sources.filters]]
        action = "maybe"
        [[sources.filters]]
        action = "drop"
        "#,
    )
    .unwrap();
    let problems = cfg.check_at("agent").unwrap_err();
    let paths: Vec<&str> = problems.list.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "agent.metrics_listen",
        "agent.output.kind",
        "agent.output.token_file",
        "agent.batch.max_records",
        "agent.sources[0].include[0]",
        "agent.sources[0].service",
        "agent.sources[0].read_from",
        "agent.sources[0].parser.pattern",
        "agent.sources[0].parser.timestamp_format",
        "agent.sources[0].multiline.preset",
        "agent.sources[0].filters[0].action",
        "agent.sources[0].filters[1]",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    let unknown = toml::from_str::<AgentConfig>("[output]\nendpoint = \"http://x\"\nretries = 3\n").unwrap_err();
    assert!(unknown.to_string().contains("retries"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_serves_progress() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        cfg.metrics_listen = format!("127.0.0.1:{port}");
        cfg.sources[0].close_inactive = signalbox_core::config::Dur::secs(60);
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        let agent = start(cfg);
        eventually(Duration::from_secs(10), "three records", || async { (r.lines().len() == 3).then_some(()) }).await;
        let http = signalbox_testkit::client::Http::new();
        let text = eventually(Duration::from_secs(5), "the metrics to catch up", || async {
            let resp = http.get(&format!("http://127.0.0.1:{port}/metrics")).await;
            assert_eq!(resp.status, 200);
            let t = resp.text();
            t.contains("signalbox_agent_records_shipped_total 3\n").then_some(t)
        })
        .await;
        assert!(text.contains("signalbox_agent_lines_read_total 3\n"), "{text}");
        assert!(text.contains("# TYPE signalbox_agent_buffered_bytes gauge"), "{text}");
        assert_eq!(http.get(&format!("http://127.0.0.1:{port}/other")).await.status, 404);
        let p = agent.progress.snapshot();
        assert_eq!((p.lines_read, p.records_shipped, p.files_followed), (3, 3, 1), "{p}");
        assert!(p.to_string().contains("shipped 3"), "{p}");
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_data_dir_is_refused() {
    crate::support::bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&dir.path().join("data"), "http://127.0.0.1:9", &[format!("{}/*.log", dir.path().display())]);
        let first = signalbox_agent::Agent::new(cfg.clone()).unwrap();
        let second = signalbox_agent::Agent::new(cfg);
        assert!(matches!(second, Err(signalbox_agent::AgentError::Locked(_))));
        drop(first);
    })
    .await
}
