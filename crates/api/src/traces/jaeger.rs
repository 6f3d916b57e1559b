//! The Jaeger query API under `/jaeger/api`, in Jaeger's shapes (the endpoints Grafana's
//! Jaeger data source calls): services, operations, traces by id and by search, and the
//! dependency graph, with Jaeger's error envelope.

use super::*;
use crate::cluster::merged;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/jaeger/api/services", get(jaeger_services))
        .route("/jaeger/api/services/{service}/operations", get(jaeger_operations_v1))
        .route("/jaeger/api/operations", get(jaeger_operations))
        .route("/jaeger/api/traces", get(jaeger_search))
        .route("/jaeger/api/traces/{id}", get(jaeger_trace))
        .route("/jaeger/api/dependencies", get(jaeger_dependencies))
}

fn jaeger_ok(data: Value) -> Json<Value> {
    let total = data.as_array().map(|a| a.len()).unwrap_or(0);
    Json(json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null }))
}

/// `body` with one entry in Jaeger's `errors` per storage node that did not answer, and
/// the partial-result header.
fn jaeger_partial(Json(mut body): Json<Value>, partial: &Partial) -> axum::response::Response {
    use axum::response::IntoResponse;
    if partial.is_partial() {
        let mut errors = body["errors"].as_array().cloned().unwrap_or_default();
        errors.extend(partial.warnings().into_iter().map(|w| json!({ "code": 503, "msg": w })));
        body["errors"] = Value::Array(errors);
    }
    partial.mark(Json(body).into_response())
}

/// An error in Jaeger's envelope: `{"data":null,...,"errors":[{"code":400,"msg":"..."}]}`
/// with the same HTTP status, as Jaeger's query service answers.
pub struct JaegerError(ApiError);

impl From<ApiError> for JaegerError {
    fn from(e: ApiError) -> Self {
        JaegerError(e)
    }
}

impl axum::response::IntoResponse for JaegerError {
    fn into_response(self) -> axum::response::Response {
        let e = self.0;
        let body = json!({ "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{ "code": e.status.as_u16(), "msg": e.message }] });
        (e.status, Json(body)).into_response()
    }
}

async fn jaeger_services(State(s): State<AppState>) -> Result<Response, JaegerError> {
    let partial = Partial::default();
    let services = match &s.cluster {
        None => traces(&s)?.services(),
        Some(c) => merged::services(c, traces(&s)?, &partial).await,
    };
    Ok(jaeger_partial(jaeger_ok(json!(services)), &partial))
}

async fn jaeger_operations_v1(State(s): State<AppState>, Path(service): Path<String>) -> Result<Response, JaegerError> {
    let partial = Partial::default();
    let ops: Vec<String> = match &s.cluster {
        None => traces(&s)?.operations(&service),
        Some(c) => merged::operations(c, traces(&s)?, &service, &partial).await.into_keys().collect(),
    };
    Ok(jaeger_partial(jaeger_ok(json!(ops)), &partial))
}

/// Jaeger's refusal of a query without a service (its message, word for word).
fn service_required() -> ApiError {
    ApiError {
        field: Some("service".into()),
        ..ApiError::bad_request("invalid_field", "parameter 'service' is required")
    }
}

/// Jaeger's name for a span kind in `/api/operations` (`""` for unspecified).
fn jaeger_kind(k: SpanKind) -> &'static str {
    if k == SpanKind::Unspecified { "" } else { kind_str(k) }
}

#[derive(Deserialize, Default)]
struct OpParams {
    service: Option<String>,
    #[serde(rename = "spanKind")]
    span_kind: Option<String>,
}

/// A query string that does not parse, as a 400 in Jaeger's envelope.
fn jaeger_query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, JaegerError> {
    q.map(|Query(p)| p).map_err(|e| ApiError::bad_request("invalid_query", e.body_text()).into())
}

async fn jaeger_operations(
    State(s): State<AppState>,
    q: Result<Query<OpParams>, QueryRejection>,
) -> Result<Response, JaegerError> {
    let p = jaeger_query(q)?;
    let service = p.service.filter(|x| !x.is_empty()).ok_or_else(service_required)?;
    let wanted =
        match p.span_kind.as_deref().unwrap_or("") {
            "" => None,
            k => Some((1..=5).map(SpanKind::from_code).find(|x| kind_str(*x) == k).ok_or_else(|| {
                ApiError::field("spanKind", "must be server, client, producer, consumer or internal")
            })?),
        };
    // One entry per (operation, kind), as Jaeger lists them.
    let mut ops = Vec::new();
    let partial = Partial::default();
    let kinds = match &s.cluster {
        None => traces(&s)?.operation_kinds(&service),
        Some(c) => merged::operations(c, traces(&s)?, &service, &partial).await,
    };
    for (name, mask) in kinds {
        for kind in (0..=5).map(SpanKind::from_code).filter(|k| mask & (1 << k.code()) != 0) {
            if wanted.is_none_or(|w| w == kind) {
                ops.push(json!({ "name": name, "spanKind": jaeger_kind(kind) }));
            }
        }
        if mask == 0 && wanted.is_none() {
            ops.push(json!({ "name": name, "spanKind": "" }));
        }
    }
    Ok(jaeger_partial(jaeger_ok(Value::Array(ops)), &partial))
}

fn jaeger_tag(key: &str, v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({ "key": key, "type": "string", "value": s }),
        AttrValue::Int(i) => json!({ "key": key, "type": "int64", "value": i }),
        AttrValue::Float(f) => json!({ "key": key, "type": "float64", "value": f }),
        AttrValue::Bool(b) => json!({ "key": key, "type": "bool", "value": b }),
    }
}

