//! Storage nodes sharing the load: three `signalbox serve` processes on one real etcd,
//! telemetry written straight to different nodes (no ingest buffer: each receiver stores
//! locally), and queries on another node that must see all of it, exactly; a node killed
//! with SIGKILL makes answers partial and named; a node leaving moves only its partitions.

use crate::metrics::enc;
use crate::*;
use serde_json::{Value, json};
use signalbox_metrics::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use signalbox_testkit::etcd::Etcd;
use signalbox_testkit::eventually;
use std::collections::{BTreeMap, BTreeSet};

/// A node of the cluster: its config file lives in `_cfg`.
struct Member {
    node: Node,
    _cfg: tempfile::TempDir,
}

async fn member(etcd: &Etcd, name: &str) -> Member {
    member_with(etcd, name, "", "").await
}

/// A member whose config file also holds `extra` (TOML tables) and `cluster` (keys of
/// `[cluster]`).
async fn member_with(etcd: &Etcd, name: &str, extra: &str, cluster: &str) -> Member {
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("node.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[control]\nbackend = \"etcd\"\n[control.etcd]\nendpoints = [\"{}\"]\nnode_name = \"{name}\"\nlease_ttl = \"2s\"\n\
             [cluster]\npartitions = 16\nquery_timeout = \"2s\"\n{cluster}\n",
            etcd.endpoint
        ),
    )
    .unwrap();
    let node = Node::start(&["--config", path.to_str().unwrap()], &[]).await;
    Member { node, _cfg: cfg }
}

/// Series to write: labels and `(time ms, value)` samples.
type Batch<'a> = [(&'a [(&'a str, &'a str)], Vec<(i64, f64)>)];

async fn remote_write(http: &Http, node: &Node, series: &Batch<'_>) {
    remote_write_as(http, node, series, None).await
}

async fn remote_write_as(http: &Http, node: &Node, series: &Batch<'_>, auth: Option<&str>) {
    let timeseries = series
        .iter()
        .map(|(labels, samples)| TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: samples.iter().map(|(t, v)| Sample { value: *v, timestamp: *t }).collect(),
            exemplars: vec![],
        })
        .collect();
    let body = remote_write::encode(&WriteRequest { timeseries, metadata: vec![] });
    let mut headers = vec![("content-type", "application/x-protobuf"), ("content-encoding", "snappy")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/prometheus/api/v1/write", node.console),
            &headers,
            bytes::Bytes::from(body),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
}

async fn post_json(http: &Http, url: &str, body: Value) {
    let r = http.send(http::Method::POST, url, &[("content-type", "application/json")], body.to_string()).await;
    assert!(r.status == 202 || r.status == 204 || r.status == 200, "{url}: {} {}", r.status, r.text());
}

/// An instant PromQL query's response (status 200 checked).
async fn prom(http: &Http, node: &Node, q: &str, t_s: i64) -> signalbox_testkit::client::Resp {
    let r = http.get(&format!("http://{}/prometheus/api/v1/query?query={}&time={t_s}", node.console, enc(q))).await;
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    r
}

fn scalar_of(v: &Value) -> f64 {
    v["data"]["result"][0]["value"][1].as_str().unwrap_or_else(|| panic!("no value in {v}")).parse().unwrap()
}

