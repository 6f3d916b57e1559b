//! Zipkin v2: span ingest (`POST /api/v2/spans`, JSON or protobuf ([`proto`]), optionally
//! gzip; port 9411 and under `/zipkin` on the console port) and the query API
//! (`/zipkin/api/v2/services`, `spans`, `remoteServices`, `traces`, `trace/{id}`,
//! `traceMany`, `autocompleteKeys`, `autocompleteValues`, `dependencies`).
//!
//! Mapping: `localEndpoint.serviceName` is the service and its `ipv4`, `ipv6` and `port` the
//! resource attributes `net.host.ip`, `net.host.ipv6` and `net.host.port`;
//! `remoteEndpoint.serviceName` becomes the `peer.service` attribute and its address and
//! port `net.peer.ip`, `net.peer.ipv6` and `net.peer.port`; tags become
//! attributes; a tag `error` marks the span failed with its value as the message;
//! annotations become events; times are microseconds. `shared`, `debug` and a 64-bit trace
//! id are kept as span flags, so reads answer with them (both halves of a shared span are
//! kept).

use crate::AppState;
use crate::auth::check_ingest;
use crate::error::ApiError;
use crate::traces::{parse_trace_id, traces};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{
    AttrValue, KeyValue, Resource, Scope, Span, SpanEvent, SpanFlags, SpanKind, StatusCode as SpanStatus,
};
use signalbox_events::spans::pipeline::WriteError;
use signalbox_events::spans::query::Search;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub mod proto;

const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZEndpoint {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    port: Option<i64>,
}

#[derive(Deserialize)]
struct ZAnnotation {
    timestamp: u64,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZSpan {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<ZEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<ZEndpoint>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    annotations: Vec<ZAnnotation>,
    #[serde(default)]
    debug: Option<bool>,
    #[serde(default)]
    shared: Option<bool>,
}

/// The resources of one request's local endpoints (address and port; the service name is
/// the span's), one `Arc` per distinct endpoint.
type Endpoints = HashMap<(Option<String>, Option<String>, Option<i64>), Arc<Resource>>;

/// An endpoint's port (0 meaning none), its addresses checked; `what` names the endpoint.
fn checked_port(e: &ZEndpoint, what: &str) -> Result<Option<i64>, String> {
    if let Some(ip) = &e.ipv4
        && ip.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(format!("{what}.ipv4 `{ip}` is not an IPv4 address"));
    }
    if let Some(ip) = &e.ipv6
        && ip.parse::<std::net::Ipv6Addr>().is_err()
    {
        return Err(format!("{what}.ipv6 `{ip}` is not an IPv6 address"));
    }
    let port = e.port.filter(|p| *p != 0);
    if port.is_some_and(|p| !(1..=65535).contains(&p)) {
        return Err(format!("{what}.port must be between 0 and 65535"));
    }
    Ok(port)
}

fn resource_of(e: &ZEndpoint, cache: &mut Endpoints) -> Result<Arc<Resource>, String> {
    let port = checked_port(e, "localEndpoint")?;
    if e.ipv4.is_none() && e.ipv6.is_none() && port.is_none() {
        return Ok(Resource::none());
    }
    let key = (e.ipv4.clone(), e.ipv6.clone(), port);
    Ok(cache
        .entry(key)
        .or_insert_with(|| {
            let mut attributes = Vec::with_capacity(3);
            if let Some(ip) = &e.ipv4 {
                attributes.push(KeyValue::str("net.host.ip", ip.clone()));
            }
            if let Some(ip) = &e.ipv6 {
                attributes.push(KeyValue::str("net.host.ipv6", ip.clone()));
            }
            if let Some(p) = port {
                attributes.push(KeyValue::int("net.host.port", p));
            }
            Arc::new(Resource { attributes })
        })
        .clone())
}

/// Ingest and query routes (the router is mounted at `/` on port 9411 and at `/zipkin`).
pub fn ingest() -> Router<AppState> {
    Router::new().route("/api/v2/spans", post(post_spans))
}

pub fn reads() -> Router<AppState> {
    Router::new()
        .route("/zipkin/api/v2/services", get(services))
        .route("/zipkin/api/v2/spans", get(span_names))
        .route("/zipkin/api/v2/remoteServices", get(remote_services))
        .route("/zipkin/api/v2/traces", get(search))
        .route("/zipkin/api/v2/trace/{id}", get(trace))
        .route("/zipkin/api/v2/dependencies", get(dependencies))
        .route("/zipkin/api/v2/traceMany", get(trace_many))
        .route("/zipkin/api/v2/autocompleteKeys", get(autocomplete_keys))
        .route("/zipkin/api/v2/autocompleteValues", get(autocomplete_values))
}

