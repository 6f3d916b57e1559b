//! Trace load: a deterministic generator of realistic traces, an OTLP/gRPC ingest driver,
//! a loader that writes the same spans into ClickHouse with a schema like Jaeger's
//! ClickHouse backend, and a query driver that measures trace-by-id and tag+duration
//! search latency on either system.
//!
//! Trace `i` of a run is a pure function of `(seed, base_ns, i)`, so the query driver can
//! name traces that exist without being told, and ClickHouse gets exactly the spans the
//! node got.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A service of the generated system: its operations, and whom it calls.
struct Service {
    name: &'static str,
    ops: &'static [&'static str],
    calls: &'static [usize],
    db: Option<&'static str>,
}

/// A small shop, in the shape of the OpenTelemetry demo.
const SERVICES: &[Service] = &[
    Service {
        name: "frontend",
        ops: &["GET /", "GET /product/{id}", "POST /cart", "POST /checkout", "GET /api/recommendations"],
        calls: &[1, 2, 3, 6, 7, 8],
        db: None,
    },
    Service { name: "cart", ops: &["GetCart", "AddItem", "EmptyCart"], calls: &[], db: Some("redis") },
    Service { name: "checkout", ops: &["PlaceOrder"], calls: &[1, 4, 5, 9, 10, 11], db: None },
    Service {
        name: "product-catalog",
        ops: &["GetProduct", "ListProducts", "SearchProducts"],
        calls: &[],
        db: Some("postgresql"),
    },
    Service { name: "payments", ops: &["Charge", "Refund"], calls: &[], db: Some("postgresql") },
    Service { name: "shipping", ops: &["GetQuote", "ShipOrder"], calls: &[11], db: None },
    Service { name: "currency", ops: &["Convert", "GetSupportedCurrencies"], calls: &[], db: None },
    Service { name: "recommendations", ops: &["ListRecommendations"], calls: &[3], db: None },
    Service { name: "ads", ops: &["GetAds"], calls: &[], db: Some("redis") },
    Service { name: "email", ops: &["SendOrderConfirmation"], calls: &[], db: None },
    Service { name: "fraud-detection", ops: &["Score"], calls: &[], db: Some("postgresql") },
    Service { name: "quote", ops: &["CalculateQuote"], calls: &[], db: None },
];

/// splitmix64: a small, fast, well-mixed generator.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The generator's parameters: the same three give the same traces.
#[derive(Clone, Copy)]
pub struct Gen {
    pub seed: u64,
    /// Start time of trace 0.
    pub base_ns: u64,
    /// Start of trace `i` is `base_ns + i * spacing_ns`.
    pub spacing_ns: u64,
}

/// A generated span, before it becomes OTLP or a ClickHouse row.
pub struct GSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub service: usize,
    pub name: String,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub error: bool,
    pub attrs: Vec<(&'static str, AttrV)>,
}

#[derive(Clone)]
pub enum AttrV {
    S(String),
    I(i64),
}

impl AttrV {
    fn text(&self) -> String {
        match self {
            AttrV::S(s) => s.clone(),
            AttrV::I(i) => i.to_string(),
        }
    }
}

impl Gen {
    /// The trace id of trace `i` (what the query driver looks up).
    pub fn trace_id(&self, i: u64) -> [u8; 16] {
        let mut r = Rng::new(self.seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&r.next().to_be_bytes());
        id[8..].copy_from_slice(&r.next().to_be_bytes());
        id
    }

