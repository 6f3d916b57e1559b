//! The admin endpoints: liveness, readiness, metrics, and the gateway's state.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use signalbox_core::views::GatewayView;
use std::sync::atomic::Ordering;

/// Probes, open to anyone (orchestrators call them without credentials).
pub fn probes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
}

/// Metrics and gateway state (read role).
pub fn reads() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/gateway/routes", get(|s: State<AppState>| gateway(s, |g| g.routes())))
        .route("/api/gateway/services", get(|s: State<AppState>| gateway(s, |g| g.services())))
        .route("/api/gateway/circuits", get(|s: State<AppState>| gateway(s, |g| g.circuits())))
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "starting" })))
    } else if s.traces.as_ref().is_some_and(|t| !t.recovered()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "reason": "replaying the trace write-ahead log" })),
        )
    } else {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

async fn gateway(State(s): State<AppState>, f: impl Fn(&dyn GatewayView) -> Value) -> Result<Json<Value>, ApiError> {
    match &s.gateway {
        Some(g) => Ok(Json(f(g.as_ref()))),
        None => Err(ApiError::not_found("the gateway is not running on this node")),
    }
}
