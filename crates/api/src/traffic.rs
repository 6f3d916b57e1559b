//! Blue-green switches under `/api/v1/traffic`: the policy of a service with its healthy
//! instances per version (`GET /api/v1/traffic/{service}`), a switch of every request to one
//! version (`POST …/switch {"to": "v2"}`, refused with 409 when it has no healthy instance)
//! and a one-step rollback to the policy before (`POST …/back`). The policies live in central
//! configuration ([`signalbox_core::traffic`]); these are shortcuts over it
//! ([`signalbox_control::traffic`]).

use crate::AppState;
use crate::error::ApiError;
use crate::json::JsonBody;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use signalbox_control::access::Principal;

pub fn reads() -> Router<AppState> {
    Router::new().route("/api/v1/traffic/{service}", get(show))
}

pub fn writes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/traffic/{service}/switch", post(switch))
        .route("/api/v1/traffic/{service}/back", post(back))
}

async fn show(State(s): State<AppState>, Path(service): Path<String>) -> Result<Json<Value>, ApiError> {
    let st = signalbox_control::traffic::status(&s.control, &service)?;
    let mut v = json!(st);
    v["gateway"] = s.gateway.as_ref().map(|g| g.traffic(&service)).unwrap_or(Value::Null);
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    to: String,
}

async fn switch(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
    JsonBody(b): JsonBody<SwitchBody>,
) -> Result<Json<Value>, ApiError> {
    let e = signalbox_control::traffic::switch(&s.control, &service, &b.to, &who.token_id).await?;
    Ok(Json(json!({ "service": service, "to": b.to, "policy_version": e.version, "policy": e.value })))
}

async fn back(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = signalbox_control::traffic::switch_back(&s.control, &service, &who.token_id).await?;
    Ok(Json(json!({
        "service": service,
        "policy_version": e.version,
        "policy": if e.deleted { Value::Null } else { Value::String(e.value) },
        "comment": e.comment,
    })))
}
