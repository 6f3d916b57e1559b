//! Loki's query API under `/loki/api/v1/`, so Grafana's Loki data source works against the
//! node: `query` (with its health check `vector(1)+vector(1)`), `query_range`, `labels`,
//! `label/{name}/values`, `series` and `index/stats`, answering in Loki's shapes
//! (`streams`, `matrix`, `vector`, times as Unix-nanosecond strings or seconds).

use super::native_query::{store, time_param};
use crate::AppState;
use crate::cluster::Partial;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use signalbox_core::log::LogRecord;
use signalbox_events::logs::lang::{Expr as Filter, Pattern, Test};
use signalbox_events::logs::logql::{self, Expr, LogQuery, MatchOp, MetricExpr, Stage};
use signalbox_events::logs::logql_eval::{self, Labels};
use std::collections::BTreeSet;
use std::time::Duration;

/// Most entries a log query returns (Loki's default `max_entries_limit_per_query`).
const MAX_ENTRIES: usize = 5_000;
/// Most steps of a range query (Loki's limit is 11,000 points per series).
const MAX_STEPS: u64 = 11_000;
/// Records a metric query may hold in memory at once.
const MAX_METRIC_RECORDS: usize = 2_000_000;

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/loki/api/v1/query", get(query).post(query))
        .route("/loki/api/v1/query_range", get(query_range).post(query_range))
        .route("/loki/api/v1/labels", get(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values))
        .route("/loki/api/v1/series", get(series).post(series))
        .route("/loki/api/v1/index/stats", get(index_stats))
        .route("/loki/api/v1/tail", get(tail))
}

/// Longest a tail connection lives; the client reconnects (Grafana does).
const TAIL_MAX: Duration = Duration::from_secs(3600);

/// `GET /loki/api/v1/tail` (WebSocket), as Grafana's live view uses it: first the newest
/// `limit` matching entries since `start`, then every new matching entry as it is stored,
/// each frame `{"streams":[{"stream":{...},"values":[["<ns>","line"]]}],"dropped_entries":[]}`.
async fn tail(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    mut req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{HeaderValue, header};
    let p = pairs(q);
    let Expr::Log(query) = parse(get(&p, "query"))? else {
        return Err(bad("tail takes a log query, not a metric query"));
    };
    let limit = limit_param(&p)?;
    let start = match get(&p, "start") {
        Some(t) => time_param("start", t)?,
        None => signalbox_core::time::unix_nanos().saturating_sub(3_600_000_000_000),
    };
    let logs = store(&s)?.clone();
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| req.headers().get(header::UPGRADE).is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket")))
        .ok_or_else(|| bad("tail is a WebSocket endpoint: send Upgrade: websocket"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut rx = logs.subscribe();
    let backlog = {
        let st = s.clone();
        let q = query.clone();
        tokio::task::spawn_blocking(move || {
            records(&st, &q, start, signalbox_core::time::unix_nanos(), MAX_METRIC_RECORDS)
        })
        .await
        .map_err(|_| bad("failed"))??
    };
    tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let frame = |v: Value| Message::Text(v.to_string().into());
        let first = streams_json(&query, &backlog, limit, true);
        let first = json!({ "streams": first["data"]["result"], "dropped_entries": [] });
        if ws.send(frame(first)).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(TAIL_MAX);
        tokio::pin!(deadline);
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = ping.tick() => {
                    if ws.send(Message::Ping(Vec::new().into())).await.is_err() { break; }
                }
                r = rx.recv() => {
                    let r = match r {
                        Ok(r) => r,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let v = json!({ "streams": [], "dropped_entries": [{ "labels": {}, "timestamp": signalbox_core::time::unix_nanos().to_string(), "count": n }] });
                            if ws.send(frame(v)).await.is_err() { break; }
                            continue;
                        }
                        Err(_) => break,
                    };
                    if let Some((labels, line)) = logql_eval::run_pipeline(&query, &r) {
                        let v = json!({ "streams": [{ "stream": labels, "values": [[r.unix_nanos.to_string(), line]] }], "dropped_entries": [] });
                        if ws.send(frame(v)).await.is_err() { break; }
                    }
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                },
            }
        }
        let _ = ws.close(None).await;
    });
    let mut resp = axum::response::Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).map_err(|_| bad("bad key"))?);
    Ok(resp)
}

