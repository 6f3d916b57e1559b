//! OTLP trace ingest: gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`,
//! port 4317) and HTTP (`POST /v1/traces`, port 4318; protobuf or JSON, optionally gzip),
//! with the OTLP specification's answers: partial success for spans refused one by one,
//! `RESOURCE_EXHAUSTED` / HTTP 429 with `Retry-After` when the pipeline is full.
//!
//! Limits, each with its own error: message size ([`MAX_MESSAGE`]), spans per request
//! ([`MAX_SPANS`]), attribute value size ([`MAX_VALUE`], per span: that span is refused).

use crate::AppState;
use crate::auth::principal;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue, any_value};
use prost::Message;
use signalbox_control::access::Role;
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{AttrValue, KeyValue, Span, SpanEvent, SpanKind, StatusCode as SpanStatus};
use signalbox_events::pipeline::{Traces, WriteError};

mod grpc;
pub use grpc::{Checked, retry_later};

pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
pub const MAX_SPANS: usize = 100_000;
pub const MAX_VALUE: usize = 64 * 1024;

/// The outcome of converting a request.
pub struct Converted {
    pub spans: Vec<Span>,
    pub rejected: i64,
    pub error: String,
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => value_json(other).to_string(),
        None => String::new(),
    }
}

fn value_json(v: &any_value::Value) -> serde_json::Value {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => serde_json::Value::String(s.clone()),
        V::BoolValue(b) => serde_json::Value::Bool(*b),
        V::IntValue(i) => serde_json::json!(i),
        V::DoubleValue(d) => serde_json::json!(d),
        V::BytesValue(b) => serde_json::Value::String(signalbox_core::ids::encode_hex(b)),
        V::ArrayValue(a) => {
            serde_json::Value::Array(a.values.iter().filter_map(|x| x.value.as_ref().map(value_json)).collect())
        }
        V::KvlistValue(kv) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(value_json)
                            .unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect(),
        ),
        #[allow(unreachable_patterns)]
        _ => serde_json::Value::Null,
    }
}

fn attr(kv: &PKeyValue) -> Result<KeyValue, String> {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Float(*d),
        Some(_) | None => AttrValue::Str(kv.value.as_ref().map(text).unwrap_or_default()),
    };
    if let AttrValue::Str(s) = &value
        && s.len() > MAX_VALUE
    {
        return Err(format!("attribute `{}` is {} bytes; the limit is {MAX_VALUE}", kv.key, s.len()));
    }
    if kv.key.len() > 1024 {
        return Err("an attribute key is longer than 1024 bytes".into());
    }
    Ok(KeyValue { key: kv.key.clone().into(), value })
}

fn attrs(list: &[PKeyValue]) -> Result<Vec<KeyValue>, String> {
    list.iter().map(attr).collect()
}

/// Turns an OTLP request into spans; invalid spans are counted and described, not fatal.
pub fn convert(req: ExportTraceServiceRequest) -> Converted {
    let mut out = Converted { spans: Vec::new(), rejected: 0, error: String::new() };
    let reject = |out: &mut Converted, why: String| {
        out.rejected += 1;
        if out.error.is_empty() {
            out.error = why;
        }
    };
    for rs in req.resource_spans {
        let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
        let service = resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".into());
        let resource_attrs =
            match attrs(&resource.into_iter().filter(|kv| kv.key != "service.name").collect::<Vec<_>>()) {
                Ok(a) => a,
                Err(e) => {
                    let n: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
                    for _ in 0..n {
                        reject(&mut out, format!("resource: {e}"));
                    }
                    continue;
                }
            };
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| (s.name, s.version));
            for sp in ss.spans {
                let trace_id = <[u8; 16]>::try_from(sp.trace_id.as_slice()).ok().filter(|b| *b != [0; 16]);
                let span_id = <[u8; 8]>::try_from(sp.span_id.as_slice()).ok().filter(|b| *b != [0; 8]);
                let (Some(trace_id), Some(span_id)) = (trace_id, span_id) else {
                    reject(
                        &mut out,
                        "a span has an invalid trace_id (16 bytes, not all zero) or span_id (8 bytes, not all zero)"
                            .into(),
                    );
                    continue;
                };
                let parent = match sp.parent_span_id.len() {
                    0 => None,
                    8 => <[u8; 8]>::try_from(sp.parent_span_id.as_slice()).ok().filter(|b| *b != [0; 8]).map(SpanId),
                    _ => {
                        reject(&mut out, "a span has a parent_span_id that is not 8 bytes".into());
                        continue;
                    }
                };
                if sp.end_time_unix_nano < sp.start_time_unix_nano {
                    reject(&mut out, "a span ends before it starts".into());
                    continue;
                }
                let mut attributes = match attrs(&sp.attributes) {
                    Ok(a) => a,
                    Err(e) => {
                        reject(&mut out, e);
                        continue;
                    }
                };
                attributes.extend(resource_attrs.iter().cloned());
                if let Some((name, version)) = &scope
                    && !name.is_empty()
                {
                    attributes.push(KeyValue::str("otel.scope.name", name.clone()));
                    if !version.is_empty() {
                        attributes.push(KeyValue::str("otel.scope.version", version.clone()));
                    }
                }
                let mut events = Vec::with_capacity(sp.events.len());
                let mut bad = None;
                for e in &sp.events {
                    match attrs(&e.attributes) {
                        Ok(a) => {
                            events.push(SpanEvent { unix_nanos: e.time_unix_nano, name: e.name.clone(), attributes: a })
                        }
                        Err(err) => bad = Some(err),
                    }
                }
                if let Some(e) = bad {
                    reject(&mut out, e);
                    continue;
                }
                let status = sp.status.as_ref();
                out.spans.push(Span {
                    trace_id: TraceId(trace_id),
                    span_id: SpanId(span_id),
                    parent_span_id: parent,
                    trace_state: sp.trace_state,
                    service: service.clone(),
                    name: sp.name,
                    kind: SpanKind::from_code(sp.kind.into()),
                    start_unix_nanos: sp.start_time_unix_nano,
                    end_unix_nanos: sp.end_time_unix_nano,
                    status: SpanStatus::from_code(status.map_or(0, |s| s.code.into())),
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    attributes,
                    events,
                });
            }
        }
    }
    out
}