    /// Trace `i`: 5 to 30 spans across the services, with HTTP/RPC/DB attributes, about 2%
    /// of traces failing somewhere.
    pub fn trace(&self, i: u64) -> Vec<GSpan> {
        let trace_id = self.trace_id(i);
        let mut r = Rng::new(self.seed.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5);
        let target = 5 + r.below(26) as usize;
        let start = self.base_ns + i * self.spacing_ns;
        let fails = r.chance(20);
        let tenant = format!("tenant-{}", r.below(50));
        let customer = format!("c-{}", r.below(200_000));
        let mut spans: Vec<GSpan> = Vec::with_capacity(target);
        // Root: a frontend server span.
        let root_op = SERVICES[0].ops[r.below(SERVICES[0].ops.len() as u64) as usize];
        let root_dur = 2_000_000 + r.below(60_000_000) + if r.chance(30) { r.below(900_000_000) } else { 0 };
        let sid = |r: &mut Rng| r.next().to_be_bytes();
        spans.push(GSpan {
            trace_id,
            span_id: sid(&mut r),
            parent: None,
            service: 0,
            name: root_op.to_owned(),
            kind: 2,
            start,
            end: start + root_dur,
            error: false,
            attrs: vec![
                ("http.request.method", AttrV::S(if root_op.starts_with("POST") { "POST" } else { "GET" }.into())),
                ("http.route", AttrV::S(root_op.split(' ').nth(1).unwrap_or("/").to_owned())),
                ("http.response.status_code", AttrV::I(200)),
                ("tenant", AttrV::S(tenant.clone())),
                ("customer.id", AttrV::S(customer)),
                ("user_agent.original", AttrV::S("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0".into())),
            ],
        });
        // Grow the tree: pick a parent server span, add a client span and the callee's
        // server span (or a DB client span), until the target size.
        let mut servers = vec![0usize];
        while spans.len() < target {
            let pi = servers[r.below(servers.len() as u64) as usize];
            let (psvc, pstart, pend, pid) = (spans[pi].service, spans[pi].start, spans[pi].end, spans[pi].span_id);
            let span_room = (pend - pstart).max(10_000);
            let off = r.below(span_room / 2);
            let dur = (r.below(span_room - off) / 2).max(20_000);
            let svc = &SERVICES[psvc];
            if svc.calls.is_empty() || (svc.db.is_some() && r.chance(400)) || spans.len() + 2 > target {
                // A leaf: a DB call, or an internal span.
                let (name, attrs) = match svc.db {
                    Some(db) => (
                        if db == "redis" {
                            "HGET".to_owned()
                        } else {
                            format!("SELECT {}", svc.name.replace('-', "_"))
                        },
                        vec![
                            ("db.system", AttrV::S(db.into())),
                            (
                                "db.statement",
                                AttrV::S(format!("SELECT * FROM {} WHERE id = ?", svc.name.replace('-', "_"))),
                            ),
                            ("server.address", AttrV::S(format!("{db}-0.{db}.svc"))),
                        ],
                    ),
                    None => (
                        format!("{}.compute", svc.name),
                        vec![("thread.name", AttrV::S(format!("worker-{}", r.below(8))))],
                    ),
                };
                spans.push(GSpan {
                    trace_id,
                    span_id: sid(&mut r),
                    parent: Some(pid),
                    service: psvc,
                    name,
                    kind: if svc.db.is_some() { 3 } else { 1 },
                    start: pstart + off,
                    end: pstart + off + dur,
                    error: false,
                    attrs,
                });
                continue;
            }
            let callee = svc.calls[r.below(svc.calls.len() as u64) as usize];
            let csvc = &SERVICES[callee];
            let op = csvc.ops[r.below(csvc.ops.len() as u64) as usize];
            let client_id = sid(&mut r);
            let rpc = format!("oteldemo.{}/{}", csvc.name, op);
            spans.push(GSpan {
                trace_id,
                span_id: client_id,
                parent: Some(pid),
                service: psvc,
                name: rpc.clone(),
                kind: 3,
                start: pstart + off,
                end: pstart + off + dur,
                error: false,
                attrs: vec![
                    ("rpc.system", AttrV::S("grpc".into())),
                    ("rpc.service", AttrV::S(format!("oteldemo.{}", csvc.name))),
                    ("rpc.method", AttrV::S(op.into())),
                    ("server.address", AttrV::S(csvc.name.into())),
                    ("peer.service", AttrV::S(csvc.name.into())),
                ],
            });
            let lag = (dur / 20).max(1000);
            spans.push(GSpan {
                trace_id,
                span_id: sid(&mut r),
                parent: Some(client_id),
                service: callee,
                name: op.to_owned(),
                kind: 2,
                start: pstart + off + lag,
                end: pstart + off + dur - lag,
                error: false,
                attrs: vec![
                    ("rpc.system", AttrV::S("grpc".into())),
                    ("rpc.grpc.status_code", AttrV::I(0)),
                    ("tenant", AttrV::S(tenant.clone())),
                ],
            });
            servers.push(spans.len() - 1);
        }
        if fails {
            // The deepest server span fails, and its callers' spans with it.
            let mut at = *servers.last().unwrap_or(&0);
            loop {
                spans[at].error = true;
                for a in spans[at].attrs.iter_mut() {
                    if a.0 == "rpc.grpc.status_code" {
                        a.1 = AttrV::I(13);
                    }
                    if a.0 == "http.response.status_code" {
                        a.1 = AttrV::I(500);
                    }
                }
                let Some(p) = spans[at].parent else { break };
                let Some(pi) = spans.iter().position(|s| s.span_id == p) else { break };
                at = pi;
            }
        }
        spans
    }
}

