//! The native log query API (docs/log-queries.md has the language):
//!
//! - `GET /api/logs?query=&start=&end=&since=&limit=&direction=&context=`: matching records,
//!   newest first (or `direction=forward`), with the matched ranges of each body and, with
//!   `context=N`, the N records of the same service instance before and after each hit.
//! - `GET /api/logs/aggregate?query=...|count by f&start=&end=&step=`: count over time
//!   (histogram buckets, optionally by a field), top values, or stats of a numeric field.
//! - `GET /api/logs/tail?query=`: live tail as server-sent events, same filter.
//!
//! Times and ids are strings in the answers (nanoseconds do not fit a JavaScript number).

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use signalbox_core::log::LogRecord;
use signalbox_core::span::AttrValue;
use signalbox_events::logs::lang::{self, Aggregation, Expr, Stat};
use signalbox_events::logs::store::{LogRow, Logs, Search, SearchError};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Most records one search returns.
const MAX_LIMIT: usize = 10_000;
/// Most histogram buckets.
const MAX_BUCKETS: u64 = 2_000;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/logs", axum::routing::get(search))
        .route("/api/logs/aggregate", axum::routing::get(aggregate))
        .route("/api/logs/tail", axum::routing::get(tail))
        .route("/api/logs/stream", axum::routing::get(super::native_stream::stream))
}

pub(crate) fn store(s: &AppState) -> Result<&Logs, ApiError> {
    s.logs.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "logs_disabled", "the log store is not enabled on this node")
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Params {
    query: String,
    start: Option<String>,
    end: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    direction: Option<String>,
    context: Option<usize>,
    step: Option<String>,
}

/// Resolves `start`/`end`/`since` (default: the last hour).
pub(crate) fn window(start: Option<&str>, end: Option<&str>, since: Option<&str>) -> Result<(u64, u64), ApiError> {
    let end = match end.filter(|e| !e.is_empty()) {
        Some(e) => time_param("end", e)?,
        None => signalbox_core::time::unix_nanos(),
    };
    let start = match (start.filter(|s| !s.is_empty()), since.filter(|s| !s.is_empty())) {
        (Some(s), _) => time_param("start", s)?,
        (None, Some(d)) => end.saturating_sub(
            signalbox_events::logs::logql::go_duration(d)
                .ok_or_else(|| ApiError::field("since", "must be a duration like 15m or 1h"))?
                .as_nanos() as u64,
        ),
        (None, None) => end.saturating_sub(3_600_000_000_000),
    };
    if start > end {
        return Err(ApiError::field("start", "must not be after end"));
    }
    Ok((start, end))
}

/// A time as RFC 3339, Unix seconds (with a fraction), milliseconds or nanoseconds.
pub(crate) fn time_param(field: &str, v: &str) -> Result<u64, ApiError> {
    if v.contains('.')
        && let Ok(f) = v.parse::<f64>()
    {
        if !(0.0..9.2e9).contains(&f) {
            return Err(ApiError::field(field, "is out of range"));
        }
        return Ok((f * 1e9) as u64);
    }
    crate::traces::parse_time(field, v)
}

pub(crate) fn parse_query(q: &str) -> Result<lang::Query, ApiError> {
    lang::parse(q).map_err(|e| ApiError::field("query", e.to_string()))
}

pub(crate) fn search_error(e: SearchError) -> ApiError {
    match e {
        SearchError::TooMuchData(_) | SearchError::Timeout(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "query_too_expensive", e.to_string())
        }
        SearchError::Damaged(_) => {
            tracing::error!(error = %e, "log query hit a damaged block");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "a log block could not be read")
        }
    }
}

fn attrs_json(list: &[signalbox_core::span::KeyValue]) -> Map<String, Value> {
    list.iter()
        .map(|kv| {
            let v = match &kv.value {
                AttrValue::Str(s) => json!(s),
                AttrValue::Int(i) => json!(i),
                AttrValue::Float(f) => json!(f),
                AttrValue::Bool(b) => json!(b),
            };
            (kv.key.to_string(), v)
        })
        .collect()
}

