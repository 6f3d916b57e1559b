//! Hosts and containers in the console's views on a real node: host, container and process
//! series pushed with remote_write under node_exporter's and cAdvisor's names, registry
//! instances that name their machines, and the service summary's `hosts` section and the
//! overview's and service map's `machine_trouble` marks read back over HTTP.

use crate::*;
use serde_json::Value;
use signalbox_metrics::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};

fn now_ms() -> i64 {
    (signalbox_core::time::unix_nanos() / 1_000_000) as i64
}

/// A series with `labels` and one sample per (offset ms before now, value).
fn series(name: &str, labels: &[(&str, &str)], points: &[(i64, f64)], now: i64) -> TimeSeries {
    let mut l = vec![Label { name: "__name__".into(), value: name.into() }];
    l.extend(labels.iter().map(|(k, v)| Label { name: (*k).into(), value: (*v).into() }));
    l.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels: l,
        samples: points.iter().map(|(ago, v)| Sample { value: *v, timestamp: now - ago }).collect(),
        exemplars: vec![],
    }
}

/// A counter growing by `per_second`, sampled every 10 s over the last 2 minutes (the
/// views are read with `since=1m`, so every rate sees a full range: exact figures).
fn counter(per_second: f64) -> Vec<(i64, f64)> {
    (0..=12).map(|i| (120_000 - i * 10_000, 1000.0 + per_second * (i * 10) as f64)).collect()
}

/// A machine's node_exporter series: 2 cores half busy, `mem_avail` of 8 GB available, a
/// root filesystem 40 % full, 1000 B/s received and 500 B/s sent.
fn machine(host: &str, mem_avail: f64, now: i64) -> Vec<TimeSeries> {
    let at = counter;
    let mut out = Vec::new();
    for cpu in ["0", "1"] {
        for mode in ["idle", "user"] {
            let l = [("instance", host), ("job", "node"), ("cpu", cpu), ("mode", mode)];
            out.push(series("node_cpu_seconds_total", &l, &at(0.5), now));
        }
    }
    let host_l = [("instance", host), ("job", "node")];
    let gauge = |v: f64| vec![(10_000, v), (0, v)];
    out.push(series("node_memory_MemTotal_bytes", &host_l, &gauge(8e9), now));
    out.push(series("node_memory_MemAvailable_bytes", &host_l, &gauge(mem_avail), now));
    let root = [("instance", host), ("job", "node"), ("mountpoint", "/"), ("device", "sda1"), ("fstype", "ext4")];
    out.push(series("node_filesystem_size_bytes", &root, &gauge(100e9), now));
    out.push(series("node_filesystem_avail_bytes", &root, &gauge(60e9), now));
    let eth = [("instance", host), ("job", "node"), ("device", "eth0")];
    out.push(series("node_network_receive_bytes_total", &eth, &at(1000.0), now));
    out.push(series("node_network_transmit_bytes_total", &eth, &at(500.0), now));
    out
}

async fn push(http: &Http, node: &Node, timeseries: Vec<TimeSeries>) {
    let body = remote_write::encode(&WriteRequest { timeseries, metadata: vec![] });
    let url = format!("http://{}/prometheus/api/v1/write", node.console);
    let r = http.send(http::Method::POST, &url, &[], bytes::Bytes::from(body)).await;
    assert_eq!(r.status, 204, "{}", r.text());
}

async fn register(http: &Http, node: &Node, service: &str, address: &str, meta: Value) -> String {
    let body = serde_json::json!({ "service": service, "address": address, "port": 8080, "meta": meta,
        "checks": [{ "ttl": "60s", "initial_status": "passing" }] });
    let r = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/registry/instances", node.console),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().map(str::to_string).unwrap_or_default()
}

fn close(v: &Value, want: f64, tol: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() <= tol)
}

