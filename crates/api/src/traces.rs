//! The trace protocols, one module each, and the native trace API under `/api/traces`.
//!
//! # Layout
//! - [`jaeger`]: the Jaeger query API under `/jaeger/api` (Grafana's Jaeger data source).
//! - [`zipkin`]: Zipkin v2 ingest (JSON and protobuf) and query API.
//! - [`otlp`]: OTLP trace ingest over gRPC and HTTP.
//! - this module: the native API, and the parameter parsers the others share.
//!
//! Native:
//! - `GET /api/traces/{id}`: every span of a trace, each with its attributes, `resource`,
//!   `scope`, `links` and events (and `shared: true` on the server half of a Zipkin shared
//!   span).
//! - `GET /api/traces?service=&operation=&tag=k=v&status=error&min_duration=&max_duration=&start=&end=&lookback=&limit=`:
//!   trace summaries newest first; tags and durations combine freely.
//! - `GET /api/traces/services`, `/api/traces/services/{service}/operations`.
//! - `GET /api/traces/dependencies?start=&end=|lookback=`: the service graph with calls,
//!   errors and latency percentiles.
//!
//! Unix nanosecond times are JSON strings in every native answer (they do not fit a
//! JavaScript number); the Jaeger and Zipkin APIs keep their protocols' shapes.

use crate::AppState;

pub mod jaeger;
pub mod otlp;
pub mod zipkin;

use crate::cluster::Partial;
use crate::consul::go_duration;
use crate::error::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{AttrValue, KeyValue, Span, SpanKind, StatusCode};
use signalbox_events::spans::pipeline::Traces;
use signalbox_events::spans::query::Search;
use std::time::Duration;

pub fn reads() -> Router<AppState> {
    Router::new()
        .route("/api/traces", get(search))
        .route("/api/traces/services", get(services))
        .route("/api/traces/services/{service}/operations", get(operations))
        .route("/api/traces/dependencies", get(dependencies))
        .route("/api/traces/{id}", get(trace))
        .merge(jaeger::routes())
}

pub fn traces(s: &AppState) -> Result<&Traces, ApiError> {
    s.traces.as_ref().ok_or_else(|| ApiError::not_found("the trace store is not enabled on this node"))
}

pub fn parse_trace_id(id: &str) -> Result<TraceId, ApiError> {
    TraceId::from_hex(id.trim())
        .ok_or_else(|| ApiError::field("trace_id", "must be 32 (or 16) hex digits, not all zero"))
}

pub fn kind_str(k: SpanKind) -> &'static str {
    match k {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn value_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::String(s.clone()),
        AttrValue::Int(i) => json!(i),
        AttrValue::Float(f) => json!(f),
        AttrValue::Bool(b) => json!(b),
    }
}

fn attrs_json(attrs: &[KeyValue]) -> Map<String, Value> {
    attrs.iter().map(|kv| (kv.key.to_string(), value_json(&kv.value))).collect()
}

/// A span in the native JSON form.
pub fn span_json(s: &Span) -> Value {
    let attrs = attrs_json(&s.attributes);
    let links: Vec<Value> = s
        .links
        .iter()
        .map(|l| {
            json!({ "trace_id": l.trace_id.to_hex(), "span_id": l.span_id.to_hex(),
                "trace_state": l.trace_state, "attributes": attrs_json(&l.attributes) })
        })
        .collect();
    let scope = (!s.scope.name.is_empty() || !s.scope.version.is_empty())
        .then(|| json!({ "name": s.scope.name, "version": s.scope.version }));
    let mut v = json!({
        "trace_id": s.trace_id.to_hex(),
        "span_id": s.span_id.to_hex(),
        "parent_span_id": s.parent_span_id.map(|p| p.to_hex()),
        "service": s.service,
        "name": s.name,
        "kind": kind_str(s.kind),
        "start_unix_nanos": s.start_unix_nanos.to_string(),
        "end_unix_nanos": s.end_unix_nanos.to_string(),
        "duration_nanos": s.duration_nanos(),
        "status": match s.status { StatusCode::Unset => "unset", StatusCode::Ok => "ok", StatusCode::Error => "error" },
        "status_message": s.status_message,
        "trace_state": s.trace_state,
        "attributes": attrs,
        "resource": attrs_json(&s.resource.attributes),
        "scope": scope,
        "links": links,
        "events": s.events.iter().map(|e| json!({
            "unix_nanos": e.unix_nanos.to_string(),
            "name": e.name,
            "attributes": e.attributes.iter().map(|kv| (kv.key.to_string(), value_json(&kv.value))).collect::<Map<String, Value>>(),
        })).collect::<Vec<_>>(),
    });
    // Zipkin's shared server half (its span id is the client half's too).
    if s.flags.has(signalbox_core::span::SpanFlags::SHARED) {
        v["shared"] = json!(true);
    }
    v
}