/// A record in the native JSON form.
pub fn record_json(r: &LogRecord) -> Value {
    json!({
        "time": signalbox_core::time::rfc3339_nanos(r.unix_nanos),
        "unix_nanos": r.unix_nanos.to_string(),
        "severity": r.severity.name(),
        "severity_number": r.severity.0,
        "severity_text": r.severity_text,
        "body": r.body,
        "service": r.service,
        "instance": r.instance,
        "resource": attrs_json(&r.resource),
        "attributes": attrs_json(&r.attributes),
        "trace_id": r.trace_id.map(|t| t.to_hex()),
        "span_id": r.span_id.map(|s| s.to_hex()),
    })
}

/// Byte ranges of the body that the query's words and phrases matched.
pub(crate) fn highlights(filter: &Expr, body: &str) -> Vec<(usize, usize)> {
    let mut terms: Vec<String> = Vec::new();
    fn collect(e: &Expr, out: &mut Vec<String>) {
        match e {
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| collect(x, out)),
            Expr::Word(p) if p.wildcard.is_none() => out.push(p.text.clone()),
            Expr::Phrase(p) => out.push(p.clone()),
            _ => {}
        }
    }
    collect(filter, &mut terms);
    let lower = body.to_lowercase();
    if lower.len() != body.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for t in terms.iter().filter(|t| !t.is_empty()) {
        let mut from = 0;
        while let Some(i) = lower[from..].find(t.as_str()) {
            out.push((from + i, from + i + t.len()));
            from += i + t.len();
            if out.len() > 64 {
                break;
            }
        }
    }
    out.sort_unstable();
    out
}

async fn search(State(s): State<AppState>, Query(p): Query<Params>) -> Result<axum::response::Response, ApiError> {
    let logs = store(&s)?.clone();
    let q = parse_query(&p.query)?;
    if q.aggregation.is_some() {
        return Err(ApiError::field("query", "an aggregation (`| ...`) goes to /api/logs/aggregate"));
    }
    let (start, end) = window(p.start.as_deref(), p.end.as_deref(), p.since.as_deref())?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let forward = match p.direction.as_deref() {
        None | Some("backward") => false,
        Some("forward") => true,
        Some(_) => return Err(ApiError::field("direction", "must be forward or backward")),
    };
    let context = p.context.unwrap_or(0);
    if context > 100 {
        return Err(ApiError::field("context", "must be at most 100"));
    }
    let limits = logs.query_limits();
    let search =
        Search { filter: q.filter.clone(), start, end, limit, forward, max_bytes: limits.0, timeout: limits.1 };
    let filter = q.filter.clone();
    let partial = crate::cluster::Partial::default();
    let fan = s.cluster.clone().map(|c| (c, tokio::runtime::Handle::current(), p.query.clone(), partial.clone()));
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let (mut records, stats) = logs.search(&search).map_err(search_error)?;
        if let Some((c, handle, text, partial)) = &fan {
            // Every node's newest (or oldest) `limit`, merged by time, cut to `limit`.
            let req = crate::cluster::wire::LogSearch { query: text.clone(), start, end, limit, forward };
            records.extend(crate::cluster::merged::peer_search(c, handle, &req, partial));
            if forward {
                records.sort_by_key(|r| r.unix_nanos);
            } else {
                records.sort_by_key(|r| std::cmp::Reverse(r.unix_nanos));
            }
            records.truncate(limit);
        }
        let mut list = Vec::with_capacity(records.len());
        for r in records.iter() {
            let mut v = record_json(r);
            v["highlights"] = json!(highlights(&filter, &r.body));
            if context > 0 {
                v["context"] = context_of(&logs, r, context, search.max_bytes, search.timeout)?;
            }
            list.push(v);
        }
        Ok(json!({
            "records": list,
            "start_unix_nanos": start.to_string(),
            "end_unix_nanos": end.to_string(),
            "stats": { "blocks": stats.blocks_total, "blocks_skipped": stats.blocks_skipped, "blocks_read": stats.blocks_read, "pages_read": stats.pages_read, "bytes_scanned": stats.bytes_scanned },
        }))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the search failed"))??;
    Ok(partial.json(out))
}

/// This node's records for a peer's `logs/search`.
pub(crate) fn local_search(s: &AppState, req: &crate::cluster::wire::LogSearch) -> Result<Vec<LogRecord>, ApiError> {
    let logs = store(s)?;
    let q = parse_query(&req.query)?;
    let limits = logs.query_limits();
    let search = Search {
        filter: q.filter,
        start: req.start,
        end: req.end,
        limit: req.limit.clamp(1, MAX_LIMIT),
        forward: req.forward,
        max_bytes: limits.0,
        timeout: limits.1,
    };
    Ok(logs.search(&search).map_err(search_error)?.0)
}

