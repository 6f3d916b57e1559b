//! Load generators for `bench/`: they drive a running system over its real API and print
//! one JSON line of results, which the bench scripts turn into `docs/benchmarks.md` rows.
//!
//! # Layout
//! - `registry-watch`: N instances, M watchers blocked on one service; time from a health
//!   change to each watcher seeing it.
//! - `config-watch`: M watchers of one application; time from a write to each seeing it.
//! - `trace-ingest`, `trace-query`, `clickhouse-load`: the trace store benchmark (see
//!   `traces`).
//! - `logs-gen`, `logs-ingest`, `logs-tail`: the log store benchmark (see `logs`).
//! - `metrics-targets`, `metrics-replay-gen`, `metrics-replay`, `metrics-query`,
//!   `metrics-wait`: the metrics store benchmark (see `metrics`).
//! - `etcd-watch`: the same fan-out measured on etcd (keys under a prefix, M watch streams
//!   through etcd's JSON gateway).

mod logs;
mod metrics;
mod traces;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, mpsc};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::enum_variant_names)] // the subcommands are named after what they measure
enum Cmd {
    RegistryWatch {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10_000)]
        instances: usize,
        #[arg(long, default_value_t = 100)]
        services: usize,
        #[arg(long, default_value_t = 1_000)]
        watchers: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    ConfigWatch {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 1_000)]
        watchers: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Sends generated traces over OTLP/gRPC as fast as the node takes them.
    TraceIngest {
        /// The OTLP/gRPC endpoint, e.g. http://127.0.0.1:4317.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        shape: GenArgs,
        /// The first trace index to send.
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Spans per export request (whole traces, at least this many).
        #[arg(long, default_value_t = 512)]
        batch: usize,
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        #[arg(long, default_value_t = u64::MAX)]
        max_spans: u64,
    },
    /// Loads traces 0..N into ClickHouse with a Jaeger-like schema.
    ClickhouseLoad {
        /// ClickHouse's HTTP interface, e.g. http://127.0.0.1:8123.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        shape: GenArgs,
        #[arg(long)]
        traces: u64,
    },
    /// Trace-by-id and tag+duration search latency on Signalbox or ClickHouse.
    TraceQuery {
        /// signalbox or clickhouse
        #[arg(long)]
        target: String,
        #[arg(long)]
        url: String,
        #[command(flatten)]
        shape: GenArgs,
        /// Traces 0..N exist.
        #[arg(long)]
        traces: u64,
        #[arg(long, default_value_t = 500)]
        samples: usize,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Writes a deterministic NDJSON dataset of microservice log lines.
    LogsGen {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Size of the dataset in MB (10^6 bytes) of JSON.
        #[arg(long, default_value_t = 200.0)]
        mb: f64,
        /// End of the hour the lines span, Unix milliseconds.
        #[arg(long)]
        end_ms: u64,
        #[arg(long)]
        out: String,
    },
    /// POSTs an NDJSON file in gzip batches with concurrent clients.
    LogsIngest {
        /// The full ingest URL (Signalbox's /api/logs, or ClickHouse's HTTP interface with
        /// an INSERT ... FORMAT JSONEachRow query).
        #[arg(long)]
        url: String,
        #[arg(long)]
        file: String,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Raw (uncompressed) bytes per batch, cut at line boundaries.
        #[arg(long, default_value_t = 2_000_000)]
        batch_bytes: usize,
    },
    /// Live-tail delivery delay: POST a line, time until the tail's event.
    LogsTail {
        /// The console URL, e.g. http://127.0.0.1:9900.
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
    /// Scrape targets: host i's series on port base_port + i, until killed.
    MetricsTargets {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        base_port: u16,
        #[arg(long, default_value_t = 100)]
        targets: usize,
        #[arg(long, default_value_t = 2_000)]
        series: usize,
        /// The values advance once per interval (the scrape interval).
        #[arg(long, default_value_t = 10_000)]
        interval_ms: u64,
    },
    /// Writes a deterministic remote_write stream to a file.
    MetricsReplayGen {
        #[arg(long)]
        series: u64,
        #[arg(long)]
        samples_per_series: u64,
        #[arg(long, default_value_t = 100)]
        per_host: usize,
        /// Time of step 0, Unix milliseconds.
        #[arg(long)]
        start_ms: i64,
        #[arg(long, default_value_t = 15_000)]
        spacing_ms: i64,
        /// Samples per write request.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
        /// Concurrent senders, each with its own range of series.
        #[arg(long, default_value_t = 4)]
        shards: u32,
        #[arg(long)]
        out: String,
    },
    /// POSTs a file from metrics-replay-gen to a remote_write URL.
    MetricsReplay {
        #[arg(long)]
        url: String,
        #[arg(long)]
        file: String,
    },
    /// The fixed PromQL set against a query API base (Prometheus's root or Signalbox's
    /// /prometheus), at the replay's end.
    MetricsQuery {
        #[arg(long)]
        url: String,
        #[arg(long)]
        end_ms: i64,
        #[arg(long, default_value_t = 20)]
        repeat: usize,
    },
    /// Seconds until an instant query answers the expected value.
    MetricsWait {
        #[arg(long)]
        url: String,
        #[arg(long)]
        query: String,
        #[arg(long)]
        time_ms: i64,
        #[arg(long)]
        expect: f64,
        #[arg(long, default_value_t = 600.0)]
        timeout_s: f64,
    },
    EtcdWatch {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 100)]
        prefixes: usize,
        #[arg(long, default_value_t = 1_000)]
        watchers: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
}

