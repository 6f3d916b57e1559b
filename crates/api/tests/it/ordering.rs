//! The change index orders every change: writers of different kinds (KV, configuration,
//! registrations) racing each other never leave a watcher behind. A blocking query or an
//! SSE stream woken by a higher index must not read a state without a lower change and
//! then wait past it.

use crate::*;
use http::Method;
use serde_json::json;
use signalbox_testkit::eventually;
use tokio::sync::watch;

const ROUNDS: u64 = 25;
const KV_WATCHERS: usize = 8;
const HEALTH_WATCHERS: usize = 4;
const SSE_WATCHERS: usize = 2;

/// Long-polls `path` (a Consul blocking query) forever, publishing what `value` reads from
/// each answer.
fn watcher(n: &Node, path: &'static str, value: fn(&serde_json::Value) -> Option<u64>) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    let base = format!("http://{}{path}", n.consul_addr);
    tokio::spawn(async move {
        let http = signalbox_testkit::client::Http::new();
        let mut index = 0u64;
        loop {
            let sep = if base.contains('?') { '&' } else { '?' };
            let r = http.get(&format!("{base}{sep}index={index}&wait=60s")).await;
            index = r.header("x-consul-index").and_then(|v| v.parse().ok()).unwrap_or(index);
            if r.status == 200
                && let Some(v) = value(&r.json())
            {
                let _ = tx.send(v);
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// Follows an SSE stream, publishing the round that `value` finds in each event.
async fn sse_watcher(url: String, value: fn(&str, &serde_json::Value) -> Option<u64>) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    let mut events = signalbox_testkit::sse::connect(&url, &[]).await;
    tokio::spawn(async move {
        while let Some((event, data)) = events.recv().await {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else { continue };
            if let Some(r) = value(&event, &v)
                && tx.send(r).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// `/api/registry/events`: the race-1 instance's tag in a snapshot or change.
fn registry_event_round(_event: &str, v: &serde_json::Value) -> Option<u64> {
    let i = v["instances"].as_array()?.iter().find(|i| i["id"] == "race-1")?;
    i["tags"][0].as_str()?.strip_prefix('r')?.parse().ok()
}

/// `/api/config/events`: the value of race/default/k in a change.
fn config_event_round(event: &str, v: &serde_json::Value) -> Option<u64> {
    if event != "change" {
        return None;
    }
    v["changes"].as_array()?.iter().rev().find(|c| c["key"] == "k")?["value"].as_str()?.parse().ok()
}

fn kv_round(v: &serde_json::Value) -> Option<u64> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(v[0]["Value"].as_str()?).ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.strip_prefix('r')?.parse().ok()
}

fn health_round(v: &serde_json::Value) -> Option<u64> {
    v[0]["Service"]["Tags"][0].as_str()?.strip_prefix('r')?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_leave_a_watcher_behind() {
    let n = Arc::new(Node::start().await);
    let consul = |p: &str| format!("http://{}{p}", n.consul_addr);
    // The service exists before the watchers start.
    let reg = |round: u64| json!({"ID": "race-1", "Name": "race", "Port": 9000, "Tags": [format!("r{round}")]});
    let r = n.http.send(Method::PUT, &consul("/v1/agent/service/register"), &[], reg(0).to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = n.http.send(Method::PUT, &consul("/v1/kv/race/key"), &[], "r0").await;
    assert_eq!(r.text(), "true");

    let mut kv: Vec<_> = (0..KV_WATCHERS).map(|_| watcher(&n, "/v1/kv/race/key", kv_round)).collect();
    let mut health: Vec<_> =
        (0..HEALTH_WATCHERS).map(|_| watcher(&n, "/v1/health/service/race", health_round)).collect();
    let mut streams = Vec::new();
    for _ in 0..SSE_WATCHERS {
        streams.push(sse_watcher(n.url("/api/registry/events"), registry_event_round).await);
        streams.push(sse_watcher(n.url("/api/config/events?application=race"), config_event_round).await);
    }

    for round in 1..=ROUNDS {
        // One write of each kind at once, plus unrelated KV writes: their indexes are
        // allocated in one order and their commits finish in another.
        let urls = [
            consul("/v1/kv/race/key"),
            consul("/v1/kv/other/a"),
            consul("/v1/agent/service/register"),
            n.url("/api/config/race/default/k"),
        ];
        let bodies = [
            format!("r{round}"),
            format!("{round}"),
            reg(round).to_string(),
            json!({"value": format!("{round}")}).to_string(),
        ];
        let json_type = [("content-type", "application/json")];
        let writes = urls.iter().zip(bodies).enumerate().map(|(i, (url, body))| {
            let headers: &[(&str, &str)] = if i == 3 { &json_type } else { &[] };
            n.http.send(Method::PUT, url, headers, body)
        });
        for r in futures_util::future::join_all(writes).await {
            assert!(r.status == 200, "{} {}", r.status, r.text());
        }
        // No change follows: every watcher must reach this round on its own.
        for (what, list) in [("kv", &mut kv), ("health", &mut health), ("sse", &mut streams)] {
            for (i, rx) in list.iter_mut().enumerate() {
                eventually(Duration::from_secs(5), &format!("{what} watcher {i} to see round {round}"), || {
                    let seen = *rx.borrow();
                    async move { (seen == round).then_some(()) }
                })
                .await;
            }
        }
    }
}