/// Query pairs (repeated keys kept: `match[]` can repeat).
fn pairs(q: Option<String>) -> Vec<(String, String)> {
    q.map(|q| {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (crate::traces::decode(k), crate::traces::decode(v))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_data", m)
}

fn parse(q: Option<&str>) -> Result<Expr, ApiError> {
    let q = q.ok_or_else(|| ApiError::field("query", "is required"))?;
    logql::parse(q).map_err(|e| bad(e.to_string()))
}

fn window(p: &[(String, String)], default_span: u64) -> Result<(u64, u64), ApiError> {
    let end = match get(p, "end") {
        Some(e) => time_param("end", e)?,
        None => signalbox_core::time::unix_nanos(),
    };
    let start = match (get(p, "start"), get(p, "since")) {
        (Some(s), _) => time_param("start", s)?,
        (None, Some(d)) => end.saturating_sub(
            logql::go_duration(d).ok_or_else(|| ApiError::field("since", "must be a duration"))?.as_nanos() as u64,
        ),
        _ => end.saturating_sub(default_span),
    };
    if start > end {
        return Err(ApiError::field("start", "must not be after end"));
    }
    Ok((start, end))
}

/// A filter in the native language that every record the LogQL query can match passes:
/// equality on the service and instance, and line filters as case-insensitive phrases. It
/// lets the store skip blocks by their bloom filters before the exact LogQL pipeline runs.
fn prefilter(q: &LogQuery) -> Filter {
    let mut parts = Vec::new();
    for m in &q.selector {
        let field = match m.name.as_str() {
            "service_name" => "service",
            "instance" => "instance",
            _ => continue,
        };
        if m.op == MatchOp::Eq && !m.value.is_empty() {
            parts.push(Filter::Field {
                name: field.into(),
                test: Test::Is(Pattern { text: m.value.to_lowercase(), wildcard: None }),
            });
        }
    }
    for st in &q.stages {
        match st {
            Stage::LineFilter { op: MatchOp::Eq, text, .. } if !text.is_empty() => {
                parts.push(Filter::Phrase(text.to_lowercase()))
            }
            Stage::LineFilter { .. } => {}
            // Stages after a parser may rewrite what later filters see.
            _ => break,
        }
    }
    if parts.is_empty() { Filter::All } else { Filter::And(parts) }
}

/// Records of the window that pass the prefilter, newest first, at most `cap`.
fn records(s: &AppState, q: &LogQuery, start: u64, end: u64, cap: usize) -> Result<Vec<LogRecord>, ApiError> {
    let logs = store(s)?;
    let (max_bytes, timeout) = logs.query_limits();
    let mut out = Vec::new();
    let mut over = false;
    logs.scan(&prefilter(q), start, end, max_bytes, timeout, |r| {
        if logql_eval::selects(&q.selector, &logql_eval::stream_labels(r)) {
            out.push(r.clone());
        }
        over = out.len() > cap;
        !over
    })
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "query_too_expensive", e.to_string()))?;
    if over {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query_too_expensive",
            format!("the query matches more than {cap} records; narrow the selector or the time range"),
        ));
    }
    Ok(out)
}

fn streams_json(q: &LogQuery, recs: &[LogRecord], limit: usize, forward: bool) -> Value {
    let streams = logql_eval::log_streams(q, recs.iter(), limit, forward);
    let total: usize = streams.iter().map(|s| s.entries.len()).sum();
    let result: Vec<Value> = streams
        .into_iter()
        .map(|s| json!({ "stream": s.labels, "values": s.entries.into_iter().map(|(t, l)| json!([t.to_string(), l])).collect::<Vec<_>>() }))
        .collect();
    json!({ "status": "success", "data": { "resultType": "streams", "result": result, "stats": { "summary": { "totalEntriesReturned": total } } } })
}

fn secs(t: u64) -> Value {
    let s = t as f64 / 1e9;
    if t.is_multiple_of(1_000_000_000) { json!(t / 1_000_000_000) } else { json!(s) }
}

