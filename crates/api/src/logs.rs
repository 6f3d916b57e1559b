//! Log ingest decoders: every wire format a shipper speaks, turned into
//! [`LogRecord`]s with per-item errors, under the same limits as the trace receivers
//! ([`crate::ingest`]).
//!
//! # Layout
//! - [`native`]: NDJSON lines (`POST /api/logs`), what `signalbox agent` sends.
//! - [`native_query`]: search, aggregations and live tail (`GET /api/logs...`).
//! - [`native_stream`]: a search whose matches stream as NDJSON while it runs.
//! - [`loki`]: Loki's push API (protobuf with snappy block compression, and JSON).
//! - [`loki_query`]: Loki's query API (LogQL) for Grafana's Loki data source.
//! - [`elasticsearch`]: the `_bulk` subset shippers use, and their start-up handshake.
//! - [`otlp`]: OTLP logs (`ExportLogsServiceRequest`, protobuf and JSON).
//!
//! The helpers here map a JSON object a shipper sent to a record: well-known keys (time,
//! level, message, service, instance, trace and span ids) under their common spellings,
//! everything else flattened to dotted attributes.

pub mod elasticsearch;
pub mod loki;
pub mod loki_query;
pub mod native;
pub mod native_query;
pub mod native_stream;
pub mod otlp;

use crate::AppState;
use crate::auth::check_ingest;
use crate::error::ApiError;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::log::{LogRecord, LogSink, LogWriteError, Severity};
use signalbox_core::span::{AttrValue, KeyValue};
use signalbox_events::logs::store::Logs;

/// Longest log line or message body accepted; longer ones are refused with the limit named.
pub const MAX_LINE: usize = 256 * 1024;
/// Most records in one request.
pub const MAX_RECORDS: usize = 100_000;
/// Deepest JSON nesting flattened into attributes; deeper values are kept as JSON text.
const MAX_FLATTEN_DEPTH: usize = 8;
/// Most attributes kept per record (the rest are dropped and counted in `dropped_attributes`).
const MAX_ATTRIBUTES: usize = 128;

/// The log ingest routes of the console port: `/api/logs`, `/loki/api/v1/push` and the
/// Elasticsearch subset under `/elasticsearch`. Each checks the `ingest` role itself.
pub fn ingest_routes() -> Router<AppState> {
    Router::new()
        .route("/api/logs", axum::routing::post(native::post))
        .route("/loki/api/v1/push", axum::routing::post(loki::push))
        .nest("/elasticsearch", elasticsearch::router())
        // Clients join their base URL and `/`: the nested root above is `/elasticsearch` only.
        .route(
            "/elasticsearch/",
            axum::routing::get(elasticsearch::root)
                .head(elasticsearch::root)
                .layer(axum::middleware::map_response(elasticsearch::product_header)),
        )
}

/// The caller may ingest, and there is a log store: its sink.
pub(crate) fn sink(state: &AppState, headers: &HeaderMap) -> Result<Logs, ApiError> {
    check_ingest(state, headers)?;
    state.logs.clone().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "logs_disabled", "log ingest is not enabled on this node")
    })
}

/// The body, read up to [`crate::ingest::MAX_BODY`] and inflated when gzip-encoded.
pub(crate) async fn body(headers: &HeaderMap, body: axum::body::Body) -> Result<Vec<u8>, ApiError> {
    let max = crate::ingest::MAX_BODY;
    let raw = axum::body::to_bytes(body, max).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body exceeds {max} bytes; send smaller batches"),
        )
    })?;
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(raw.to_vec());
    }
    crate::ingest::inflate_gzip(&raw, crate::ingest::MAX_INFLATED).map_err(|r| match r {
        crate::ingest::Refused::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
        _ => ApiError::bad_request("invalid_gzip", "the body is not valid gzip"),
    })
}

/// Stores records: in the ingest buffer when the node has one (answered once the buffer
/// has them), else in `sink`.
pub(crate) async fn write(state: &AppState, sink: &dyn LogSink, records: Vec<LogRecord>) -> Result<(), LogWriteError> {
    if records.is_empty() {
        return Ok(());
    }
    match &state.buffer {
        Some(b) => b.logs(records).await.map_err(|r| match r {
            crate::buffer::Refusal::Full { retry_after, .. } => LogWriteError::Busy { retry_after },
            crate::buffer::Refusal::Unavailable(m) => LogWriteError::Failed(m),
        }),
        None => sink.write(records).await,
    }
}

