//! The Prometheus HTTP API (`/prometheus/api/v1/...`), answering as Prometheus 2.42 does:
//! the `{"status":"success","data":...}` envelope, `bad_data` / `execution` / `timeout`
//! errors with Prometheus's HTTP statuses (400, 422, 503), GET and form-encoded POST for the
//! endpoints Grafana posts to, times as RFC 3339 or Unix seconds, and values as strings.

use super::{prom_error, service};
use crate::AppState;
use crate::cluster::Partial;
use crate::cluster::merged::ClusterQueryable;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use signalbox_metrics::promql::{self, QueryError};
use signalbox_metrics::storage::{Labels, Matcher, Queryable};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most points per series a range query may ask for (Prometheus's limit).
const MAX_POINTS: i64 = 11_000;
/// The version Grafana and other clients see in `buildinfo` (the API level answered).
pub const PROMETHEUS_VERSION: &str = "2.42.0";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/prometheus/api/v1/query", get(query).post(query))
        .route("/prometheus/api/v1/query_range", get(query_range).post(query_range))
        .route("/prometheus/api/v1/series", get(series).post(series))
        .route("/prometheus/api/v1/labels", get(labels).post(labels))
        .route("/prometheus/api/v1/label/{name}/values", get(label_values))
        .route("/prometheus/api/v1/metadata", get(metadata))
        .route("/prometheus/api/v1/targets", get(targets))
        .route("/prometheus/api/v1/rules", get(rules))
        .route("/prometheus/api/v1/alerts", get(alerts))
        .route("/prometheus/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/prometheus/api/v1/status/buildinfo", get(buildinfo))
        .route("/prometheus/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/prometheus/api/v1/status/flags", get(flags))
        .route("/api/alerts/history", get(alert_history))
}

/// The request's parameters: the query string, and a form-encoded body for POST.
struct Params(Vec<(String, String)>);

