//! The metrics store benchmark (`bench/metrics.sh`): scrape targets, a remote_write replay
//! and the fixed PromQL query set, the same for Prometheus and Signalbox.
//!
//! # The series
//! Every "host" exposes `per_host` series of three families, node-exporter-like:
//! - `bench_request_duration_seconds` histograms (10 finite buckets and `+Inf`, `_sum`,
//!   `_count`: 13 series each) by `handler`, about 30 % of the series;
//! - `bench_requests_total` counters by `handler` and `code`, half of the rest;
//! - `bench_resident_bytes` gauges by `area`, the other half.
//!
//! A series' value at step `k` is a pure function of (host, series, k): counters and
//! histogram counts rise by a per-series rate with a little deterministic noise (always
//! monotonic), gauges hold for 20 steps and then move, as memory gauges do. So a scrape at
//! step k or a replayed sample at step k gives the same value wherever it is read.
//!
//! # Modes
//! - [`targets`] (`metrics-targets`): N scrape targets, one port each, serving the text
//!   exposition of host i with the step taken from the wall clock (`now / interval`).
//! - [`replay_gen`] (`metrics-replay-gen`): writes a remote_write stream to a file: samples
//!   of every series at step 0, then step 1, ... (as a Prometheus that scrapes all of them
//!   sends them), split into shards of series and cut into snappy-compressed
//!   `WriteRequest`s of `batch` samples. Replaying the file gives both systems exactly the
//!   same requests.
//! - [`replay`] (`metrics-replay`): POSTs that file, one sender per shard; 429 and 503
//!   are retried (counted), any other non-2xx is counted as failed with its first body.
//! - [`query`] (`metrics-query`): the fixed query set, R timed runs each, p50/p99.
//! - [`wait`] (`metrics-wait`): how long until a query answers an expected value (the
//!   restart time after kill -9).

use crate::traces::cpu_seconds;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Upper bounds of the histogram buckets, `+Inf` last.
const BUCKETS: [&str; 11] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];
/// The cumulative share of observations at or below each bucket's bound.
const BUCKET_SHARE: [f64; 11] = [0.02, 0.05, 0.12, 0.25, 0.45, 0.7, 0.85, 0.93, 0.97, 0.99, 1.0];
const HISTOGRAM_SERIES: usize = BUCKETS.len() + 2;
const CODES: [&str; 3] = ["200", "404", "500"];

/// SplitMix64's finaliser: a well-mixed hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One series of a host: what it is and where it sits in its family.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Histogram `h`, part `p`: buckets 0..11, then `_sum` (11) and `_count` (12).
    Histogram {
        h: usize,
        part: usize,
    },
    Counter(usize),
    Gauge(usize),
}

/// How a host's `per_host` series divide into the three families.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub per_host: usize,
    histograms: usize,
    counters: usize,
}

impl Layout {
    pub fn new(per_host: usize) -> anyhow::Result<Layout> {
        if per_host < HISTOGRAM_SERIES + 2 {
            bail!("at least {} series per host are needed (one histogram, a counter, a gauge)", HISTOGRAM_SERIES + 2);
        }
        let histograms = (per_host * 3 / 10 / HISTOGRAM_SERIES).max(1);
        let counters = (per_host - histograms * HISTOGRAM_SERIES) / 2;
        Ok(Layout { per_host, histograms, counters })
    }

    fn kind(&self, j: usize) -> Kind {
        let hs = self.histograms * HISTOGRAM_SERIES;
        if j < hs {
            Kind::Histogram { h: j / HISTOGRAM_SERIES, part: j % HISTOGRAM_SERIES }
        } else if j < hs + self.counters {
            Kind::Counter(j - hs)
        } else {
            Kind::Gauge(j - hs - self.counters)
        }
    }

    /// Whether series `j` is a `bench_resident_bytes` gauge.
    pub fn is_gauge(&self, j: usize) -> bool {
        matches!(self.kind(j), Kind::Gauge(_))
    }

