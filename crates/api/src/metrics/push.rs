//! Metrics ingest: Prometheus remote_write 1.0 (`POST /prometheus/api/v1/write`) and OTLP
//! metrics (`POST /v1/metrics` on the OTLP/HTTP port, `MetricsService/Export` on OTLP/gRPC).
//! Every one checks the `ingest` role, reads the body under the ingest limits (gzip and
//! snappy sizes checked before inflating), and answers 429 / `RESOURCE_EXHAUSTED` with a
//! retry delay when the store is busy, as the trace receivers do.
//!
//! remote_write answers as Prometheus's receiver does: 204 when stored; 400 with a text
//! message for a malformed request or for samples the store refused (out of order, too old,
//! duplicates), which senders drop rather than retry; 429 / 5xx are retried.

use super::{MetricsState, agent_clock};
use crate::AppState;
use crate::auth::check_ingest;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use signalbox_metrics::metadata::Entry;
use signalbox_metrics::service::{MetricsService, PushError};
use signalbox_metrics::storage::{Appended, Labels};
use std::sync::Arc;

/// Most delta series whose running totals are kept for OTLP delta temporality.
pub const MAX_DELTA_SERIES: usize = 200_000;
/// Most samples one OTLP request may turn into.
pub const MAX_OTLP_SAMPLES: usize = 500_000;

fn text_error(status: StatusCode, m: impl Into<String>) -> Response {
    (status, [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", m.into())).into_response()
}

fn busy(retry_after: std::time::Duration) -> Response {
    let mut r = text_error(StatusCode::TOO_MANY_REQUESTS, "the metrics store is busy; retry later");
    r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
    r
}

#[allow(clippy::result_large_err)]
fn metrics(state: &AppState, headers: &HeaderMap) -> Result<Arc<MetricsState>, Response> {
    check_ingest(state, headers).map_err(|d| text_error(d.status(), d.message()))?;
    state
        .metric_store
        .clone()
        .ok_or_else(|| text_error(StatusCode::SERVICE_UNAVAILABLE, "metrics are not enabled on this node"))
}

/// Samples refused by the store, as a sentence, or None when all were stored.
fn refused_message(a: &signalbox_metrics::storage::Appended) -> Option<String> {
    (a.refused() > 0).then(|| {
        format!(
            "{} samples refused: {} out of order beyond the window, {} duplicate timestamps with other values, {} over the series limit",
            a.refused(),
            a.too_old,
            a.duplicate,
            a.over_limit
        )
    })
}

/// `POST /prometheus/api/v1/write`. Every answer states the node's handling time
/// ([`agent_clock::HANDLED_HEADER`]) for the agents' round-trip measurement.
pub async fn remote_write(State(s): State<AppState>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let arrived = std::time::Instant::now();
    let arrived_ns = signalbox_core::time::unix_nanos() as i64;
    let mut answer = remote_write_answer(s, headers, body, arrived_ns).await;
    answer.headers_mut().insert(agent_clock::HANDLED_HEADER, HeaderValue::from(arrived.elapsed().as_nanos() as u64));
    answer
}

async fn remote_write_answer(s: AppState, headers: HeaderMap, body: axum::body::Body, arrived_ns: i64) -> Response {
    let m = match metrics(&s, &headers) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let raw = match axum::body::to_bytes(body, crate::ingest::MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return text_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body exceeds {} bytes; send smaller batches", crate::ingest::MAX_BODY),
            );
        }
    };
    let Ok(budget) =
        crate::ingest::reserve(signalbox_metrics::remote_write::MAX_DECOMPRESSED.min(raw.len().saturating_mul(8)))
    else {
        return busy(std::time::Duration::from_secs(1));
    };
    let decoded = match signalbox_metrics::remote_write::decode(&raw) {
        Ok(d) => d,
        Err(e) => return text_error(StatusCode::BAD_REQUEST, e.0),
    };
    drop(budget);
    for (family, kind, help, unit) in decoded.metadata {
        m.service.metadata.record(&family, Entry { kind: signalbox_metrics::metadata::kind_name(kind), help, unit });
    }
    let clock = agent_clock::offset_seconds(&headers, arrived_ns)
        .and_then(|offset| agent_clock::series(&decoded.samples, offset, arrived_ns));
    let answer = store(&s, &m.service, decoded.samples).await.unwrap_or_else(|r| r);
    if let Some(sample) = clock {
        // Stored on its own so that a refusal (two pushes in the same millisecond) never
        // turns the push's answer into a 400.
        m.service.metadata.record(
            agent_clock::FAMILY,
            Entry { kind: "gauge", help: agent_clock::HELP.to_owned(), unit: "seconds".to_owned() },
        );
        if let Err(e) = m.service.push(vec![sample]).await {
            tracing::debug!(error = %e, "the agent's clock offset was not stored");
        }
    }
    answer
}