/// Stores records; the error answer when it cannot (429 with Retry-After when busy).
pub(crate) async fn store(state: &AppState, sink: &dyn LogSink, records: Vec<LogRecord>) -> Result<(), Response> {
    if records.is_empty() {
        return Ok(());
    }
    match write(state, sink, records).await {
        Ok(()) => Ok(()),
        Err(LogWriteError::Busy { retry_after }) => {
            let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", "the log store is busy; retry later")
                .into_response();
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            Err(r)
        }
        Err(LogWriteError::Failed(m)) => {
            tracing::error!(error = %m, "log write failed");
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "write_failed",
                format!("log records could not be written: {m}"),
            )
            .into_response();
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            Err(r)
        }
    }
}

/// The estimated decode memory of a JSON body, reserved for as long as the permit lives.
pub(crate) fn reserve_json(raw: &[u8]) -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    let items = crate::ingest::json_items(raw);
    if items > crate::ingest::MAX_ITEMS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("more than {} JSON objects in one request; send smaller batches", crate::ingest::MAX_ITEMS),
        ));
    }
    crate::ingest::reserve(crate::ingest::estimate(raw.len(), items)).map_err(|_| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", "the node is decoding as much as it can hold; retry later")
    })
}

/// Decoded records and the items refused, with why (`(index, message)`).
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<LogRecord>,
    pub rejected: Vec<(usize, String)>,
}

/// A whole request refused: the status to answer and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

const TIME_KEYS: &[&str] = &["@timestamp", "timestamp", "time", "ts", "date", "datetime", "t"];
const BODY_KEYS: &[&str] = &["message", "msg", "log", "body", "line", "text"];
const LEVEL_KEYS: &[&str] = &["level", "severity", "log.level", "lvl", "loglevel", "severity_text", "levelname"];
const SERVICE_KEYS: &[&str] = &["service", "service.name", "service_name", "app", "application", "job"];
const INSTANCE_KEYS: &[&str] = &["instance", "service.instance.id", "pod", "container", "container_name", "hostname"];
const TRACE_KEYS: &[&str] = &["trace_id", "traceId", "trace.id", "traceid", "dd.trace_id"];
const SPAN_KEYS: &[&str] = &["span_id", "spanId", "span.id", "spanid"];
const HOST_KEYS: &[&str] = &["host", "host.name", "hostname"];

/// Maps a JSON object to a record. `now` is the observed time (and the time when the object
/// has none). Fails only on values that make the record meaningless (a line over the limit).
pub fn record_from_json(obj: &Map<String, Value>, now: u64) -> Result<LogRecord, String> {
    record_from_map(obj.clone(), now)
}

/// Which well-known fields a (flattened) key may fill, as bits in [`KEY_SETS`] order.
fn key_roles(key: &str) -> u8 {
    let mut roles = 0u8;
    for (i, set) in KEY_SETS.iter().enumerate() {
        if set.iter().any(|want| want.len() == key.len() && want.eq_ignore_ascii_case(key)) {
            roles |= 1 << i;
        }
    }
    roles
}

/// The well-known fields in the order they are taken: each takes the first remaining key
/// (in the object's sorted, flattened order) that matches one of its spellings.
const KEY_SETS: [&[&str]; 8] =
    [TIME_KEYS, BODY_KEYS, LEVEL_KEYS, SERVICE_KEYS, INSTANCE_KEYS, TRACE_KEYS, SPAN_KEYS, HOST_KEYS];

