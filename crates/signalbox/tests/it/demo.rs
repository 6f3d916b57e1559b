//! `signalbox demo` end to end: the real binary on a fast, seeded schedule. While it runs,
//! every signal is checked over the node's real APIs; then SIGINT must stop it cleanly,
//! with no port, process or temporary directory left behind.

use crate::BIN;
use serde_json::Value;
use signalbox_testkit::client::Http;
use signalbox_testkit::eventually;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The demo's stdout, line by line, collected by a thread.
struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn follow(child: &mut Child) -> Output {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Output(lines)
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// The rest of the first line starting with `prefix`.
    fn value(&self, prefix: &str) -> Option<String> {
        self.0.lock().unwrap().iter().find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_owned()))
    }
}

/// Kills the demo if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn json(http: &Http, url: &str) -> Option<Value> {
    let r = http.try_send(http::Method::GET, url, &[], bytes::Bytes::new()).await.ok()?;
    (r.status == 200).then(|| r.json())
}

/// Every `host:port` the demo printed (console, gateway, OTLP, each service).
fn printed_ports(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .split("http://127.0.0.1:")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// Ports in the LISTEN state on loopback or any address (IPv4 and IPv6).
fn listening_ports() -> Vec<u16> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN.
            if cols.len() > 3
                && cols[3] == "0A"
                && let Some(port) = cols[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                out.push(port);
            }
        }
    }
    out
}