/// Span ids for the Jaeger view: the server half of a Zipkin shared span gets a new id
/// (child of the client half), and the server's own children follow it, as Jaeger's
/// span-id uniquifier does. Returns each span's (id, parent).
fn jaeger_ids(spans: &[Span]) -> Vec<(SpanId, Option<SpanId>)> {
    use signalbox_core::span::SpanFlags;
    use std::collections::{HashMap, HashSet};
    let mut ids: Vec<(SpanId, Option<SpanId>)> = spans.iter().map(|s| (s.span_id, s.parent_span_id)).collect();
    let is_shared_server = |s: &Span| s.flags.has(SpanFlags::SHARED) && s.kind == SpanKind::Server;
    if !spans.iter().any(is_shared_server) {
        return ids;
    }
    let unshared: HashSet<SpanId> =
        spans.iter().filter(|s| !s.flags.has(SpanFlags::SHARED)).map(|s| s.span_id).collect();
    let mut taken: HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<SpanId, Vec<usize>> = HashMap::new();
    for (j, c) in spans.iter().enumerate() {
        if let Some(p) = c.parent_span_id {
            children.entry(p).or_default().push(j);
        }
    }
    let mut next = spans.iter().map(|s| u64::from_be_bytes(s.span_id.0)).max().unwrap_or(0);
    for (i, s) in spans.iter().enumerate() {
        if !is_shared_server(s) || !unshared.contains(&s.span_id) {
            continue;
        }
        let new = loop {
            next = next.wrapping_add(1);
            let id = SpanId(next.to_be_bytes());
            if next != 0 && taken.insert(id) {
                break id;
            }
        };
        ids[i] = (new, Some(s.span_id));
        for &j in children.get(&s.span_id).into_iter().flatten() {
            if j != i && spans[j].service == s.service {
                ids[j].1 = Some(new);
            }
        }
    }
    ids
}