impl Params {
    #[allow(clippy::result_large_err)]
    fn read(query: Option<String>, headers: &HeaderMap, body: &[u8]) -> Result<Params, Response> {
        let mut out: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded::from_str(&q).map_err(|e| bad_data(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        let form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form && !body.is_empty() {
            let b = std::str::from_utf8(body).map_err(|_| bad_data("the form body is not UTF-8"))?;
            let more: Vec<(String, String)> =
                serde_urlencoded::from_str(b).map_err(|e| bad_data(format!("invalid form body: {e}")))?;
            out.extend(more);
        }
        Ok(Params(out))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect()
    }

    /// A time parameter in milliseconds, or `default`.
    #[allow(clippy::result_large_err)]
    fn time(&self, k: &str, default: i64) -> Result<i64, Response> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                bad_data(format!("invalid parameter \"{k}\": cannot parse \"{v}\" to a valid timestamp"))
            }),
        }
    }

    /// The series selectors of `match[]`.
    #[allow(clippy::result_large_err)]
    fn selectors(&self) -> Result<Vec<Vec<Matcher>>, Response> {
        self.all("match[]")
            .into_iter()
            .map(|s| promql::selector_matchers(s).map_err(|e| bad_data(format!("invalid parameter \"match[]\": {e}"))))
            .collect()
    }

    fn limit(&self) -> usize {
        self.get("limit").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// Prometheus's earliest and latest times (the defaults of `start` and `end`).
const MIN_TIME: i64 = i64::MIN / 2;
const MAX_TIME: i64 = i64::MAX / 2;

/// A time as the API accepts it: Unix seconds (with a fraction) or RFC 3339.
pub fn parse_time(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() {
            return None;
        }
        let ms = (secs * 1000.0).round();
        return (ms.abs() < 9.0e15).then_some(ms as i64);
    }
    // Prometheus's spellings of its minimum and maximum time, which clients send.
    if v.starts_with("-292273086-") {
        return Some(MIN_TIME);
    }
    if v.starts_with("292277025-") {
        return Some(MAX_TIME);
    }
    signalbox_core::time::parse_rfc3339(v).map(|n| (n / 1_000_000) as i64)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn bad_data(m: impl Into<String>) -> Response {
    prom_error(StatusCode::BAD_REQUEST, "bad_data", m)
}

fn success(data: &str) -> Response {
    let body = format!("{{\"status\":\"success\",\"data\":{data}}}");
    (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A success answer with Prometheus's `warnings` when a storage node did not answer (and
/// the partial-result header).
fn success_partial(data: &str, partial: &Partial) -> Response {
    if !partial.is_partial() {
        return success(data);
    }
    let warnings = serde_json::to_string(&partial.warnings()).unwrap_or_default();
    let body = format!("{{\"status\":\"success\",\"data\":{data},\"warnings\":{warnings}}}");
    partial.mark((StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// What queries read: this node's database, or with a cluster every storage node's merged.
fn queryable(s: &AppState, svc: &signalbox_metrics::service::MetricsService, partial: &Partial) -> Arc<dyn Queryable> {
    match &s.cluster {
        None => svc.db_arc(),
        Some(c) => Arc::new(ClusterQueryable {
            local: svc.db_arc(),
            cluster: c.clone(),
            partial: partial.clone(),
            handle: tokio::runtime::Handle::current(),
        }),
    }
}

fn success_json(data: Value) -> Response {
    success(&data.to_string())
}

fn query_error(e: QueryError) -> Response {
    let status = match e.error_type() {
        "bad_data" => StatusCode::BAD_REQUEST,
        "timeout" => StatusCode::SERVICE_UNAVAILABLE,
        "execution" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    prom_error(status, e.error_type(), e.to_string())
}

/// A float as Prometheus writes one (shortest form, `NaN`, `+Inf`, `-Inf`), quoted.
fn push_value(out: &mut String, v: f64) {
    out.push('"');
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
    out.push('"');
}

/// A millisecond time as Unix seconds.
fn push_time(out: &mut String, t: i64) {
    let _ = write!(out, "{}", t as f64 / 1000.0);
}

fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    out.push('}');
}

/// A query result as the API's `{"resultType":...,"result":...}`.
pub fn render(v: &promql::Value) -> String {
    let mut out = String::with_capacity(256);
    match v {
        promql::Value::Scalar { t, v } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":[");
            push_time(&mut out, *t);
            out.push(',');
            push_value(&mut out, *v);
            out.push_str("]}");
        }
        promql::Value::String { t, v } => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            push_time(&mut out, *t);
            out.push(',');
            out.push_str(&serde_json::to_string(v).unwrap_or_default());
            out.push_str("]}");
        }
        promql::Value::Vector(samples) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                out.push_str(",\"value\":[");
                push_time(&mut out, s.t);
                out.push(',');
                push_value(&mut out, s.v);
                out.push_str("]}");
            }
            out.push_str("]}");
        }
        promql::Value::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, (t, v)) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    push_time(&mut out, *t);
                    out.push(',');
                    push_value(&mut out, *v);
                    out.push(']');
                }
                out.push_str("]}");
            }
            out.push_str("]}");
        }
    }
    out
}

/// The engine with the request's `timeout` applied (never longer than the node's).
#[allow(clippy::result_large_err)]
fn engine(svc: &signalbox_metrics::service::MetricsService, p: &Params) -> Result<promql::Engine, Response> {
    let mut e = svc.engine.clone();
    if let Some(t) = p.get("timeout") {
        let ms = promql::parse_duration(t).map_err(|_| {
            bad_data(format!("invalid parameter \"timeout\": cannot parse \"{t}\" to a valid duration"))
        })?;
        e.timeout = e.timeout.min(Duration::from_millis(ms as u64));
    }
    Ok(e)
}

