//! OTLP trace ingest: gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`,
//! port 4317) and HTTP (`POST /v1/traces`, port 4318; protobuf or JSON, optionally gzip),
//! with the OTLP specification's answers: partial success for spans refused one by one,
//! `RESOURCE_EXHAUSTED` / HTTP 429 with `Retry-After` when the pipeline is full.
//!
//! Limits, each with its own error: message size ([`MAX_MESSAGE`]), spans per request
//! ([`MAX_SPANS`]), attribute value size ([`MAX_VALUE`], per span: that span is refused).

use crate::AppState;
use crate::auth::check_ingest;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use signalbox_core::span::Span;
use signalbox_events::spans::pipeline::{Traces, WriteError};

mod grpc;
pub use grpc::{Checked, retry_later};

pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
pub use signalbox_otlp::traces::{Converted, MAX_SPANS, MAX_VALUE, convert, count_spans, to_request};

/// The OTLP/HTTP JSON answer: `{}` when every span was accepted, else the partial success
/// (int64 as a decimal string, as the protobuf JSON mapping has it).
fn json_response(c: &Converted) -> Vec<u8> {
    let v = if c.rejected > 0 {
        serde_json::json!({ "partialSuccess": {
            "rejectedSpans": c.rejected.to_string(), "errorMessage": c.error } })
    } else {
        serde_json::json!({})
    };
    v.to_string().into_bytes()
}

/// Stores spans: in the ingest buffer when the node has one (answered once the buffer has
/// them), else in the local pipeline.
pub(crate) async fn write(state: &AppState, traces: &Traces, spans: Vec<Span>) -> Result<(), WriteError> {
    if spans.is_empty() {
        return Ok(());
    }
    if let Some(b) = &state.buffer {
        return b.spans(spans).await.map_err(|r| match r {
            crate::buffer::Refusal::Full { message, retry_after } => {
                tracing::debug!(%message, "the ingest buffer refused spans");
                WriteError::Busy(signalbox_events::spans::pipeline::Backpressure { retry_after })
            }
            crate::buffer::Refusal::Unavailable(m) => {
                WriteError::Failed(signalbox_events::spans::pipeline::WriteFailed(m))
            }
        });
    }
    traces.write(spans).await
}

/// The OTLP/gRPC endpoint (port 4317) as a router: served over h2c by `crate::serve`.
pub fn grpc_router(state: AppState) -> axum::Router {
    let logs =
        grpc::UnaryEndpoint::new(crate::logs::otlp::GrpcExport { state: state.clone() }, crate::ingest::scan_otlp_logs);
    let metrics = grpc::UnaryEndpoint::new(
        crate::metrics::push::GrpcExport { state: state.clone() },
        crate::ingest::scan_otlp_metrics,
    );
    grpc::router(state)
        .route_service(crate::logs::otlp::GRPC_PATH, logs)
        .route_service(crate::metrics::push::GRPC_PATH, metrics)
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
    if let Err(d) = check_ingest(&s, &headers) {
        return http_error(json, d.status(), d.grpc_code(), d.message().into());
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
    let mut c = match decode(&raw, json) {
        Ok(c) => c,
        Err(message) => return http_error(json, StatusCode::BAD_REQUEST, 3, message),
    };
    drop(_budget);
    let spans = std::mem::take(&mut c.spans);
    match write(&s, traces, spans).await {
        Ok(()) => {
            if json {
                (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], json_response(&c)).into_response()
            } else {
                let resp = ExportTraceServiceResponse {
                    partial_success: (c.rejected > 0)
                        .then_some(ExportTracePartialSuccess { rejected_spans: c.rejected, error_message: c.error }),
                };
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
        .route("/v1/metrics", axum::routing::post(crate::metrics::push::otlp_http))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_MESSAGE))
        .layer(axum::middleware::map_response(crate::error::json_errors))
        .with_state(state)
}