/// A trace in Jaeger's UI/query JSON model: a process per (service, resource) with the
/// resource's attributes as its tags; scope name and version as span tags; links as
/// `FOLLOWS_FROM` references; a warning on a span whose parent is not in the trace.
pub fn jaeger_trace_json(spans: &[Span]) -> Value {
    let mut processes = Map::new();
    let mut pids: Vec<(&str, &[KeyValue])> = Vec::new();
    // The spans of a batch share one resource: look it up by pointer before by value.
    let mut by_ptr: std::collections::HashMap<(&str, usize), String> = std::collections::HashMap::new();
    let mut out = Vec::new();
    let ids = jaeger_ids(spans);
    let present: std::collections::HashSet<SpanId> = ids.iter().map(|(id, _)| *id).collect();
    for (s, (span_id, parent)) in spans.iter().zip(ids.iter().copied()) {
        let ptr = (s.service.as_str(), std::sync::Arc::as_ptr(&s.resource) as usize);
        let pid = match by_ptr.get(&ptr) {
            Some(id) => id.clone(),
            None => {
                let key = (s.service.as_str(), s.resource.attributes.as_slice());
                let id = match pids.iter().position(|x| *x == key) {
                    Some(i) => format!("p{}", i + 1),
                    None => {
                        pids.push(key);
                        let id = format!("p{}", pids.len());
                        let tags: Vec<Value> =
                            s.resource.attributes.iter().map(|kv| jaeger_tag(&kv.key, &kv.value)).collect();
                        processes.insert(id.clone(), json!({ "serviceName": s.service, "tags": tags }));
                        id
                    }
                };
                by_ptr.insert(ptr, id.clone());
                id
            }
        };
        let mut tags: Vec<Value> = s.attributes.iter().map(|kv| jaeger_tag(&kv.key, &kv.value)).collect();
        if !s.scope.name.is_empty() {
            tags.push(json!({ "key": "otel.scope.name", "type": "string", "value": s.scope.name }));
        }
        if !s.scope.version.is_empty() {
            tags.push(json!({ "key": "otel.scope.version", "type": "string", "value": s.scope.version }));
        }
        tags.push(json!({ "key": "span.kind", "type": "string", "value": kind_str(s.kind) }));
        if s.status == StatusCode::Error {
            tags.push(json!({ "key": "error", "type": "bool", "value": true }));
            if !s.status_message.is_empty() {
                tags.push(json!({ "key": "otel.status_description", "type": "string", "value": s.status_message }));
            }
        }
        let logs: Vec<Value> = s
            .events
            .iter()
            .map(|e| {
                let mut fields = vec![json!({ "key": "event", "type": "string", "value": e.name })];
                fields.extend(e.attributes.iter().map(|kv| jaeger_tag(&kv.key, &kv.value)));
                json!({ "timestamp": e.unix_nanos / 1000, "fields": fields })
            })
            .collect();
        let mut refs: Vec<Value> = parent
            .iter()
            .map(|p| json!({ "refType": "CHILD_OF", "traceID": s.trace_id.to_hex(), "spanID": p.to_hex() }))
            .collect();
        refs.extend(s.links.iter().map(
            |l| json!({ "refType": "FOLLOWS_FROM", "traceID": l.trace_id.to_hex(), "spanID": l.span_id.to_hex() }),
        ));
        let warnings = match parent {
            Some(p) if !present.contains(&p) => {
                json!([format!("invalid parent span IDs={}; skipping clock skew adjustment", p.to_hex())])
            }
            _ => Value::Null,
        };
        out.push(json!({
            "traceID": s.trace_id.to_hex(),
            "spanID": span_id.to_hex(),
            "operationName": s.name,
            "references": refs,
            "startTime": s.start_unix_nanos / 1000,
            "duration": s.duration_nanos() / 1000,
            "tags": tags,
            "logs": logs,
            "processID": pid,
            "warnings": warnings,
            "flags": 1,
        }));
    }
    json!({ "traceID": spans.first().map(|s| s.trace_id.to_hex()).unwrap_or_default(), "spans": out, "processes": processes, "warnings": null })
}

async fn jaeger_trace(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, JaegerError> {
    let t = traces(&s)?;
    let id = parse_trace_id(&id)?;
    let partial = Partial::default();
    let spans = match &s.cluster {
        None => t.trace(&id),
        Some(c) => merged::trace(c, t, &id, &partial).await,
    };
    if spans.is_empty() {
        let e = JaegerError(ApiError::not_found("trace not found"));
        return Ok(jaeger_partial_error(e, &partial));
    }
    Ok(jaeger_partial(jaeger_ok(json!([jaeger_trace_json(&spans)])), &partial))
}

/// A Jaeger error answer that also names the storage nodes that did not answer.
fn jaeger_partial_error(e: JaegerError, partial: &Partial) -> Response {
    let status = e.0.status;
    let body = json!({ "data": null, "total": 0, "limit": 0, "offset": 0,
        "errors": [{ "code": status.as_u16(), "msg": e.0.message }] });
    let mut r = jaeger_partial(Json(body), partial);
    *r.status_mut() = status;
    r
}

/// Jaeger's `tags` parameter: a JSON object, or logfmt `k=v k2="v 2"` as older clients send.
pub(crate) fn jaeger_tags(v: &str) -> Result<Vec<(String, String)>, ApiError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(Vec::new());
    }
    if v.starts_with('{') {
        let m: Map<String, Value> =
            serde_json::from_str(v).map_err(|_| ApiError::field("tags", "must be a JSON object of strings"))?;
        return Ok(m
            .into_iter()
            .map(|(k, x)| (k, x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())))
            .collect());
    }
    let mut out = Vec::new();
    for part in v.split_whitespace() {
        let (k, x) =
            part.split_once('=').ok_or_else(|| ApiError::field("tags", format!("`{part}` must be key=value")))?;
        out.push((k.to_owned(), x.trim_matches('"').to_owned()));
    }
    Ok(out)
}