fn kv(k: &str, v: &AttrV) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(match v {
                AttrV::S(s) => any_value::Value::StringValue(s.clone()),
                AttrV::I(i) => any_value::Value::IntValue(*i),
            }),
        }),
        ..Default::default()
    }
}

/// Traces as one OTLP request, one ResourceSpans per service (as an SDK would send).
pub fn otlp_request(traces: &[Vec<GSpan>]) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = (0..SERVICES.len()).map(|_| Vec::new()).collect();
    for t in traces {
        for s in t {
            by_service[s.service].push(Span {
                trace_id: s.trace_id.to_vec(),
                span_id: s.span_id.to_vec(),
                parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
                name: s.name.clone(),
                kind: s.kind,
                start_time_unix_nano: s.start,
                end_time_unix_nano: s.end,
                attributes: s.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                status: s.error.then(|| Status { code: 2, message: "internal error".into() }),
                flags: 0x101,
                ..Default::default()
            });
        }
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", &AttrV::S(SERVICES[i].name.into())),
                    kv("service.version", &AttrV::S("2.0.1".into())),
                    kv("telemetry.sdk.language", &AttrV::S("go".into())),
                    kv("k8s.pod.name", &AttrV::S(format!("{}-7d9f8b6c5-x2x{i}", SERVICES[i].name))),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "go.opentelemetry.io/otel".into(), ..Default::default() }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let Ok(s) = std::fs::read_to_string(path) else { return f64::NAN };
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `trace-ingest`: sends traces `from..` over OTLP/gRPC with `connections` concurrent
/// exporters, each request holding whole traces and about `batch` spans, for `seconds`
/// or until `max_spans`; retries what the node refuses with RESOURCE_EXHAUSTED.
pub async fn ingest(
    url: &str,
    g: Gen,
    from: u64,
    connections: usize,
    batch: usize,
    seconds: f64,
    max_spans: u64,
) -> anyhow::Result<()> {
    let pid = std::env::var("TARGET_PID").ok().and_then(|p| p.parse().ok());
    let next = Arc::new(AtomicU64::new(from));
    let spans = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (cpu0, node_cpu0) = (cpu_seconds(None), cpu_seconds(pid));
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connect {url}"))?;
        let mut client = TraceServiceClient::new(channel).max_encoding_message_size(64 << 20);
        let (next, spans, bytes, refused) = (next.clone(), spans.clone(), bytes.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline && spans.load(Ordering::Relaxed) < max_spans {
                let mut traces = Vec::new();
                let mut n = 0;
                while n < batch {
                    let t = g.trace(next.fetch_add(1, Ordering::Relaxed));
                    n += t.len();
                    traces.push(t);
                }
                let req = otlp_request(&traces);
                let size = req.encoded_len() as u64;
                loop {
                    match client.export(req.clone()).await {
                        Ok(_) => break,
                        Err(s)
                            if s.code() == tonic::Code::ResourceExhausted || s.code() == tonic::Code::Unavailable =>
                        {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(s) => bail!("export: {s}"),
                    }
                }
                spans.fetch_add(n as u64, Ordering::Relaxed);
                bytes.fetch_add(size, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let (cpu, node_cpu) = (cpu_seconds(None) - cpu0, cpu_seconds(pid) - node_cpu0);
    let n = spans.load(Ordering::Relaxed);
    let v = json!({
        "bench": "trace-ingest",
        "spans": n,
        "traces_next": next.load(Ordering::Relaxed),
        "seconds": secs,
        "spans_per_second": n as f64 / secs,
        "otlp_bytes": bytes.load(Ordering::Relaxed),
        "refused_requests": refused.load(Ordering::Relaxed),
        "generator_cpu_seconds": cpu,
        "node_cpu_seconds": node_cpu,
        "node_cpu_us_per_span": node_cpu * 1e6 / n.max(1) as f64,
        "node_rss_bytes": crate::rss_of(pid),
    });
    println!("{v}");
    Ok(())
}

type Http = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(http: &Http, url: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::builder().method("POST").uri(url).body(Full::new(body))?;
    let resp = tokio::time::timeout(Duration::from_secs(600), http.request(req)).await??;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

async fn get(http: &Http, url: &str) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::builder().uri(url).body(Full::new(Bytes::new()))?;
    let resp = tokio::time::timeout(Duration::from_secs(60), http.request(req)).await??;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// The schema of the Jaeger ClickHouse backend (jaeger-clickhouse's `jaeger-spans` and
/// `jaeger-index` scripts), in the dialect of Debian's ClickHouse 18.16: a spans table ordered
/// by trace id holding each span's model, and an index table of (service, operation,
/// duration, tags) ordered by service and newest first. 18.16 has no `CODEC` clause (the
/// server's `<compression>` config applies zstd to every column instead of per-column
/// `Delta, ZSTD(1)` / `ZSTD(3)`) and no data-skipping indices (so no `idx_tag_keys`
/// bloom filter and no `idx_duration` minmax); `LowCardinality` needs
/// [`CLICKHOUSE_SCHEMA_SETTINGS`].
pub const CLICKHOUSE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS jaeger_spans (timestamp DateTime, traceID String, model String) \
     ENGINE = MergeTree() PARTITION BY toDate(timestamp) ORDER BY traceID SETTINGS index_granularity = 1024",
    "CREATE TABLE IF NOT EXISTS jaeger_index (timestamp DateTime, traceID String, service LowCardinality(String), \
     operation LowCardinality(String), durationUs Int64, tags Nested(key LowCardinality(String), value String)) \
     ENGINE = MergeTree() PARTITION BY toDate(timestamp) ORDER BY (service, -toUnixTimestamp(timestamp)) \
     SETTINGS index_granularity = 1024",
];

/// Query-string settings for [`CLICKHOUSE_SCHEMA`] on 18.16, where `LowCardinality` is
/// still experimental.
pub const CLICKHOUSE_SCHEMA_SETTINGS: &str = "allow_experimental_low_cardinality_type=1";

fn escape_tsv(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
}

/// The model a Jaeger ClickHouse backend stores per span (its JSON encoding).
fn span_model(s: &GSpan) -> Value {
    json!({
        "traceId": hex(&s.trace_id), "spanId": hex(&s.span_id),
        "references": s.parent.map(|p| json!([{"refType": "CHILD_OF", "traceId": hex(&s.trace_id), "spanId": hex(&p)}])).unwrap_or(json!([])),
        "operationName": s.name, "startTime": s.start / 1000, "duration": (s.end - s.start) / 1000,
        "tags": s.attrs.iter().map(|(k, v)| json!({"key": k, "vStr": v.text()})).chain(s.error.then(|| json!({"key": "error", "vBool": true}))).collect::<Vec<_>>(),
        "process": {"serviceName": SERVICES[s.service].name, "tags": [{"key": "service.version", "vStr": "2.0.1"}, {"key": "telemetry.sdk.language", "vStr": "go"}]},
    })
}

/// A string inside an array in a TabSeparated field. Arrays are read there as quoted
/// literals with no TSV unescaping first, so only quoted-string escaping applies.
fn escape_quoted(s: &str, out: &mut String) {
    out.push('\'');
    escape_tsv(s, out);
    out.push('\'');
}

/// The TabSeparated rows of one chunk of traces: (jaeger_spans, jaeger_index).
fn clickhouse_rows(g: Gen, traces: std::ops::Range<u64>, spans_total: &mut u64) -> (String, String) {
    let (mut spans_tsv, mut index_tsv) = (String::new(), String::new());
    for t in traces {
        for s in g.trace(t) {
            *spans_total += 1;
            let ts = s.start / 1_000_000_000;
            let tid = hex(&s.trace_id);
            spans_tsv.push_str(&format!("{ts}\t{tid}\t"));
            escape_tsv(&span_model(&s).to_string(), &mut spans_tsv);
            spans_tsv.push('\n');
            // As the plugin's writer: the span's tags, its process's tags, sorted, unique.
            let mut tags: Vec<(&str, String)> = s.attrs.iter().map(|(k, v)| (*k, v.text())).collect();
            tags.extend([("service.version", "2.0.1".to_owned()), ("telemetry.sdk.language", "go".to_owned())]);
            if s.error {
                tags.push(("error", "true".into()));
            }
            tags.sort();
            tags.dedup();
            index_tsv.push_str(&format!("{ts}\t{tid}\t{}\t", SERVICES[s.service].name));
            escape_tsv(&s.name, &mut index_tsv);
            index_tsv.push_str(&format!("\t{}\t[", (s.end - s.start) / 1000));
            for (j, (k, _)) in tags.iter().enumerate() {
                if j > 0 {
                    index_tsv.push(',');
                }
                escape_quoted(k, &mut index_tsv);
            }
            index_tsv.push_str("]\t[");
            for (j, (_, v)) in tags.iter().enumerate() {
                if j > 0 {
                    index_tsv.push(',');
                }
                escape_quoted(v, &mut index_tsv);
            }
            index_tsv.push_str("]\n");
        }
    }
    (spans_tsv, index_tsv)
}

/// `clickhouse-load`: writes traces `0..traces` into ClickHouse (both tables) as
/// TabSeparated over HTTP, one insert per table for every 5,000 traces (about 87,000 spans:
/// ClickHouse wants few large inserts). The next chunk is generated while the previous one
/// is being inserted, so the rate is ClickHouse's, not the generator's, when it is slower.
pub async fn clickhouse_load(url: &str, g: Gen, traces: u64) -> anyhow::Result<()> {
    let http = crate::client();
    for q in CLICKHOUSE_SCHEMA {
        let (st, b) = post(&http, &format!("{url}/?{CLICKHOUSE_SCHEMA_SETTINGS}"), Bytes::from(q.to_string())).await?;
        if st != 200 {
            bail!("schema: {st} {}", String::from_utf8_lossy(&b));
        }
    }
    let (started, cpu0) = (Instant::now(), cpu_seconds(None));
    let mut spans_total = 0u64;
    let mut tsv_bytes = 0u64;
    let chunk = 5_000u64;
    let mut i = 0;
    let mut inflight: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
    while i < traces {
        let end = (i + chunk).min(traces);
        let (spans_tsv, index_tsv) = clickhouse_rows(g, i..end, &mut spans_total);
        tsv_bytes += (spans_tsv.len() + index_tsv.len()) as u64;
        if let Some(h) = inflight.take() {
            h.await??;
        }
        let (http, url) = (http.clone(), url.to_owned());
        inflight = Some(tokio::spawn(async move {
            for (q, body) in [
                ("INSERT INTO jaeger_spans (timestamp, traceID, model) FORMAT TabSeparated", spans_tsv),
                (
                    "INSERT INTO jaeger_index (timestamp, traceID, service, operation, durationUs, tags.key, tags.value) \
                     FORMAT TabSeparated",
                    index_tsv,
                ),
            ] {
                let (st, b) = post(&http, &format!("{url}/?query={}", urlencode(q)), Bytes::from(body)).await?;
                if st != 200 {
                    bail!("{q}: {st} {}", String::from_utf8_lossy(&b));
                }
            }
            Ok(())
        }));
        i = end;
    }
    if let Some(h) = inflight.take() {
        h.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "clickhouse-load", "spans": spans_total, "traces": traces, "seconds": secs,
               "spans_per_second": spans_total as f64 / secs, "tsv_bytes": tsv_bytes,
               "generator_cpu_seconds": cpu_seconds(None) - cpu0})
    );
    Ok(())
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::percentile(&v, p)
}

/// One tag+duration search: a service, one of its attributes, a minimum duration.
struct SearchCase {
    service: &'static str,
    key: &'static str,
    value: String,
    min_us: u64,
}

fn search_case(r: &mut Rng) -> SearchCase {
    match r.below(3) {
        0 => SearchCase {
            service: "frontend",
            key: "tenant",
            value: format!("tenant-{}", r.below(50)),
            min_us: 20_000 + r.below(40_000),
        },
        1 => SearchCase {
            service: SERVICES[1 + r.below(11) as usize].name,
            key: "rpc.grpc.status_code",
            value: "13".into(),
            min_us: 1_000,
        },
        _ => SearchCase {
            service: "frontend",
            key: "http.route",
            value: ["/", "/product/{id}", "/cart", "/checkout"][r.below(4) as usize].into(),
            min_us: 100_000 + r.below(400_000),
        },
    }
}

/// `trace-query`: trace-by-id for random traces among `0..traces`, and tag+duration
/// searches over the whole time range, against Signalbox (`/api/traces`) or ClickHouse
/// (the Jaeger backend's two queries: the index for trace ids, then their spans).
pub async fn query(target: &str, url: &str, g: Gen, traces: u64, samples: usize, limit: usize) -> anyhow::Result<()> {
    let http = crate::client();
    let mut r = Rng::new(g.seed ^ 0x51);
    let (start_s, end_s) = (g.base_ns / 1_000_000_000, (g.base_ns + traces * g.spacing_ns) / 1_000_000_000 + 2);
    let mut by_id = Vec::with_capacity(samples);
    let mut spans_seen = 0usize;
    for _ in 0..samples {
        let i = r.below(traces);
        let id = hex(&g.trace_id(i));
        let expect = g.trace(i).len();
        let t0 = Instant::now();
        let n = match target {
            "signalbox" => {
                let (st, b) = get(&http, &format!("{url}/api/traces/{id}")).await?;
                if st != 200 {
                    bail!("trace {id}: {st} {}", String::from_utf8_lossy(&b));
                }
                let v: Value = serde_json::from_slice(&b)?;
                v["spans"].as_array().map(Vec::len).unwrap_or(0)
            }
            "clickhouse" => {
                // The plugin's getTraces: PREWHERE reads `model` only for the matching granules.
                let q = format!("SELECT model FROM jaeger_spans PREWHERE traceID IN ('{id}') FORMAT TabSeparated");
                let (st, b) = post(&http, &format!("{url}/"), Bytes::from(q)).await?;
                if st != 200 {
                    bail!("clickhouse: {st} {}", String::from_utf8_lossy(&b));
                }
                b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count()
            }
            _ => bail!("target must be signalbox or clickhouse"),
        };
        by_id.push(t0.elapsed().as_secs_f64() * 1e3);
        if n != expect {
            bail!("trace {id}: {n} spans, expected {expect}");
        }
        spans_seen += n;
    }
    let mut search = Vec::new();
    let mut found_total = 0usize;
    for _ in 0..samples.div_ceil(5) {
        let c = search_case(&mut r);
        let t0 = Instant::now();
        let found = match target {
            "signalbox" => {
                let u = format!(
                    "{url}/api/traces?service={}&tag={}&min_duration={}us&start={start_s}&end={end_s}&limit={limit}",
                    urlencode(c.service),
                    urlencode(&format!("{}={}", c.key, c.value)),
                    c.min_us
                );
                let (st, b) = get(&http, &u).await?;
                if st != 200 {
                    bail!("search: {st} {}", String::from_utf8_lossy(&b));
                }
                let v: Value = serde_json::from_slice(&b)?;
                v["traces"].as_array().map(Vec::len).unwrap_or(0)
            }
            _ => {
                // The plugin's findTraceIDsInRange (one range: ours is shorter than the hour
                // its progressive search starts with), then getTraces for the ids found.
                let q = format!(
                    "SELECT DISTINCT traceID FROM jaeger_index WHERE service = '{}' \
                     AND timestamp >= toDateTime({start_s}) AND timestamp <= toDateTime({end_s}) AND durationUs >= {} \
                     AND has(tags.key, '{}') AND tags.value[indexOf(tags.key, '{}')] = '{}' \
                     ORDER BY service, -toUnixTimestamp(timestamp) LIMIT {limit} FORMAT TabSeparated",
                    c.service, c.min_us, c.key, c.key, c.value
                );
                let (st, b) = post(&http, &format!("{url}/"), Bytes::from(q)).await?;
                if st != 200 {
                    bail!("clickhouse index: {st} {}", String::from_utf8_lossy(&b));
                }
                let ids: Vec<String> = String::from_utf8_lossy(&b).lines().map(|l| format!("'{l}'")).collect();
                if !ids.is_empty() {
                    let q = format!(
                        "SELECT model FROM jaeger_spans PREWHERE traceID IN ({}) FORMAT TabSeparated",
                        ids.join(",")
                    );
                    let (st, b) = post(&http, &format!("{url}/"), Bytes::from(q)).await?;
                    if st != 200 {
                        bail!("clickhouse spans: {st} {}", String::from_utf8_lossy(&b));
                    }
                    if b.is_empty() {
                        bail!("clickhouse spans: no spans for {} trace ids", ids.len());
                    }
                }
                ids.len()
            }
        };
        search.push(t0.elapsed().as_secs_f64() * 1e3);
        found_total += found;
    }
    let n_search = search.len();
    println!(
        "{}",
        json!({
            "bench": "trace-query", "target": target, "traces": traces,
            "by_id_samples": samples, "by_id_p50_ms": percentile(by_id.clone(), 0.5), "by_id_p99_ms": percentile(by_id, 0.99),
            "by_id_spans_seen": spans_seen,
            "search_samples": n_search, "search_p50_ms": percentile(search.clone(), 0.5), "search_p99_ms": percentile(search, 0.99),
            "search_avg_results": found_total as f64 / n_search.max(1) as f64,
        })
    );
    Ok(())
}
