//! Metrics APIs: the Prometheus HTTP API under `/prometheus/api/v1/` (what Grafana's
//! Prometheus data source and `promtool` call), remote_write at `/prometheus/api/v1/write`,
//! and OTLP metrics (`POST /v1/metrics`, gRPC `MetricsService/Export`).
//!
//! # Layout
//! - [`prometheus`]: query, query_range, series, labels, label values, metadata, targets,
//!   rules, alerts, exemplars, status; Prometheus's response envelope and error types.
//! - [`push`]: remote_write and OTLP metrics ingest, with the shared backpressure.
//! - [`agent_clock`]: the pushing agents' clock offsets, measured on their pushes.

pub mod agent_clock;
pub mod prometheus;
pub mod push;

use crate::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use signalbox_metrics::service::MetricsService;
use std::sync::Arc;

/// The read API (mounted behind the `read` role).
pub fn reads() -> Router<AppState> {
    prometheus::routes()
}

/// Ingest routes of the console port; each checks the `ingest` role itself.
pub fn ingest_routes() -> Router<AppState> {
    Router::new().route("/prometheus/api/v1/write", axum::routing::post(push::remote_write))
}

/// What the metrics APIs hold: the service, and the running totals that turn OTLP delta
/// points into cumulative series.
pub struct MetricsState {
    pub service: Arc<MetricsService>,
    /// Recording and alerting rules, when the node evaluates them.
    pub rules: Option<Arc<signalbox_metrics::rules::RuleManager>>,
    pub(crate) deltas: std::sync::Mutex<signalbox_otlp::metrics::Cumulative>,
}

impl MetricsState {
    pub fn new(
        service: Arc<MetricsService>,
        rules: Option<Arc<signalbox_metrics::rules::RuleManager>>,
    ) -> Arc<MetricsState> {
        Arc::new(MetricsState {
            service,
            rules,
            deltas: std::sync::Mutex::new(signalbox_otlp::metrics::Cumulative::new(push::MAX_DELTA_SERIES)),
        })
    }
}

/// A Prometheus API error: `{"status":"error","errorType":...,"error":...}`.
pub(crate) fn prom_error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": error_type, "error": message.into()});
    (status, [(http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The metrics state, or the error Prometheus clients understand.
#[allow(clippy::result_large_err)]
pub(crate) fn state(state: &AppState) -> Result<Arc<MetricsState>, Response> {
    state.metric_store.clone().ok_or_else(|| {
        prom_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "metrics are not enabled on this node")
    })
}

/// The metrics service, or the error Prometheus clients understand.
#[allow(clippy::result_large_err)]
pub(crate) fn service(state: &AppState) -> Result<Arc<MetricsService>, Response> {
    state.metric_store.as_ref().map(|m| m.service.clone()).ok_or_else(|| {
        prom_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "metrics are not enabled on this node")
    })
}