fn value_text(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// The longest `[range]` in a metric expression (how far before `start` records are needed).
fn max_range(e: &MetricExpr) -> u64 {
    match e {
        MetricExpr::Range { range, .. } => range.as_nanos() as u64,
        MetricExpr::Aggregate { inner, .. } => max_range(inner),
        MetricExpr::Binary { left, right, .. } => max_range(left).max(max_range(right)),
        MetricExpr::Scalar(_) => 0,
    }
}

fn first_query(e: &MetricExpr) -> Option<&LogQuery> {
    match e {
        MetricExpr::Range { query, .. } => Some(query),
        MetricExpr::Aggregate { inner, .. } => first_query(inner),
        MetricExpr::Binary { left, right, .. } => first_query(left).or_else(|| first_query(right)),
        MetricExpr::Scalar(_) => None,
    }
}

fn metric_records(s: &AppState, e: &MetricExpr, start: u64, end: u64) -> Result<Vec<LogRecord>, ApiError> {
    // Every range query of the expression reads through its own selector; one scan with the
    // first query's selector serves expressions over one stream set, the common case, and
    // a union scan serves the rest.
    let mut out = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queries = Vec::new();
    collect_queries(e, &mut queries);
    let from = start.saturating_sub(max_range(e));
    for q in queries {
        let key = format!("{:?}", q.selector.iter().map(|m| (&m.name, &m.value)).collect::<Vec<_>>());
        if !seen.insert(key) {
            continue;
        }
        out.extend(records(s, q, from, end, MAX_METRIC_RECORDS)?);
    }
    out.sort_by_key(|r| r.unix_nanos);
    out.dedup_by(|a, b| a.unix_nanos == b.unix_nanos && a.body == b.body && a.service == b.service);
    Ok(out)
}

/// The raw records `query` reads in `[start, end]` on this node alone: what a peer's
/// `logs/records` call answers (see [`crate::cluster`]).
pub(crate) fn local_records(
    s: &AppState,
    query: &str,
    start: u64,
    end: u64,
    cap: usize,
) -> Result<Vec<LogRecord>, ApiError> {
    match parse(Some(query))? {
        Expr::Log(q) => records(s, &q, start, end, cap),
        Expr::Metric(m) => metric_records(s, &m, start, end),
    }
}

/// Records of this node and every peer for `query` (the text of `expr`), in time order
/// (newest first for log queries, oldest first for metric queries, as the local reads).
fn all_records(s: &AppState, fan: &Option<Fan>, expr: &Expr, start: u64, end: u64) -> Result<Vec<LogRecord>, ApiError> {
    let mut recs = match expr {
        Expr::Log(q) => records(s, q, start, end, MAX_METRIC_RECORDS)?,
        Expr::Metric(m) => metric_records(s, m, start, end)?,
    };
    let Some(f) = fan else { return Ok(recs) };
    recs.extend(crate::cluster::merged::peer_records(
        &f.cluster,
        &f.handle,
        &f.query,
        start,
        end,
        MAX_METRIC_RECORDS,
        &f.partial,
    ));
    match expr {
        Expr::Log(_) => recs.sort_by_key(|r| std::cmp::Reverse(r.unix_nanos)),
        Expr::Metric(_) => {
            recs.sort_by_key(|r| r.unix_nanos);
            recs.dedup_by(|a, b| a.unix_nanos == b.unix_nanos && a.body == b.body && a.service == b.service);
        }
    }
    Ok(recs)
}

/// What a query needs to ask the peers from a blocking thread.
struct Fan {
    cluster: std::sync::Arc<crate::cluster::Cluster>,
    handle: tokio::runtime::Handle,
    query: String,
    partial: Partial,
}

fn fan(s: &AppState, query: &str, partial: &Partial) -> Option<Fan> {
    s.cluster.as_ref().map(|c| Fan {
        cluster: c.clone(),
        handle: tokio::runtime::Handle::current(),
        query: query.to_owned(),
        partial: partial.clone(),
    })
}

fn collect_queries<'a>(e: &'a MetricExpr, out: &mut Vec<&'a LogQuery>) {
    match e {
        MetricExpr::Range { query, .. } => out.push(query),
        MetricExpr::Aggregate { inner, .. } => collect_queries(inner, out),
        MetricExpr::Binary { left, right, .. } => {
            collect_queries(left, out);
            collect_queries(right, out);
        }
        MetricExpr::Scalar(_) => {}
    }
}

