//! Console sessions (`/api/session`) and token management (`/api/tokens`, admin only).
//!
//! The console logs in with a token and receives an `HttpOnly`, `SameSite=Strict` session
//! cookie; the token itself is never stored by the browser.

use crate::AppState;
use crate::auth::{SESSION_COOKIE, principal, session_cookie};
use crate::error::ApiError;
use crate::json::JsonBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use signalbox_control::access::{LoginError, Role};

/// Open routes: logging in needs no session.
pub fn open() -> Router<AppState> {
    Router::new().route("/api/session", get(whoami).post(login).delete(logout))
}

pub fn admin() -> Router<AppState> {
    Router::new().route("/api/tokens", get(list).post(create)).route("/api/tokens/{id}", delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

async fn login(
    State(s): State<AppState>,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    JsonBody(b): JsonBody<Login>,
) -> Result<Response, ApiError> {
    if !s.control.access.enabled() {
        return Ok(Json(json!({ "access_control": false, "role": "admin", "token_id": "anonymous" })).into_response());
    }
    let client = client.map(|c| c.0.0.ip());
    match s.control.access.login(&b.token, client).await {
        Ok((id, p)) => {
            let secure = if s.secure_cookies { "; Secure" } else { "" };
            let cookie = format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200{secure}");
            let mut r = Json(json!({ "access_control": true, "role": p.role, "token_id": p.token_id })).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(http::header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(LoginError::Denied(d)) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", d.message())),
        Err(LoginError::Throttled(wait)) => {
            let secs = wait.as_secs().max(1);
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_logins",
                format!("too many failed logins from this address; try again in {secs}s"),
            )
            .into_response();
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(r)
        }
        Err(LoginError::Store(e)) => Err(e.into()),
    }
}

async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    match principal(&s, &headers) {
        Ok(p) => {
            Ok(Json(json!({ "access_control": s.control.access.enabled(), "role": p.role, "token_id": p.token_id })))
        }
        Err(d) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", d.message())),
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(id) = session_cookie(&headers) {
        s.control.access.logout(id).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        http::header::SET_COOKIE,
        HeaderValue::from_static("sb_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(r)
}

async fn list(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "tokens": s.control.access.list() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    id: String,
    role: String,
    #[serde(default)]
    description: String,
    /// Lifetime like "30d"; none: no expiry.
    #[serde(default)]
    ttl: Option<String>,
}

async fn create(State(s): State<AppState>, JsonBody(b): JsonBody<Create>) -> Result<Response, ApiError> {
    let role = Role::parse(&b.role).ok_or_else(|| ApiError::field("role", "must be read, ingest, edit or admin"))?;
    let ttl = match &b.ttl {
        None => None,
        Some(t) => Some(signalbox_core::config::parse_duration(t).map_err(|m| ApiError::field("ttl", m))?),
    };
    let (token, secret) = s.control.access.create(&b.id, role, &b.description, ttl).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "secret": secret }))).into_response())
}

async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.control.access.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