fn count_spans(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans.iter().flat_map(|r| r.scope_spans.iter()).map(|s| s.spans.len()).sum()
}

async fn write(traces: &Traces, spans: Vec<Span>) -> Result<(), WriteError> {
    if spans.is_empty() {
        return Ok(());
    }
    traces.write(spans).await
}

/// The OTLP/gRPC endpoint (port 4317) as a router: served over h2c by `crate::serve`.
pub fn grpc_router(state: AppState) -> axum::Router {
    let logs =
        grpc::UnaryEndpoint::new(crate::logs::otlp::GrpcExport { state: state.clone() }, crate::ingest::scan_otlp_logs);
    grpc::router(state).route_service(crate::logs::otlp::GRPC_PATH, logs)
}

/// `google.rpc.Status`, the body of OTLP/HTTP errors.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn http_error(json: bool, status: StatusCode, code: i32, message: String) -> Response {
    let body = if json {
        serde_json::json!({ "code": code, "message": message }).to_string().into_bytes()
    } else {
        RpcStatus { code, message }.encode_to_vec()
    };
    let ct = if json { "application/json" } else { "application/x-protobuf" };
    (status, [(http::header::CONTENT_TYPE, ct)], body).into_response()
}

/// An OTLP/HTTP body (protobuf, or JSON when `json`) as spans, with the spans refused and
/// why; `Err` is the message of a 400 when the body cannot be read at all.
pub fn decode(raw: &[u8], json: bool) -> Result<Converted, String> {
    if let Err(crate::ingest::Refused::Invalid(m) | crate::ingest::Refused::TooLarge(m)) = counts(raw, json) {
        return Err(m);
    }
    let req: ExportTraceServiceRequest = if json {
        serde_json::from_slice(raw).map_err(|e| format!("invalid OTLP/JSON: {e}"))?
    } else {
        ExportTraceServiceRequest::decode(raw).map_err(|e| format!("invalid OTLP protobuf: {e}"))?
    };
    if count_spans(&req) > MAX_SPANS {
        return Err(format!("more than {MAX_SPANS} spans in one request; send smaller batches"));
    }
    Ok(convert(req))
}

/// What decoding `raw` would build, checked against the limits before anything is built.
fn counts(raw: &[u8], json: bool) -> Result<crate::ingest::Counts, crate::ingest::Refused> {
    let c = if json {
        // Every JSON object or array is at most one message; spans are counted after decoding.
        crate::ingest::Counts { spans: 0, items: crate::ingest::json_items(raw) }
    } else {
        crate::ingest::scan_otlp_traces(raw)?
    };
    c.check()?;
    Ok(c)
}