/// Stores samples: in the ingest buffer when the node has one (every sample is then
/// counted accepted: the store's own refusals happen later, on the storage node), else in
/// the local store.
async fn push(s: &AppState, svc: &MetricsService, samples: Vec<(Labels, i64, f64)>) -> Result<Appended, PushError> {
    let Some(b) = &s.buffer else { return svc.push(samples).await };
    let n = samples.len();
    match b.samples(samples).await {
        Ok(()) => Ok(Appended { accepted: n, ..Default::default() }),
        Err(crate::buffer::Refusal::Full { retry_after, .. }) => Err(PushError::Busy { retry_after }),
        Err(crate::buffer::Refusal::Unavailable(m)) => Err(PushError::Failed(m)),
    }
}

/// Stores samples: 204, 400 naming refused samples, 429 when busy, 500 on failure (503
/// when the ingest buffer is unreachable).
async fn store(s: &AppState, svc: &MetricsService, samples: Vec<(Labels, i64, f64)>) -> Result<Response, Response> {
    if samples.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    match push(s, svc, samples).await {
        Err(PushError::Failed(m)) if s.buffer.is_some() => {
            let mut r = text_error(StatusCode::SERVICE_UNAVAILABLE, format!("the ingest buffer is unavailable: {m}"));
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            Err(r)
        }
        Ok(a) => Ok(match refused_message(&a) {
            None => StatusCode::NO_CONTENT.into_response(),
            Some(m) => text_error(StatusCode::BAD_REQUEST, m),
        }),
        Err(PushError::Busy { retry_after }) => Err(busy(retry_after)),
        Err(PushError::Invalid(m)) => Err(text_error(StatusCode::BAD_REQUEST, m)),
        Err(PushError::Failed(e)) => {
            tracing::error!(error = %e, "storing pushed samples failed");
            Err(text_error(StatusCode::INTERNAL_SERVER_ERROR, "storing the samples failed"))
        }
    }
}

/// Converts an OTLP request and stores it; returns the partial-success answer.
async fn export(
    s: &AppState,
    m: &MetricsState,
    req: ExportMetricsServiceRequest,
) -> Result<ExportMetricsServiceResponse, PushError> {
    let c = {
        let mut deltas = m.deltas.lock().unwrap_or_else(|e| e.into_inner());
        signalbox_otlp::metrics::convert(&req, &mut deltas, MAX_OTLP_SAMPLES)
    };
    for (family, kind, help, unit) in c.metadata {
        m.service.metadata.record(&family, Entry { kind, help, unit });
    }
    let mut rejected = c.rejected.len() as i64;
    let mut message = c.rejected.first().map(|(_, m)| m.clone()).unwrap_or_default();
    let samples: Vec<(Labels, i64, f64)> = c
        .samples
        .into_iter()
        .filter_map(|(l, t, v)| match signalbox_metrics::remote_write::checked_labels(l) {
            Ok(l) => Some((l, t, v)),
            Err(e) => {
                rejected += 1;
                if message.is_empty() {
                    message = e;
                }
                None
            }
        })
        .collect();
    if !samples.is_empty() {
        let a = push(s, &m.service, samples).await?;
        if let Some(msg) = refused_message(&a) {
            rejected += a.refused() as i64;
            if message.is_empty() {
                message = msg;
            }
        }
    }
    Ok(ExportMetricsServiceResponse {
        partial_success: (rejected > 0)
            .then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected, error_message: message }),
    })
}