    /// The metric name and own labels of series `j` (without job, instance and such).
    fn series(&self, j: usize) -> (&'static str, Vec<(&'static str, String)>) {
        match self.kind(j) {
            Kind::Histogram { h, part } => {
                let handler = ("handler", format!("/api/h{h}"));
                match part {
                    p if p < BUCKETS.len() => {
                        ("bench_request_duration_seconds_bucket", vec![handler, ("le", BUCKETS[p].to_owned())])
                    }
                    p if p == BUCKETS.len() => ("bench_request_duration_seconds_sum", vec![handler]),
                    _ => ("bench_request_duration_seconds_count", vec![handler]),
                }
            }
            Kind::Counter(c) => (
                "bench_requests_total",
                vec![("handler", format!("/api/h{}", c / 3)), ("code", CODES[c % 3].to_owned())],
            ),
            Kind::Gauge(g) => ("bench_resident_bytes", vec![("area", format!("a{g}"))]),
        }
    }

    /// The value of host `host`'s series `j` at step `k`.
    fn value(&self, host: u64, j: usize, k: u64) -> f64 {
        let kind = self.kind(j);
        // A histogram's series share one seed, so buckets, sum and count agree.
        let seed_of = |n: u64| mix(host.wrapping_mul(1_000_003) ^ mix(n));
        match kind {
            Kind::Histogram { h, part } => {
                let seed = seed_of(h as u64 | (1 << 40));
                let rate = 1 + seed % 50;
                let count = k * rate + mix(seed ^ k) % rate;
                match part {
                    p if p < BUCKETS.len() => (count as f64 * BUCKET_SHARE[p]).floor(),
                    p if p == BUCKETS.len() => (count as f64 * 0.183 * 1000.0).round() / 1000.0,
                    _ => count as f64,
                }
            }
            Kind::Counter(c) => {
                let seed = seed_of(c as u64 | (2 << 40));
                let rate = 1 + seed % 20;
                (k * rate + mix(seed ^ k) % rate) as f64
            }
            Kind::Gauge(g) => {
                let seed = seed_of(g as u64 | (3 << 40));
                (100_000_000 + mix(seed ^ (k / 20)) % 1000 * 4096) as f64
            }
        }
    }

    /// The text exposition (format 0.0.4) of host `host` at step `k`.
    pub fn exposition(&self, host: u64, k: u64) -> String {
        let mut out = String::with_capacity(self.per_host * 80);
        let mut family = "";
        for j in 0..self.per_host {
            let (name, labels) = self.series(j);
            let fam = match self.kind(j) {
                Kind::Histogram { .. } => "bench_request_duration_seconds histogram",
                Kind::Counter(_) => "bench_requests_total counter",
                Kind::Gauge(_) => "bench_resident_bytes gauge",
            };
            if fam != family {
                family = fam;
                out.push_str("# TYPE ");
                out.push_str(fam);
                out.push('\n');
            }
            out.push_str(name);
            out.push('{');
            for (i, (n, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{n}=\"{v}\""));
            }
            out.push_str(&format!("}} {}\n", self.value(host, j, k)));
        }
        out
    }

    /// Every label of replayed series `s` (host `s / per_host`), sorted by name.
    pub fn replay_labels(&self, s: u64) -> Vec<(String, String)> {
        let (host, j) = (s / self.per_host as u64, (s % self.per_host as u64) as usize);
        let (name, own) = self.series(j);
        let mut labels: Vec<(String, String)> = own.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        labels.push(("__name__".into(), name.into()));
        labels.push(("job".into(), "replay".into()));
        labels.push(("instance".into(), format!("host-{host}:9100")));
        // High cardinality: one pod per host, named like a Kubernetes pod.
        labels.push(("pod".into(), format!("api-{:08x}-{:05x}", mix(host) as u32, mix(host ^ 7) & 0xfffff)));
        labels.push(("region".into(), format!("r{}", host % 5)));
        labels.sort();
        labels
    }
}

