//! The log store benchmark (`bench/logs.sh`): a deterministic generator of JSON
//! microservice log lines, an NDJSON ingest driver (concurrent clients, gzip batches) that
//! works against Signalbox's `POST /api/logs` and ClickHouse's HTTP `INSERT ... FORMAT
//! JSONEachRow` alike, and the live-tail delivery probe.
//!
//! # The dataset
//! Requests of 3 to 8 lines each, every line with the request's `trace_id` and
//! `request_id`, across 8 services of unequal volume, severities debug 15 % / info 70 % /
//! warn 10 % / error 4.5 % / fatal 0.5 %. Messages: half access-log style (method, route,
//! status, latency) followed by a few words, half free text; the words come from a
//! 100,000-word synthetic vocabulary drawn with Zipf's law (s = 1), so a few words are in
//! most lines and most words are rare, as in real logs. `user_id` is Zipf over 20,000 users.
//! Timestamps: one hour ending at `--end-ms`, in order, millisecond precision, RFC 3339.

use crate::traces::{Rng, cpu_seconds};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SERVICES: &[(&str, u64, &[&str])] = &[
    ("frontend", 30, &["/", "/cart", "/product", "/checkout", "/search"]),
    ("checkout", 12, &["/api/checkout", "/api/checkout/confirm"]),
    ("cart", 15, &["/api/cart", "/api/cart/items"]),
    ("payments", 6, &["/api/payments", "/api/payments/refund"]),
    ("catalog", 20, &["/api/products", "/api/products/item", "/api/categories"]),
    ("shipping", 5, &["/api/shipping/quote", "/api/shipping/track"]),
    ("auth", 8, &["/api/login", "/api/token", "/api/logout"]),
    ("recommendation", 4, &["/api/recommendations"]),
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "gu", "zo", "ri", "ba", "fe", "ho", "ju", "ki", "la",
    "mo", "nu", "pi", "so", "te", "wa", "ye", "xi", "co", "de", "fu", "ga", "hi",
];
const VOCAB: usize = 100_000;
const USERS: usize = 20_000;

/// The synthetic word of a vocabulary rank: its digits in base 32 as syllables, at least two.
fn word(rank: usize) -> String {
    let mut digits = Vec::new();
    let mut r = rank;
    loop {
        digits.push(r % SYLLABLES.len());
        r /= SYLLABLES.len();
        if r == 0 {
            break;
        }
    }
    if digits.len() < 2 {
        digits.push(0);
    }
    digits.iter().rev().map(|&d| SYLLABLES[d]).collect()
}

/// Zipf (s = 1) sampler over ranks 0..n by the cumulative weights.
struct Zipf(Vec<f64>);
impl Zipf {
    fn new(n: usize) -> Self {
        let mut acc = 0.0;
        Zipf(
            (1..=n)
                .map(|k| {
                    acc += 1.0 / k as f64;
                    acc
                })
                .collect(),
        )
    }
    fn sample(&self, r: &mut Rng) -> usize {
        let u = (r.next() >> 11) as f64 / (1u64 << 53) as f64 * self.0[self.0.len() - 1];
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, sod) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", sod / 3600, sod / 60 % 60, sod % 60, ms % 1000)
}