fn limit_param(p: &[(String, String)]) -> Result<usize, ApiError> {
    match get(p, "limit") {
        None => Ok(100),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ENTRIES).contains(n))
            .ok_or_else(|| ApiError::field("limit", format!("must be between 1 and {MAX_ENTRIES}"))),
    }
}

fn forward(p: &[(String, String)]) -> Result<bool, ApiError> {
    match get(p, "direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(false),
        Some("forward") => Ok(true),
        Some(_) => Err(ApiError::field("direction", "must be forward or backward")),
    }
}

async fn query_range(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut p = pairs(q);
    p.extend(pairs(Some(String::from_utf8_lossy(&body).into_owned())));
    let expr = parse(get(&p, "query"))?;
    let (start, end) = window(&p, 3_600_000_000_000)?;
    let partial = Partial::default();
    let fan = fan(&s, get(&p, "query").unwrap_or_default(), &partial);
    let run = move || -> Result<Value, ApiError> {
        match &expr {
            Expr::Log(q) => {
                let recs = all_records(&s, &fan, &expr, start, end)?;
                Ok(streams_json(q, &recs, limit_param(&p)?, forward(&p)?))
            }
            Expr::Metric(m) => {
                let step = match get(&p, "step") {
                    Some(st) => step_param(st)?,
                    None => ((end - start) / 250).max(1_000_000_000),
                };
                if (end - start) / step > MAX_STEPS {
                    return Err(bad(format!(
                        "exceeded maximum resolution of {MAX_STEPS} points per time series; raise the step"
                    )));
                }
                let recs = all_records(&s, &fan, &expr, start, end)?;
                let series = logql_eval::metric_series(m, &recs, start, end, step);
                let result: Vec<Value> = series
                    .into_iter()
                    .map(|x| json!({ "metric": x.labels, "values": x.points.iter().map(|(t, v)| json!([secs(*t), value_text(*v)])).collect::<Vec<_>>() }))
                    .collect();
                Ok(json!({ "status": "success", "data": { "resultType": "matrix", "result": result, "stats": {} } }))
            }
        }
    };
    let out = tokio::task::spawn_blocking(run)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the query failed"))??;
    Ok(partial.json(out))
}

fn step_param(st: &str) -> Result<u64, ApiError> {
    let d = match st.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1e9 => Duration::from_secs_f64(f),
        _ => logql::go_duration(st)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ApiError::field("step", "must be a duration or a number of seconds"))?,
    };
    Ok(d.as_nanos() as u64)
}

async fn query(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut p = pairs(q);
    p.extend(pairs(Some(String::from_utf8_lossy(&body).into_owned())));
    let expr = parse(get(&p, "query"))?;
    let time = match get(&p, "time") {
        Some(t) => time_param("time", t)?,
        None => signalbox_core::time::unix_nanos(),
    };
    let partial = Partial::default();
    let fan = fan(&s, get(&p, "query").unwrap_or_default(), &partial);
    let run = move || -> Result<Value, ApiError> {
        match &expr {
            Expr::Log(q) => {
                let recs = all_records(&s, &fan, &expr, time.saturating_sub(3_600_000_000_000), time)?;
                Ok(streams_json(q, &recs, limit_param(&p)?, forward(&p)?))
            }
            Expr::Metric(m) => {
                let recs =
                    if first_query(m).is_some() { all_records(&s, &fan, &expr, time, time)? } else { Vec::new() };
                let series = logql_eval::metric_series(m, &recs, time, time, 1);
                let result: Vec<Value> = series
                    .into_iter()
                    .filter_map(|x| {
                        x.points
                            .first()
                            .map(|(t, v)| json!({ "metric": x.labels, "value": [secs(*t), value_text(*v)] }))
                    })
                    .collect();
                Ok(json!({ "status": "success", "data": { "resultType": "vector", "result": result, "stats": {} } }))
            }
        }
    };
    let out = tokio::task::spawn_blocking(run)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the query failed"))??;
    Ok(partial.json(out))
}

