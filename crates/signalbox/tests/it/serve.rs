//! `signalbox serve`: the quick start, admin endpoints, reload by file change and SIGHUP,
//! environment overrides, graceful stop.

use crate::{Node, free_port};
use signalbox_testkit::client::Http;
use signalbox_testkit::eventually;
use signalbox_testkit::upstream::{echo, serve};
use std::time::Duration;

#[tokio::test]
async fn quick_start_with_route_flags() {
    let a = serve(echo("a")).await;
    let b = serve(echo("b")).await;
    let route = format!("/api={},{}", a.url(), b.url());
    let node = Node::start(&["--route", &route], &[]).await;
    let http = Http::new();
    for _ in 0..10 {
        let r = http.get(&format!("http://{}/api/users", node.gateway)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], "/api/users");
    }
    assert_eq!(a.hits() + b.hits(), 10);
    assert_eq!(http.get(&format!("http://{}/other", node.gateway)).await.status, 404);

    assert_eq!(http.get(&format!("http://{}/healthz", node.console)).await.json()["status"], "ok");
    let routes = http.get(&format!("http://{}/api/gateway/routes", node.console)).await.json();
    assert_eq!(routes[0]["match"]["path_prefix"], "/api");
    let services = http.get(&format!("http://{}/api/gateway/services", node.console)).await.json();
    assert_eq!(services[0]["endpoints"].as_array().unwrap().len(), 2);
    let circuits = http.get(&format!("http://{}/api/gateway/circuits", node.console)).await;
    assert_eq!(circuits.status, 200);
    let metrics = http.get(&format!("http://{}/metrics", node.console)).await;
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = metrics.text();
    assert!(
        text.contains("signalbox_gateway_requests_total{route=\"cli-api-0\",service=\"cli-api-0\",class=\"2xx\"} 10"),
        "{text}"
    );
    assert!(text.contains("process_cpu_seconds_total"));
    let missing = http.get(&format!("http://{}/api/nope", node.console)).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found");

    let (status, log) = node.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}\n{log}");
    assert!(log.contains("shutting down"));
}

fn config(upstream: &str, extra: &str) -> String {
    format!(
        "[node]\nwatch_interval = \"200ms\"\n[gateway.telemetry]\naccess_log = \"off\"\n[[gateway.services]]\nname = \"s\"\nendpoints = [\"{upstream}\"]\n[[gateway.routes]]\nservice = \"s\"\n{extra}[gateway.routes.match]\npath_prefix = \"/\"\n"
    )
}

#[tokio::test]
async fn config_reloads_on_file_change_and_sighup_and_rejects_bad_configs() {
    let a = serve(echo("a")).await;
    let b = serve(echo("b")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, config(&a.url(), "")).unwrap();
    let node = Node::start(&["-c", file.to_str().unwrap()], &[]).await;
    let http = Http::new();
    let url = format!("http://{}/", node.gateway);
    let server =
        |http: Http, url: String| async move { http.get(&url).await.json()["server"].as_str().unwrap().to_owned() };
    assert_eq!(server(http.clone(), url.clone()).await, "a");

    // A changed file is picked up by the watcher.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&file, config(&b.url(), "")).unwrap();
    eventually(Duration::from_secs(5), "reload to b", || {
        let f = server(http.clone(), url.clone());
        async move { (f.await == "b").then_some(()) }
    })
    .await;

    // A bad config is rejected; the running one stays.
    std::fs::write(&file, config(&a.url(), "retry = { attempts = 0 }\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server(http.clone(), url.clone()).await, "b");

    // SIGHUP applies the file now.
    std::fs::write(&file, config(&a.url(), "")).unwrap();
    node.signal("HUP");
    eventually(Duration::from_secs(5), "reload to a", || {
        let f = server(http.clone(), url.clone());
        async move { (f.await == "a").then_some(()) }
    })
    .await;
    let metrics = http.get(&format!("http://{}/metrics", node.console)).await.text();
    assert!(metrics.contains("signalbox_config_reloads_total{result=\"rejected\"} 1"), "{metrics}");
    let (_, log) = node.stop();
    assert!(log.contains("config rejected") && log.contains("gateway.routes[0].retry.attempts"), "{log}");
}

#[tokio::test]
async fn environment_overrides_the_file() {
    let a = serve(echo("a")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, config(&a.url(), "")).unwrap();
    let node = Node::start(
        &["-c", file.to_str().unwrap()],
        &[("SIGNALBOX_GATEWAY__DEFAULTS__TIMEOUTS__PER_TRY", "\"7s\""), ("SIGNALBOX_GATEWAY__SERVICE_NAME", "edge")],
    )
    .await;
    let routes = Http::new().get(&format!("http://{}/api/gateway/routes", node.console)).await.json();
    assert_eq!(routes[0]["timeouts"]["per_try_ms"], 7000);
}

#[tokio::test]
async fn a_bad_config_refuses_to_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "[gateway]\nlisten = \"not-an-address\"\n").unwrap();
    let out = std::process::Command::new(crate::BIN).args(["serve", "-c", file.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node.toml:2: gateway.listen"), "{err}");
    let port = free_port();
    let out = std::process::Command::new(crate::BIN)
        .args(["serve", "--route", "nonsense", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected PREFIX=URL"));
}