/// Processes whose parent is `pid`, or whose command line mentions `needle`.
fn processes_of(pid: u32, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let child = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid);
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let mentions = String::from_utf8_lossy(&cmdline).contains(needle);
        if child || mentions {
            out.push(stat);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_every_signal_and_leaves_nothing_behind_after_ctrl_c() {
    let mut child = Command::new(BIN)
        .args(["demo", "--duration", "150s", "--speed", "20", "--seed", "7", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start signalbox demo");
    let out = Output::follow(&mut child);
    let pid = child.id();
    let demo = Running(child);
    let http = Http::new();

    let console = eventually(Duration::from_secs(90), "the demo prints its console URL", || {
        let v = out.value("console:");
        async move { v }
    })
    .await;
    let gateway = eventually(Duration::from_secs(60), "the demo prints its services", || {
        let v = out.value("service inventory-db-1:").and(out.value("gateway:"));
        async move { v }
    })
    .await;
    let data_dir = out.value("data:").expect("the data line").split(" (").next().unwrap().to_owned();
    assert!(std::path::Path::new(&data_dir).is_dir(), "{data_dir}\n{}", out.text());

    // Every service registered, with an HTTP check that passes and the scrape meta.
    let services = ["web-frontend", "orders", "payments", "inventory", "inventory-db"];
    for s in services {
        let url = format!("{console}/api/registry/services/{s}");
        let list = eventually(Duration::from_secs(30), &format!("{s} healthy in the registry"), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let v = json(&http, &url).await?;
                let list = v.as_array().cloned().or_else(|| v["instances"].as_array().cloned())?;
                list.iter().any(|i| i["status"] == "passing").then_some(list)
            }
        })
        .await;
        let one = &list[0];
        assert_eq!(one["meta"]["metrics_path"], "/metrics", "{one}");
        assert!(one["meta"]["version"].as_str().is_some_and(|v| !v.is_empty()), "{one}");
    }

    // The gateway routes to the services.
    let home = http.get(&format!("{gateway}/web-frontend/")).await;
    assert!(home.status == 200 || home.status == 500, "{} {}", home.status, home.text());
    assert_eq!(home.json()["service"], "web-frontend", "{}", home.text());

    // Traces: the gateway's spans and the services' OTLP spans in the same traces.
    let trace = eventually(Duration::from_secs(30), "a trace with gateway and SDK spans", || {
        let (http, console) = (http.clone(), console.clone());
        async move {
            let found = json(&http, &format!("{console}/api/traces?service=payments&lookback=10m&limit=20")).await?;
            for t in found["traces"].as_array()? {
                let id = t["trace_id"].as_str()?;
                let trace = json(&http, &format!("{console}/api/traces/{id}")).await?;
                let spans = trace["spans"].as_array()?;
                let has = |svc: &str| spans.iter().any(|s| s["service"] == svc);
                if has("signalbox-gateway") && has("payments") && has("orders") && has("web-frontend") {
                    return Some(trace);
                }
            }
            None
        }
    })
    .await;
    let sdk_span = trace["spans"].as_array().unwrap().iter().find(|s| s["service"] == "payments").unwrap();
    assert_eq!(sdk_span["kind"], "server", "{sdk_span}");
    assert!(sdk_span["parent_span_id"].as_str().is_some(), "the payments span continues the gateway's: {sdk_span}");

    // Logs shipped by the agent, searchable, with the trace and span ids of their request.
    let logs = eventually(Duration::from_secs(30), "the agent's log lines in the store", || {
        let (http, console) = (http.clone(), console.clone());
        async move {
            let v = json(&http, &format!("{console}/api/logs?query=service:orders&since=10m&limit=20")).await?;
            let records = v["records"].as_array()?.clone();
            records.iter().any(|r| r["trace_id"].as_str().is_some_and(|t| t.len() == 32)).then_some(records)
        }
    })
    .await;
    assert!(logs.iter().any(|r| r["instance"].as_str().is_some_and(|i| i.starts_with("orders-"))), "{logs:?}");

    // The node scraped the services' own /metrics (job `services`).
    let q = format!("{console}/prometheus/api/v1/query?query=demo_http_requests_total%7Bjob%3D%22services%22%7D");
    let scraped = eventually(Duration::from_secs(30), "scraped demo_http_requests_total", || {
        let (http, q) = (http.clone(), q.clone());
        async move {
            let v = json(&http, &q).await?;
            let r = v["data"]["result"].as_array()?.clone();
            (r.iter().any(|s| s["metric"]["service"] == "payments")).then_some(r)
        }
    })
    .await;
    assert!(scraped.iter().all(|s| s["metric"]["instance"].as_str().is_some()), "{scraped:?}");

    // A default alert rule over the services reaches firing (the faults at 20x take seconds).
    let names = ["ServiceHighErrorRate", "ServiceHighLatency", "CircuitOpen", "InstanceDown"];
    let firing = eventually(Duration::from_secs(60), "a service alert firing", || {
        let (http, console) = (http.clone(), console.clone());
        async move {
            let v = json(&http, &format!("{console}/prometheus/api/v1/alerts")).await?;
            v["data"]["alerts"].as_array()?.iter().find_map(|a| {
                let name = a["labels"]["alertname"].as_str()?;
                (a["state"] == "firing" && names.contains(&name)).then(|| a.clone())
            })
        }
    })
    .await;
    let service = firing["labels"]["service"].as_str().unwrap_or_default();
    assert!(services.contains(&service), "{firing}");
    assert!(firing["annotations"]["summary"].as_str().is_some_and(|s| s.contains(service)), "{firing}");

    // The bad config change and its rollback are versions of the key.
    let history_url = format!("{console}/api/config/payments/default/failure_rate/history");
    eventually(Duration::from_secs(60), "the bad change rolled back", || {
        let (http, url) = (http.clone(), history_url.clone());
        async move {
            let v = json(&http, &url).await?;
            let versions = v.as_array().cloned().or_else(|| v["versions"].as_array().cloned())?;
            let values: Vec<&str> = versions.iter().filter_map(|x| x["value"].as_str()).collect();
            (values.contains(&"0.6") && values.len() >= 3).then_some(())
        }
    })
    .await;
    let text = out.text();
    assert!(text.contains("injecting: "), "{text}");
    assert!(text.contains("recovered: "), "{text}");

    // Ctrl-C: exit 0 in time, nothing left behind.
    let ports = printed_ports(&text);
    assert!(ports.len() >= 10, "console, gateway, OTLP and 7 instances: {ports:?}\n{text}");
    // Everything runs in the demo's own process; anything it started would name its
    // directory or have it as parent.
    let started = processes_of(pid, &data_dir);
    let mut demo = demo;
    let ok = Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(ok.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(s) = demo.0.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the demo did not exit within 45 s of SIGINT\n{}", out.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}\n{}", out.text());
    assert!(out.text().contains("stopped: traffic, services, agent and node"), "{}", out.text());
    let listening = listening_ports();
    for p in &ports {
        assert!(!listening.contains(p), "port {p} still listening after the demo exited");
        assert!(std::net::TcpStream::connect(("127.0.0.1", *p)).is_err(), "port {p} still accepts connections");
    }
    for p in &started {
        let id = p.split_whitespace().next().unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{id}")).exists(), "process left behind: {p}");
    }
    let left = processes_of(pid, &data_dir);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(!std::path::Path::new(&data_dir).exists(), "{data_dir} not removed");
}

#[test]
fn demo_refuses_bad_flags_with_a_clear_message() {
    for (args, expected) in [
        (["--speed", "0"], "--speed 0: expected a number from 0.1 to 100"),
        (["--duration", "soon"], "--duration \"soon\""),
    ] {
        let out = Command::new(BIN).arg("demo").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
