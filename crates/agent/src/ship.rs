//! The sender: delivers buffered batches oldest first, retrying until the output
//! acknowledges each, then checkpoints its positions and removes it from the buffer.

use crate::batch::{gunzip, gzip};
use crate::compile::{Compiled, OutputKind};
use crate::metrics::Stats;
use crate::position::{FileKey, FilePosition};
use crate::spool::{Entry, Spool, store_checkpoint};
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long the sender of an empty buffer waits before looking again if nothing woke it.
pub(crate) const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// Largest answer body read from the output.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Largest inflated batch handled when re-encoding.
const MAX_BATCH_INFLATED: u64 = 512 * 1024 * 1024;

/// How one delivery attempt ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The output has the batch (`rejected`: records it refused as invalid and will never
    /// take: the node's `rejected` lines, or an OTLP partial success; not sent again).
    Ack { rejected: u64 },
    /// Try again, after `after` if the output said when.
    Retry { after: Option<Duration>, error: String },
    /// The output named these lines (0-based) as invalid.
    Invalid { lines: Vec<usize>, error: String },
    /// 413: the batch is larger than the output takes.
    TooLarge { error: String },
}

/// Jittered exponential backoff.
struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt += 1;
        let d = exp.min(self.max);
        // Equal jitter: half fixed, half random, so retries of many agents spread out.
        let half = d / 2;
        half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
    }
}

/// Delivers the disk buffer's batches.
pub struct Sender {
    cfg: Arc<Compiled>,
    spool: Arc<Spool>,
    stats: Stats,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    acked: HashMap<FileKey, FilePosition>,
    backoff: Backoff,
}