/// `/api/traces?traceID=a&traceID=b`: exactly those traces; each one not found is an entry
/// `{"msg": "trace not found", "traceID": ...}` in `errors`, as Jaeger answers.
async fn jaeger_by_ids(s: &AppState, t: &Traces, ids: &[&str]) -> Result<Response, JaegerError> {
    let mut data = Vec::new();
    let mut errors = Vec::new();
    let partial = Partial::default();
    for raw in ids {
        let id = TraceId::from_hex(raw.trim())
            .ok_or_else(|| ApiError::field("traceID", format!("`{raw}` is not 32 (or 16) hex digits")))?;
        let spans = match &s.cluster {
            None => t.trace(&id),
            Some(c) => merged::trace(c, t, &id, &partial).await,
        };
        if spans.is_empty() {
            errors.push(json!({ "msg": "trace not found", "traceID": id.to_hex() }));
        } else {
            data.push(jaeger_trace_json(&spans));
        }
    }
    let total = data.len();
    let errors = if errors.is_empty() { Value::Null } else { Value::Array(errors) };
    Ok(jaeger_partial(
        Json(json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": errors })),
        &partial,
    ))
}

async fn jaeger_search(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, JaegerError> {
    let t = traces(&s)?;
    let p = pairs(q);
    let get = |k: &str| p.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let ids: Vec<&str> = p.iter().filter(|(k, v)| k == "traceID" && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
    if !ids.is_empty() {
        return jaeger_by_ids(&s, t, &ids).await;
    }
    if get("service").is_none() {
        return Err(service_required().into());
    }
    // Jaeger takes microseconds for start/end and a duration for lookback.
    let end = match get("end") {
        Some(e) => micros_param("end", e)?,
        None => signalbox_core::time::unix_nanos(),
    };
    let start = match (get("start"), get("lookback")) {
        (Some(st), _) => micros_param("start", st)?,
        (None, Some(l)) if l != "custom" => end.saturating_sub(duration_param("lookback", l)?),
        _ => end.saturating_sub(3_600_000_000_000),
    };
    if start > end {
        return Err(ApiError::field("start", "must not be after end").into());
    }
    let mut tags = Vec::new();
    for (_, v) in p.iter().filter(|(k, _)| k == "tags" || k == "tag") {
        if v.contains(':') && !v.trim_start().starts_with('{') && !v.contains('=') {
            let (k, x) = v.split_once(':').unwrap_or((v, ""));
            tags.push((k.to_owned(), x.to_owned()));
        } else {
            tags.extend(jaeger_tags(v)?);
        }
    }
    let errors_only = tags.iter().any(|(k, v)| k == "error" && v == "true");
    tags.retain(|(k, v)| !(k == "error" && v == "true"));
    let query = Search {
        service: get("service").map(str::to_owned),
        operation: get("operation").filter(|o| *o != "all").map(str::to_owned),
        tags,
        errors_only,
        min_duration_nanos: get("minDuration").map(|v| duration_param("minDuration", v)).transpose()?,
        max_duration_nanos: get("maxDuration").map(|v| duration_param("maxDuration", v)).transpose()?,
        start_nanos: start,
        end_nanos: end,
        limit: limit_param(get("limit"), 20)?,
        terms: Vec::new(),
    };
    let partial = Partial::default();
    if let Some(c) = &s.cluster {
        let found = merged::search(c, t, &query, &partial).await;
        let data: Vec<Value> = found.iter().map(|spans| jaeger_trace_json(spans)).collect();
        return Ok(jaeger_partial(jaeger_ok(Value::Array(data)), &partial));
    }
    let tt = t.clone();
    let data = tokio::task::spawn_blocking(move || {
        tt.search(&query)
            .iter()
            .filter_map(|sum| TraceId::from_hex(&sum.trace_id))
            .map(|id| jaeger_trace_json(&tt.trace(&id)))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| ApiError::new(http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "search failed"))?;
    Ok(jaeger_partial(jaeger_ok(Value::Array(data)), &partial))
}

#[derive(Deserialize, Default)]
struct JaegerDeps {
    #[serde(rename = "endTs")]
    end_ts: Option<u64>,
    lookback: Option<u64>,
}

async fn jaeger_dependencies(
    State(s): State<AppState>,
    q: Result<Query<JaegerDeps>, QueryRejection>,
) -> Result<Json<Value>, JaegerError> {
    let p = jaeger_query(q)?;
    let millis = |field: &str, ms: u64| {
        ms.checked_mul(1_000_000)
            .filter(|n| *n <= MAX_NANOS)
            .ok_or_else(|| ApiError::field(field, "is out of range (Unix milliseconds)"))
    };
    let end = match p.end_ts {
        Some(ms) => millis("endTs", ms)?,
        None => signalbox_core::time::unix_nanos(),
    };
    let lookback = match p.lookback {
        Some(ms) => millis("lookback", ms)?,
        None => Duration::from_secs(86_400).as_nanos() as u64,
    };
    let start = end.saturating_sub(lookback);
    let edges: Vec<Value> = traces(&s)?
        .dependencies(start, end)
        .iter()
        .map(|e| json!({ "parent": e.caller, "child": e.callee, "callCount": e.calls }))
        .collect();
    Ok(jaeger_ok(Value::Array(edges)))
}