fn convert(z: ZSpan, endpoints: &mut Endpoints) -> Result<Span, String> {
    let trace_id =
        TraceId::from_hex(&z.trace_id).ok_or_else(|| format!("traceId `{}` is not 16 or 32 hex digits", z.trace_id))?;
    let span_id = SpanId::from_hex(&z.id).ok_or_else(|| format!("id `{}` is not 16 hex digits", z.id))?;
    let parent = match z.parent_id.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(SpanId::from_hex(p).ok_or_else(|| format!("parentId `{p}` is not 16 hex digits"))?),
    };
    let micros = |what: &str, v: u64| v.checked_mul(1000).ok_or_else(|| format!("{what} {v} is out of range"));
    let start = micros("timestamp", z.timestamp.ok_or("timestamp (epoch microseconds) is required")?)?;
    let duration = micros("duration", z.duration.unwrap_or(0))?;
    let end = start.checked_add(duration).ok_or("timestamp + duration is out of range")?;
    let mut events = Vec::with_capacity(z.annotations.len());
    for a in z.annotations {
        events.push(SpanEvent {
            unix_nanos: micros("annotation timestamp", a.timestamp)?,
            name: a.value,
            attributes: Vec::new(),
        });
    }
    let mut attributes = Vec::with_capacity(z.tags.len() + 1);
    let mut status = SpanStatus::Unset;
    let mut message = String::new();
    for (k, v) in z.tags {
        if v.len() > crate::otlp::MAX_VALUE {
            return Err(format!("tag `{k}` is {} bytes; the limit is {}", v.len(), crate::otlp::MAX_VALUE));
        }
        if k == "error" {
            status = SpanStatus::Error;
            message = v;
            continue;
        }
        attributes.push(KeyValue { key: k.into(), value: AttrValue::Str(v) });
    }
    if let Some(remote) = z.remote_endpoint {
        // The peer's address and port as the span attributes OpenTelemetry's Zipkin
        // exporters read them from.
        let port = checked_port(&remote, "remoteEndpoint")?;
        if let Some(peer) = remote.service_name.filter(|s| !s.is_empty()) {
            attributes.push(KeyValue::str("peer.service", peer));
        }
        if let Some(ip) = remote.ipv4 {
            attributes.push(KeyValue::str("net.peer.ip", ip));
        }
        if let Some(ip) = remote.ipv6 {
            attributes.push(KeyValue::str("net.peer.ipv6", ip));
        }
        if let Some(p) = port {
            attributes.push(KeyValue::int("net.peer.port", p));
        }
    }
    let resource = match &z.local_endpoint {
        Some(e) => resource_of(e, endpoints)?,
        None => Resource::none(),
    };
    let flags = SpanFlags::default()
        .with(SpanFlags::SHARED, z.shared == Some(true))
        .with(SpanFlags::DEBUG, z.debug == Some(true))
        .with(SpanFlags::TRACE_ID_64, z.trace_id.len() == 16);
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id: parent,
        trace_state: String::new(),
        service: z
            .local_endpoint
            .and_then(|e| e.service_name)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".into()),
        name: z.name.unwrap_or_default(),
        kind: match z.kind.as_deref() {
            Some("SERVER") => SpanKind::Server,
            Some("CLIENT") => SpanKind::Client,
            Some("PRODUCER") => SpanKind::Producer,
            Some("CONSUMER") => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        },
        start_unix_nanos: start,
        end_unix_nanos: end,
        status,
        status_message: message,
        attributes,
        events,
        links: Vec::new(),
        resource,
        scope: Scope::none(),
        flags,
    })
}

/// A Zipkin v2 JSON body (a list of spans) as spans. Zipkin has no partial success: one bad
/// span refuses the request, and the error names it (`[3]`).
pub fn decode(raw: &[u8]) -> Result<Vec<Span>, ApiError> {
    let list: Vec<ZSpan> = crate::json::parse(raw)?;
    if list.len() > crate::otlp::MAX_SPANS {
        return Err(ApiError::bad_request(
            "too_many_spans",
            format!("more than {} spans in one request", crate::otlp::MAX_SPANS),
        ));
    }
    convert_all(list)
}

fn convert_all(list: Vec<ZSpan>) -> Result<Vec<Span>, ApiError> {
    let mut endpoints = Endpoints::new();
    let mut spans = Vec::with_capacity(list.len());
    for (i, z) in list.into_iter().enumerate() {
        spans.push(convert(z, &mut endpoints).map_err(|m| ApiError::field(format!("[{i}]"), m))?);
    }
    Ok(spans)
}