/// The records of the same service instance just before and after `r` (as `grep -C`).
fn context_of(logs: &Logs, r: &LogRecord, n: usize, max_bytes: u64, timeout: Duration) -> Result<Value, ApiError> {
    // Rows are compared on their service and instance columns; only neighbours are decoded.
    let same = |x: &dyn LogRow| {
        x.unix_nanos() != r.unix_nanos
            && x.field("service").is_some_and(|s| s == r.service)
            && x.field("instance").is_some_and(|i| i == r.instance)
    };
    let damaged = || ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "a log block could not be read");
    let window = 3_600_000_000_000u64;
    let mut before = Vec::new();
    let mut bad = false;
    logs.scan_rows(&Expr::All, r.unix_nanos.saturating_sub(window), r.unix_nanos, max_bytes, timeout, |x| {
        if same(x) {
            match x.to_record() {
                Ok(rec) => before.push(rec),
                Err(_) => bad = true,
            }
        }
        !bad && before.len() < n * 4
    })
    .map_err(search_error)?;
    before.sort_by_key(|x| std::cmp::Reverse(x.unix_nanos));
    before.truncate(n);
    before.reverse();
    let mut after = Vec::new();
    logs.scan_rows(&Expr::All, r.unix_nanos, r.unix_nanos.saturating_add(window), max_bytes, timeout, |x| {
        if same(x) {
            match x.to_record() {
                Ok(rec) => after.push(rec),
                Err(_) => bad = true,
            }
        }
        !bad
    })
    .map_err(search_error)?;
    if bad {
        return Err(damaged());
    }
    after.sort_by_key(|x| x.unix_nanos);
    after.truncate(n);
    Ok(
        json!({ "before": before.iter().map(record_json).collect::<Vec<_>>(), "after": after.iter().map(record_json).collect::<Vec<_>>() }),
    )
}

fn field_value(r: &dyn LogRow, name: &str) -> Option<String> {
    r.field(name).map(|c| c.into_owned())
}