async fn cluster_status(http: &Http, node: &Node) -> Value {
    let r = http.get(&format!("http://{}/api/cluster", node.console)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_any_node_see_every_storage_node_and_name_a_dead_one() {
    let etcd = Etcd::start().await;
    let a = member(&etcd, "a").await;
    let b = member(&etcd, "b").await;
    let c = member(&etcd, "c").await;
    let http = Http::new();
    // Every node knows the three storage nodes before anything is queried.
    for m in [&a, &b, &c] {
        eventually(Duration::from_secs(10), "three storage nodes", || async {
            let s = cluster_status(&http, &m.node).await;
            (s["storage_nodes"].as_array().map(Vec::len) == Some(3)).then_some(())
        })
        .await;
    }

    // Metrics: one series per node, and one series split over a (older half) and b.
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t0 = (now_s - 600) * 1000;
    let step = |from: i64, to: i64, per_s: f64| -> Vec<(i64, f64)> {
        (from..=to).map(|i| (t0 + i * 10_000, i as f64 * 10.0 * per_s)).collect()
    };
    remote_write(
        &http,
        &a.node,
        &[
            (&[("__name__", "req_total"), ("job", "api"), ("instance", "a")], step(0, 6, 1.0)),
            (&[("__name__", "split_total"), ("job", "x")], step(0, 3, 1.0)),
        ],
    )
    .await;
    remote_write(
        &http,
        &b.node,
        &[
            (&[("__name__", "req_total"), ("job", "api"), ("instance", "b")], step(0, 6, 2.0)),
            (&[("__name__", "split_total"), ("job", "x")], step(4, 6, 1.0)),
        ],
    )
    .await;

    // Traces: one trace whose root span sits on a and whose child sits on b.
    let trace_id = "5b8aa5a2d2c872e8321cf37308d69df2";
    let us = (t0 / 1000 + 60) * 1_000_000;
    let span = |id: &str, parent: Option<&str>, service: &str, name: &str| {
        let mut s = json!({ "traceId": trace_id, "id": id, "name": name, "timestamp": us, "duration": 5000,
            "kind": "SERVER", "localEndpoint": { "serviceName": service } });
        if let Some(p) = parent {
            s["parentId"] = json!(p);
        }
        s
    };
    post_json(
        &http,
        &format!("http://{}/zipkin/api/v2/spans", a.node.console),
        json!([span("1000000000000001", None, "front", "GET /")]),
    )
    .await;
    post_json(
        &http,
        &format!("http://{}/zipkin/api/v2/spans", b.node.console),
        json!([span("1000000000000002", Some("1000000000000001"), "back", "load")]),
    )
    .await;

    // Logs: one stream split over a (3 lines) and b (2 lines).
    let ns0 = (t0 as u64 + 60_000) * 1_000_000;
    let lines = |from: u64, to: u64| -> Vec<Value> {
        (from..to).map(|i| json!([(ns0 + i * 1_000_000_000).to_string(), format!("line {i}")])).collect()
    };
    post_json(
        &http,
        &format!("http://{}/loki/api/v1/push", a.node.console),
        json!({ "streams": [{ "stream": { "job": "split" }, "values": lines(0, 3) }] }),
    )
    .await;
    post_json(
        &http,
        &format!("http://{}/loki/api/v1/push", b.node.console),
        json!({ "streams": [{ "stream": { "job": "split" }, "values": lines(3, 5) }] }),
    )
    .await;

    let t_end = t0 / 1000 + 60;
    // Asked on c, which holds none of it; and on a, which holds part.
    for m in [&c, &a] {
        let n = &m.node;
        let r = prom(&http, n, "sum(req_total)", t_end).await;
        assert_eq!(r.header("x-signalbox-partial"), None);
        let v = r.json();
        assert!(v.get("warnings").is_none(), "{v}");
        assert_eq!(scalar_of(&v), 180.0, "{v}");
        assert_eq!(scalar_of(&prom(&http, n, "sum(rate(req_total[1m]))", t_end).await.json()), 3.0);
        assert_eq!(scalar_of(&prom(&http, n, "count_over_time(split_total[1m])", t_end).await.json()), 7.0);
        assert_eq!(scalar_of(&prom(&http, n, "max_over_time(split_total[1m])", t_end).await.json()), 60.0);
        let r = http
            .get(&format!(
                "http://{}/prometheus/api/v1/query_range?query={}&start={}&end={t_end}&step=10",
                n.console,
                enc("sum by (job) (req_total)"),
                t_end - 30
            ))
            .await
            .json();
        let values: Vec<&str> =
            r["data"]["result"][0]["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap()).collect();
        assert_eq!(values, ["90", "120", "150", "180"], "{r}");
        let labels = http
            .get(&format!("http://{}/prometheus/api/v1/label/instance/values?match[]=req_total", n.console))
            .await
            .json();
        assert_eq!(labels["data"], json!(["a", "b"]), "{labels}");
        let series =
            http.get(&format!("http://{}/prometheus/api/v1/series?match[]=split_total", n.console)).await.json();
        assert_eq!(series["data"], json!([{ "__name__": "split_total", "job": "x" }]), "{series}");

        let t = http.get(&format!("http://{}/api/traces/{trace_id}", n.console)).await;
        assert_eq!(t.status, 200, "{}", t.text());
        let t = t.json();
        let names: BTreeSet<&str> =
            t["spans"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, BTreeSet::from(["GET /", "load"]), "{t}");
        let j = http.get(&format!("http://{}/jaeger/api/traces/{trace_id}", n.console)).await.json();
        assert_eq!(j["data"][0]["spans"].as_array().map(Vec::len), Some(2), "{j}");
        assert_eq!(j["errors"], Value::Null);
        let services = http.get(&format!("http://{}/jaeger/api/services", n.console)).await.json();
        let services: BTreeSet<&str> = services["data"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
        assert!(services.contains("front") && services.contains("back"), "{services:?}");
        let found = http
            .get(&format!(
                "http://{}/api/traces?service=back&start={}&end={}",
                n.console,
                t0 * 1_000_000,
                (t0 + 600_000) * 1_000_000
            ))
            .await
            .json();
        assert_eq!(found["traces"][0]["trace_id"], trace_id, "{found}");
        assert_eq!(found["traces"][0]["span_count"], 2, "the summary counts both nodes' spans: {found}");

        let at = (ns0 + 10_000_000_000).to_string();
        let count = http
            .get(&format!(
                "http://{}/loki/api/v1/query?query={}&time={at}",
                n.console,
                enc("count_over_time({job=\"split\"}[1m])")
            ))
            .await
            .json();
        assert_eq!(count["data"]["result"][0]["value"][1], "5", "{count}");
        let logs = http
            .get(&format!(
                "http://{}/loki/api/v1/query_range?query={}&start={}&end={at}&direction=forward",
                n.console,
                enc("{job=\"split\"}"),
                ns0 - 1
            ))
            .await
            .json();
        let got: Vec<&str> =
            logs["data"]["result"][0]["values"].as_array().unwrap().iter().map(|e| e[1].as_str().unwrap()).collect();
        assert_eq!(got, ["line 0", "line 1", "line 2", "line 3", "line 4"], "{logs}");
        let native = http
            .get(&format!("http://{}/api/logs?query=line&start={}&end={at}&limit=4", n.console, ns0 - 1))
            .await
            .json();
        let got: Vec<&str> =
            native["records"].as_array().unwrap().iter().map(|r| r["body"].as_str().unwrap()).collect();
        assert_eq!(
            got,
            ["line 4", "line 3", "line 2", "line 1"],
            "newest first over both nodes, cut to the limit: {native}"
        );
    }

    // What a fan-out to two peers costs on loopback (printed for docs/deployment.md).
    let timed = std::time::Instant::now();
    for _ in 0..20 {
        prom(&http, &c.node, "sum(rate(req_total[1m]))", t_end).await;
    }
    eprintln!("sum(rate(...)) on c over 3 storage nodes: {:?} per query (mean of 20)", timed.elapsed() / 20);

    // b dies: answers on c leave b's data out and say so, naming b.
    let Member { node: b_node, _cfg: _b_cfg } = b;
    drop(b_node.kill9());
    let started = std::time::Instant::now();
    let r = prom(&http, &c.node, "sum(req_total)", t_end).await;
    assert!(started.elapsed() < Duration::from_secs(3), "a dead node costs at most the query timeout");
    assert_eq!(r.header("x-signalbox-partial"), Some("b"));
    let v = r.json();
    assert_eq!(scalar_of(&v), 60.0, "{v}");
    let w = v["warnings"][0].as_str().unwrap_or_else(|| panic!("no warning: {v}"));
    assert!(w.contains("storage node b") && w.contains("did not answer"), "{w}");
    let j = http.get(&format!("http://{}/jaeger/api/traces/{trace_id}", c.node.console)).await;
    assert_eq!(j.header("x-signalbox-partial"), Some("b"));
    let j = j.json();
    assert_eq!(j["data"][0]["spans"].as_array().map(Vec::len), Some(1), "{j}");
    assert!(j["errors"][0]["msg"].as_str().unwrap().contains("storage node b"), "{j}");
    let at = (ns0 + 10_000_000_000).to_string();
    let count = http
        .get(&format!(
            "http://{}/loki/api/v1/query?query={}&time={at}",
            c.node.console,
            enc("count_over_time({job=\"split\"}[1m])")
        ))
        .await;
    assert_eq!(count.header("x-signalbox-partial"), Some("b"));
    let count = count.json();
    assert_eq!(count["data"]["result"][0]["value"][1], "3", "{count}");
    assert!(count["warnings"][0].as_str().unwrap().contains("storage node b"), "{count}");
    let t = http.get(&format!("http://{}/api/traces/{trace_id}", c.node.console)).await;
    assert_eq!(t.header("x-signalbox-partial"), Some("b"));
    assert!(t.json()["warnings"][0].as_str().unwrap().contains("storage node b"));
}

/// The owner of each partition as `/api/cluster` reports it, once all 16 are owned by
/// exactly `members`, and each node's own set agrees.
async fn settled(http: &Http, nodes: &[&Node], members: &[&str]) -> BTreeMap<String, String> {
    let want: BTreeSet<&str> = members.iter().copied().collect();
    eventually(Duration::from_secs(15), "partitions settled on the live members", || async {
        let s = cluster_status(http, nodes[0]).await;
        let assignment: BTreeMap<String, String> = s["assignment"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        let owners: BTreeSet<&str> = assignment.values().map(String::as_str).collect();
        if assignment.len() != 16 || owners != want {
            return None;
        }
        for n in nodes {
            let st = cluster_status(http, n).await;
            let me = st["node"].as_str()?.to_owned();
            let owned: BTreeSet<String> =
                st["owned"].as_array()?.iter().map(|p| p.as_u64().unwrap().to_string()).collect();
            let recorded: BTreeSet<String> =
                assignment.iter().filter(|(_, o)| **o == me).map(|(p, _)| p.clone()).collect();
            if owned != recorded {
                return None;
            }
        }
        Some(assignment)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_moves_only_its_partitions() {
    let etcd = Etcd::start().await;
    let a = member(&etcd, "a").await;
    let b = member(&etcd, "b").await;
    let c = member(&etcd, "c").await;
    let http = Http::new();
    let before = settled(&http, &[&a.node, &b.node, &c.node], &["a", "b", "c"]).await;
    for n in ["a", "b", "c"] {
        assert!(before.values().any(|o| o == n), "{n} owns no partition: {before:?}");
    }

    // c is killed: its lease expires and only its partitions move.
    let Member { node: c_node, _cfg: _c_cfg } = c;
    drop(c_node.kill9());
    let after = settled(&http, &[&a.node, &b.node], &["a", "b"]).await;
    for (p, owner) in &before {
        if owner != "c" {
            assert_eq!(&after[p], owner, "partition {p} moved from {owner} although {owner} stayed");
        }
    }
    // c stays a storage node: its data is still asked for.
    let s = cluster_status(&http, &a.node).await;
    let nodes: BTreeSet<&str> =
        s["storage_nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, BTreeSet::from(["a", "b", "c"]));
    let c_rec = s["storage_nodes"].as_array().unwrap().iter().find(|n| n["node"] == "c").unwrap().clone();
    let mut c_had: Vec<u64> =
        before.iter().filter(|(_, o)| *o == "c").map(|(p, _)| p.parse::<u64>().unwrap()).collect();
    c_had.sort();
    assert_eq!(c_rec["partitions"], json!(c_had), "c's record keeps the partitions it last owned");

    // A new member takes its rendezvous share back from a and b.
    let d = member(&etcd, "d").await;
    let joined = settled(&http, &[&a.node, &b.node, &d.node], &["a", "b", "d"]).await;
    for (p, owner) in &joined {
        if owner != "d" {
            assert_eq!(&after[p], owner, "partition {p} moved between staying members when d joined");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_access_control_peers_present_the_cluster_token() {
    let etcd = Etcd::start().await;
    let hash = |s: &str| {
        let out = Command::new(BIN).args(["hash-key", s]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let extra = format!(
        "[access]\ntokens = [{{ id = \"reader\", role = \"read\", sha256 = \"{}\" }}, {{ id = \"shipper\", role = \"ingest\", sha256 = \"{}\" }}]\n",
        hash("reader-secret-0123456789"),
        hash("shipper-secret-0123456789")
    );
    let token = "token = \"cluster-secret-0123456789\"";
    let a = member_with(&etcd, "a", &extra, token).await;
    let b = member_with(&etcd, "b", &extra, token).await;
    let http = Http::new();
    let t0 = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 60) * 1000;
    remote_write_as(
        &http,
        &a.node,
        &[(&[("__name__", "guarded_total"), ("job", "g")], vec![(t0, 42.0)])],
        Some("Bearer shipper-secret-0123456789"),
    )
    .await;
    let reader = [("authorization", "Bearer reader-secret-0123456789")];
    let q = format!(
        "http://{}/prometheus/api/v1/query?query={}&time={}",
        b.node.console,
        enc("sum(guarded_total)"),
        t0 / 1000 + 1
    );
    let r = http.send(http::Method::GET, &q, &reader, bytes::Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-signalbox-partial"), None, "{}", r.text());
    assert_eq!(scalar_of(&r.json()), 42.0, "b reads a's sample through the cluster token");

    let internal = format!("http://{}/internal/cluster/v1/metrics/select", a.node.console);
    let body = json!({ "matchers": [["__name__", "=", "guarded_total"]], "mint": t0 - 1, "maxt": t0 + 1 }).to_string();
    let call = |auth: Option<&'static str>, body: String| {
        let (http, url) = (http.clone(), internal.clone());
        async move {
            let mut h = vec![("content-type", "application/json")];
            if let Some(a) = auth {
                h.push(("authorization", a));
            }
            http.send(http::Method::POST, &url, &h, body).await
        }
    };
    let none = call(None, body.clone()).await;
    assert_eq!(none.status, 401, "{}", none.text());
    assert!(none.json()["error"].as_str().is_some_and(|m| !m.is_empty()), "{}", none.text());
    assert_eq!(call(Some("Bearer wrong-token-0123456789"), body.clone()).await.status, 401);
    assert_eq!(call(Some("Bearer shipper-secret-0123456789"), body.clone()).await.status, 403);
    let ok = call(Some("Bearer cluster-secret-0123456789"), body.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let series = ok.json();
    assert_eq!(series["series"][0]["samples"][0][1], json!(42.0f64.to_bits()), "{series}");
    let bad = call(Some("Bearer cluster-secret-0123456789"), "{\"matchers\": 5}".into()).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    // The node answers 413 as soon as the body passes 1 MiB and closes the connection; the
    // client may still be writing the rest and then sees the connection end instead.
    let big = Http::new()
        .try_send(
            http::Method::POST,
            &internal,
            &[("content-type", "application/json"), ("authorization", "Bearer cluster-secret-0123456789")],
            format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20)),
        )
        .await;
    match big {
        Ok(r) => assert_eq!(r.status, 413, "an internal body over 1 MiB is refused: {}", r.text()),
        Err(e) => assert!(e.contains("IncompleteMessage") || e.contains("reset"), "{e}"),
    }
}