impl Sender {
    pub fn new(cfg: Arc<Compiled>, spool: Arc<Spool>, stats: Stats, acked: HashMap<FileKey, FilePosition>) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(cfg.output.connect_timeout));
        conn.set_nodelay(true);
        // `https` URIs reach the TLS layer above.
        conn.enforce_http(false);
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*cfg.output.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(conn);
        let backoff = Backoff { initial: cfg.initial_backoff, max: cfg.max_backoff, attempt: 0 };
        Sender { cfg, spool, stats, client, acked, backoff }
    }

    /// Runs until `deadline` holds an instant and either it passed or the buffer is empty.
    pub async fn run(mut self, mut deadline: watch::Receiver<Option<Instant>>) {
        loop {
            let stop_at = *deadline.borrow();
            if let Some(d) = stop_at
                && (Instant::now() >= d || self.spool.usage().0 == 0)
            {
                return;
            }
            let spool = self.spool.clone();
            let next = tokio::task::spawn_blocking(move || spool.oldest()).await;
            match next {
                Ok(Ok(Some(entry))) => {
                    self.stats.oldest_sealed_ns.set(entry.header.sealed_ns as i64);
                    if !self.deliver(entry, stop_at, &mut deadline).await {
                        return;
                    }
                }
                Ok(Ok(None)) => {
                    self.stats.oldest_sealed_ns.set(0);
                    // Woken by the reader's next batch (a batch pushed since `oldest` looked
                    // left a permit, so it is not missed) or by the stop deadline; the
                    // timeout is only a safety net.
                    let ready = self.spool.ready.notified();
                    tokio::select! {
                        _ = ready => {}
                        _ = deadline.changed() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Damaged on disk after it was written: nothing can be sent from it.
                    tracing::error!(error = %e, "a buffered batch is corrupt; it is set aside as .corrupt");
                    self.stats.corrupt_batches.inc();
                    self.stats.set_error(Some(format!("disk buffer: {e}")));
                    if let Err(e) = self.spool.set_aside_oldest() {
                        tracing::error!(error = %e, "cannot set the corrupt batch aside; retrying");
                        if !pause(Duration::from_secs(1), stop_at, &mut deadline).await {
                            return;
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the oldest buffered batch; retrying");
                    self.stats.set_error(Some(format!("disk buffer: {e}")));
                    if !pause(Duration::from_secs(1), stop_at, &mut deadline).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "buffer read task failed");
                    return;
                }
            }
        }
    }

    /// Delivers one batch; false if the agent is stopping.
    async fn deliver(
        &mut self,
        mut entry: Entry,
        mut stop_at: Option<Instant>,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> bool {
        // After a 413 the batch goes out in parts (NDJSON, in order); empty: whole.
        let mut parts: VecDeque<Vec<u8>> = VecDeque::new();
        loop {
            if entry.header.records == 0 {
                return self.ack(entry, stop_at, deadline).await;
            }
            let (body, records) = match parts.front() {
                None => (self.body(&entry), entry.header.records),
                Some(p) => (self.encode(p.clone()), count_lines(p)),
            };
            let outcome = match body {
                Ok(body) => self.attempt(body, records).await,
                Err(e) => Outcome::Retry { after: None, error: e },
            };
            match outcome {
                Outcome::Ack { rejected } => {
                    if rejected > 0 {
                        // Refused records are counted as such, not as shipped.
                        entry.header.records = entry.header.records.saturating_sub(rejected as u32);
                        match self.cfg.output.kind {
                            OutputKind::Native => self.stats.records_invalid.add(rejected),
                            OutputKind::Otlp => {
                                tracing::warn!(rejected, "the OTLP receiver rejected records of a batch");
                                self.stats.records_rejected.add(rejected);
                            }
                        }
                    }
                    if parts.pop_front().is_none() || parts.is_empty() {
                        return self.ack(entry, stop_at, deadline).await;
                    }
                }
                Outcome::Invalid { lines, error } => {
                    tracing::error!(%error, lines = ?lines, "the output refused invalid lines; they are taken out of the batch");
                    self.stats.set_error(Some(error));
                    if let Some(p) = parts.front_mut() {
                        let (kept, dropped) = without_lines(p, &lines);
                        *p = kept;
                        entry.header.records = entry.header.records.saturating_sub(dropped as u32);
                        self.stats.records_invalid.add(dropped);
                        if p.is_empty() {
                            parts.pop_front();
                            if parts.is_empty() {
                                return self.ack(entry, stop_at, deadline).await;
                            }
                        }
                        continue;
                    }
                    match self.drop_lines(&mut entry, &lines).await {
                        Ok(n) => self.stats.records_invalid.add(n),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot rewrite the batch; retrying it whole");
                            if !self.wait_retry(None, &mut stop_at, deadline).await {
                                return false;
                            }
                        }
                    }
                }
                Outcome::TooLarge { error } => {
                    let split = match parts.pop_front() {
                        None => gunzip(&entry.payload, MAX_BATCH_INFLATED).ok().and_then(|all| halves(&all)),
                        Some(p) => {
                            let h = halves(&p);
                            if h.is_none() {
                                parts.push_front(p);
                            }
                            h
                        }
                    };
                    match split {
                        Some((a, b)) => {
                            tracing::warn!(%error, "the output refused a batch as too large; sending it in halves");
                            parts.push_front(b);
                            parts.push_front(a);
                        }
                        None => {
                            // One record larger than the receiver takes: retried, never dropped.
                            tracing::error!(%error, "the output refused a single record as too large; retrying");
                            self.stats.set_error(Some(error));
                            self.stats.send_failures.inc();
                            if !self.wait_retry(None, &mut stop_at, deadline).await {
                                return false;
                            }
                        }
                    }
                }
                Outcome::Retry { after, error } => {
                    tracing::warn!(%error, "delivery failed; retrying");
                    // The error first: a reader that sees the count sees its cause.
                    self.stats.set_error(Some(error));
                    self.stats.send_failures.inc();
                    if !self.wait_retry(after, &mut stop_at, deadline).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn wait_retry(
        &mut self,
        after: Option<Duration>,
        stop_at: &mut Option<Instant>,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> bool {
        let d = match after {
            Some(a) => a.min(self.cfg.max_retry_after),
            None => self.backoff.next(),
        };
        let ok = pause(d, *stop_at, deadline).await;
        *stop_at = *deadline.borrow();
        ok
    }

    /// The request body for a whole batch.
    fn body(&self, entry: &Entry) -> Result<Bytes, String> {
        match self.cfg.output.kind {
            OutputKind::Native => Ok(Bytes::from(entry.payload.clone())),
            OutputKind::Otlp => {
                let ndjson = gunzip(&entry.payload, MAX_BATCH_INFLATED).map_err(|e| format!("buffered batch: {e}"))?;
                self.encode(ndjson)
            }
        }
    }

    /// The request body for NDJSON lines.
    fn encode(&self, ndjson: Vec<u8>) -> Result<Bytes, String> {
        let raw = match self.cfg.output.kind {
            OutputKind::Native => ndjson,
            OutputKind::Otlp => {
                let (proto, bad) = crate::otlp::encode(&ndjson, signalbox_core::time::unix_nanos());
                if bad > 0 {
                    tracing::error!(bad, "buffered lines that are not the agent's NDJSON were left out");
                }
                proto
            }
        };
        Ok(Bytes::from(gzip(&raw, self.cfg.compression_level)))
    }

    /// One POST with the output's timeout.
    async fn attempt(&self, body: Bytes, records: u32) -> Outcome {
        let out = &self.cfg.output;
        let content_type = match out.kind {
            OutputKind::Native => "application/x-ndjson",
            OutputKind::Otlp => "application/x-protobuf",
        };
        let mut req = Request::post(out.url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_ENCODING, "gzip")
            .header(header::USER_AGENT, concat!("signalbox-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &out.authorization {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Outcome::Retry { after: None, error: format!("request: {e}") },
        };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{}: {}", out.url, error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| format!("reading the answer: {e}"))?;
            Ok::<_, String>((parts, body))
        };
        match tokio::time::timeout(out.timeout, exchange).await {
            Err(_) => Outcome::Retry { after: None, error: format!("{}: no answer within {:?}", out.url, out.timeout) },
            Ok(Err(error)) => Outcome::Retry { after: None, error },
            Ok(Ok((parts, body))) => {
                classify(out.kind, parts.status, parts.headers.get(header::RETRY_AFTER), &body, records)
            }
        }
    }

    /// Takes the named lines out of a batch and stores it again; returns how many were taken.
    async fn drop_lines(&self, entry: &mut Entry, lines: &[usize]) -> Result<u64, String> {
        let ndjson = gunzip(&entry.payload, MAX_BATCH_INFLATED).map_err(|e| e.to_string())?;
        let (kept, dropped) = without_lines(&ndjson, lines);
        entry.payload = gzip(&kept, self.cfg.compression_level);
        entry.header.records = entry.header.records.saturating_sub(dropped as u32);
        let spool = self.spool.clone();
        let copy = entry.clone();
        tokio::task::spawn_blocking(move || spool.rewrite(&copy))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(dropped)
    }

    /// The batch is delivered: checkpoint its positions durably, then forget it.
    async fn ack(
        &mut self,
        entry: Entry,
        mut stop_at: Option<Instant>,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> bool {
        self.backoff.attempt = 0;
        let mut table = self.acked.clone();
        crate::position::apply(&mut table, &entry.header.positions);
        loop {
            let spool = self.spool.clone();
            let dir = self.cfg.data_dir.clone();
            let t = table.clone();
            let seq = entry.seq;
            let done = tokio::task::spawn_blocking(move || {
                store_checkpoint(&dir, &t)?;
                spool.remove(seq)
            })
            .await;
            match done {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot store the checkpoint; retrying");
                    self.stats.set_error(Some(format!("checkpoint: {e}")));
                }
                Err(e) => tracing::error!(error = %e, "checkpoint task failed; retrying"),
            }
            if !pause(Duration::from_secs(1), stop_at, deadline).await {
                return false;
            }
            stop_at = *deadline.borrow();
        }
        self.acked = table;
        self.stats.records_shipped.add(u64::from(entry.header.records));
        self.stats.batches_shipped.inc();
        self.stats.set_error(None);
        let (batches, bytes) = self.spool.usage();
        self.stats.buffered_batches.set(batches as i64);
        self.stats.buffered_bytes.set(bytes as i64);
        true
    }
}

/// NDJSON without the lines at `lines` (0-based), and how many were taken out.
fn without_lines(ndjson: &[u8], lines: &[usize]) -> (Vec<u8>, u64) {
    let mut kept = Vec::with_capacity(ndjson.len());
    let mut dropped = 0u64;
    for (i, line) in ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        if lines.contains(&i) {
            dropped += 1;
        } else {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    (kept, dropped)
}

fn count_lines(ndjson: &[u8]) -> u32 {
    ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u32
}

/// NDJSON cut into two halves by line count; `None` for a single line.
fn halves(ndjson: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let n = count_lines(ndjson) as usize;
    if n < 2 {
        return None;
    }
    let mut seen = 0;
    let cut = ndjson.iter().position(|b| {
        if *b == b'\n' {
            seen += 1;
        }
        seen == n / 2
    })?;
    Some((ndjson[..=cut].to_vec(), ndjson[cut + 1..].to_vec()))
}

/// Sleeps `d`, cut short by a stop deadline; false once the deadline has passed.
async fn pause(d: Duration, stop_at: Option<Instant>, deadline: &mut watch::Receiver<Option<Instant>>) -> bool {
    let wake = Instant::now() + d;
    let mut stop_at = stop_at;
    loop {
        let until = stop_at.map_or(wake, |s| s.min(wake));
        tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            changed = deadline.changed() => {
                if changed.is_err() {
                    break;
                }
                stop_at = *deadline.borrow();
            }
        }
    }
    stop_at.is_none_or(|s| Instant::now() < s)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What an answer means for the batch.
pub fn classify(
    kind: OutputKind,
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &[u8],
    records: u32,
) -> Outcome {
    let text = || String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    if status.is_success() {
        let rejected = match kind {
            OutputKind::Native => refused_in_ack(body),
            OutputKind::Otlp => {
                use prost::Message;
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(body)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| p.rejected_log_records.max(0) as u64)
            }
        };
        return Outcome::Ack { rejected };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        return Outcome::Retry {
            after: retry_after.and_then(parse_retry_after),
            error: format!("{status}: {}", text()),
        };
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Outcome::TooLarge { error: format!("{status}: {}", text()) };
    }
    if status == StatusCode::BAD_REQUEST && kind == OutputKind::Native {
        let lines = invalid_lines(body, records);
        if !lines.is_empty() {
            return Outcome::Invalid { lines, error: format!("{status}: {}", text()) };
        }
    }
    Outcome::Retry { after: None, error: format!("{status}: {}", text()) }
}

/// Lines the node kept out of an acknowledged request (`{"accepted": N, "rejected": [{"line":
/// L, "error": "..."}]}`, lines from 1): logged, and counted by the caller.
fn refused_in_ack(body: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return 0 };
    let Some(rejected) = v.get("rejected").and_then(|r| r.as_array()) else { return 0 };
    for r in rejected.iter().take(10) {
        let line = r.get("line").and_then(|l| l.as_u64()).unwrap_or(0);
        let error = r.get("error").and_then(|e| e.as_str()).unwrap_or("");
        tracing::error!(line, error, "the node refused a line of a batch as invalid; it is not sent again");
    }
    if rejected.len() > 10 {
        tracing::error!(more = rejected.len() - 10, "the node refused more lines of the same batch");
    }
    rejected.len() as u64
}

/// Lines (from 0) named by a 400 answer: `field` as the node writes it (`"line 3"`, counted
/// from 1) or as `"lines[2].timestamp"` (from 0), and an optional `"invalid_lines": [2, 6]`
/// (from 0). Empty when it names none, or names one past the batch.
pub fn invalid_lines(body: &[u8], records: u32) -> Vec<usize> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let mut lines: Vec<usize> = v
        .get("invalid_lines")
        .and_then(|l| l.as_array())
        .map(|a| a.iter().filter_map(|n| n.as_u64()).map(|n| n as usize).collect())
        .unwrap_or_default();
    if let Some(field) = v.get("field").and_then(|f| f.as_str()) {
        if let Some(rest) = field.strip_prefix("lines[")
            && let Some((n, _)) = rest.split_once(']')
            && let Ok(n) = n.parse::<usize>()
        {
            lines.push(n);
        } else if let Some(rest) = field.strip_prefix("line ")
            && let Ok(n) = rest.trim().parse::<usize>()
            && n >= 1
        {
            lines.push(n - 1);
        }
    }
    lines.sort_unstable();
    lines.dedup();
    if lines.iter().any(|n| *n >= records as usize) {
        return Vec::new();
    }
    lines
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