/// A Zipkin protobuf body (`zipkin.proto3` `ListOfSpans`) as spans, refused whole on one bad
/// span as the JSON form is.
pub fn decode_proto(raw: &[u8]) -> Result<Vec<Span>, ApiError> {
    use prost::Message;
    let list = proto::ListOfSpans::decode(raw)
        .map_err(|e| ApiError::bad_request("invalid_protobuf", format!("not a zipkin.proto3 ListOfSpans: {e}")))?;
    if list.spans.len() > crate::otlp::MAX_SPANS {
        return Err(ApiError::bad_request(
            "too_many_spans",
            format!("more than {} spans in one request", crate::otlp::MAX_SPANS),
        ));
    }
    let mut zs = Vec::with_capacity(list.spans.len());
    for (i, p) in list.spans.into_iter().enumerate() {
        zs.push(proto::to_json_model(p).map_err(|m| ApiError::field(format!("[{i}]"), m))?);
    }
    convert_all(zs)
}

async fn post_spans(State(s): State<AppState>, headers: HeaderMap, body: axum::body::Body) -> Response {
    if let Err(d) = check_ingest(&s, &headers) {
        return ApiError::from(d).into_response();
    }
    let t = match traces(&s) {
        Ok(t) => t.clone(),
        Err(e) => return e.into_response(),
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body exceeds {MAX_BODY} bytes; send smaller batches"),
        )
        .into_response();
    };
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let raw = if gzip {
        match crate::ingest::inflate_gzip(&body, MAX_BODY) {
            Ok(r) => r,
            Err(crate::ingest::Refused::TooLarge(_)) => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body exceeds {MAX_BODY} bytes after decompression; send smaller batches"),
                )
                .into_response();
            }
            Err(_) => return ApiError::bad_request("invalid_gzip", "the body is not valid gzip").into_response(),
        }
    } else {
        body.to_vec()
    };
    let protobuf = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-protobuf") || v.starts_with("application/protobuf"));
    // A protobuf body holds at most one message per two bytes; JSON, one per object.
    let items = if protobuf { raw.len() / 2 } else { crate::ingest::json_items(&raw) };
    if items > crate::ingest::MAX_ITEMS {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("more than {} JSON objects in one request; send smaller batches", crate::ingest::MAX_ITEMS),
        )
        .into_response();
    }
    let _budget = match crate::ingest::reserve(crate::ingest::estimate(raw.len(), items)) {
        Ok(p) => p,
        Err(_) => {
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "the node is decoding as much as it can hold; retry later",
            )
            .into_response();
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let spans = match if protobuf { decode_proto(&raw) } else { decode(&raw) } {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if spans.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    match crate::otlp::write(&s, &t, spans).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(WriteError::Busy(b)) => {
            let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", "the trace pipeline is busy; retry later")
                .into_response();
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(b.retry_after.as_secs().max(1)));
            r
        }
        Err(WriteError::Failed(f)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "write_failed", f.0).into_response()
        }
    }
}