/// Decodes an OTLP metrics request body (protobuf or JSON, already inflated).
pub fn decode_otlp(raw: &[u8], json: bool) -> Result<ExportMetricsServiceRequest, String> {
    if json {
        serde_json::from_slice(raw).map_err(|e| format!("invalid OTLP/JSON: {e}"))
    } else {
        ExportMetricsServiceRequest::decode(raw).map_err(|e| format!("invalid OTLP protobuf: {e}"))
    }
}

/// `POST /v1/metrics` on the OTLP/HTTP port (protobuf or JSON, optionally gzip).
pub async fn otlp_http(State(s): State<AppState>, headers: HeaderMap, body: axum::body::Body) -> Response {
    use crate::error::ApiError;
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = ct.starts_with("application/json");
    if !json && !ct.starts_with("application/x-protobuf") {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/x-protobuf or application/json",
        )
        .into_response();
    }
    if let Err(d) = check_ingest(&s, &headers) {
        return ApiError::from(d).into_response();
    }
    let Some(m) = s.metric_store.clone() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_disabled",
            "metrics are not enabled on this node",
        )
        .into_response();
    };
    let raw = match crate::logs::body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let counts = if json {
        Ok(crate::ingest::Counts { spans: 0, items: crate::ingest::json_items(&raw) })
    } else {
        crate::ingest::scan_otlp_metrics(&raw)
    }
    .and_then(|c| c.check().map(|_| c));
    let counts = match counts {
        Ok(c) => c,
        Err(crate::ingest::Refused::Invalid(m)) => return ApiError::bad_request("invalid_otlp", m).into_response(),
        Err(crate::ingest::Refused::TooLarge(m)) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m).into_response();
        }
        Err(crate::ingest::Refused::Busy) => return busy(std::time::Duration::from_secs(1)),
    };
    let Ok(budget) = crate::ingest::reserve(crate::ingest::estimate(raw.len(), counts.items)) else {
        return busy(std::time::Duration::from_secs(1));
    };
    let req = match decode_otlp(&raw, json) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request("invalid_otlp", e).into_response(),
    };
    let answer = export(&s, &m, req).await;
    drop(budget);
    match answer {
        Ok(resp) if json => {
            let body = if resp.partial_success.is_none() {
                b"{}".to_vec()
            } else {
                serde_json::to_vec(&resp).unwrap_or_default()
            };
            (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok(resp) => (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/x-protobuf")], resp.encode_to_vec())
            .into_response(),
        Err(PushError::Busy { retry_after }) => busy(retry_after),
        Err(PushError::Invalid(m)) => ApiError::bad_request("invalid_otlp", m).into_response(),
        Err(PushError::Failed(e)) => {
            tracing::error!(error = %e, "storing OTLP metrics failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_failed", "storing the samples failed").into_response()
        }
    }
}

/// The gRPC method path of OTLP metrics export.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// OTLP/gRPC metrics export, served on the OTLP/gRPC port beside traces and logs.
#[derive(Clone)]
pub struct GrpcExport {
    pub state: AppState,
}

type Checked = crate::otlp::Checked<ExportMetricsServiceRequest>;

impl tonic::server::UnaryService<Checked> for GrpcExport {
    type Response = ExportMetricsServiceResponse;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status>>
                + Send,
        >,
    >;

    fn call(&mut self, request: tonic::Request<Checked>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            if let Some(v) =
                request.metadata().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
            {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            check_ingest(&state, &headers).map_err(|d| d.grpc())?;
            let Some(m) = state.metric_store.clone() else {
                return Err(tonic::Status::unavailable("metrics are not enabled on this node"));
            };
            match export(&state, &m, request.into_inner().into_inner()).await {
                Ok(resp) => Ok(tonic::Response::new(resp)),
                Err(PushError::Busy { retry_after }) => Err(crate::otlp::retry_later(
                    "the metrics store is busy; retry later",
                    retry_after.max(std::time::Duration::from_secs(1)),
                )),
                Err(PushError::Invalid(m)) => Err(tonic::Status::invalid_argument(m)),
                Err(PushError::Failed(e)) => Err(tonic::Status::unavailable(e)),
            }
        })
    }
}
