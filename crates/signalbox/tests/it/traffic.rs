//! Traffic splits through the binary: versions from a real Consul client's `Meta` and
//! `Tags`, policies in central configuration (validated, hot-reloaded), per-version metrics,
//! and blue-green `signalbox switch --to` / `--back` against a running node.

use crate::{BIN, Node};
use http::Method;
use serde_json::json;
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{echo, serve};
use signalbox_testkit::{eventually, python};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

async fn servers(http: &Http, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        if let Ok(r) = http.try_send(Method::GET, url, &[], bytes::Bytes::new()).await
            && r.status == 200
        {
            *seen.entry(r.json()["server"].as_str().unwrap_or("").to_owned()).or_default() += 1;
        }
    }
    seen
}

#[tokio::test]
async fn consul_versions_split_by_central_policy_and_switch_from_the_cli() {
    let (v1, v2) = (serve(echo("v1")).await, serve(echo("v2")).await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        "[gateway.telemetry]\naccess_log = \"off\"\n[[gateway.services]]\nname = \"shop\"\n[[gateway.routes]]\nname = \"shop\"\nservice = \"shop\"\n[gateway.routes.match]\npath_prefix = \"/\"\n",
    )
    .unwrap();
    let node = Node::start(&["-c", cfg.to_str().unwrap()], &[]).await;
    let (host, port) = node.consul.split_once(':').unwrap();
    let script = format!("{}/tests/python/consul_register_versions.py", env!("CARGO_MANIFEST_DIR"));
    let out = python::run(
        "py-consul",
        &script,
        &[host, port, "shop", &v1.addr.port().to_string(), &v2.addr.port().to_string()],
        Duration::from_secs(60),
    )
    .await;
    let reg: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(reg["instances"].as_array().unwrap().len(), 2, "{reg}");

    let http = Http::new();
    let base = format!("http://{}", node.console);
    let url = format!("http://{}/x", node.gateway);
    let status = http.get(&format!("{base}/api/v1/traffic/shop")).await.json();
    assert_eq!(status["versions"]["v1"]["healthy"], 1, "{status}");
    assert_eq!(status["versions"]["v2"]["healthy"], 1, "{status}");

    // A bad policy is refused at the config API, naming the field.
    let key = format!("{base}/api/config/gateway/traffic/shop");
    let put = |value: serde_json::Value| {
        let (http, key) = (http.clone(), key.clone());
        async move {
            http.send(
                Method::PUT,
                &key,
                &[("content-type", "application/json")],
                json!({ "value": value.to_string() }).to_string(),
            )
            .await
        }
    };
    let r = put(json!({"weights": {"v1": 70, "v2": 20}})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "value.weights", "{}", r.text());
    let r = put(json!({"weights": {"v1": 90, "v2": 10}, "mirror": {"version": "v2", "percent": 150}})).await;
    assert_eq!(r.json()["field"], "value.mirror.percent", "{}", r.text());

    // All to v2 by policy, then all to v1: the gateway follows without a restart.
    assert_eq!(put(json!({"weights": {"v1": 0, "v2": 100}})).await.status, 200);
    eventually(Duration::from_secs(5), "all to v2", || {
        let (http, url) = (http.clone(), url.clone());
        async move { (servers(&http, &url, 20).await.keys().collect::<Vec<_>>() == ["v2"]).then_some(()) }
    })
    .await;
    let cli = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("SIGNALBOX_URL", &base).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = cli(&["switch", "shop", "--to", "v3"]);
    assert!(!ok, "switching to a version with no instance is refused");
    assert!(err.contains("no healthy instance"), "{err}");
    let (ok, out, err) = cli(&["switch", "shop", "--to", "v1"]);
    assert!(ok, "{err}");
    assert!(out.contains("every request to v1"), "{out}");
    eventually(Duration::from_secs(5), "all to v1", || {
        let (http, url) = (http.clone(), url.clone());
        async move { (servers(&http, &url, 20).await.keys().collect::<Vec<_>>() == ["v1"]).then_some(()) }
    })
    .await;
    // Back: the policy before the switch (all to v2) returns.
    let (ok, out, err) = cli(&["switch", "shop", "--back"]);
    assert!(ok, "{err}");
    assert!(out.contains("back to"), "{out}");
    eventually(Duration::from_secs(5), "back to v2", || {
        let (http, url) = (http.clone(), url.clone());
        async move { (servers(&http, &url, 20).await.keys().collect::<Vec<_>>() == ["v2"]).then_some(()) }
    })
    .await;
    let history = http.get(&format!("{key}/history")).await.json();
    assert_eq!(history["versions"].as_array().unwrap().len(), 3, "{history}");

    // An even split over both Consul-registered versions, with per-version RED metrics.
    assert_eq!(put(json!({"weights": {"v1": 50, "v2": 50}})).await.status, 200);
    eventually(Duration::from_secs(5), "both versions serve", || {
        let (http, url) = (http.clone(), url.clone());
        async move { (servers(&http, &url, 40).await.len() == 2).then_some(()) }
    })
    .await;
    let metrics = http.get(&format!("{base}/metrics")).await.text();
    for v in ["v1", "v2"] {
        let series =
            format!(r#"signalbox_gateway_requests_total{{route="shop",service="shop",version="{v}",class="2xx"}}"#);
        assert!(metrics.contains(&series), "missing {series}");
    }
    let view = http.get(&format!("{base}/api/v1/traffic/shop")).await.json();
    assert_eq!(view["policy"]["weights"]["v1"], 50, "{view}");
    assert_eq!(view["gateway"]["endpoints"]["v2"]["available"], 1, "{view}");
}