/// The OTLP/HTTP answer to a refused body: 400 for malformed, 413 over a limit, 429 with
/// Retry-After when the decode budget is spent.
fn refused(json: bool, r: crate::ingest::Refused) -> Response {
    use crate::ingest::Refused;
    match r {
        Refused::Invalid(m) => http_error(json, StatusCode::BAD_REQUEST, 3, m),
        Refused::TooLarge(m) => http_error(json, StatusCode::PAYLOAD_TOO_LARGE, 3, m),
        Refused::Busy => {
            let mut resp = http_error(
                json,
                StatusCode::TOO_MANY_REQUESTS,
                8,
                "the node is decoding as much as it can hold; retry later".into(),
            );
            resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}

/// `POST /v1/traces`.
pub async fn http_export(
    axum::extract::State(s): axum::extract::State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = ct.starts_with("application/json");
    if !json && !ct.starts_with("application/x-protobuf") {
        return http_error(
            true,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            3,
            "send application/x-protobuf or application/json".into(),
        );
    }
    match principal(&s, &headers) {
        Ok(p) if p.role.allows(Role::Ingest) => {}
        Ok(_) => return http_error(json, StatusCode::FORBIDDEN, 7, "this token cannot ingest".into()),
        Err(d) => return http_error(json, StatusCode::UNAUTHORIZED, 16, d.message().into()),
    }
    let body = match axum::body::to_bytes(body, MAX_MESSAGE).await {
        Ok(b) => b,
        Err(_) => {
            return http_error(
                json,
                StatusCode::PAYLOAD_TOO_LARGE,
                8,
                format!("the body exceeds {MAX_MESSAGE} bytes; send smaller batches"),
            );
        }
    };
    let Some(traces) = &s.traces else {
        return http_error(
            json,
            StatusCode::SERVICE_UNAVAILABLE,
            14,
            "trace ingest is not enabled on this node".into(),
        );
    };
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let raw: Vec<u8> = if gzip {
        match crate::ingest::inflate_gzip(&body, crate::ingest::MAX_INFLATED) {
            Ok(r) => r,
            Err(r) => return refused(json, r),
        }
    } else {
        body.to_vec()
    };
    let items = match counts(&raw, json) {
        Ok(c) => c.items,
        Err(r) => return refused(json, r),
    };
    let _budget = match crate::ingest::reserve(crate::ingest::estimate(raw.len(), items)) {
        Ok(p) => p,
        Err(r) => return refused(json, r),
    };
    let c = match decode(&raw, json) {
        Ok(c) => c,
        Err(message) => return http_error(json, StatusCode::BAD_REQUEST, 3, message),
    };
    drop(_budget);
    match write(traces, c.spans).await {
        Ok(()) => {
            let resp = ExportTraceServiceResponse {
                partial_success: (c.rejected > 0)
                    .then_some(ExportTracePartialSuccess { rejected_spans: c.rejected, error_message: c.error }),
            };
            if json {
                (
                    StatusCode::OK,
                    [(http::header::CONTENT_TYPE, "application/json")],
                    serde_json::to_vec(&resp).unwrap_or_default(),
                )
                    .into_response()
            } else {
                (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/x-protobuf")], resp.encode_to_vec())
                    .into_response()
            }
        }
        Err(WriteError::Busy(b)) => {
            let mut r =
                http_error(json, StatusCode::TOO_MANY_REQUESTS, 8, "the trace pipeline is busy; retry later".into());
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(b.retry_after.as_secs().max(1)));
            r
        }
        Err(WriteError::Failed(f)) => {
            let mut r = http_error(json, StatusCode::SERVICE_UNAVAILABLE, 14, f.0);
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// The OTLP/HTTP router (port 4318).
pub fn http_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/v1/traces", axum::routing::post(http_export))
        .route("/v1/logs", axum::routing::post(crate::logs::otlp::http_export))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_MESSAGE))
        .layer(axum::middleware::map_response(crate::error::json_errors))
        .with_state(state)
}

/// Spans as an OTLP export request, grouped by service (for the standalone gateway's
/// exporter).
pub fn to_request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan, Status, span::Event};
    let pv = |v: &AttrValue| AnyValue {
        value: Some(match v {
            AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
            AttrValue::Int(i) => any_value::Value::IntValue(*i),
            AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    };
    let pkv = |kv: &KeyValue| PKeyValue { key: kv.key.to_string(), value: Some(pv(&kv.value)), ..Default::default() };
    let mut by_service: std::collections::BTreeMap<String, Vec<PSpan>> = std::collections::BTreeMap::new();
    for s in spans {
        let p = PSpan {
            trace_id: s.trace_id.0.to_vec(),
            span_id: s.span_id.0.to_vec(),
            trace_state: s.trace_state.clone(),
            parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
            flags: 0,
            name: s.name.clone(),
            kind: s.kind.code().into(),
            start_time_unix_nano: s.start_unix_nanos,
            end_time_unix_nano: s.end_unix_nanos,
            attributes: s.attributes.iter().map(pkv).collect(),
            dropped_attributes_count: 0,
            events: s
                .events
                .iter()
                .map(|e| Event {
                    time_unix_nano: e.unix_nanos,
                    name: e.name.clone(),
                    attributes: e.attributes.iter().map(pkv).collect(),
                    dropped_attributes_count: 0,
                })
                .collect(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: Some(Status {
                message: s.status_message.clone(),
                code: match s.status {
                    SpanStatus::Unset => 0,
                    SpanStatus::Ok => 1,
                    SpanStatus::Error => 2,
                },
            }),
        };
        by_service.entry(s.service).or_default().push(p);
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![PKeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue { value: Some(any_value::Value::StringValue(service)) }),
                        ..Default::default()
                    }],
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_spans: vec![ScopeSpans { scope: None, spans, schema_url: String::new() }],
                schema_url: String::new(),
            })
            .collect(),
    }
}
