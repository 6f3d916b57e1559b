//! Signalbox's HTTP API server on the console port: health and readiness, the node's own
//! metrics, and JSON views of the components. Later issues add the native and compatibility
//! APIs and the console here.
//!
//! # Layout
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/api/gateway/*`.
//! - [`error`]: the JSON error shape every API answers with.

pub mod admin;
pub mod error;

use axum::Router;
use signalbox_core::shutdown::Shutdown;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, app: Router, mut shutdown: Shutdown) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await
}