/// `metrics-targets`: serves host i's exposition on port `base_port + i` until killed.
pub async fn targets(
    host: &str,
    base_port: u16,
    count: usize,
    per_host: usize,
    interval_ms: u64,
) -> anyhow::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    let layout = Layout::new(per_host)?;
    let served = Arc::new(AtomicU64::new(0));
    for i in 0..count {
        let port = base_port.checked_add(i as u16).context("the ports run past 65535")?;
        let listener =
            tokio::net::TcpListener::bind((host, port)).await.with_context(|| format!("bind {host}:{port}"))?;
        let served = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let served = served.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let served = served.clone();
                        async move {
                            let resp = if req.uri().path() == "/metrics" {
                                let step = now_ms() / interval_ms.max(1);
                                served.fetch_add(1, Ordering::Relaxed);
                                http::Response::builder()
                                    .header("content-type", "text/plain; version=0.0.4")
                                    .body(Full::new(Bytes::from(layout.exposition(i as u64, step))))
                            } else {
                                http::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::from_static(b"not found\n")))
                            };
                            resp.map_err(|e| anyhow::anyhow!("response: {e}"))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                });
            }
        });
    }
    println!(
        "{}",
        json!({"bench": "metrics-targets", "targets": count, "series_per_target": per_host, "base_port": base_port})
    );
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let n = served.load(Ordering::Relaxed);
        eprintln!("metrics-targets: {} scrapes in the last minute", n - last);
        last = n;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The replay's parameters: the same values give the same file.
#[derive(Debug, Clone, Copy)]
pub struct ReplayShape {
    pub series: u64,
    pub samples_per_series: u64,
    pub per_host: usize,
    pub start_ms: i64,
    pub spacing_ms: i64,
    pub batch: usize,
    /// Senders, each with its own range of series (see [`replay_requests`]).
    pub shards: u32,
}

impl ReplayShape {
    /// The timestamp of step `k` of series `s`: hosts scrape with their own phase.
    pub fn timestamp(&self, s: u64, k: u64) -> i64 {
        let host = s / self.per_host as u64;
        self.start_ms + k as i64 * self.spacing_ms + (mix(host ^ 0x5eed) % (self.spacing_ms as u64 / 2).max(1)) as i64
    }
    /// The newest timestamp in the replay.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.samples_per_series as i64 * self.spacing_ms
    }
}

/// Appends a protobuf varint.
fn varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

/// A series' labels as the `labels` fields of a `prometheus.TimeSeries`.
fn encoded_labels(labels: &[(String, String)]) -> Vec<u8> {
    let field = |out: &mut Vec<u8>, tag: u8, s: &str| {
        out.push(tag);
        varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    };
    let mut out = Vec::new();
    for (n, v) in labels {
        let len = 2
            + prost::encoding::encoded_len_varint(n.len() as u64)
            + n.len()
            + prost::encoding::encoded_len_varint(v.len() as u64)
            + v.len();
        out.push(0x0a);
        varint(&mut out, len as u64);
        field(&mut out, 0x0a, n);
        field(&mut out, 0x12, v);
    }
    out
}

/// Appends one `timeseries` entry (labels pre-encoded, one sample) to a `WriteRequest`.
fn push_series(out: &mut Vec<u8>, labels: &[u8], t: i64, v: f64) {
    let sample_len = 1 + 8 + 1 + prost::encoding::encoded_len_varint(t as u64);
    let ts_len = labels.len() + 1 + prost::encoding::encoded_len_varint(sample_len as u64) + sample_len;
    out.push(0x0a);
    varint(out, ts_len as u64);
    out.extend_from_slice(labels);
    out.push(0x12);
    varint(out, sample_len as u64);
    out.push(0x09);
    out.extend_from_slice(&v.to_le_bytes());
    out.push(0x10);
    varint(out, t as u64);
}

/// One write request of the replay: the shard that sends it, its sample count, the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRequest {
    pub shard: u32,
    pub samples: u32,
    pub body: Vec<u8>,
}