/// `logs-gen`: writes about `mb` MB of NDJSON to `out`; prints the dataset's facts (lines,
/// bytes, time range) and the query terms: a trace id from the middle (the needle), a rare
/// word (3 to 10 occurrences, else the rarest seen), the most frequent word.
pub fn generate(seed: u64, mb: f64, end_ms: u64, out: &str) -> anyhow::Result<()> {
    let target = (mb * 1e6) as u64;
    const AVG_LINE: u64 = 330;
    const SPAN_MS: u64 = 3_600_000;
    let est_lines = (target / AVG_LINE).max(1);
    let start_ms = end_ms - SPAN_MS;
    let step_us = (SPAN_MS * 1000) as f64 / est_lines as f64;
    let words_z = Zipf::new(VOCAB);
    let users_z = Zipf::new(USERS);
    let vocab: Vec<String> = (0..VOCAB).map(word).collect();
    let mut counts = vec![0u64; VOCAB];
    let svc_total: u64 = SERVICES.iter().map(|s| s.1).sum();
    let mut r = Rng::new(seed);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).context("creating the output")?);
    let (mut bytes, mut lines, mut req) = (0u64, 0u64, 0u64);
    let mut needle = String::new();
    let mut line = String::with_capacity(1024);
    let mut last_ms = start_ms;
    while bytes < target {
        let trace_id = format!("{:016x}{:016x}", r.next(), r.next());
        let request_id = format!("req-{:012x}", r.next() & 0xffff_ffff_ffff);
        if needle.is_empty() && bytes >= target * 37 / 100 {
            needle = trace_id.clone();
        }
        let user = format!("u-{}", users_z.sample(&mut r));
        let n = 3 + r.below(6);
        for _ in 0..n {
            let ms = start_ms + (lines as f64 * step_us / 1000.0) as u64;
            last_ms = ms;
            let mut pick = r.below(svc_total);
            let svc = SERVICES
                .iter()
                .find(|s| {
                    if pick < s.1 {
                        true
                    } else {
                        pick -= s.1;
                        false
                    }
                })
                .unwrap_or(&SERVICES[0]);
            let lv = r.below(1000);
            let level = match lv {
                0..150 => "debug",
                150..850 => "info",
                850..950 => "warn",
                950..995 => "error",
                _ => "fatal",
            };
            let route = svc.2[r.below(svc.2.len() as u64) as usize];
            let status = match level {
                "error" | "fatal" => [500, 502, 503, 504][r.below(4) as usize],
                "warn" => [400, 401, 404, 429][r.below(4) as usize],
                _ => [200, 200, 200, 201, 204, 304][r.below(6) as usize],
            };
            let latency = 1 + (r.below(1000) * r.below(1000)) / 1000;
            let mut msg = String::with_capacity(160);
            if r.below(2) == 0 {
                let m = METHODS[r.below(METHODS.len() as u64) as usize];
                msg.push_str(&format!("{m} {route} {status} {latency}ms"));
            } else if level == "error" || level == "fatal" {
                msg.push_str(
                    ["upstream request failed:", "database error:", "timeout calling", "panic recovered:"]
                        [r.below(4) as usize],
                );
            }
            for _ in 0..(2 + r.below(11)) {
                let k = words_z.sample(&mut r);
                counts[k] += 1;
                if !msg.is_empty() {
                    msg.push(' ');
                }
                msg.push_str(&vocab[k]);
            }
            line.clear();
            line.push_str(&format!(
                "{{\"timestamp\":\"{}\",\"level\":\"{level}\",\"service\":\"{}\",\"instance\":\"{}-{}\",\
                 \"trace_id\":\"{trace_id}\",\"span_id\":\"{:016x}\",\"request_id\":\"{request_id}\",\
                 \"user_id\":\"{user}\",\"route\":\"{route}\",\"status\":{status},\"latency_ms\":{latency},\
                 \"msg\":\"{msg}\"}}\n",
                rfc3339_ms(ms),
                svc.0,
                svc.0,
                r.below(4),
                r.next()
            ));
            w.write_all(line.as_bytes())?;
            bytes += line.len() as u64;
            lines += 1;
        }
        req += 1;
    }
    w.flush()?;
    // The rare word: the most frequent of those seen 3 to 10 times (else the rarest seen).
    let rare = (0..VOCAB)
        .filter(|&k| (3..=10).contains(&counts[k]))
        .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
        .or_else(|| (0..VOCAB).filter(|&k| counts[k] > 0).min_by_key(|&k| counts[k]))
        .unwrap_or(VOCAB - 1);
    let frequent = (0..VOCAB).max_by_key(|&k| counts[k]).unwrap_or(0);
    println!(
        "{}",
        json!({
            "lines": lines, "bytes": bytes, "requests": req, "start_ms": start_ms, "end_ms": last_ms + 1,
            "needle_trace_id": needle,
            "rare_word": vocab[rare], "rare_word_count": counts[rare],
            "frequent_word": vocab[frequent], "frequent_word_count": counts[frequent],
        })
    );
    Ok(())
}

