//! OTLP logs: an `ExportLogsServiceRequest` (protobuf or JSON) as records. Resource
//! attributes stay the record's resource (`service.name` and `service.instance.id` become
//! its service and instance); scope name and version become `otel.scope.*` attributes.

use super::{BadRequest, Decoded, MAX_LINE, MAX_RECORDS};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

/// Decodes a protobuf or JSON export request; the whole-request limits are checked first.
pub fn decode(raw: &[u8], json: bool, now: u64) -> Result<Decoded, BadRequest> {
    let req: ExportLogsServiceRequest = if json {
        if crate::ingest::json_items(raw) > crate::ingest::MAX_ITEMS {
            return Err(BadRequest(format!("more than {} JSON objects in one request", crate::ingest::MAX_ITEMS)));
        }
        serde_json::from_slice(raw).map_err(|e| BadRequest(format!("invalid OTLP/JSON: {e}")))?
    } else {
        ExportLogsServiceRequest::decode(raw).map_err(|e| BadRequest(format!("invalid OTLP protobuf: {e}")))?
    };
    Ok(convert(req, now))
}

/// Converts a request; records over the limits are refused one by one.
pub fn convert(req: ExportLogsServiceRequest, now: u64) -> Decoded {
    let (records, rejected) = signalbox_otlp::logs::convert(req, now, MAX_RECORDS, MAX_LINE);
    Decoded { records, rejected }
}

/// `POST /v1/logs` on the OTLP/HTTP port, with the specification's answers (as for traces).
pub async fn http_export(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = ct.starts_with("application/json");
    if !json && !ct.starts_with("application/x-protobuf") {
        return crate::error::ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/x-protobuf or application/json",
        )
        .into_response();
    }
    let sink = match super::sink(&s, &headers) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let raw = match super::body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let counts = if json {
        Ok(crate::ingest::Counts { spans: 0, items: crate::ingest::json_items(&raw) })
    } else {
        crate::ingest::scan_otlp_logs(&raw)
    }
    .and_then(|c| c.check().map(|_| c));
    let counts = match counts {
        Ok(c) => c,
        Err(crate::ingest::Refused::Invalid(m)) => {
            return crate::error::ApiError::bad_request("invalid_otlp", m).into_response();
        }
        Err(crate::ingest::Refused::TooLarge(m)) => {
            return crate::error::ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m).into_response();
        }
        Err(crate::ingest::Refused::Busy) => return busy(),
    };
    let Ok(budget) = crate::ingest::reserve(crate::ingest::estimate(raw.len(), counts.items)) else { return busy() };
    let d = match decode(&raw, json, signalbox_core::time::unix_nanos()) {
        Ok(d) => d,
        Err(BadRequest(m)) => return crate::error::ApiError::bad_request("invalid_otlp", m).into_response(),
    };
    drop(budget);
    let rejected = d.rejected.len() as i64;
    let error_message = d.rejected.first().map(|(_, m)| m.clone()).unwrap_or_default();
    if let Err(r) = super::store(&s, &sink, d.records).await {
        return r;
    }
    let resp = ExportLogsServiceResponse {
        partial_success: (rejected > 0)
            .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message }),
    };
    if json {
        let body =
            if resp.partial_success.is_none() { b"{}".to_vec() } else { serde_json::to_vec(&resp).unwrap_or_default() };
        (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/x-protobuf")], resp.encode_to_vec()).into_response()
    }
}

fn busy() -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = crate::error::ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "busy",
        "the node is decoding as much as it can hold; retry later",
    )
    .into_response();
    r.headers_mut().insert(http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    r
}

/// The gRPC method path of OTLP log export.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// OTLP/gRPC log export, served on the OTLP/gRPC port beside traces.
#[derive(Clone)]
pub struct GrpcExport {
    pub state: crate::AppState,
}

type Checked = crate::otlp::Checked<ExportLogsServiceRequest>;
type LogsResponse = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;

impl tonic::server::UnaryService<Checked> for GrpcExport {
    type Response = LogsResponse;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tonic::Response<LogsResponse>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<Checked>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
            let mut headers = axum::http::HeaderMap::new();
            if let Some(v) =
                request.metadata().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
            {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            let sink = super::sink(&state, &headers).map_err(|e| match e.status.as_u16() {
                401 => tonic::Status::unauthenticated(e.message),
                403 => tonic::Status::permission_denied(e.message),
                _ => tonic::Status::unavailable(e.message),
            })?;
            let d = convert(request.into_inner().into_inner(), signalbox_core::time::unix_nanos());
            let rejected = d.rejected.len() as i64;
            let error_message = d.rejected.first().map(|(_, m)| m.clone()).unwrap_or_default();
            if !d.records.is_empty() {
                super::write(&state, &sink, d.records).await.map_err(|e| match e {
                    signalbox_core::log::LogWriteError::Busy { retry_after } => crate::otlp::retry_later(
                        "the log store is busy; retry later",
                        retry_after.max(std::time::Duration::from_secs(1)),
                    ),
                    signalbox_core::log::LogWriteError::Failed(m) => tonic::Status::unavailable(m),
                })?;
            }
            Ok(tonic::Response::new(LogsResponse {
                partial_success: (rejected > 0)
                    .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message }),
            }))
        })
    }
}
