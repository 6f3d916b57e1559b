//! The control plane through the binary: durability across `kill -9`, secure defaults, the
//! standalone gateway following a remote control plane, gateway routes in central
//! configuration, and the `config`/`services` commands.

use crate::{BIN, Node, StandaloneGateway, free_port};
use http::Method;
use serde_json::json;
use signalbox_testkit::client::Http;
use signalbox_testkit::eventually;
use signalbox_testkit::upstream::{echo, serve};
use std::process::Command;
use std::time::Duration;

async fn call(http: &Http, method: Method, url: &str, body: serde_json::Value) -> signalbox_testkit::client::Resp {
    http.send(method, url, &[("content-type", "application/json")], body.to_string()).await
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let console = node.console.clone();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (http, console, progress) = (http.clone(), console.clone(), progress.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000u32 {
                let kind = i % 3;
                let r = match kind {
                    0 => http.try_send(Method::PUT, &format!("http://{console}/api/config/app/default/k{i}"), &[("content-type", "application/json")], json!({"value": format!("v{i}")}).to_string()).await,
                    1 => http.try_send(Method::POST, &format!("http://{console}/api/registry/instances"), &[("content-type", "application/json")], json!({"service": "svc", "id": format!("i{i}"), "address": "127.0.0.1", "port": 1000 + (i % 60000)}).to_string()).await,
                    _ => http.try_send(Method::PUT, &format!("http://{console}/consul/v1/kv/k{i}"), &[], format!("v{i}")).await,
                };
                match r {
                    Ok(r) if r.status < 300 => {
                        acked.push(i);
                        progress.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            acked
        })
    };
    // Kill once the writer is well under way (fsyncs are slow on a loaded machine, so wait
    // for progress rather than for a fixed time).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 30 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dir = node.kill9(); // SIGKILL, mid-stream
    let acked = writer.await.unwrap();
    assert!(acked.len() > 10, "the writer got going: {}", acked.len());

    // Restart on the same data directory.
    let node = Node::start_in(dir, &[], &[]).await;
    let base = format!("http://{}", node.console);
    let mut missing = Vec::new();
    for i in &acked {
        let ok = match i % 3 {
            0 => http.get(&format!("{base}/api/config/app/default/k{i}")).await.json()["value"] == format!("v{i}"),
            1 => http.get(&format!("{base}/api/registry/instances/i{i}")).await.status == 200,
            _ => http.get(&format!("{base}/consul/v1/kv/k{i}?raw")).await.text() == format!("v{i}"),
        };
        if !ok {
            missing.push(*i);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback_without_access_control() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--console-listen",
            &format!("0.0.0.0:{port}"),
            "--consul-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0") && err.contains("--insecure") && err.contains("hash-key"),
        "{err}"
    );
    // With a token it starts (and then demands it).
    let cfg = dir.path().join("node.toml");
    let sha = String::from_utf8(Command::new(BIN).args(["hash-key", "s3cret"]).output().unwrap().stdout).unwrap();
    std::fs::write(
        &cfg,
        format!("[access]\ntokens = [{{ id = \"ops\", role = \"admin\", sha256 = \"{}\" }}]\n", sha.trim()),
    )
    .unwrap();
    let node = Node::start(&["-c", cfg.to_str().unwrap()], &[]).await;
    let http = Http::new();
    assert_eq!(http.get(&format!("http://{}/api/registry/services", node.console)).await.status, 401);
    let ok = http
        .send(
            Method::GET,
            &format!("http://{}/api/registry/services", node.console),
            &[("authorization", "Bearer s3cret")],
            "",
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn a_standalone_gateway_follows_the_control_plane_and_survives_losing_it() {
    let up1 = serve(echo("one")).await;
    let up2 = serve(echo("two")).await;
    let cp = Node::start(&[], &[]).await;
    let http = Http::new();
    let reg_url = format!("http://{}/api/registry/instances", cp.console);
    let register = |id: &str, port: u16| {
        let (http, url) = (http.clone(), reg_url.clone());
        let body = json!({"service": "shop", "id": id, "address": "127.0.0.1", "port": port});
        async move { call(&http, Method::POST, &url, body).await }
    };
    assert_eq!(register("one", up1.addr.port()).await.status, 201);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, "[gateway.telemetry]\naccess_log = \"off\"\n[[gateway.services]]\nname = \"shop\"\nbalancer = { kind = \"round_robin\" }\n[[gateway.routes]]\nservice = \"shop\"\n[gateway.routes.match]\npath_prefix = \"/\"\n").unwrap();
    let gw = StandaloneGateway::start(
        &["--control-plane".into(), format!("http://{}", cp.console), "-c".into(), cfg.to_str().unwrap().into()],
        &[],
    )
    .await;
    let url = format!("http://{}/x", gw.gateway);
    let servers = |http: Http, url: String| async move {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            if let Ok(r) = http.try_send(Method::GET, &url, &[], bytes::Bytes::new()).await
                && r.status == 200
            {
                seen.insert(r.json()["server"].as_str().unwrap_or("").to_owned());
            }
        }
        seen
    };
    eventually(Duration::from_secs(15), "gateway routes to one", || {
        let f = servers(http.clone(), url.clone());
        async move { f.await.contains("one").then_some(()) }
    })
    .await;
    assert_eq!(register("two", up2.addr.port()).await.status, 201);
    eventually(Duration::from_secs(5), "gateway learns two", || {
        let f = servers(http.clone(), url.clone());
        async move { (f.await.len() == 2).then_some(()) }
    })
    .await;

    // The control plane dies: the gateway keeps its last known endpoints.
    drop(cp);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = servers(http.clone(), url.clone()).await;
    assert_eq!(seen.len(), 2, "still routing to both after losing the control plane: {seen:?}");
    let metrics = http.get(&format!("http://{}/metrics", gw.admin)).await;
    assert_eq!(metrics.status, 200);
    let view = http.get(&format!("http://{}/api/gateway/services", gw.admin)).await.json();
    assert_eq!(view[0]["endpoints"].as_array().unwrap().len(), 2, "{view}");
}

#[tokio::test]
async fn gateway_routes_in_central_configuration_are_validated_and_hot_reloaded() {
    let up = serve(echo("central")).await;
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let key = format!("http://{}/api/config/signalbox/default/gateway.toml", node.console);
    assert_eq!(http.get(&format!("http://{}/routed", node.gateway)).await.status, 404);
    let doc = format!(
        "[[services]]\nname = \"central\"\nendpoints = [\"{}\"]\n\n[[routes]]\nservice = \"central\"\n[routes.match]\npath_prefix = \"/routed\"\n",
        up.addr
    );
    let r = call(&http, Method::PUT, &key, json!({"value": doc, "comment": "add a route"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(5), "route live", || {
        let (http, url) = (http.clone(), format!("http://{}/routed", node.gateway));
        async move { (http.get(&url).await.status == 200).then_some(()) }
    })
    .await;
    let bad = call(&http, Method::PUT, &key, json!({"value": "[[routes]]\nservice = \"ghost\"\n"})).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["field"], "value");
    assert!(
        bad.json()["error"].as_str().unwrap().contains("routes[0].service: unknown service `ghost`"),
        "{}",
        bad.text()
    );
    let broken = call(&http, Method::PUT, &key, json!({"value": "[[routes"})).await;
    assert_eq!(broken.status, 400);
    // Still routing with the last good config.
    assert_eq!(http.get(&format!("http://{}/routed", node.gateway)).await.status, 200);
    let del = http.send(Method::DELETE, &key, &[], "").await;
    assert_eq!(del.status, 200);
    eventually(Duration::from_secs(5), "route removed", || {
        let (http, url) = (http.clone(), format!("http://{}/routed", node.gateway));
        async move { (http.get(&url).await.status == 404).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn config_and_services_commands() {
    let node = Node::start(&[], &[]).await;
    let url = format!("http://{}", node.console);
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("SIGNALBOX_URL", &url).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["config", "set", "orders", "prod", "db.url", "postgres://a", "-m", "first"]);
    assert!(ok, "{err}");
    assert!(out.contains("version 1"), "{out}");
    run(&["config", "set", "orders", "prod", "db.url", "postgres://b", "--expect", "1"]);
    let (ok, _, err) = run(&["config", "set", "orders", "prod", "db.url", "postgres://c", "--expect", "1"]);
    assert!(!ok && err.contains("409"), "{err}");
    let (_, out, err) = run(&["config", "get", "orders", "prod", "db.url"]);
    assert_eq!(out.trim(), "postgres://b");
    // `# version 2 by anonymous at 2026-12-02T01:23:45.678Z`: RFC 3339 UTC, not epoch ms.
    let at = err.trim().rsplit(" at ").next().unwrap_or("");
    let b = at.as_bytes();
    assert!(
        b.len() == 24 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && at.ends_with('Z') && at.starts_with("20"),
        "{err}"
    );
    let (_, out, _) = run(&["config", "history", "orders", "prod", "db.url"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("first"));
    let (_, out, _) = run(&["config", "diff", "orders", "prod", "db.url", "1", "2"]);
    assert!(out.contains("-postgres://a") && out.contains("+postgres://b"), "{out}");
    let (_, out, _) = run(&["config", "rollback", "orders", "prod", "db.url", "1"]);
    assert!(out.contains("version 3"), "{out}");
    let (_, out, _) = run(&["config", "get", "orders", "prod", "db.url", "--version", "3"]);
    assert_eq!(out.trim(), "postgres://a");

    let http = Http::new();
    call(
        &http,
        Method::POST,
        &format!("{url}/api/registry/instances"),
        json!({"service": "orders", "id": "o1", "address": "127.0.0.1", "port": 9, "checks": [{"ttl": "1m"}]}),
    )
    .await;
    call(
        &http,
        Method::POST,
        &format!("{url}/api/registry/instances"),
        json!({"service": "a-service-name-longer-than-thirty-two", "address": "127.0.0.1", "port": 10}),
    )
    .await;
    let (ok, out, _) = run(&["services"]);
    assert!(ok);
    // Every column ends (numbers) or starts (names) where its header does.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header = lines[0];
    assert!(header.starts_with("SERVICE "), "{out}");
    for h in ["INSTANCES", "PASSING", "WARNING", "CRITICAL"] {
        let end = header.find(h).unwrap() + h.len();
        for l in &lines[1..] {
            assert!(l.len() >= end && l.as_bytes()[end - 1].is_ascii_digit(), "{h} column:\n{out}");
            assert!(l.len() == end || l.as_bytes()[end] == b' ', "{h} column:\n{out}");
        }
    }
    let row =
        |name: &str| lines.iter().find(|l| l.starts_with(name)).unwrap().split_whitespace().skip(1).collect::<Vec<_>>();
    assert_eq!(row("orders "), ["1", "0", "0", "1"], "{out}");
    assert_eq!(row("a-service-name-longer-than-thirty-two"), ["1", "1", "0", "0"], "{out}");
    let (_, out, _) = run(&["services", "orders"]);
    assert!(out.contains("o1") && out.contains("critical") && out.contains("TTL check=critical"), "{out}");
    let (ok, _, err) = run(&["services", "--url", "http://127.0.0.1:1"]);
    assert!(!ok && err.contains("cannot reach the node"), "{err}");
}
