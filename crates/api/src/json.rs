//! A JSON body extractor whose errors name the field: `checks[0].interval: invalid type:
//! integer, expected a duration`, answered as 400 `invalid_field` with `field` set.

use crate::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.ends_with("+json"));
        if !json_type {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body rejected: {e}"),
            )
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Parses JSON, naming the failing field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {inner}"))
        } else {
            let msg = inner.to_string();
            // "missing field `x`" and "unknown field `x`" name the field inside the message.
            let field = match msg.split('`').nth(1) {
                Some(f) if msg.starts_with("missing field") || msg.starts_with("unknown field") => {
                    if path == "." {
                        f.to_owned()
                    } else if path == f || path.ends_with(&format!(".{f}")) {
                        path
                    } else {
                        format!("{path}.{f}")
                    }
                }
                _ => path,
            };
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            ApiError::field(field, msg)
        }
    })
}