/// The snappy-compressed write requests of the replay. As Prometheus's remote_write
/// queue does, the series are split into `shards` (contiguous ranges here); each shard's
/// samples are in step order and cut into requests of `batch`, and one sender per shard
/// sends them in order, so no series ever goes back in time. The shards' requests
/// alternate in the sequence.
pub fn replay_requests(shape: ReplayShape) -> anyhow::Result<impl Iterator<Item = ReplayRequest>> {
    let layout = Layout::new(shape.per_host)?;
    if shape.series == 0 || shape.samples_per_series == 0 || shape.batch == 0 || shape.shards == 0 {
        bail!("series, samples per series, batch and shards must be at least 1");
    }
    if shape.shards as u64 > shape.series {
        bail!("more shards ({}) than series ({})", shape.shards, shape.series);
    }
    let labels: Vec<Vec<u8>> = (0..shape.series).map(|s| encoded_labels(&layout.replay_labels(s))).collect();
    let shards = shape.shards as u64;
    // Shard w holds series range.0..range.1; `next[w]` is its next sample (step-major).
    let ranges: Vec<(u64, u64)> =
        (0..shards).map(|w| (w * shape.series / shards, (w + 1) * shape.series / shards)).collect();
    let mut next = vec![0u64; shards as usize];
    let mut turn = 0usize;
    let mut encoder = snap::raw::Encoder::new();
    Ok(std::iter::from_fn(move || {
        for _ in 0..shards {
            let w = turn;
            turn = (turn + 1) % shards as usize;
            let (lo, hi) = ranges[w];
            let width = hi - lo;
            let total = width * shape.samples_per_series;
            if next[w] >= total {
                continue;
            }
            let end = (next[w] + shape.batch as u64).min(total);
            let mut raw = Vec::with_capacity(shape.batch * 160);
            for i in next[w]..end {
                let (k, s) = (i / width, lo + i % width);
                let (host, j) = (s / shape.per_host as u64, (s % shape.per_host as u64) as usize);
                push_series(&mut raw, &labels[s as usize], shape.timestamp(s, k), layout.value(host, j, k));
            }
            let samples = (end - next[w]) as u32;
            next[w] = end;
            return Some(ReplayRequest {
                shard: w as u32,
                samples,
                body: encoder.compress_vec(&raw).unwrap_or_default(),
            });
        }
        None
    }))
}