/// A span in Zipkin's v2 JSON model.
pub fn zipkin_json(s: &Span) -> Value {
    let mut tags = Map::new();
    let mut remote = Map::new();
    for kv in &s.attributes {
        let v = match &kv.value {
            AttrValue::Str(x) => x.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Float(f) => f.to_string(),
            AttrValue::Bool(b) => b.to_string(),
        };
        match (&*kv.key, &kv.value) {
            ("peer.service", _) => {
                remote.insert("serviceName".into(), json!(v));
            }
            ("net.peer.ip", AttrValue::Str(_)) => {
                remote.insert("ipv4".into(), json!(v));
                continue;
            }
            ("net.peer.ipv6", AttrValue::Str(_)) => {
                remote.insert("ipv6".into(), json!(v));
                continue;
            }
            ("net.peer.port", AttrValue::Int(p)) => {
                remote.insert("port".into(), json!(p));
                continue;
            }
            _ => {}
        }
        tags.insert(kv.key.to_string(), Value::String(v));
    }
    if s.status == SpanStatus::Error {
        tags.insert(
            "error".into(),
            Value::String(if s.status_message.is_empty() { "true".into() } else { s.status_message.clone() }),
        );
    }
    let mut trace_id = s.trace_id.to_hex();
    if s.flags.has(SpanFlags::TRACE_ID_64) {
        trace_id.drain(..16);
    }
    // Zipkin has no resource or scope: the local endpoint's address comes from the resource,
    // its other attributes and the scope become tags (as OpenTelemetry's Zipkin exporters do),
    // without overriding the span's own.
    let mut local = json!({ "serviceName": s.service });
    for kv in &s.resource.attributes {
        match (&*kv.key, &kv.value) {
            ("net.host.ip", AttrValue::Str(ip)) => local["ipv4"] = json!(ip),
            ("net.host.ipv6", AttrValue::Str(ip)) => local["ipv6"] = json!(ip),
            ("net.host.port", AttrValue::Int(p)) => local["port"] = json!(p),
            (k, v) => {
                tags.entry(k.to_owned())
                    .or_insert_with(|| Value::String(signalbox_events::spans::block::value_text(v).into_owned()));
            }
        }
    }
    for (k, v) in [("otel.scope.name", &s.scope.name), ("otel.scope.version", &s.scope.version)] {
        if !v.is_empty() {
            tags.entry(k).or_insert_with(|| Value::String(v.clone()));
        }
    }
    let mut v = json!({
        "traceId": trace_id,
        "id": s.span_id.to_hex(),
        "name": s.name,
        "timestamp": s.start_unix_nanos / 1000,
        "duration": (s.duration_nanos() / 1000).max(1),
        "localEndpoint": local,
        "tags": tags,
    });
    if s.flags.has(SpanFlags::SHARED) {
        v["shared"] = json!(true);
    }
    if s.flags.has(SpanFlags::DEBUG) {
        v["debug"] = json!(true);
    }
    if let Some(p) = s.parent_span_id {
        v["parentId"] = json!(p.to_hex());
    }
    let kind = match s.kind {
        SpanKind::Server => Some("SERVER"),
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        _ => None,
    };
    if let Some(k) = kind {
        v["kind"] = json!(k);
    }
    if !remote.is_empty() {
        v["remoteEndpoint"] = Value::Object(remote);
    }
    if !s.events.is_empty() {
        v["annotations"] = Value::Array(
            s.events.iter().map(|e| json!({ "timestamp": e.unix_nanos / 1000, "value": e.name })).collect(),
        );
    }
    v
}

fn pairs(raw: Option<String>) -> BTreeMap<String, String> {
    raw.unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (crate::traces::decode(k), crate::traces::decode(v)))
        .collect()
}

async fn services(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(traces(&s)?.services())))
}

async fn span_names(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = pairs(q);
    let svc = p.get("serviceName").ok_or_else(|| ApiError::field("serviceName", "is required"))?;
    Ok(Json(json!(traces(&s)?.operations(svc))))
}

async fn remote_services(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = pairs(q);
    let svc = p.get("serviceName").ok_or_else(|| ApiError::field("serviceName", "is required"))?;
    let end = signalbox_core::time::unix_nanos();
    let mut peers: Vec<String> = traces(&s)?
        .dependencies(end.saturating_sub(86_400_000_000_000), end)
        .into_iter()
        .filter(|e| e.caller == *svc)
        .map(|e| e.callee)
        .collect();
    peers.sort();
    peers.dedup();
    Ok(Json(json!(peers)))
}

async fn trace(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_trace_id(&id)?;
    let spans = traces(&s)?.trace(&id);
    if spans.is_empty() {
        return Err(ApiError::not_found(format!("trace {id} not found")));
    }
    Ok(Json(Value::Array(spans.iter().map(zipkin_json).collect())))
}

/// `annotationQuery`: terms joined by ` and `, each `key=value` (a tag) or `key` (a tag key
/// or an annotation value); every term must be met by some span of the queried service.
fn annotation_query(q: &str) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let mut terms = Vec::new();
    for term in q.split(" and ").map(str::trim).filter(|t| !t.is_empty()) {
        let (k, v) = match term.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (term, None),
        };
        if k.is_empty() {
            return Err(ApiError::field("annotationQuery", format!("`{term}` has no key")));
        }
        terms.push((k.to_owned(), v));
    }
    Ok(terms)
}