async fn trace(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = traces(&s)?;
    let id = parse_trace_id(&id)?;
    let partial = Partial::default();
    let spans = match &s.cluster {
        None => t.trace(&id),
        Some(c) => crate::cluster::merged::trace(c, t, &id, &partial).await,
    };
    if spans.is_empty() {
        let mut e = ApiError::not_found(format!("trace {id} not found"));
        if partial.is_partial() {
            e.message = format!("{}; {}", e.message, partial.warnings().join("; "));
        }
        return Ok(partial.mark(e.into_response()));
    }
    Ok(partial.json(json!({ "trace_id": id.to_hex(), "spans": spans.iter().map(span_json).collect::<Vec<_>>() })))
}

/// A time given as RFC 3339, or Unix seconds/milliseconds/microseconds/nanoseconds (told
/// apart by magnitude).
pub fn parse_time(field: &str, v: &str) -> Result<u64, ApiError> {
    let out_of_range = || ApiError::field(field, "is out of range (Unix nanoseconds must fit before the year 2262)");
    if let Ok(n) = v.parse::<u64>() {
        let nanos = match n {
            0..=99_999_999_999 => n.checked_mul(1_000_000_000),
            100_000_000_000..=99_999_999_999_999 => n.checked_mul(1_000_000),
            100_000_000_000_000..=99_999_999_999_999_999 => n.checked_mul(1_000),
            _ => Some(n),
        };
        return nanos.filter(|n| *n <= MAX_NANOS).ok_or_else(out_of_range);
    }
    match parse_rfc3339(v) {
        Some(n) if n <= MAX_NANOS => Ok(n),
        Some(_) => Err(out_of_range()),
        None => Err(ApiError::field(field, "must be RFC 3339 (2026-01-02T03:04:05Z) or a Unix timestamp")),
    }
}

/// The latest time the APIs accept: `i64::MAX` nanoseconds (2262-04-11), the range of every
/// signed-nanosecond clock the data may be handed to.
pub const MAX_NANOS: u64 = i64::MAX as u64;

/// Unix microseconds (Jaeger's `start`/`end`) as nanoseconds, refused when out of range.
pub fn micros_param(field: &str, v: &str) -> Result<u64, ApiError> {
    let us = v.parse::<u64>().map_err(|_| ApiError::field(field, "must be Unix microseconds"))?;
    us.checked_mul(1_000).filter(|n| *n <= MAX_NANOS).ok_or_else(|| ApiError::field(field, "is out of range"))
}

pub use signalbox_core::time::parse_rfc3339;

fn duration_param(field: &str, v: &str) -> Result<u64, ApiError> {
    go_duration(v)
        .or_else(|| signalbox_core::config::parse_duration(v).ok())
        .map(|d| d.as_nanos() as u64)
        .ok_or_else(|| ApiError::field(field, "must be a duration like 250ms or 1.5s"))
}

/// Resolves `start`/`end`/`lookback` (default: the last hour).
fn window(start: Option<&str>, end: Option<&str>, lookback: Option<&str>) -> Result<(u64, u64), ApiError> {
    let end = match end {
        Some(e) if !e.is_empty() => parse_time("end", e)?,
        _ => signalbox_core::time::unix_nanos(),
    };
    let start = match (start, lookback) {
        (Some(s), _) if !s.is_empty() => parse_time("start", s)?,
        (_, Some(l)) if !l.is_empty() => end.saturating_sub(duration_param("lookback", l)?),
        _ => end.saturating_sub(3_600_000_000_000),
    };
    if start > end {
        return Err(ApiError::field("start", "must not be after end"));
    }
    Ok((start, end))
}