/// `metrics-replay-gen`: writes the replay to `out` as records of
/// `[u32 LE body length][u32 LE samples][u32 LE shard][body]`.
pub fn replay_gen(shape: ReplayShape, out: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out).context("creating the replay file")?);
    let (mut requests, mut samples, mut bytes) = (0u64, 0u64, 0u64);
    for r in replay_requests(shape)? {
        w.write_all(&(r.body.len() as u32).to_le_bytes())?;
        w.write_all(&r.samples.to_le_bytes())?;
        w.write_all(&r.shard.to_le_bytes())?;
        w.write_all(&r.body)?;
        requests += 1;
        samples += u64::from(r.samples);
        bytes += r.body.len() as u64;
    }
    w.flush()?;
    let layout = Layout::new(shape.per_host)?;
    let gauges = (0..shape.series).filter(|s| layout.is_gauge((s % shape.per_host as u64) as usize)).count();
    println!(
        "{}",
        json!({
            "bench": "metrics-replay-gen", "series": shape.series, "samples": samples, "requests": requests,
            "shards": shape.shards, "snappy_bytes": bytes, "gauge_series": gauges, "start_ms": shape.start_ms,
            "end_ms": shape.end_ms(), "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

type Http = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Totals of a replay.
#[derive(Default)]
struct Tally {
    samples_ok: AtomicU64,
    samples_failed: AtomicU64,
    requests: AtomicU64,
    retried: AtomicU64,
    failed: std::sync::Mutex<(BTreeMap<u16, u64>, Option<String>)>,
}

/// `metrics-replay`: POSTs the requests of `file` to `url`, one sender per shard, each
/// sending its shard's requests in order.
pub async fn replay(url: &str, file: &str) -> anyhow::Result<()> {
    const MAX_SHARDS: usize = 1024;
    let pid = std::env::var("TARGET_PID").ok().and_then(|p| p.parse().ok());
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file).context("opening the replay file")?);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..MAX_SHARDS {
        let (tx, rx) = tokio::sync::mpsc::channel::<(Bytes, u32)>(4);
        senders.push(tx);
        receivers.push(rx);
    }
    // A reader thread, so sending never waits on the disk.
    let read = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut head = [0u8; 12];
        loop {
            match reader.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
            let (len, n, shard) = (word(0) as usize, word(4), word(8) as usize);
            if shard >= MAX_SHARDS {
                bail!("shard {shard} in the replay file; at most {MAX_SHARDS} are supported");
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).context("a truncated replay file")?;
            if senders[shard].blocking_send((Bytes::from(body), n)).is_err() {
                return Ok(());
            }
        }
    });
    let http: Http = {
        let mut c = hyper_util::client::legacy::connect::HttpConnector::new();
        c.set_nodelay(true);
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(c)
    };
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let (cpu0, node_cpu0) = (cpu_seconds(None), cpu_seconds(pid));
    let mut tasks = Vec::new();
    for mut rx in receivers {
        let (http, tally, url) = (http.clone(), tally.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            while let Some((body, n)) = rx.recv().await {
                send_one(&http, &url, body, n, &tally).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    read.join().map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    let (cpu, node_cpu) = (cpu_seconds(None) - cpu0, cpu_seconds(pid) - node_cpu0);
    let ok = tally.samples_ok.load(Ordering::Relaxed);
    let (statuses, first) = tally.failed.lock().map(|g| g.clone()).unwrap_or_default();
    let v = json!({
        "bench": "metrics-replay",
        "samples": ok,
        "samples_failed": tally.samples_failed.load(Ordering::Relaxed),
        "requests": tally.requests.load(Ordering::Relaxed),
        "retried_requests": tally.retried.load(Ordering::Relaxed),
        "failed_statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "first_failure": first,
        "seconds": secs,
        "samples_per_second": ok as f64 / secs,
        "generator_cpu_seconds": cpu,
        "node_cpu_seconds": node_cpu,
        "node_cpu_us_per_sample": node_cpu * 1e6 / ok.max(1) as f64,
        "node_rss_bytes": crate::rss_of(pid),
    });
    println!("{v}");
    Ok(())
}

/// Sends one request: retries 429 and 503 (and connection errors) for up to a minute;
/// counts any other non-2xx as failed.
async fn send_one(http: &Http, url: &str, body: Bytes, n: u32, tally: &Tally) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = http::Request::post(url)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(Full::new(body.clone()))?;
        let res = tokio::time::timeout(Duration::from_secs(60), http.request(req)).await;
        let (status, text) = match res {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let b = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                (status, String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
            }
            Ok(Err(e)) => (0, format!("connection: {e}")),
            Err(_) => (0, "no answer within 60 s".to_owned()),
        };
        tally.requests.fetch_add(1, Ordering::Relaxed);
        if (200..300).contains(&status) {
            tally.samples_ok.fetch_add(u64::from(n), Ordering::Relaxed);
            return Ok(());
        }
        if matches!(status, 0 | 429 | 503) && Instant::now() < deadline {
            tally.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        tally.samples_failed.fetch_add(u64::from(n), Ordering::Relaxed);
        if let Ok(mut g) = tally.failed.lock() {
            *g.0.entry(status).or_default() += 1;
            g.1.get_or_insert_with(|| format!("{status}: {}", text.trim()));
        }
        return Ok(());
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The fixed query set: (name, PromQL, range seconds — 0 for an instant query).
pub const QUERIES: &[(&str, &str, u64)] = &[
    ("rate_sum_by_1h", "sum by (code) (rate(bench_requests_total[1h]))", 0),
    (
        "histogram_quantile_1h",
        "histogram_quantile(0.9, sum by (le) (rate(bench_request_duration_seconds_bucket[1h])))",
        0,
    ),
    ("topk", "topk(10, rate(bench_requests_total[5m]))", 0),
    ("range_24h_step60", "sum by (region) (rate(bench_requests_total[5m]))", 86_400),
    ("regex_high_cardinality", "sum by (region) (bench_resident_bytes{pod=~\"api-(1|5|a).*-.*7\"})", 0),
];

/// One GET of the query API; the number of series and points in the answer.
async fn run_query(
    http: &crate::Http,
    base: &str,
    q: &str,
    range_s: u64,
    end_ms: i64,
) -> anyhow::Result<(usize, usize)> {
    let end = end_ms as f64 / 1000.0;
    let url = if range_s == 0 {
        format!("{base}/api/v1/query?query={}&time={end}", urlencode(q))
    } else {
        format!("{base}/api/v1/query_range?query={}&start={}&end={end}&step=60", urlencode(q), end - range_s as f64)
    };
    let (status, _, body) = crate::send(http, http::Method::GET, &url, None).await?;
    let v: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{status}: not JSON: {}", String::from_utf8_lossy(&body[..body.len().min(300)])))?;
    if status != 200 || v["status"] != "success" {
        bail!("{q}: {status} {v}");
    }
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    let points = result.iter().map(|s| s["values"].as_array().map_or(1, |p| p.len())).sum();
    Ok((result.len(), points))
}

/// `metrics-query`: each query of [`QUERIES`] once to warm up, then `repeat` timed runs.
pub async fn query(base: &str, end_ms: i64, repeat: usize) -> anyhow::Result<()> {
    let http = crate::client();
    let mut out = serde_json::Map::new();
    for (name, q, range_s) in QUERIES {
        // A refused or timed-out query is a result too (Prometheus refuses the 24 h range
        // query at 1M series): record it and go on with the set.
        let timed = async {
            let (series, points) = run_query(&http, base, q, *range_s, end_ms).await?;
            let mut ms = Vec::with_capacity(repeat);
            for _ in 0..repeat.max(1) {
                let t0 = Instant::now();
                run_query(&http, base, q, *range_s, end_ms).await?;
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            anyhow::Ok((series, points, ms))
        };
        let (series, points, mut ms) = match timed.await {
            Ok(r) => r,
            Err(e) => {
                out.insert((*name).to_owned(), json!({"query": q, "range_s": range_s, "error": format!("{e:#}")}));
                continue;
            }
        };
        ms.sort_by(f64::total_cmp);
        out.insert(
            (*name).to_owned(),
            json!({"query": q, "range_s": range_s, "series": series, "points": points,
                   "p50_ms": crate::percentile(&ms, 0.5), "p99_ms": crate::percentile(&ms, 0.99)}),
        );
    }
    println!("{}", Value::Object(out));
    Ok(())
}

/// `metrics-wait`: polls an instant query every 50 ms until its single value equals
/// `expect`; prints the seconds that took.
pub async fn wait(base: &str, q: &str, time_ms: i64, expect: f64, timeout_s: f64) -> anyhow::Result<()> {
    let http = crate::client();
    let started = Instant::now();
    let url = format!("{base}/api/v1/query?query={}&time={}", urlencode(q), time_ms as f64 / 1000.0);
    let mut last = String::from("no answer yet");
    while started.elapsed().as_secs_f64() < timeout_s {
        match tokio::time::timeout(Duration::from_secs(5), crate::send(&http, http::Method::GET, &url, None)).await {
            Ok(Ok((200, _, body))) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let got = v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok());
                if got == Some(expect) {
                    println!(
                        "{}",
                        json!({"bench": "metrics-wait", "seconds": started.elapsed().as_secs_f64(), "value": expect})
                    );
                    return Ok(());
                }
                last = format!("answered {}", v["data"]["result"]);
            }
            Ok(Ok((status, _, body))) => last = format!("{status} {}", String::from_utf8_lossy(&body)),
            Ok(Err(e)) => last = format!("{e}"),
            Err(_) => last = "no answer within 5 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("`{q}` did not answer {expect} within {timeout_s} s; last: {last}")
}