/// The trace generator's parameters: the same values give the same traces.
#[derive(clap::Args, Clone, Copy)]
struct GenArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start of trace 0, Unix nanoseconds.
    #[arg(long)]
    base_ns: u64,
    /// Microseconds between consecutive traces' starts.
    #[arg(long, default_value_t = 100)]
    spacing_us: u64,
}

impl GenArgs {
    fn generator(self) -> traces::Gen {
        traces::Gen { seed: self.seed, base_ns: self.base_ns, spacing_ns: self.spacing_us * 1000 }
    }
}

type Http = Client<HttpConnector, Full<Bytes>>;

fn client() -> Http {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(4096).build(c)
}

async fn send(
    http: &Http,
    method: http::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, http::HeaderMap, Bytes)> {
    let mut b = http::Request::builder().method(method).uri(url);
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let resp = http.request(b.body(Full::new(bytes))?).await?;
    let (parts, body) = resp.into_parts();
    Ok((parts.status.as_u16(), parts.headers, body.collect().await?.to_bytes()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Per-watcher latencies (ms) and per-round "last watcher" latencies as one JSON line.
fn report(kind: &str, all: &mut [f64], last: &mut [f64], extra: Value) {
    all.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    let v = json!({
        "bench": kind,
        "samples": all.len(),
        "watcher_p50_ms": percentile(all, 0.5),
        "watcher_p99_ms": percentile(all, 0.99),
        "all_seen_p50_ms": percentile(last, 0.5),
        "all_seen_p99_ms": percentile(last, 0.99),
        "extra": extra,
    });
    println!("{v}");
}

/// Runs `rounds` of: watchers armed, `change()` at T0, each watcher reports when it saw it.
async fn fan_out<F, Fut>(
    watchers: usize,
    rounds: usize,
    mut rx: mpsc::Receiver<(usize, Instant)>,
    barrier: Arc<Barrier>,
    mut change: F,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut all = Vec::new();
    let mut last = Vec::new();
    for round in 0..rounds {
        barrier.wait().await; // every watcher is blocked on the current index
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        change(round).await?;
        let mut seen = 0;
        let mut max = 0f64;
        while seen < watchers {
            let (r, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .context("watchers too slow")?
                .context("watchers ended")?;
            if r != round {
                continue;
            }
            let ms = at.duration_since(t0).as_secs_f64() * 1e3;
            all.push(ms);
            max = max.max(ms);
            seen += 1;
        }
        last.push(max);
    }
    Ok((all, last))
}

fn rss_of(pid: Option<u32>) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

async fn registry_watch(
    url: &str,
    instances: usize,
    services: usize,
    watchers: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let http = client();
    let started = Instant::now();
    // Register with a little concurrency: each write is a durable commit.
    let per = instances / services;
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (chunk..instances).step_by(8) {
                let (svc, n) = (i / per, i % per);
                let body = json!({"service": format!("svc-{svc}"), "id": format!("svc-{svc}-{n}"), "address": "127.0.0.1", "port": 10000 + (n % 50000),
                    "checks": [{"ttl": "1h", "initial_status": "passing"}]});
                let (status, _, b) = send(&http, http::Method::POST, &format!("{url}/api/registry/instances"), Some(body)).await?;
                if status != 201 {
                    bail!("register: {status} {}", String::from_utf8_lossy(&b));
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let registered_in = started.elapsed();
    let (tx, rx) = mpsc::channel(watchers * 4);
    let barrier = Arc::new(Barrier::new(watchers + 1));
    for _ in 0..watchers {
        let (http, url, tx, barrier) = (http.clone(), url.to_owned(), tx.clone(), barrier.clone());
        tokio::spawn(async move {
            let (_, h, _) = send(&http, http::Method::GET, &format!("{url}/api/registry/services/svc-0"), None).await?;
            let mut index: u64 =
                h.get("x-signalbox-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
            for round in 0..rounds {
                let target = format!("{url}/api/registry/services/svc-0?index={index}&wait=60s");
                let res = armed(send(&http, http::Method::GET, &target, None), &barrier).await?;
                let at = Instant::now();
                index = res
                    .1
                    .get("x-signalbox-index")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(index);
                let _ = tx.send((round, at)).await;
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    let pid = std::env::var("TARGET_PID").ok().and_then(|p| p.parse().ok());
    let url2 = url.to_owned();
    let http2 = http.clone();
    let (mut all, mut last) = fan_out(watchers, rounds, rx, barrier, move |round| {
        let (http, url) = (http2.clone(), url2.clone());
        async move {
            let status = if round % 2 == 0 { "critical" } else { "passing" };
            let (s, _, b) = send(
                &http,
                http::Method::PUT,
                &format!("{url}/api/registry/instances/svc-0-0/ttl"),
                Some(json!({"status": status})),
            )
            .await?;
            if s != 204 {
                bail!("ttl: {s} {}", String::from_utf8_lossy(&b));
            }
            Ok(())
        }
    })
    .await?;
    report(
        "signalbox-registry",
        &mut all,
        &mut last,
        json!({"instances": instances, "watchers": watchers, "register_seconds": registered_in.as_secs_f64(), "rss_bytes": rss_of(pid)}),
    );
    Ok(())
}

/// Runs a long-poll request: once it has had time to reach the server and block there, the
/// watcher reports ready at `barrier` (the change is made only when every watcher is), then
/// waits for the answer.
async fn armed<F: std::future::Future>(req: F, barrier: &Barrier) -> F::Output {
    tokio::pin!(req);
    tokio::select! {
        r = &mut req => return r,
        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    barrier.wait().await;
    req.await
}

async fn config_watch(url: &str, watchers: usize, rounds: usize) -> anyhow::Result<()> {
    let http = client();
    let (tx, rx) = mpsc::channel(watchers * 4);
    let barrier = Arc::new(Barrier::new(watchers + 1));
    for _ in 0..watchers {
        let (http, url, tx, barrier) = (http.clone(), url.to_owned(), tx.clone(), barrier.clone());
        tokio::spawn(async move {
            let (_, _, b) = send(&http, http::Method::GET, &format!("{url}/api/config"), None).await?;
            let mut index = serde_json::from_slice::<Value>(&b)?["index"].as_u64().unwrap_or(0);
            for round in 0..rounds {
                let target = format!("{url}/api/config/watch?index={index}&application=bench&wait=60s");
                let res = armed(send(&http, http::Method::GET, &target, None), &barrier).await?;
                let at = Instant::now();
                index = serde_json::from_slice::<Value>(&res.2)?["index"].as_u64().unwrap_or(index);
                let _ = tx.send((round, at)).await;
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    let (url2, http2) = (url.to_owned(), http.clone());
    let (mut all, mut last) = fan_out(watchers, rounds, rx, barrier, move |round| {
        let (http, url) = (http2.clone(), url2.clone());
        async move {
            let (s, _, b) = send(
                &http,
                http::Method::PUT,
                &format!("{url}/api/config/bench/default/key"),
                Some(json!({"value": format!("v{round}")})),
            )
            .await?;
            if s != 200 {
                bail!("put: {s} {}", String::from_utf8_lossy(&b));
            }
            Ok(())
        }
    })
    .await?;
    let pid = std::env::var("TARGET_PID").ok().and_then(|p| p.parse().ok());
    report("signalbox-config", &mut all, &mut last, json!({"watchers": watchers, "rss_bytes": rss_of(pid)}));
    Ok(())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn etcd_watch(url: &str, keys: usize, prefixes: usize, watchers: usize, rounds: usize) -> anyhow::Result<()> {
    let http = client();
    let per = keys / prefixes;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (chunk..keys).step_by(8) {
                let (p, n) = (i / per, i % per);
                let value = json!({"service": format!("svc-{p}"), "id": format!("svc-{p}-{n}"), "address": "127.0.0.1", "port": 10000 + n, "status": "passing"}).to_string();
                let (s, _, b) = send(&http, http::Method::POST, &format!("{url}/v3/kv/put"), Some(json!({"key": b64(&format!("/registry/svc-{p}/svc-{p}-{n}")), "value": b64(&value)}))).await?;
                if s != 200 {
                    bail!("etcd put: {s} {}", String::from_utf8_lossy(&b));
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let loaded_in = started.elapsed();
    let (tx, rx) = mpsc::channel(watchers * 4);
    let barrier = Arc::new(Barrier::new(watchers + 1));
    let prefix = "/registry/svc-0/";
    let range_end = "/registry/svc-00"; // '/' + 1 = '0'
    for _ in 0..watchers {
        let (http, url, tx, barrier) = (http.clone(), url.to_owned(), tx.clone(), barrier.clone());
        tokio::spawn(async move {
            let req = http::Request::post(format!("{url}/v3/watch")).header("content-type", "application/json").body(
                Full::new(Bytes::from(
                    json!({"create_request": {"key": b64(prefix), "range_end": b64(range_end)}}).to_string(),
                )),
            )?;
            let resp = http.request(req).await?;
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            let mut round = 0;
            let mut created = false;
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                let Some(d) = frame.data_ref() else { continue };
                buf.extend_from_slice(d);
                // The gateway streams one JSON object per line.
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
                    let at = Instant::now();
                    if !created {
                        created = true;
                        barrier.wait().await;
                        continue;
                    }
                    if v["result"]["events"].as_array().is_some_and(|e| !e.is_empty()) {
                        let _ = tx.send((round, at)).await;
                        round += 1;
                        if round == rounds {
                            return anyhow::Ok(());
                        }
                        barrier.wait().await;
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    let (url2, http2) = (url.to_owned(), http.clone());
    let (mut all, mut last) = fan_out(watchers, rounds, rx, barrier, move |round| {
        let (http, url) = (http2.clone(), url2.clone());
        async move {
            let status = if round % 2 == 0 { "critical" } else { "passing" };
            let value = json!({"service": "svc-0", "id": "svc-0-0", "status": status}).to_string();
            let (s, _, b) = send(
                &http,
                http::Method::POST,
                &format!("{url}/v3/kv/put"),
                Some(json!({"key": b64("/registry/svc-0/svc-0-0"), "value": b64(&value)})),
            )
            .await?;
            if s != 200 {
                bail!("etcd put: {s} {}", String::from_utf8_lossy(&b));
            }
            Ok(())
        }
    })
    .await?;
    let pid = std::env::var("TARGET_PID").ok().and_then(|p| p.parse().ok());
    report(
        "etcd",
        &mut all,
        &mut last,
        json!({"keys": keys, "watchers": watchers, "load_seconds": loaded_in.as_secs_f64(), "rss_bytes": rss_of(pid)}),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::RegistryWatch { url, instances, services, watchers, rounds } => {
            registry_watch(&url, instances, services, watchers, rounds).await
        }
        Cmd::ConfigWatch { url, watchers, rounds } => config_watch(&url, watchers, rounds).await,
        Cmd::EtcdWatch { url, keys, prefixes, watchers, rounds } => {
            etcd_watch(&url, keys, prefixes, watchers, rounds).await
        }
        Cmd::TraceIngest { url, shape, from, connections, batch, seconds, max_spans } => {
            traces::ingest(&url, shape.generator(), from, connections, batch, seconds, max_spans).await
        }
        Cmd::LogsGen { seed, mb, end_ms, out } => logs::generate(seed, mb, end_ms, &out),
        Cmd::LogsIngest { url, file, clients, batch_bytes } => logs::ingest(&url, &file, clients, batch_bytes).await,
        Cmd::LogsTail { url, samples } => logs::tail(&url, samples).await,
        Cmd::ClickhouseLoad { url, shape, traces: n } => traces::clickhouse_load(&url, shape.generator(), n).await,
        Cmd::MetricsTargets { host, base_port, targets, series, interval_ms } => {
            metrics::targets(&host, base_port, targets, series, interval_ms).await
        }
        Cmd::MetricsReplayGen { series, samples_per_series, per_host, start_ms, spacing_ms, batch, shards, out } => {
            let shape =
                metrics::ReplayShape { series, samples_per_series, per_host, start_ms, spacing_ms, batch, shards };
            metrics::replay_gen(shape, &out)
        }
        Cmd::MetricsReplay { url, file } => metrics::replay(&url, &file).await,
        Cmd::MetricsQuery { url, end_ms, repeat } => metrics::query(&url, end_ms, repeat).await,
        Cmd::MetricsWait { url, query, time_ms, expect, timeout_s } => {
            metrics::wait(&url, &query, time_ms, expect, timeout_s).await
        }
        Cmd::TraceQuery { target, url, shape, traces: n, samples, limit } => {
            traces::query(&target, &url, shape.generator(), n, samples, limit).await
        }
    }
}