/// Stream label sets of the window on this node and every peer.
fn label_sets(s: &AppState, p: &[(String, String)], partial: &Partial) -> Result<Vec<Labels>, ApiError> {
    let mut sets = local_label_sets(s, p)?;
    if let Some(c) = &s.cluster {
        sets.extend(crate::cluster::merged::peer_label_sets(c, &tokio::runtime::Handle::current(), p, partial));
        sets.sort();
        sets.dedup();
    }
    Ok(sets)
}

/// Stream label sets of the window on this node (optionally only those a selector picks).
pub(crate) fn local_label_sets(s: &AppState, p: &[(String, String)]) -> Result<Vec<Labels>, ApiError> {
    let (start, end) = window(p, 6 * 3_600_000_000_000)?;
    let selectors: Vec<LogQuery> = p
        .iter()
        .filter(|(k, _)| k == "match[]" || k == "match" || k == "query")
        .map(|(_, v)| match logql::parse(v) {
            Ok(Expr::Log(q)) => Ok(q),
            Ok(Expr::Metric(_)) => Err(bad("a series selector must be a stream selector")),
            Err(e) => Err(bad(e.to_string())),
        })
        .collect::<Result<_, _>>()?;
    let logs = store(s)?;
    let (max_bytes, timeout) = logs.query_limits();
    let mut sets: BTreeSet<Labels> = BTreeSet::new();
    let mut scanned = 0usize;
    logs.scan(&Filter::All, start, end, max_bytes, timeout, |r| {
        let l = logql_eval::stream_labels(r);
        if selectors.is_empty() || selectors.iter().any(|q| logql_eval::selects(&q.selector, &l)) {
            sets.insert(l);
        }
        scanned += 1;
        scanned < MAX_METRIC_RECORDS && sets.len() < 100_000
    })
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "query_too_expensive", e.to_string()))?;
    Ok(sets.into_iter().collect())
}

/// Runs `label_sets` on a blocking thread (peers are asked from there).
async fn sets_of(s: AppState, p: Vec<(String, String)>, partial: &Partial) -> Result<Vec<Labels>, ApiError> {
    let partial = partial.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        label_sets(&s, &p, &partial)
    })
    .await
    .map_err(|_| bad("failed"))?
}

async fn labels(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = pairs(q);
    let partial = Partial::default();
    let sets = sets_of(s, p, &partial).await?;
    let names: BTreeSet<String> = sets.iter().flat_map(|l| l.keys().cloned()).collect();
    Ok(partial.json(json!({ "status": "success", "data": names })))
}

async fn label_values(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = pairs(q);
    let partial = Partial::default();
    let sets = sets_of(s, p, &partial).await?;
    let values: BTreeSet<String> = sets.iter().filter_map(|l| l.get(&name).cloned()).collect();
    Ok(partial.json(json!({ "status": "success", "data": values })))
}

async fn series(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut p = pairs(q);
    p.extend(pairs(Some(String::from_utf8_lossy(&body).into_owned())));
    let partial = Partial::default();
    let sets = sets_of(s, p, &partial).await?;
    Ok(partial.json(json!({ "status": "success", "data": sets })))
}

async fn index_stats(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = pairs(q);
    let expr = parse(get(&p, "query"))?;
    let Expr::Log(q) = expr else { return Err(bad("index/stats takes a stream selector")) };
    let (start, end) = window(&p, 3_600_000_000_000)?;
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let recs = records(&s, &q, start, end, MAX_METRIC_RECORDS)?;
        let streams: BTreeSet<Labels> = recs.iter().map(logql_eval::stream_labels).collect();
        let bytes: usize = recs.iter().map(|r| r.body.len()).sum();
        Ok(json!({ "streams": streams.len(), "chunks": streams.len(), "entries": recs.len(), "bytes": bytes }))
    })
    .await
    .map_err(|_| bad("failed"))??;
    Ok(Json(out))
}
