//! Logs end to end on the real binary: every ingest protocol, with the real clients that
//! exist here (python-logging-loki, elasticsearch-py, the OpenTelemetry Python SDK's log
//! exporter) and the documented requests of the others, read back through the native search
//! and aggregation API, live tail, and Loki's query API as Grafana calls it; kill -9 keeps
//! every acknowledged line.

use crate::*;
use serde_json::{Value, json};
use signalbox_testkit::python;

fn get_json(r: &signalbox_testkit::client::Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn search(http: &Http, node: &Node, q: &str, extra: &str) -> Value {
    let window = if extra.contains("since=") { "" } else { "&since=24h" };
    let url = format!("http://{}/api/logs?query={}{window}{extra}", node.console, enc(q));
    get_json(&http.get(&url).await)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| l.to_string() + "\n").collect()
}

async fn post(http: &Http, url: &str, ct: &str, body: impl Into<bytes::Bytes>) -> signalbox_testkit::client::Resp {
    http.send(http::Method::POST, url, &[("content-type", ct)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_lines_are_searchable_aggregated_and_linked_to_traces() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let now = signalbox_core::time::unix_nanos();
    let mut lines = Vec::new();
    for i in 0..60u64 {
        lines.push(json!({
            "timestamp": signalbox_core::time::rfc3339_nanos(now - (60 - i) * 1_000_000_000),
            "severity": if i % 10 == 0 { "ERROR" } else { "INFO" },
            "body": if i % 10 == 0 { format!("payment {i} declined: card expired") } else { format!("payment {i} ok") },
            "service": if i % 2 == 0 { "payments" } else { "checkout" },
            "instance": format!("pod-{}", i % 3),
            "attributes": { "latency_ms": i * 10, "user_id": format!("u-{}", i % 4) },
            "trace_id": format!("{:032x}", 0xabc0 + i),
        }));
    }
    let r = post(&http, &format!("http://{}/api/logs", node.console), "application/x-ndjson", ndjson(&lines)).await;
    assert_eq!(get_json(&r)["accepted"], 60);
    let hits = search(&http, &node, "declined service:payments", "").await;
    let recs = hits["records"].as_array().unwrap();
    assert_eq!(recs.len(), 6, "{hits}");
    assert_eq!(recs[0]["body"], "payment 50 declined: card expired", "newest first");
    assert_eq!(recs[0]["severity"], "ERROR");
    assert_eq!(recs[0]["trace_id"], format!("{:032x}", 0xabc0 + 50));
    assert!(recs[0]["unix_nanos"].is_string(), "nanoseconds as strings");
    assert_eq!(recs[0]["highlights"][0], json!([11, 19]), "the matched word's byte range");
    // A trace id finds its lines (log → trace and back).
    let by_trace = search(&http, &node, &format!("trace_id:{:032x}", 0xabc0 + 7), "").await;
    assert_eq!(by_trace["records"].as_array().unwrap().len(), 1);
    // Context: the same instance's lines around a hit.
    let ctx = search(&http, &node, "\"payment 30 declined\"", "&context=2").await;
    let c = &ctx["records"][0]["context"];
    assert_eq!(c["before"].as_array().unwrap().len(), 2, "{ctx}");
    assert!(c["before"].as_array().unwrap().iter().all(|x| x["instance"] == "pod-0"));
    // Aggregations.
    let agg = |q: &str| {
        let url = format!("http://{}/api/logs/aggregate?query={}&since=1h&step=1m", node.console, enc(q));
        let http = http.clone();
        async move { get_json(&http.get(&url).await) }
    };
    let count = agg("level:error | count by service").await;
    assert_eq!(count["total"], 6);
    assert_eq!(count["series"][0]["key"], "payments");
    let top = agg("| top 2 user_id").await;
    assert_eq!(top["values"].as_array().unwrap().len(), 2);
    assert_eq!(top["values"][0]["count"], 15);
    let stats = agg("service:checkout | stats count, avg(latency_ms), p99(latency_ms) by service").await;
    assert_eq!(stats["rows"][0]["count"], 30);
    assert_eq!(stats["rows"][0]["avg(latency_ms)"], 300.0);
    // Bad queries say where.
    let bad = http.get(&format!("http://{}/api/logs?query={}", node.console, enc("(oops"))).await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("offset"), "{}", bad.text());
    // The CLI prints the same lines, oldest first.
    let out = std::process::Command::new(BIN)
        .args([
            "logs",
            "search",
            "declined service:payments",
            "--since",
            "1h",
            "--url",
            &format!("http://{}", node.console),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].contains("ERROR payments/pod-0  payment 0 declined: card expired  trace="), "{text}");
    // A bad line is refused by number; the good ones are kept.
    let r = post(
        &http,
        &format!("http://{}/api/logs", node.console),
        "application/x-ndjson",
        "{\"body\":\"ok line\"}\nnot json\n",
    )
    .await;
    let v = get_json(&r);
    assert_eq!((v["accepted"].as_u64(), v["rejected"][0]["line"].as_u64()), (Some(1), Some(2)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_push_and_the_query_api_as_grafana_uses_it() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let now = signalbox_core::time::unix_nanos();
    // Loki's documented JSON push, then python-logging-loki itself.
    let body = json!({ "streams": [{ "stream": { "job": "varlogs", "env": "prod" }, "values": (0..20u64).map(|i| json!([(now - (20 - i) * 1_000_000_000).to_string(), format!("level={} msg=\"req {i}\" status={}", if i % 5 == 0 { "error" } else { "info" }, if i % 5 == 0 { 500 } else { 200 })])).collect::<Vec<_>>() }] });
    let r =
        post(&http, &format!("http://{}/loki/api/v1/push", node.console), "application/json", body.to_string()).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let script = format!("{}/tests/python/loki_handler.py", env!("CARGO_MANIFEST_DIR"));
    let url = format!("http://{}/loki/api/v1/push", node.console);
    python::run("python-logging-loki", &script, &[&url, "5"], Duration::from_secs(60)).await;

    let loki = |path: &str, params: Vec<(&str, String)>| {
        let q: String = params.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
        let url = format!("http://{}/loki/api/v1/{path}?{q}", node.console);
        let http = http.clone();
        async move { http.get(&url).await }
    };
    let since = ("start", (now - 3_600_000_000_000).to_string());
    // Grafana's health check.
    let v = get_json(&loki("query", vec![("query", "vector(1)+vector(1)".into())]).await);
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
    // A log query with a parser and a label filter.
    let v = get_json(
        &loki(
            "query_range",
            vec![
                ("query", r#"{job="varlogs"} | logfmt | status >= 500"#.into()),
                since.clone(),
                ("limit", "100".into()),
            ],
        )
        .await,
    );
    assert_eq!(v["data"]["resultType"], "streams");
    let entries: usize =
        v["data"]["result"].as_array().unwrap().iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert_eq!(entries, 4, "{v}");
    assert_eq!(v["data"]["result"][0]["stream"]["level"], "error");
    // A metric query at steps.
    let v = get_json(
        &loki(
            "query_range",
            vec![
                ("query", r#"sum by (level) (count_over_time({job="varlogs"} | logfmt [1h]))"#.into()),
                since.clone(),
                ("step", "60".into()),
            ],
        )
        .await,
    );
    assert_eq!(v["data"]["resultType"], "matrix");
    let last = |lvl: &str| -> String {
        let s = v["data"]["result"].as_array().unwrap().iter().find(|s| s["metric"]["level"] == lvl).unwrap();
        s["values"].as_array().unwrap().last().unwrap()[1].as_str().unwrap().to_owned()
    };
    assert_eq!((last("error"), last("info")), ("4".into(), "16".into()));
    // python-logging-loki's records: its tags are stream labels.
    let v = get_json(
        &loki("query_range", vec![("query", r#"{application="billing"} |= "declined""#.into()), since.clone()]).await,
    );
    let entries: usize =
        v["data"]["result"].as_array().unwrap().iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert_eq!(entries, 5, "{v}");
    // The label browser.
    let v = get_json(&loki("labels", vec![since.clone()]).await);
    assert!(v["data"].as_array().unwrap().contains(&json!("job")), "{v}");
    let v = get_json(&loki("label/job/values", vec![since.clone()]).await);
    assert!(v["data"].as_array().unwrap().contains(&json!("varlogs")));
    let v = get_json(&loki("series", vec![("match[]", r#"{env="prod"}"#.into()), since.clone()]).await);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let v = get_json(&loki("index/stats", vec![("query", r#"{job="varlogs"}"#.into()), since.clone()]).await);
    assert_eq!(v["entries"], 20);
    // A parse error is a 400 naming the column, as Loki's.
    let r = loki("query_range", vec![("query", r#"{job="x"} |= unquoted"#.into())]).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("parse error"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_clients_and_otlp_logs_ship_into_the_store() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let es = format!("http://{}/elasticsearch", node.console);
    let script = format!("{}/tests/python/es_client.py", env!("CARGO_MANIFEST_DIR"));
    let base = (signalbox_core::time::unix_nanos() / 1_000_000_000 - 3600).to_string();
    let out = python::run("elasticsearch", &script, &[&es, "25", &base], Duration::from_secs(60)).await;
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["version"], "8.11.0");
    assert_eq!((v["ok"].as_u64(), v["errors"].as_u64()), (Some(25), Some(0)), "{v}");
    assert_eq!(
        (v["raw_errors"].as_bool(), v["raw_items"].as_u64()),
        (Some(true), Some(2)),
        "a delete is refused per item"
    );
    // What Fluent Bit's es output sends.
    let ts = signalbox_core::time::rfc3339_millis(signalbox_core::time::unix_nanos() - 60_000_000_000);
    let fb = format!(
        "{{\"create\":{{\"_index\":\"fluent-bit\"}}}}\n{{\"@timestamp\":\"{ts}\",\"log\":\"GET /health 200\",\"kubernetes\":{{\"pod_name\":\"web-1\"}}}}\n"
    );
    let r = post(&http, &format!("{es}/_bulk"), "application/x-ndjson", fb).await;
    assert_eq!(r.header("x-elastic-product"), Some("Elasticsearch"));
    assert_eq!(get_json(&r)["items"][0]["create"]["status"], 201);
    let hits = search(&http, &node, "order_id:o-7", "&since=2h").await;
    assert_eq!(hits["records"][0]["body"], "order 7 placed", "{hits}");
    assert_eq!(hits["records"][0]["service"], "shop-api");
    let hits = search(&http, &node, "kubernetes.pod_name:web-1", "&since=2h").await;
    assert_eq!(hits["records"].as_array().unwrap().len(), 1);

    // The OpenTelemetry Python SDK's OTLP/HTTP log exporter, inside a span.
    let script = format!("{}/tests/python/otel_logs.py", env!("CARGO_MANIFEST_DIR"));
    let out = python::run("", &script, &[&format!("http://{}", node.otlp_http), "8"], Duration::from_secs(60)).await;
    let trace_id = out.trim().to_owned();
    let hits = search(&http, &node, &format!("trace_id:{trace_id}"), "").await;
    let recs = hits["records"].as_array().unwrap();
    assert_eq!(recs.len(), 8, "{hits}");
    assert_eq!(recs[0]["service"], "inventory");
    assert_eq!(recs[0]["instance"], "inv-1");
    assert_eq!(recs[0]["severity"], "WARN");
    assert_eq!(recs[0]["resource"]["host.name"], "node-9");
    assert!(recs[0]["span_id"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_and_acknowledged_lines_survive_kill_9() {
    let node = Node::start(&[], &[("SIGNALBOX_LOGS__SEAL_AFTER", "1h")]).await;
    let http = Http::new();
    // Live tail over SSE with a filter.
    let mut tail = tokio::net::TcpStream::connect(&node.console).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tail.write_all(
        format!("GET /api/logs/tail?query={} HTTP/1.1\r\nhost: x\r\n\r\n", enc("service:tailme")).as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut acked = 0;
    for b in 0..10 {
        let lines: Vec<Value> = (0..50).map(|i| json!({ "body": format!("batch {b} line {i}"), "service": if b == 0 && i == 0 { "tailme" } else { "bulk" } })).collect();
        let r = post(&http, &format!("http://{}/api/logs", node.console), "application/x-ndjson", ndjson(&lines)).await;
        acked += get_json(&r)["accepted"].as_u64().unwrap();
    }
    let mut buf = vec![0u8; 65536];
    let mut got = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !got.contains("batch 0 line 0") && std::time::Instant::now() < deadline {
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), tail.read(&mut buf)).await {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(got.contains("event: record") && got.contains("batch 0 line 0"), "{got}");
    assert!(!got.contains("\"service\":\"bulk\""), "the tail filters: {got}");
    // Every acknowledged line is there after kill -9 (the head was never sealed).
    let dir = node.kill9();
    let node = Node::start_in(dir, &[], &[]).await;
    let hits = search(&http, &node, "batch", "&limit=10000").await;
    assert_eq!(hits["records"].as_array().unwrap().len() as u64, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_access_log_becomes_records_with_trace_ids() {
    let up = signalbox_testkit::upstream::serve(signalbox_testkit::upstream::echo("orders")).await;
    let route = format!("/orders={}", up.url());
    let node = Node::start(&["--route", &route], &[]).await;
    let http = Http::new();
    for i in 0..5 {
        let r = http.get(&format!("http://{}/orders/{i}", node.gateway)).await;
        assert_eq!(r.status, 200);
    }
    let r = http.get(&format!("http://{}/nowhere", node.gateway)).await;
    assert_eq!(r.status, 404);
    let hits = signalbox_testkit::eventually(Duration::from_secs(10), "access records", || {
        let http = http.clone();
        let url = format!("http://{}/api/logs?query={}&since=1h", node.console, enc("service:signalbox-gateway"));
        async move {
            let v = http.get(&url).await.json();
            (v["records"].as_array().map_or(0, |a| a.len()) >= 6).then_some(v)
        }
    })
    .await;
    let recs = hits["records"].as_array().unwrap();
    let ok =
        recs.iter().find(|r| r["body"].as_str().unwrap().starts_with("GET /orders/4 200")).expect("the request's line");
    assert_eq!(ok["attributes"]["upstream.service"], "cli-orders-0");
    assert_eq!(ok["severity"], "INFO");
    assert_eq!(ok["trace_id"].as_str().map(str::len), Some(32), "linked to the request's trace");
    let missing = recs.iter().find(|r| r["body"].as_str().unwrap().contains("/nowhere 404")).unwrap();
    assert_eq!(missing["severity"], "WARN");
}

/// `signalbox agent` itself, shipping a JSON log file and a Java stack trace to the node,
/// across a rotation by rename and an agent kill -9; every line arrives (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalbox_agent_ships_files_to_the_node_across_rotation_and_kill_9() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let logs_dir = dir.path().join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{data}"
poll_interval = "50ms"
scan_interval = "100ms"
progress_interval = "0s"
[output]
endpoint = "http://{node}"
[batch]
timeout = "100ms"
[[sources]]
include = ["{logs}/app.log*"]
service = "orders"
instance = "orders-1"
[sources.parser]
format = "json"
[sources.multiline]
preset = "java"
"#,
            data = dir.path().join("state").display(),
            node = node.console,
            logs = logs_dir.display()
        ),
    )
    .unwrap();
    let spawn = || {
        Command::new(BIN)
            .args(["agent", "-q", "-c", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let write = |file: &str, from: usize, to: usize| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(logs_dir.join(file)).unwrap();
        for i in from..to {
            writeln!(
                f,
                "{}",
                json!({ "level": "info", "msg": format!("order line {i}"), "order_id": format!("o-{i}") })
            )
            .unwrap();
        }
    };
    let mut agent = spawn();
    write("app.log", 0, 100);
    // A Java stack trace is one record.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(logs_dir.join("app.log")).unwrap();
        // Spring's shape: the log line, then the exception and its frames, which belong to it.
        f.write_all(b"ERROR reserve failed\njava.lang.IllegalStateException: stock gone\n\tat shop.Orders.reserve(Orders.java:42)\n\tat shop.Api.post(Api.java:7)\n").unwrap();
    }
    write("app.log", 100, 150);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Rotation by rename, then more lines in the new file; then kill -9 mid-stream.
    std::fs::rename(logs_dir.join("app.log"), logs_dir.join("app.log.1")).unwrap();
    write("app.log", 150, 250);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    write("app.log", 250, 300);
    let mut agent = spawn();
    let count = |q: &'static str| {
        let http = http.clone();
        let url = format!("http://{}/api/logs?query={}&since=1h&limit=10000", node.console, enc(q));
        async move { http.get(&url).await.json()["records"].as_array().map_or(0, |a| a.len()) }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    while std::time::Instant::now() < deadline {
        let url =
            format!("http://{}/api/logs?query={}&since=1h&limit=10000", node.console, enc("service:orders order"));
        let v = http.get(&url).await.json();
        seen = v["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["attributes"]["order_id"].as_str().map(str::to_owned))
            .collect();
        if seen.len() == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing: Vec<usize> = (0..300).filter(|i| !seen.contains(&format!("o-{i}"))).collect();
    assert!(missing.is_empty(), "lines not shipped: {missing:?}");
    assert_eq!(count("\"stock gone\"").await, 1, "the stack trace is one record");
    let trace =
        http.get(&format!("http://{}/api/logs?query={}&since=1h", node.console, enc("\"stock gone\""))).await.json();
    let body = trace["records"][0]["body"].as_str().unwrap();
    assert!(body.starts_with("ERROR reserve failed") && body.contains("Orders.java:42"), "{trace}");
    assert_eq!(trace["records"][0]["instance"], "orders-1");
    let _ = agent.kill();
    let _ = agent.wait();
    // A bad config names the file, line and key.
    std::fs::write(&cfg, "data_dir = \"x\"\n[output]\nkind = \"carrier-pigeon\"\n").unwrap();
    let out = Command::new(BIN).args(["agent", "-c", cfg.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("agent.toml:3: output.kind"), "{err}");
}

/// rsyslog (Debian's, with omelasticsearch) follows a file with imfile and ships it in bulk
/// to the node's Elasticsearch subset, the way an operator points it at Elasticsearch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_ships_a_file_through_the_elasticsearch_output() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{d}/work")
module(load="imfile")
module(load="omelasticsearch")
template(name="doc" type="list" option.jsonf="on") {{
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="service" name="syslogtag" format="jsonf")
}}
ruleset(name="ship") {{
  action(type="omelasticsearch" server="http://{node}/elasticsearch" searchIndex="rsyslog-app"
         template="doc" bulkmode="on" errorFile="{d}/es-errors.log" action.resumeRetryCount="-1")
}}
input(type="imfile" File="{d}/app.log" Tag="billing" ruleset="ship")
"#,
            node = node.console
        ),
    )
    .unwrap();
    let lines: String = (0..50).map(|i| format!("invoice {i} paid by card\n")).collect();
    std::fs::write(dir.path().join("app.log"), lines).unwrap();
    let mut rsyslog = Command::new("rsyslogd")
        .args(["-n", "-f", conf.to_str().unwrap(), "-i", &format!("{d}/rsyslog.pid")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsyslogd runs (scripts/test-deps.sh installs rsyslog and rsyslog-elasticsearch)");
    let url = format!("http://{}/api/logs?query={}&since=1h&limit=1000", node.console, enc("service:billing invoice"));
    let got = signalbox_testkit::eventually(Duration::from_secs(20), "rsyslog's lines", || {
        let http = http.clone();
        let url = url.clone();
        async move {
            let v = http.get(&url).await.json();
            let n = v["records"].as_array().map_or(0, |a| a.len());
            (n >= 50).then_some(v)
        }
    })
    .await;
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    let bodies: std::collections::BTreeSet<&str> =
        got["records"].as_array().unwrap().iter().filter_map(|r| r["body"].as_str()).collect();
    assert_eq!(bodies.len(), 50, "each line once: {got}");
    assert!(bodies.contains("invoice 7 paid by card"));
    assert_eq!(got["records"][0]["attributes"]["es.index"], "rsyslog-app");
    assert!(!dir.path().join("es-errors.log").exists(), "rsyslog recorded no bulk errors");
}

/// Loki's `tail` WebSocket, as Grafana's live view opens it: the recent entries first, then
/// each new matching entry as it is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_tail_over_websocket() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let push = |line: &str| {
        let body = json!({ "streams": [{ "stream": { "job": "tailed" }, "values": [[signalbox_core::time::unix_nanos().to_string(), line]] }] });
        let (http, url) = (http.clone(), format!("http://{}/loki/api/v1/push", node.console));
        async move { assert_eq!(post(&http, &url, "application/json", body.to_string()).await.status, 204) }
    };
    push("before the tail").await;
    let url = format!("ws://{}/loki/api/v1/tail?query={}&limit=10", node.console, enc(r#"{job="tailed"} != "skip""#));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket upgrade");
    let first = next_frame(&mut ws).await;
    assert_eq!(first["streams"][0]["values"][0][1], "before the tail", "{first}");
    push("skip this one").await;
    push("after the tail").await;
    let live = next_frame(&mut ws).await;
    assert_eq!(live["streams"][0]["stream"]["job"], "tailed");
    assert_eq!(live["streams"][0]["values"][0][1], "after the tail", "the filtered line never arrives: {live}");
    // Not a WebSocket request: a JSON 400.
    let r = http.get(&format!("http://{}/loki/api/v1/tail?query={}", node.console, enc(r#"{job="tailed"}"#))).await;
    assert_eq!(r.status, 400);
}

async fn next_frame<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame").unwrap().unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str::<Value>(&t).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_streams_its_matches_as_ndjson() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let now = signalbox_core::time::unix_nanos();
    let lines: Vec<Value> = (0..40u64)
        .map(|i| {
            json!({
                "timestamp": signalbox_core::time::rfc3339_nanos(now - (40 - i) * 1_000_000_000),
                "severity": "INFO",
                "body": if i % 2 == 0 { format!("order {i} shipped") } else { format!("order {i} packed") },
                "service": "orders",
            })
        })
        .collect();
    let r = post(&http, &format!("http://{}/api/logs", node.console), "application/x-ndjson", ndjson(&lines)).await;
    assert_eq!(get_json(&r)["accepted"], 40);
    let url = format!("http://{}/api/logs/stream?query={}&since=1h&limit=7", node.console, enc("shipped"));
    let r = http.get(&url).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let got: Vec<Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), 8, "seven records and the closing line: {got:?}");
    for rec in &got[..7] {
        assert!(rec["body"].as_str().unwrap().ends_with("shipped"), "{rec}");
        assert!(!rec["highlights"].as_array().unwrap().is_empty(), "{rec}");
    }
    assert_eq!(got[7]["done"], true, "{}", got[7]);
    assert_eq!(got[7]["sent"], 7);
    // Every match when the limit allows, and named errors for bad parameters.
    let all = http.get(&format!("http://{}/api/logs/stream?query={}&since=1h", node.console, enc("shipped"))).await;
    assert_eq!(all.text().lines().count(), 21);
    let bad = http.get(&format!("http://{}/api/logs/stream?query=x&limit=0", node.console)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "limit");
    let agg = http.get(&format!("http://{}/api/logs/stream?query={}", node.console, enc("x | count by service"))).await;
    assert_eq!(agg.status, 400);
}
