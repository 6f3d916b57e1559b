//! The admin endpoints: liveness, readiness, metrics, and the gateway's state.

use crate::error::ApiError;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use signalbox_core::metrics::Registry;
use signalbox_core::views::GatewayView;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub registry: Registry,
    pub gateway: Option<Arc<dyn GatewayView>>,
    /// Set once every component has started.
    pub ready: Arc<AtomicBool>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/gateway/routes", get(|s: State<AdminState>| gateway(s, |g| g.routes())))
        .route("/api/gateway/services", get(|s: State<AdminState>| gateway(s, |g| g.services())))
        .route("/api/gateway/circuits", get(|s: State<AdminState>| gateway(s, |g| g.circuits())))
        .fallback(|| async { ApiError::not_found("no such API endpoint") })
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "starting" })))
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.registry.render())
}

async fn gateway(State(s): State<AdminState>, f: impl Fn(&dyn GatewayView) -> Value) -> Result<Json<Value>, ApiError> {
    match &s.gateway {
        Some(g) => Ok(Json(f(g.as_ref()))),
        None => Err(ApiError::not_found("the gateway is not running on this node")),
    }
}