/// Query pairs, keeping repeated keys.
fn pairs(raw: Option<String>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A query-string component with `+` as a space and `%XX` escapes decoded (invalid UTF-8
/// replaced).
pub fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn limit_param(v: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match v {
        None | Some("") => Ok(default),
        Some(x) => x
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::field("limit", "must be between 1 and 10000")),
    }
}

async fn search(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let t = traces(&s)?;
    let p = pairs(q);
    const KNOWN: [&str; 10] =
        ["service", "operation", "tag", "status", "min_duration", "max_duration", "start", "end", "lookback", "limit"];
    if let Some((k, _)) = p.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::field(k, format!("unknown parameter; use {}", KNOWN.join(", "))));
    }
    let get = |k: &str| p.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    let (start, end) = window(get("start"), get("end"), get("lookback"))?;
    let mut tags = Vec::new();
    for (_, v) in p.iter().filter(|(k, _)| k == "tag") {
        let (tk, tv) = v.split_once('=').ok_or_else(|| ApiError::field("tag", format!("`{v}` must be key=value")))?;
        tags.push((tk.to_owned(), tv.to_owned()));
    }
    let errors_only = match get("status") {
        None | Some("") | Some("any") => false,
        Some("error") => true,
        Some(_) => return Err(ApiError::field("status", "must be error or any")),
    };
    let query = Search {
        service: get("service").filter(|x| !x.is_empty()).map(str::to_owned),
        operation: get("operation").filter(|x| !x.is_empty()).map(str::to_owned),
        tags,
        errors_only,
        min_duration_nanos: get("min_duration")
            .filter(|x| !x.is_empty())
            .map(|v| duration_param("min_duration", v))
            .transpose()?,
        max_duration_nanos: get("max_duration")
            .filter(|x| !x.is_empty())
            .map(|v| duration_param("max_duration", v))
            .transpose()?,
        start_nanos: start,
        end_nanos: end,
        limit: limit_param(get("limit"), 20)?,
        terms: Vec::new(),
    };
    let partial = Partial::default();
    let found = match &s.cluster {
        None => {
            let (tt, q2) = (t.clone(), query.clone());
            tokio::task::spawn_blocking(move || tt.search(&q2))
                .await
                .map_err(|_| ApiError::new(http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "search failed"))?
        }
        Some(c) => crate::cluster::merged::search(c, t, &query, &partial)
            .await
            .iter()
            .filter_map(|spans| signalbox_events::spans::query::summarize(spans))
            .collect(),
    };
    let found: Vec<Value> = found.iter().map(summary_json).collect();
    Ok(partial.json(
        json!({ "traces": found, "start_unix_nanos": start.to_string(), "end_unix_nanos": end.to_string(), "limit": query.limit }),
    ))
}

/// A search result. Unix nanoseconds go out as strings (beyond 2^53, a JavaScript number
/// would round them); durations stay numbers (2^53 ns is 104 days).
fn summary_json(t: &signalbox_events::spans::query::TraceSummary) -> Value {
    json!({
        "trace_id": t.trace_id,
        "root_service": t.root_service,
        "root_operation": t.root_operation,
        "start_unix_nanos": t.start_unix_nanos.to_string(),
        "duration_nanos": t.duration_nanos,
        "span_count": t.span_count,
        "services": t.services,
        "service_spans": t.service_spans,
        "error": t.error,
        "error_spans": t.error_spans,
    })
}

async fn services(State(s): State<AppState>) -> Result<Response, ApiError> {
    let partial = Partial::default();
    let services = match &s.cluster {
        None => traces(&s)?.services(),
        Some(c) => crate::cluster::merged::services(c, traces(&s)?, &partial).await,
    };
    Ok(partial.json(json!({ "services": services })))
}

async fn operations(State(s): State<AppState>, Path(service): Path<String>) -> Result<Response, ApiError> {
    let partial = Partial::default();
    let operations = match &s.cluster {
        None => traces(&s)?.operations(&service),
        Some(c) => crate::cluster::merged::operations(c, traces(&s)?, &service, &partial).await.into_keys().collect(),
    };
    Ok(partial.json(json!({ "service": service, "operations": operations })))
}

#[derive(Deserialize, Default)]
struct DepParams {
    start: Option<String>,
    end: Option<String>,
    lookback: Option<String>,
}

async fn dependencies(State(s): State<AppState>, Query(p): Query<DepParams>) -> Result<Json<Value>, ApiError> {
    let (start, end) = window(p.start.as_deref(), p.end.as_deref(), p.lookback.as_deref())?;
    Ok(Json(
        json!({ "start_unix_nanos": start.to_string(), "end_unix_nanos": end.to_string(), "edges": traces(&s)?.dependencies(start, end) }),
    ))
}

// ---- Jaeger ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_never_splits_a_character() {
        assert_eq!(decode("a%20b+c%2Fd"), "a b c/d");
        assert_eq!(decode("%aé"), "%aé");
        assert_eq!(decode("%é"), "%é");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%C3%A9"), "é");
    }

    #[test]
    fn times_and_tags() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56.789Z"), Some(1_709_210_096_789_000_000));
        assert_eq!(parse_rfc3339("2024-02-29T13:34:56.789+01:00"), Some(1_709_210_096_789_000_000));
        assert_eq!(parse_time("start", "1709210096").unwrap(), 1_709_210_096_000_000_000);
        assert_eq!(parse_time("start", "1709210096789").unwrap(), 1_709_210_096_789_000_000);
        assert!(parse_time("start", "yesterday").is_err());
        assert_eq!(jaeger::jaeger_tags(r#"{"http.status_code":"500","error":"true"}"#).unwrap().len(), 2);
        assert_eq!(
            jaeger::jaeger_tags("a=1 b=\"x\"").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "x".into())]
        );
    }
}