async fn search(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let t = traces(&s)?.clone();
    let p = pairs(q);
    let num = |k: &str| -> Result<Option<u64>, ApiError> {
        p.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<u64>().map_err(|_| ApiError::field(k, "must be a number")))
            .transpose()
    };
    if let Some(ids) = p.get("traceIds") {
        let mut out = Vec::new();
        for id in ids.split(',').filter(|x| !x.is_empty()) {
            let spans = t.trace(&parse_trace_id(id)?);
            if !spans.is_empty() {
                out.push(Value::Array(spans.iter().map(zipkin_json).collect()));
            }
        }
        return Ok(Json(Value::Array(out)));
    }
    let end = num("endTs")?.map(|ms| ms * 1_000_000).unwrap_or_else(signalbox_core::time::unix_nanos);
    let lookback = num("lookback")?.map(|ms| ms * 1_000_000).unwrap_or(86_400_000_000_000);
    let terms = annotation_query(p.get("annotationQuery").map(String::as_str).unwrap_or(""))?;
    let limit = num("limit")?.unwrap_or(10) as usize;
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 10000"));
    }
    let query = Search {
        service: p.get("serviceName").filter(|v| !v.is_empty()).cloned(),
        operation: p.get("spanName").filter(|v| !v.is_empty() && *v != "all").cloned(),
        tags: Vec::new(),
        errors_only: false,
        terms,
        min_duration_nanos: num("minDuration")?.map(|us| us * 1000),
        max_duration_nanos: num("maxDuration")?.map(|us| us * 1000),
        start_nanos: end.saturating_sub(lookback),
        end_nanos: end,
        limit,
    };
    let mut query = query;
    // A trace must have a span (of the service) meeting each term: with no other condition
    // on single spans, the first `key=value` term (or `error`) narrows the candidate spans
    // before whole traces are read.
    if query.operation.is_none() && query.min_duration_nanos.is_none() && query.max_duration_nanos.is_none() {
        if let Some((k, Some(v))) = query.terms.iter().find(|(k, v)| v.is_some() && k != "error") {
            query.tags.push((k.clone(), v.clone()));
        } else if query.terms.iter().any(|(k, _)| k == "error") {
            query.errors_only = true;
        }
    }
    let data = tokio::task::spawn_blocking(move || {
        t.search(&query)
            .iter()
            .filter_map(|sum| TraceId::from_hex(&sum.trace_id))
            .map(|id| Value::Array(t.trace(&id).iter().map(zipkin_json).collect()))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "search failed"))?;
    Ok(Json(Value::Array(data)))
}

async fn dependencies(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = pairs(q);
    let end = p
        .get("endTs")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| ms * 1_000_000)
        .unwrap_or_else(signalbox_core::time::unix_nanos);
    let lookback =
        p.get("lookback").and_then(|v| v.parse::<u64>().ok()).map(|ms| ms * 1_000_000).unwrap_or(86_400_000_000_000);
    let edges: Vec<Value> = traces(&s)?
        .dependencies(end.saturating_sub(lookback), end)
        .iter()
        .map(|e| json!({ "parent": e.caller, "child": e.callee, "callCount": e.calls, "errorCount": e.errors }))
        .collect();
    Ok(Json(Value::Array(edges)))
}

/// `GET /api/v2/traceMany?traceIds=a,b`: the traces found among those ids.
async fn trace_many(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = pairs(q);
    let ids: Vec<&str> =
        p.get("traceIds").map(|v| v.split(',').filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::field("traceIds", "is required: a comma-separated list of trace ids"));
    }
    let ids = ids.into_iter().map(parse_trace_id).collect::<Result<Vec<_>, _>>()?;
    let t = traces(&s)?;
    let out: Vec<Value> = ids
        .iter()
        .map(|id| t.trace(id))
        .filter(|spans| !spans.is_empty())
        .map(|spans| Value::Array(spans.iter().map(zipkin_json).collect()))
        .collect();
    Ok(Json(Value::Array(out)))
}

const DAY_NANOS: u64 = 86_400_000_000_000;

/// `GET /api/v2/autocompleteKeys`: the tag keys of the last day's spans (Zipkin lists the
/// keys configured for autocompletion; here every key seen is offered).
async fn autocomplete_keys(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let t = traces(&s)?.clone();
    let end = signalbox_core::time::unix_nanos();
    let keys = tokio::task::spawn_blocking(move || t.tag_keys(end.saturating_sub(DAY_NANOS), end, 1000))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "autocomplete failed"))?;
    Ok(Json(json!(keys)))
}

/// `GET /api/v2/autocompleteValues?key=`: the values of tag `key` in the last day's spans.
async fn autocomplete_values(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = pairs(q);
    let key = p.get("key").filter(|k| !k.is_empty()).cloned().ok_or_else(|| ApiError::field("key", "is required"))?;
    let t = traces(&s)?.clone();
    let end = signalbox_core::time::unix_nanos();
    let values = tokio::task::spawn_blocking(move || t.tag_values(&key, end.saturating_sub(DAY_NANOS), end, 1000))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "autocomplete failed"))?;
    Ok(Json(json!(values)))
}