type Http = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// `logs-ingest`: splits `file` into NDJSON batches of about `batch_bytes` at line
/// boundaries, gzips them all first (not timed: a shipper's CPU, not the server's), then
/// `clients` concurrent clients POST them (`Content-Encoding: gzip`) to `url`; 429 and 503
/// answers are retried after a pause. Prints the rate of raw JSON and the target's CPU
/// (`TARGET_PID`) over the sending time.
pub async fn ingest(url: &str, file: &str, clients: usize, batch_bytes: usize) -> anyhow::Result<()> {
    let data = std::fs::read(file).context("reading the dataset")?;
    let mut batches = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let mut end = (at + batch_bytes).min(data.len());
        if end < data.len() {
            end = at + data[at..end].iter().rposition(|&b| b == b'\n').map_or(end - at, |p| p + 1);
        }
        batches.push(&data[at..end]);
        at = end;
    }
    let gz: Vec<Bytes> = {
        let mut out = Vec::with_capacity(batches.len());
        for b in &batches {
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(b.len() / 6), flate2::Compression::default());
            e.write_all(b)?;
            out.push(Bytes::from(e.finish()?));
        }
        out
    };
    let gz_bytes: usize = gz.iter().map(Bytes::len).sum();
    let gz = Arc::new(gz);
    let pid: Option<u32> = std::env::var("TARGET_PID").ok().and_then(|p| p.parse().ok());
    let mut c = hyper_util::client::legacy::connect::HttpConnector::new();
    c.set_nodelay(true);
    let http: Http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(c);
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let (cpu0, own0, busy0) = (cpu_seconds(pid), cpu_seconds(None), machine_busy_seconds());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (gz, next, retries, http, url) = (gz.clone(), next.clone(), retries.clone(), http.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = gz.get(i) else { return anyhow::Ok(()) };
                loop {
                    let req = http::Request::builder()
                        .method("POST")
                        .uri(&url)
                        .header("content-type", "application/x-ndjson")
                        .header("content-encoding", "gzip")
                        .body(Full::new(body.clone()))?;
                    let resp = tokio::time::timeout(Duration::from_secs(600), http.request(req)).await??;
                    let status = resp.status().as_u16();
                    let text = resp.into_body().collect().await?.to_bytes();
                    match status {
                        200..=299 => break,
                        429 | 503 => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => {
                            bail!("batch {i}: HTTP {status}: {}", String::from_utf8_lossy(&text[..text.len().min(500)]))
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let own = cpu_seconds(None) - own0;
    let busy = machine_busy_seconds() - busy0;
    println!(
        "{}",
        json!({
            "raw_bytes": data.len(), "gzip_bytes": gz_bytes, "batches": gz.len(), "clients": clients,
            "seconds": secs, "mb_per_second": data.len() as f64 / 1e6 / secs,
            "target_cpu_seconds": cpu, "retries": retries.load(Ordering::Relaxed),
            "generator_cpu_seconds": own, "machine_busy_seconds": busy,
        })
    );
    Ok(())
}

/// CPU seconds all processes of the machine used so far (user, nice, system, irq,
/// softirq, steal in the `cpu` line of /proc/stat).
fn machine_busy_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else { return f64::NAN };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else { return f64::NAN };
    let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum::<f64>() / 100.0
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `logs-tail`: one live tail (`GET /api/logs/tail?query=<token>`, server-sent events) and
/// `samples` rounds of: POST one line holding the token, time until its event arrives.
pub async fn tail(url: &str, samples: usize) -> anyhow::Result<()> {
    let mut c = hyper_util::client::legacy::connect::HttpConnector::new();
    c.set_nodelay(true);
    let http: Http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(c);
    let token = format!("tailprobe{}", std::process::id());
    let req = http::Request::builder()
        .uri(format!("{url}/api/logs/tail?query={token}"))
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))?;
    let resp = http.request(req).await?;
    if !resp.status().is_success() {
        bail!("tail: HTTP {}", resp.status());
    }
    let mut body = resp.into_body();
    // Let the subscription settle before the first probe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delays = Vec::new();
    let mut buf = String::new();
    for i in 0..samples {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        let line = format!(
            "{{\"timestamp\":\"{}\",\"level\":\"info\",\"service\":\"tailprobe\",\"msg\":\"{token} probe {i}\"}}\n",
            rfc3339_ms(ms)
        );
        let t0 = Instant::now();
        let post = http::Request::builder()
            .method("POST")
            .uri(format!("{url}/api/logs"))
            .header("content-type", "application/x-ndjson")
            .body(Full::new(Bytes::from(line)))?;
        let h = http.clone();
        let sent = tokio::spawn(async move {
            let r = h.request(post).await?;
            let s = r.status();
            r.into_body().collect().await?;
            anyhow::ensure!(s.is_success(), "POST: HTTP {s}");
            anyhow::Ok(())
        });
        let want = format!("probe {i}");
        loop {
            if let Some(p) = buf.find("\n\n") {
                let ev: String = buf.drain(..p + 2).collect();
                if ev.contains("event: record") && ev.contains(&want) {
                    break;
                }
                continue;
            }
            let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
                .await
                .context("no tail event in 30 s")?
                .context("the tail stream ended")??;
            if let Ok(d) = frame.into_data() {
                buf.push_str(&String::from_utf8_lossy(&d));
            }
        }
        delays.push(t0.elapsed().as_secs_f64() * 1e3);
        sent.await??;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut d = delays.clone();
    println!(
        "{}",
        json!({"samples": delays.len(), "p50_ms": percentile(&mut d, 0.5), "p99_ms": percentile(&mut d, 0.99), "all_ms": delays})
    );
    Ok(())
}
