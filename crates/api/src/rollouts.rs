//! Rollouts under `/api/v1/rollouts` (canary rollouts and blue-green switches, see the
//! `signalbox-rollout` crate) and the charts' markers under `/api/v1/annotations`.
//!
//! - `GET /api/v1/rollouts`: every service's latest rollout.
//! - `GET /api/v1/rollouts/{service}`: one, with its traffic policy, the registered versions and
//!   the PromQL the console charts canary against stable with.
//! - `POST /api/v1/rollouts/{service}`: start (body: [`StartRequest`]).
//! - `POST /api/v1/rollouts/{service}/pause|resume|abort`, `.../promote[?full=true]`.
//! - `POST /api/v1/rollouts/{service}/switch`: blue-green, body `{"to": "v2"}` or `{"back": true}`.
//! - `GET /api/v1/annotations?service=&start=&end=`: rollout decisions as chart markers.

use crate::AppState;
use crate::error::ApiError;
use crate::json::JsonBody;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use signalbox_control::access::Principal;
use signalbox_rollout::spec::StartRequest;
use signalbox_rollout::state::Rollout;
use signalbox_rollout::{Controller, RolloutError, measure, traffic};
use std::sync::Arc;

pub fn reads() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rollouts", get(list))
        .route("/api/v1/rollouts/{service}", get(one))
        .route("/api/v1/annotations", get(annotations))
}

pub fn writes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rollouts/{service}", post(start))
        .route("/api/v1/rollouts/{service}/pause", post(pause))
        .route("/api/v1/rollouts/{service}/resume", post(resume))
        .route("/api/v1/rollouts/{service}/promote", post(promote))
        .route("/api/v1/rollouts/{service}/abort", post(abort))
        .route("/api/v1/rollouts/{service}/switch", post(switch))
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::Invalid { field, message } => ApiError::field(field, message),
            RolloutError::NotFound(service) => ApiError::not_found(format!("no rollout of service `{service}`")),
            RolloutError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "rollout_conflict", m),
            RolloutError::NoHealthyInstance { field, message } => ApiError {
                field: Some(field.clone()),
                ..ApiError::new(StatusCode::CONFLICT, "no_healthy_instance", format!("{field}: {message}"))
            },
            RolloutError::Control(c) => c.into(),
        }
    }
}

#[allow(clippy::result_large_err)]
fn controller(s: &AppState) -> Result<Arc<Controller>, ApiError> {
    s.rollouts.clone().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "rollouts are not enabled on this node")
    })
}

/// A rollout as the API shows it: the record plus what the console needs beside it.
fn shown(s: &AppState, r: &Rollout) -> Value {
    let mut v = json!(r);
    let service = &r.spec.service;
    let range = "1m";
    v["canary_percent"] = json!(r.canary_percent());
    v["queries"] = json!({
        "stable": measure::queries(service, &r.spec.stable, range),
        "canary": measure::queries(service, &r.spec.canary, range),
    });
    v["traffic"] = match traffic::read(&s.control, service) {
        Ok((p, version)) => json!({"policy": p, "version": version}),
        Err(_) => Value::Null,
    };
    let versions: serde_json::Map<String, Value> = traffic::versions(&s.control, service)
        .into_iter()
        .map(|(k, (healthy, total))| (k, json!({"healthy": healthy, "instances": total})))
        .collect();
    v["versions"] = Value::Object(versions);
    v
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let c = controller(&s)?;
    let mut all = c.list();
    all.sort_by_key(|r| std::cmp::Reverse(r.started_ms));
    let rollouts: Vec<Value> = all
        .iter()
        .map(|r| {
            let mut v = shown(&s, r);
            // The list carries the latest decisions only; the full history is per service.
            if let Some(h) = v.get_mut("history").and_then(Value::as_array_mut) {
                let keep = h.len().saturating_sub(5);
                h.drain(..keep);
            }
            v.as_object_mut().map(|o| o.remove("earlier"));
            v
        })
        .collect();
    Ok(Json(json!({ "rollouts": rollouts })))
}

async fn one(State(s): State<AppState>, Path(service): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = controller(&s)?.get(&service)?;
    Ok(Json(shown(&s, &r)))
}

async fn start(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
    JsonBody(req): JsonBody<StartRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let r = controller(&s)?.start(&service, req, &who.token_id).await?;
    Ok((StatusCode::CREATED, Json(shown(&s, &r))))
}

async fn pause(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = controller(&s)?.pause(&service, &who.token_id).await?;
    Ok(Json(shown(&s, &r)))
}

async fn resume(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = controller(&s)?.resume(&service, &who.token_id).await?;
    Ok(Json(shown(&s, &r)))
}

#[derive(Deserialize, Default)]
struct PromoteParams {
    #[serde(default)]
    full: bool,
}

async fn promote(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
    Query(p): Query<PromoteParams>,
) -> Result<Json<Value>, ApiError> {
    let r = controller(&s)?.promote(&service, p.full, &who.token_id).await?;
    Ok(Json(shown(&s, &r)))
}

async fn abort(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = controller(&s)?.abort(&service, &who.token_id).await?;
    Ok(Json(shown(&s, &r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    /// The version to send every request to.
    #[serde(default)]
    to: Option<String>,
    /// Switch back to the version the last rollout or switch moved away from.
    #[serde(default)]
    back: bool,
}

async fn switch(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(service): Path<String>,
    JsonBody(b): JsonBody<SwitchBody>,
) -> Result<Json<Value>, ApiError> {
    let c = controller(&s)?;
    let to = match (b.to, b.back) {
        (Some(_), true) => return Err(ApiError::field("back", "give either `to` or `back`, not both")),
        (Some(to), false) => to,
        (None, true) => match c.get(&service) {
            Ok(r) => r.spec.stable,
            Err(RolloutError::NotFound(_)) => {
                return Err(ApiError::field(
                    "back",
                    format!("{service} has no earlier switch or rollout to go back from"),
                ));
            }
            Err(e) => return Err(e.into()),
        },
        (None, false) => return Err(ApiError::field("to", "missing field `to` (or `back: true`)")),
    };
    let r = c.switch(&service, &to, &who.token_id).await?;
    Ok(Json(shown(&s, &r)))
}

#[derive(Deserialize, Default)]
struct AnnotationParams {
    service: Option<String>,
    /// Unix milliseconds; default: 24 h before `end`.
    start: Option<i64>,
    /// Unix milliseconds; default: now.
    end: Option<i64>,
}

async fn annotations(State(s): State<AppState>, Query(p): Query<AnnotationParams>) -> Result<Json<Value>, ApiError> {
    let c = controller(&s)?;
    let end = p.end.unwrap_or_else(signalbox_rollout::controller::now_ms);
    let start = p.start.unwrap_or(end - 24 * 3_600_000);
    if start > end {
        return Err(ApiError::field("start", "must not be after `end`"));
    }
    Ok(Json(json!({ "annotations": c.annotations(p.service.as_deref(), start, end) })))
}