fn named<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array().and_then(|l| l.iter().find(|x| x[key] == name)).unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_page_overview_and_map_show_machines_and_mark_one_in_trouble() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let api = |p: &str| format!("http://{}{p}", node.console);

    // Before any host series: the section says nothing reports.
    register(&http, &node, "shop", "10.0.0.1", serde_json::json!({ "host": "web-1" })).await;
    let empty = http.get(&api("/api/services/shop/summary?since=1m")).await.json();
    assert_eq!(empty["hosts"]["reporting"], false, "{}", empty["hosts"]);

    // web-1's memory is 95 % used; web-2 (scraped as web-2:9100) is healthy and runs the
    // shop's container, with a 512 MB limit, and the cart's process.
    let now = now_ms();
    let mut all = machine("web-1", 0.4e9, now);
    all.extend(machine("web-2:9100", 6e9, now));
    let c =
        [("service", "shop"), ("instance", "web-2"), ("name", "shop.service"), ("id", "/system.slice/shop.service")];
    let ctr = counter;
    let cpu_total: Vec<(&str, &str)> = c.iter().copied().chain([("cpu", "total")]).collect();
    all.push(series("container_cpu_usage_seconds_total", &cpu_total, &ctr(0.25), now));
    all.push(series("container_memory_working_set_bytes", &c, &[(0, 256e6)], now));
    all.push(series("container_spec_memory_limit_bytes", &c, &[(0, 512e6)], now));
    all.push(series("container_cpu_cfs_periods_total", &c, &ctr(10.0), now));
    all.push(series("container_cpu_cfs_throttled_periods_total", &c, &ctr(1.0), now));
    let p = [("service", "cart"), ("instance", "web-2")];
    all.push(series("process_resident_memory_bytes", &p, &[(0, 50e6)], now));
    all.push(series("process_cpu_seconds_total", &p, &ctr(0.1), now));
    push(&http, &node, all).await;
    register(&http, &node, "shop", "10.0.0.2", serde_json::json!({ "node": "web-2" })).await;
    register(&http, &node, "cart", "web-2", serde_json::json!({})).await;

    // The summary: one entry per instance, each with its machine's figures.
    let sum = http.get(&api("/api/services/shop/summary?since=1m")).await.json();
    let hosts = &sum["hosts"];
    assert_eq!(hosts["reporting"], true, "{hosts}");
    let list = hosts["instances"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{hosts}");
    let w1 = named(&hosts["instances"], "host", "web-1");
    assert_eq!(w1["matched_by"], "meta.host");
    let m1 = &w1["machine"];
    assert!(close(&m1["memory_ratio"], 0.95, 1e-9), "{m1}");
    assert!(close(&m1["memory_total_bytes"], 8e9, 1.0), "{m1}");
    assert!(close(&m1["cpu_cores"], 2.0, 0.0), "{m1}");
    assert!(close(&m1["cpu_ratio"], 0.5, 1e-6), "{m1}");
    assert!(close(&m1["disk_free_ratio"], 0.6, 1e-9), "{m1}");
    assert!(close(&m1["network_rx_bps"], 1000.0, 1e-6), "{m1}");
    assert!(close(&m1["network_tx_bps"], 500.0, 1e-6), "{m1}");
    let reasons: Vec<&str> = w1["trouble"].as_array().unwrap().iter().filter_map(|t| t["reason"].as_str()).collect();
    assert_eq!(reasons, vec!["memory 95% used"], "{w1}");
    assert!(w1["queries"]["machine"]["memory_ratio"].as_str().unwrap().contains("instance=\"web-1\""), "{w1}");

    let w2 = named(&hosts["instances"], "host", "web-2");
    assert_eq!(w2["matched_by"], "meta.node");
    assert_eq!(w2["machine"]["series_instance"], "web-2:9100", "{w2}");
    assert!(close(&w2["machine"]["memory_ratio"], 0.25, 1e-9), "{w2}");
    assert_eq!(w2["trouble"], serde_json::json!([]), "{w2}");
    let ctr = &w2["containers"][0];
    assert_eq!(ctr["name"], "shop.service", "{w2}");
    assert!(close(&ctr["memory_ratio"], 0.5, 1e-9), "{ctr}");
    assert!(close(&ctr["memory_limit_bytes"], 512e6, 1.0), "{ctr}");
    assert!(close(&ctr["cpu_cores"], 0.25, 1e-6), "{ctr}");
    assert!(close(&ctr["throttled_ratio"], 0.1, 1e-6), "{ctr}");

    // The cart runs on web-2 by its address; its process is there; nothing is wrong.
    let cart = http.get(&api("/api/services/cart/summary?since=1m")).await.json();
    let c2 = named(&cart["hosts"]["instances"], "host", "web-2");
    assert_eq!(c2["matched_by"], "address");
    assert!(close(&c2["processes"][0]["resident_bytes"], 50e6, 1.0), "{c2}");
    assert!(close(&c2["processes"][0]["cpu_cores"], 0.1, 1e-6), "{c2}");

    // The overview and the map mark the shop (at least warn), not the cart.
    let ov = http.get(&api("/api/overview?since=1m")).await.json();
    let shop = named(&ov["services"], "name", "shop");
    assert_eq!(shop["machine_trouble"][0]["host"], "web-1", "{shop}");
    assert_eq!(shop["machine_trouble"][0]["reasons"][0], "memory 95% used", "{shop}");
    assert_eq!(shop["machine_trouble"].as_array().unwrap().len(), 1, "{shop}");
    assert_eq!(shop["status"], "warn", "{shop}");
    assert!(shop["reasons"].as_array().unwrap().iter().any(|r| r == "machine web-1: memory 95% used"), "{shop}");
    let cart_row = named(&ov["services"], "name", "cart");
    assert_eq!(cart_row["machine_trouble"], serde_json::json!([]), "{cart_row}");
    assert_eq!(cart_row["status"], "ok", "{cart_row}");

    let map = http.get(&api("/api/service-map?since=1m")).await.json();
    let shop_node = named(&map["nodes"], "id", "shop");
    assert_eq!(shop_node["machine_trouble"][0]["host"], "web-1", "{shop_node}");
    assert_eq!(shop_node["status"], "warn", "{shop_node}");
    let cart_node = named(&map["nodes"], "id", "cart");
    assert_eq!(cart_node["machine_trouble"], serde_json::json!([]), "{cart_node}");
}