async fn aggregate(State(s): State<AppState>, Query(p): Query<Params>) -> Result<Json<Value>, ApiError> {
    let logs = store(&s)?.clone();
    let q = parse_query(&p.query)?;
    let Some(agg) = q.aggregation.clone() else {
        return Err(ApiError::field(
            "query",
            "add an aggregation: `| count by FIELD`, `| top N FIELD` or `| stats ...`",
        ));
    };
    let (start, end) = window(p.start.as_deref(), p.end.as_deref(), p.since.as_deref())?;
    let step = match p.step.as_deref().filter(|x| !x.is_empty()) {
        Some(st) => signalbox_events::logs::logql::go_duration(st)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ApiError::field("step", "must be a duration like 1m"))?
            .as_nanos() as u64,
        None => ((end - start) / 100).max(1_000_000_000),
    };
    if (end - start) / step > MAX_BUCKETS {
        return Err(ApiError::field("step", format!("would make more than {MAX_BUCKETS} buckets")));
    }
    let limits = logs.query_limits();
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        match agg {
            Aggregation::Count { by } => {
                let buckets = ((end - start) / step + 1) as usize;
                let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
                let mut total = 0u64;
                // Sealed pages are read column-first (time and the key's dictionary codes),
                // handed over a group at a time.
                logs.scan_groups(&q.filter, start, end, by.as_deref(), limits.0, limits.1, |key, times| {
                    let key = key.unwrap_or("");
                    let counts = match series.get_mut(key) {
                        Some(c) => c,
                        None => series.entry(key.to_owned()).or_insert_with(|| vec![0; buckets]),
                    };
                    for t in times {
                        counts[(((t - start) / step) as usize).min(buckets - 1)] += 1;
                    }
                    total += times.len() as u64;
                    true
                })
                .map_err(search_error)?;
                let list: Vec<Value> = series
                    .into_iter()
                    .map(|(k, counts)| {
                        json!({ "key": k, "counts": counts, "total": counts.iter().sum::<u64>() })
                    })
                    .collect();
                Ok(json!({ "type": "count", "by": by, "start_unix_nanos": start.to_string(), "step_nanos": step.to_string(), "total": total, "series": list }))
            }
            Aggregation::Top { n, field } => {
                let mut counts: HashMap<String, u64> = HashMap::new();
                logs.scan_groups(&q.filter, start, end, Some(&field), limits.0, limits.1, |v, times| {
                    if let Some(v) = v {
                        match counts.get_mut(v) {
                            Some(c) => *c += times.len() as u64,
                            None => {
                                counts.insert(v.to_owned(), times.len() as u64);
                            }
                        }
                    }
                    counts.len() < 1_000_000
                })
                .map_err(search_error)?;
                let mut v: Vec<(String, u64)> = counts.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                v.truncate(n);
                Ok(json!({ "type": "top", "field": field, "values": v.into_iter().map(|(k, c)| json!({ "value": k, "count": c })).collect::<Vec<_>>() }))
            }
            Aggregation::Stats { stats, by } => {
                let mut groups: BTreeMap<String, HashMap<String, Vec<f64>>> = BTreeMap::new();
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                let fields: Vec<String> = stats
                    .iter()
                    .filter_map(|s| match s {
                        Stat::Count => None,
                        Stat::Avg(f) | Stat::Min(f) | Stat::Max(f) | Stat::Sum(f) | Stat::Quantile(_, f) => Some(f.clone()),
                    })
                    .collect();
                logs.scan_rows(&q.filter, start, end, limits.0, limits.1, |r| {
                    let key = by.as_ref().map(|f| field_value(r, f).unwrap_or_default()).unwrap_or_default();
                    *counts.entry(key.clone()).or_insert(0) += 1;
                    let g = groups.entry(key).or_default();
                    for f in &fields {
                        if let Some(x) = field_value(r, f).and_then(|v| v.trim().parse::<f64>().ok()) {
                            g.entry(f.clone()).or_default().push(x);
                        }
                    }
                    true
                })
                .map_err(search_error)?;
                let rows: Vec<Value> = counts
                    .iter()
                    .map(|(k, c)| {
                        let g = groups.get(k);
                        let mut row = Map::new();
                        row.insert("key".into(), json!(k));
                        for s in &stats {
                            let (name, v) = stat(s, *c, g);
                            row.insert(name, v);
                        }
                        Value::Object(row)
                    })
                    .collect();
                Ok(json!({ "type": "stats", "by": by, "rows": rows }))
            }
        }
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the aggregation failed"))??;
    Ok(Json(out))
}

fn stat(s: &Stat, count: u64, g: Option<&HashMap<String, Vec<f64>>>) -> (String, Value) {
    let vals = |f: &str| g.and_then(|g| g.get(f)).map(Vec::as_slice).unwrap_or(&[]);
    match s {
        Stat::Count => ("count".into(), json!(count)),
        Stat::Avg(f) => {
            let v = vals(f);
            (
                format!("avg({f})"),
                if v.is_empty() { Value::Null } else { json!(v.iter().sum::<f64>() / v.len() as f64) },
            )
        }
        Stat::Min(f) => {
            (format!("min({f})"), vals(f).iter().copied().reduce(f64::min).map_or(Value::Null, |x| json!(x)))
        }
        Stat::Max(f) => {
            (format!("max({f})"), vals(f).iter().copied().reduce(f64::max).map_or(Value::Null, |x| json!(x)))
        }
        Stat::Sum(f) => (format!("sum({f})"), json!(vals(f).iter().sum::<f64>())),
        Stat::Quantile(q, f) => {
            let mut v = vals(f).to_vec();
            v.sort_by(f64::total_cmp);
            let name = format!("p{}({f})", (q * 100.0).round());
            if v.is_empty() {
                return (name, Value::Null);
            }
            let idx = ((v.len() - 1) as f64 * q).round() as usize;
            (name, json!(v[idx]))
        }
    }
}

async fn tail(
    State(s): State<AppState>,
    Query(p): Query<Params>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let logs = store(&s)?;
    let q = parse_query(&p.query)?;
    let mut rx = logs.subscribe();
    let stream = async_stream(move |tx| async move {
        loop {
            match rx.recv().await {
                Ok(r) => {
                    if signalbox_events::logs::eval::matches(&q.filter, r.as_ref()) {
                        let ev = Event::default().event("record").data(record_json(&r).to_string());
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let ev = Event::default().event("dropped").data(json!({ "dropped": n }).to_string());
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A stream fed by a task through a bounded channel (ends when the client goes).
fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}
