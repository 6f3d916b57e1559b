//! Signalbox's HTTP APIs on the console port, the Consul-compatible API (also served on its
//! own port), and the embedded web console.
//!
//! [`router`] assembles everything behind access control: probes and login are open; reads
//! need the `read` role, writes `edit`, token management `admin` (see
//! [`signalbox_control::access::Role`]).
//!
//! # Layout
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/api/gateway/*`.
//! - [`registry`]: `/api/registry/*`: registration, health, blocking reads, SSE.
//! - [`live`]: `/api/live`, the console's one multiplexed live stream (registry, alerts, config).
//! - [`config`]: `/api/config/*` (versioned config, watches).
//! - [`traffic`]: `/api/v1/traffic/*`: blue-green switches of a service's traffic policy.
//! - [`spring`]: Spring Cloud Config Server's `/config/...` (environments and file forms).
//! - [`consul`]: the Consul subset under `/v1` (mounted at `/consul/v1` here).
//! - [`session`]: console login and token management.
//! - [`ingest`]: limits every ingest decoder checks before it allocates (inflate, scan, budget).
//! - [`traces`]: one module per trace protocol: native, [`jaeger`], [`zipkin`] (ingest and
//!   query), [`otlp`] (gRPC and `POST /v1/traces`); re-exported here under their short names.
//! - [`logs`]: one module per log protocol (native, Loki, Elasticsearch, OTLP).
//! - [`metrics`]: the Prometheus HTTP API, remote_write and OTLP metrics.
//! - [`rollouts`]: `/api/v1/rollouts/*` (canary rollouts, blue-green switches) and
//!   `/api/v1/annotations` (their decisions as chart markers).
//! - [`views`]: the console's joined views (`/api/overview`, `/api/service-map`,
//!   `/api/services/{name}/summary`): RED, health, circuits, alerts and traces side by side.
//! - [`cluster`]: queries over every storage node of an etcd deployment (fan-out, merge,
//!   partial answers) and the internal endpoints peers call.
//! - [`console`]: the embedded web UI.
//! - [`server`]: the HTTP server under every API port, with connection caps and timeouts.
//! - [`buffer`]: the ingest buffer receivers publish to when one is configured.
//! - [`auth`]: role checks for every route; [`blocking`]: long-poll helpers;
//!   [`json`]: body parsing with field-named errors; [`error`]: the error shape.

pub mod admin;
pub mod auth;
pub mod blocking;
pub mod buffer;
pub mod cluster;
pub mod config;
pub mod console;
pub mod consul;
pub mod error;
pub mod ingest;
pub mod json;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod registry;
pub mod rollouts;
pub mod server;
pub mod session;
pub mod spring;
pub mod traces;
pub mod traffic;
pub mod views;
/// The trace protocols keep their short paths (`signalbox_api::otlp`, `signalbox_api::zipkin`).
pub use traces::{jaeger, otlp, zipkin};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use signalbox_control::ControlPlane;
use signalbox_control::access::Role;
use signalbox_core::metrics::Registry;
use signalbox_core::views::GatewayView;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Validates a config value before it is stored (the node uses it to refuse a broken gateway
/// config written to central configuration): `(application, profile, key, value)`.
pub type ConfigCheck = Arc<dyn Fn(&str, &str, &str, &str) -> Result<(), String> + Send + Sync>;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<ControlPlane>,
    pub metrics: Registry,
    pub gateway: Option<Arc<dyn GatewayView>>,
    pub ready: Arc<AtomicBool>,
    pub node_name: String,
    /// The address this node advertises (Consul's node address).
    pub node_address: String,
    pub config_checks: Option<ConfigCheck>,
    /// Mark session cookies `Secure` (the console is served over TLS).
    pub secure_cookies: bool,
    /// Rendered registry views shared by concurrent watchers.
    pub views: Arc<registry::ViewCache>,
    /// The trace pipeline and store, when enabled.
    pub traces: Option<signalbox_events::spans::pipeline::Traces>,
    /// The log store, when enabled.
    pub logs: Option<signalbox_events::logs::store::Logs>,
    /// The metrics service (TSDB, scrapes, PromQL), when enabled.
    pub metric_store: Option<Arc<metrics::MetricsState>>,
    /// The rollout controller, when the node runs one.
    pub rollouts: Option<Arc<signalbox_rollout::Controller>>,
    /// The storage nodes queries fan out to (etcd deployments); `None` on a single node.
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// The ingest buffer (NATS JetStream), when receivers publish there instead of writing
    /// to the local stores.
    pub buffer: Option<Arc<dyn buffer::IngestBuffer>>,
}

/// Largest request body the APIs read (a config value of 1 MiB, JSON-escaped, fits).
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Every API and the console.
pub fn router(state: AppState) -> Router {
    let reads = admin::reads()
        .merge(registry::reads())
        .merge(config::reads())
        .merge(spring::reads())
        .merge(traces::reads())
        .merge(zipkin::reads())
        .merge(logs::native_query::routes())
        .merge(logs::loki_query::routes())
        .merge(metrics::reads())
        .merge(live::routes())
        .merge(views::reads())
        .merge(rollouts::reads())
        .merge(traffic::reads())
        .merge(cluster::reads());
    let writes = registry::writes().merge(config::writes()).merge(rollouts::writes()).merge(traffic::writes());
    Router::new()
        .merge(admin::probes())
        .merge(session::open())
        .merge(auth::guard(reads, &state, Role::Read))
        .merge(auth::guard(writes, &state, Role::Edit))
        .merge(auth::guard(session::admin(), &state, Role::Admin))
        .nest("/consul", consul::router())
        // Ingest endpoints check the `ingest` role themselves.
        .nest("/zipkin", zipkin::ingest())
        .merge(logs::ingest_routes())
        .merge(metrics::ingest_routes())
        // Peers' queries check the cluster token (or a read credential) themselves.
        .merge(cluster::internal::routes(&state))
        .fallback(console::serve)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state)
}

/// Zipkin's port (9411): span ingest at `/api/v2/spans`.
pub fn zipkin_router(state: AppState) -> Router {
    zipkin::ingest()
        .layer(DefaultBodyLimit::max(otlp::MAX_MESSAGE))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state)
}

/// The Consul API alone, for Consul's own port.
pub fn consul_router(state: AppState) -> Router {
    consul::router()
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state)
}

pub use server::{Limits as ListenerLimits, serve};
