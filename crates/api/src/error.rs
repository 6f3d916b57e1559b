//! API errors: an HTTP status, a stable `code`, a message that names what was wrong, and for
//! bad input the `field`. Internals (storage errors) are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use signalbox_control::error::ControlError;

/// An error answered by an API handler.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None, extra: None }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// A bad field: 400 with `field` set.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError {
            field: Some(field.clone()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", format!("{field}: {}", message.into()))
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid { field, message } => ApiError::field(field, message),
            ControlError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            ControlError::Conflict { current } => ApiError {
                extra: Some(("current_version", json!(current))),
                ..ApiError::new(StatusCode::CONFLICT, "version_conflict", format!("the current version is {current}"))
            },
            ControlError::Limit { field, message } => {
                let status =
                    if field == "value" { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::UNPROCESSABLE_ENTITY };
                ApiError {
                    field: Some(field.clone()),
                    ..ApiError::new(status, "limit_exceeded", format!("{field}: {message}"))
                }
            }
            ControlError::Refused(message) => ApiError::new(StatusCode::CONFLICT, "refused", message),
            ControlError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "control state unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "control_unavailable",
                    "the control state did not confirm the operation in time; it may or may not have been applied: retry",
                )
            }
            ControlError::Storage(detail) => {
                tracing::error!(error = %detail, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    "the store could not complete the operation; nothing was changed",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if let Some((k, v)) = self.extra {
            body[k] = v;
        }
        (self.status, Json(body)).into_response()
    }
}

/// Makes every error response of a router the JSON shape: axum's own rejections (a query
/// string that does not parse, a path that is not UTF-8, a body over the limit, a method not
/// allowed) are plain text, which this rewrites as `{error, code}` with the same status and
/// headers. JSON and protobuf error bodies (OTLP/HTTP's `google.rpc.Status`) pass untouched.
pub async fn json_errors(resp: Response) -> Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json")
        || ct.starts_with("application/x-protobuf")
        || ct.starts_with("application/grpc")
    {
        return resp;
    }
    // The Consul API's own answers (a missing key is a bare 404, as Consul's) carry its
    // index header; Consul clients expect them exactly so.
    if resp.headers().contains_key("x-consul-index") {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
    let code = match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid_body",
        429 => "busy",
        _ if status.is_server_error() => "internal",
        _ => "error",
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    let body = json!({ "error": message, "code": code }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}