/// [`record_from_json`] taking the object, so its values move into the record uncopied.
pub fn record_from_map(obj: Map<String, Value>, now: u64) -> Result<LogRecord, String> {
    let mut flat: Vec<(String, Value)> = Vec::with_capacity(obj.len());
    flatten_owned(String::new(), obj, 0, &mut flat);
    // Each key is matched against the spellings once (this ran per field per key before).
    let roles: Vec<u8> = flat.iter().map(|(k, _)| key_roles(k)).collect();
    let mut taken: [Option<usize>; 8] = [None; 8];
    let mut used = vec![false; flat.len()];
    for (set, slot) in taken.iter_mut().enumerate() {
        *slot = (0..flat.len()).find(|&i| !used[i] && roles[i] & (1 << set) != 0);
        if let Some(i) = *slot {
            used[i] = true;
        }
    }
    let mut rest: Vec<(String, Value)> = Vec::with_capacity(flat.len());
    let mut field: [Option<Value>; 8] = Default::default();
    for (i, (k, v)) in flat.into_iter().enumerate() {
        match taken.iter().position(|t| *t == Some(i)) {
            Some(set) => field[set] = Some(v),
            None => rest.push((k, v)),
        }
    }
    let [time, body, level, service, instance, trace, span, host] = field;
    let unix_nanos = match time {
        Some(v) => time_value(&v).ok_or_else(|| format!("timestamp `{}` is not a time", short(&v)))?,
        None => now,
    };
    let body = body.map(text).unwrap_or_default();
    if body.len() > MAX_LINE {
        return Err(format!("the message is {} bytes; the limit is {MAX_LINE}", body.len()));
    }
    let severity_text = level.map(text).unwrap_or_default();
    let service = service.map(text).unwrap_or_default();
    let instance = instance.map(text).unwrap_or_default();
    let trace_id = trace.map(text).and_then(|t| trace_id(&t));
    let span_id = span.map(text).and_then(|t| span_id(&t));
    let mut resource = Vec::new();
    if let Some(h) = host {
        resource.push(KeyValue::str("host.name", text(h)));
    }
    let attributes =
        rest.into_iter().take(MAX_ATTRIBUTES).map(|(k, v)| KeyValue { key: k.into(), value: attr(v) }).collect();
    Ok(LogRecord {
        unix_nanos,
        observed_unix_nanos: now,
        severity: Severity::parse(&severity_text),
        severity_text,
        body,
        service,
        instance,
        resource,
        attributes,
        trace_id,
        span_id,
    })
}

/// Nested objects become dotted keys (`kubernetes.pod.name`); arrays and objects past the
/// depth limit stay JSON text. Keys and values move; nothing is copied.
fn flatten_owned(prefix: String, obj: Map<String, Value>, depth: usize, out: &mut Vec<(String, Value)>) {
    for (k, v) in obj {
        let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
        match v {
            Value::Object(m) if depth < MAX_FLATTEN_DEPTH => flatten_owned(key, m, depth + 1, out),
            Value::Null => {}
            v => out.push((key, v)),
        }
    }
}

/// A JSON value as display text (strings unquoted).
pub fn text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 64 { format!("{}...", &s[..s.floor_char_boundary(64)]) } else { s }
}

fn attr(v: Value) -> AttrValue {
    match v {
        Value::Bool(b) => AttrValue::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AttrValue::Str(s),
        other => AttrValue::Str(other.to_string()),
    }
}

/// A time as shippers send it: RFC 3339, or a Unix number in seconds, milliseconds,
/// microseconds or nanoseconds (told apart by magnitude; a string of digits too).
pub fn time_value(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                unix_any(u)
            } else {
                let f = n.as_f64()?;
                (0.0..1e11).contains(&f).then_some((f * 1e9) as u64)
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(u) = s.parse::<u64>() {
                return unix_any(u);
            }
            if let Ok(f) = s.parse::<f64>() {
                return (0.0..1e11).contains(&f).then_some((f * 1e9) as u64);
            }
            crate::traces::parse_time("timestamp", s).ok()
        }
        _ => None,
    }
}

fn unix_any(n: u64) -> Option<u64> {
    let v = match n {
        0..=99_999_999_999 => n.checked_mul(1_000_000_000),
        100_000_000_000..=99_999_999_999_999 => n.checked_mul(1_000_000),
        100_000_000_000_000..=99_999_999_999_999_999 => n.checked_mul(1_000),
        _ => Some(n),
    }?;
    (v <= crate::traces::MAX_NANOS).then_some(v)
}

/// A trace id in hex (32 digits, or 16 for 64-bit ids, left-padded); all zeros is none.
pub fn trace_id(s: &str) -> Option<TraceId> {
    let s = s.trim();
    let padded;
    let hex = match s.len() {
        32 => s,
        16 => {
            padded = format!("{:0>32}", s);
            &padded
        }
        _ => return None,
    };
    TraceId::from_hex(hex).filter(|t| t.0 != [0; 16])
}

pub fn span_id(s: &str) -> Option<SpanId> {
    SpanId::from_hex(s.trim()).filter(|t| t.0 != [0; 8])
}

#[cfg(test)]
mod tests;