async fn query(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let svc = match service(&s) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = match Params::read(q, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(text) = p.get("query").map(str::to_string) else {
        return bad_data("invalid parameter \"query\": no query given");
    };
    let t = match p.time("time", now_ms()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let engine = match engine(&svc, &p) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let partial = Partial::default();
    let db = queryable(&s, &svc, &partial);
    match tokio::task::spawn_blocking(move || engine.instant(&*db, &text, t).map(|v| render(&v))).await {
        Ok(Ok(data)) => success_partial(&data, &partial),
        Ok(Err(e)) => query_error(e),
        Err(e) => prom_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn query_range(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let svc = match service(&s) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = match Params::read(q, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(text) = p.get("query").map(str::to_string) else {
        return bad_data("invalid parameter \"query\": no query given");
    };
    let (start, end) = match (p.get("start"), p.get("end")) {
        (Some(_), Some(_)) => match (p.time("start", 0), p.time("end", 0)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(r), _) | (_, Err(r)) => return r,
        },
        (None, _) => return bad_data("invalid parameter \"start\": cannot parse \"\" to a valid timestamp"),
        (_, None) => return bad_data("invalid parameter \"end\": cannot parse \"\" to a valid timestamp"),
    };
    if end < start {
        return bad_data("invalid parameter \"end\": end timestamp must not be before start time");
    }
    let Some(step_text) = p.get("step") else {
        return bad_data("invalid parameter \"step\": cannot parse \"\" to a valid duration");
    };
    let step = match promql::parse_duration(step_text) {
        Ok(s) => s,
        Err(_) => {
            return bad_data(format!("invalid parameter \"step\": cannot parse \"{step_text}\" to a valid duration"));
        }
    };
    if step <= 0 {
        return bad_data("zero or negative query resolution step widths are not accepted. Try a positive integer");
    }
    if (end - start) / step > MAX_POINTS {
        return bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        );
    }
    let engine = match engine(&svc, &p) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let partial = Partial::default();
    let db = queryable(&s, &svc, &partial);
    match tokio::task::spawn_blocking(move || engine.range(&*db, &text, start, end, step).map(|v| render(&v))).await {
        Ok(Ok(data)) => success_partial(&data, &partial),
        Ok(Err(e)) => query_error(e),
        Err(e) => prom_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Parameters, service, selectors and range shared by series and the label APIs.
struct Lookup {
    /// This node's data, or every storage node's.
    db: Arc<dyn Queryable>,
    partial: Partial,
    p: Params,
    selectors: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
}

#[allow(clippy::result_large_err)]
fn lookup(s: &AppState, q: Option<String>, headers: &HeaderMap, body: &[u8]) -> Result<Lookup, Response> {
    let svc = service(s)?;
    let p = Params::read(q, headers, body)?;
    let selectors = p.selectors()?;
    let start = p.time("start", MIN_TIME)?;
    let end = p.time("end", MAX_TIME)?;
    if end < start {
        return Err(bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    let partial = Partial::default();
    let db = queryable(s, &svc, &partial);
    Ok(Lookup { db, partial, p, selectors, start, end })
}

fn storage_error(e: signalbox_metrics::storage::StorageError) -> Response {
    prom_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

async fn series(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let l = match lookup(&s, q, &headers, &body) {
        Ok(l) => l,
        Err(r) => return r,
    };
    if l.selectors.is_empty() {
        return bad_data("no match[] parameter provided");
    }
    let limit = l.p.limit();
    let partial = l.partial.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut all: Vec<Labels> = Vec::new();
        for sel in &l.selectors {
            for series in l.db.select(sel, l.start, l.end)? {
                all.push(series.labels);
            }
        }
        all.sort();
        all.dedup();
        if limit > 0 {
            all.truncate(limit);
        }
        Ok::<_, signalbox_metrics::storage::StorageError>(all)
    })
    .await;
    match result {
        Ok(Ok(all)) => {
            let mut out = String::from("[");
            for (i, labels) in all.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_labels(&mut out, labels);
            }
            out.push(']');
            success_partial(&out, &partial)
        }
        Ok(Err(e)) => storage_error(e),
        Err(e) => prom_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn labels(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let l = match lookup(&s, q, &headers, &body) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let limit = l.p.limit();
    let partial = l.partial.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut names: Vec<String> = Vec::new();
        if l.selectors.is_empty() {
            names = l.db.label_names(&[], l.start, l.end)?;
        } else {
            for sel in &l.selectors {
                names.extend(l.db.label_names(sel, l.start, l.end)?);
            }
        }
        names.sort();
        names.dedup();
        if limit > 0 {
            names.truncate(limit);
        }
        Ok::<_, signalbox_metrics::storage::StorageError>(names)
    })
    .await;
    match result {
        Ok(Ok(names)) => success_partial(&json!(names).to_string(), &partial),
        Ok(Err(e)) => storage_error(e),
        Err(e) => prom_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn label_values(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !signalbox_metrics::remote_write::valid_label_name(&name) {
        return bad_data(format!("invalid label name: {name:?}"));
    }
    let l = match lookup(&s, q, &headers, &[]) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let limit = l.p.limit();
    let partial = l.partial.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut values: Vec<String> = Vec::new();
        if l.selectors.is_empty() {
            values = l.db.label_values(&name, &[], l.start, l.end)?;
        } else {
            for sel in &l.selectors {
                values.extend(l.db.label_values(&name, sel, l.start, l.end)?);
            }
        }
        values.sort();
        values.dedup();
        if limit > 0 {
            values.truncate(limit);
        }
        Ok::<_, signalbox_metrics::storage::StorageError>(values)
    })
    .await;
    match result {
        Ok(Ok(values)) => success_partial(&json!(values).to_string(), &partial),
        Ok(Err(e)) => storage_error(e),
        Err(e) => prom_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn metadata(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let svc = match service(&s) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = match Params::read(q, &headers, &[]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let list = svc.metadata.list(p.get("metric"), p.limit());
    let data: serde_json::Map<String, Value> = list
        .into_iter()
        .map(|(k, entries)| {
            let v: Vec<Value> =
                entries.into_iter().map(|e| json!({"type": e.kind, "help": e.help, "unit": e.unit})).collect();
            (k, Value::Array(v))
        })
        .collect();
    success_json(Value::Object(data))
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(l.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

fn go_duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if sec > 0 {
        let _ = write!(out, "{sec}s");
    }
    out
}

async fn targets(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let svc = match service(&s) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = match Params::read(q, &headers, &[]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state = p.get("state").unwrap_or("any");
    let active: Vec<Value> = if state == "dropped" {
        Vec::new()
    } else {
        svc.scrape
            .targets()
            .into_iter()
            .map(|t| {
                let last = if t.health.last_scrape_ms > 0 {
                    signalbox_core::time::rfc3339_millis(t.health.last_scrape_ms as u64 * 1_000_000)
                } else {
                    "0001-01-01T00:00:00Z".into()
                };
                json!({
                    "discoveredLabels": labels_json(&t.target.discovered),
                    "labels": labels_json(&t.target.labels),
                    "scrapePool": t.target.job,
                    "scrapeUrl": t.target.url,
                    "globalUrl": t.target.url,
                    "lastError": t.health.last_error,
                    "lastScrape": last,
                    "lastScrapeDuration": t.health.last_duration.as_secs_f64(),
                    "health": if t.health.health.is_empty() { "unknown" } else { t.health.health },
                    "scrapeInterval": go_duration_text(t.target.interval),
                    "scrapeTimeout": go_duration_text(t.target.timeout),
                    // Signalbox's own: in a cluster, the node that scrapes the target.
                    "owner": t.owner,
                    "scrapedHere": t.scraped_here,
                })
            })
            .collect()
    };
    let dropped: Vec<Value> = if state == "active" {
        Vec::new()
    } else {
        svc.scrape.dropped().into_iter().map(|(_, d)| json!({"discoveredLabels": labels_json(&d.discovered)})).collect()
    };
    success_json(json!({"activeTargets": active, "droppedTargets": dropped}))
}

async fn rules(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let m = match super::state(&s) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let p = match Params::read(q, &headers, &[]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(rules) = &m.rules else { return success_json(json!({"groups": []})) };
    let mut data = rules.groups_json();
    // `type=alert|record` keeps one kind, as Prometheus does.
    let keep = match p.get("type") {
        Some("alert") => Some("alerting"),
        Some("record") => Some("recording"),
        Some(other) => return bad_data(format!("invalid parameter \"type\": {other:?} is not alert or record")),
        None => None,
    };
    if let (Some(kind), Some(groups)) = (keep, data["groups"].as_array_mut()) {
        for g in groups {
            if let Some(list) = g["rules"].as_array_mut() {
                list.retain(|r| r["type"] == kind);
            }
        }
    }
    success_json(data)
}

async fn alerts(State(s): State<AppState>) -> Response {
    let m = match super::state(&s) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match &m.rules {
        Some(rules) => success_json(rules.alerts_json()),
        None => success_json(json!({"alerts": []})),
    }
}

/// `GET /api/alerts/history`: alert state transitions, newest last (a native API for the
/// console: `{"history": [...]}`, no Prometheus envelope).
pub async fn alert_history(State(s): State<AppState>) -> Response {
    let m = match super::state(&s) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let history = m.rules.as_ref().map(|r| r.history()).unwrap_or_default();
    axum::Json(json!({"history": history})).into_response()
}

async fn exemplars(State(s): State<AppState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = service(&s) {
        return r;
    }
    let p = match Params::read(q, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match p.get("query") {
        Some(text) => match promql::parse_query(text) {
            Ok(_) => success("[]"),
            Err(e) => query_error(e),
        },
        None => bad_data("invalid parameter \"query\": no query given"),
    }
}

async fn buildinfo() -> Response {
    success_json(json!({
        "version": PROMETHEUS_VERSION,
        "revision": concat!("signalbox-", env!("CARGO_PKG_VERSION")),
        "branch": "signalbox",
        "buildUser": "signalbox",
        "buildDate": "",
        "goVersion": "",
    }))
}

fn started_ms() -> i64 {
    static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(now_ms)
}

async fn runtimeinfo(State(s): State<AppState>) -> Response {
    let svc = match service(&s) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let start = signalbox_core::time::rfc3339_millis(started_ms() as u64 * 1_000_000);
    success_json(json!({
        "startTime": start,
        "CWD": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": true,
        "lastConfigTime": start,
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": svc.retention_text(),
    }))
}

async fn flags(State(s): State<AppState>) -> Response {
    let svc = match service(&s) {
        Ok(x) => x,
        Err(r) => return r,
    };
    success_json(json!({
        "query.lookback-delta": go_duration_text(Duration::from_millis(svc.engine.lookback_delta_ms as u64)),
        "query.max-samples": svc.engine.max_samples.to_string(),
        "query.timeout": go_duration_text(svc.engine.timeout),
        "storage.tsdb.retention.time": svc.retention_text(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_values_as_prometheus_writes_them() {
        assert_eq!(parse_time("1435781451.781"), Some(1_435_781_451_781));
        assert_eq!(parse_time("2015-07-01T20:10:51.781Z"), Some(1_435_781_451_781));
        assert_eq!(parse_time("soon"), None);
        let mut s = String::new();
        push_time(&mut s, 1_435_781_451_781);
        s.push(' ');
        push_value(&mut s, 0.1);
        s.push(' ');
        push_value(&mut s, f64::NEG_INFINITY);
        s.push(' ');
        push_value(&mut s, 1e21);
        assert_eq!(s, "1435781451.781 \"0.1\" \"-Inf\" \"1000000000000000000000\"");
        assert_eq!(go_duration_text(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration_text(Duration::from_millis(500)), "500ms");
    }
}
