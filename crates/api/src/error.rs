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
