//! The Signalbox edge gateway: the data plane every request crosses.
//!
//! A [`Gateway`] owns the compiled tables ([`compile::Snapshot`]: routes, services and their
//! endpoints) behind an atomic pointer; a reload validates a new config into a new snapshot
//! and swaps it whole, so in-flight requests finish on the tables they started with. The
//! request path ([`proxy`]) is a fixed pipeline of phases; telemetry leaves it through bounded
//! queues ([`telemetry`]). Endpoints come from config or from any
//! [`EndpointSource`](signalbox_core::discovery::EndpointSource).
//!
//! # Layout
//! - [`config`]: the `[gateway]` config section as users write it (serde, documented fields).
//! - [`compile`]: validation into runtime tables, with every problem's key path.
//! - [`server`]: listeners (plain, TLS), worker threads, connection limits, graceful drain,
//!   the choice of front end per connection (fast path or hyper); connection info
//!   and guards; JSON answers for requests hyper cannot parse.
//! - [`proxy`]: the per-request pipeline as phases over a per-request context: request
//!   filter → route → auth and limits → upstream request → pick and try (with retries) →
//!   response filter → log. Each phase returns a [`error::GatewayError`] that names the side
//!   that failed and whether a retry is allowed.
//! - [`router`]: compiled routes and matching; [`path`]: path normalisation before routing.
//! - [`upstream`]: services, endpoints, connection pools, balancing, outlier ejection.
//! - [`circuit`]: circuit breakers (Resilience4j semantics).
//! - [`retry`]: retry conditions, backoff and the retry budget.
//! - [`ratelimit`]: GCRA rate limits, per route and per client key.
//! - [`auth`]: API keys and JWT at the edge.
//! - [`tracectx`]: W3C trace context and B3 propagation.
//! - [`traffic`]: traffic splits by version (weights, pins, stickiness), mirroring and the
//!   per-version metrics, following policies from central configuration.
//! - [`telemetry`]: RED metrics, spans, access log.
//! - [`body`]: streaming body wrappers (limits, idle timeouts, end-of-body hooks).
//! - [`tunnel`]: upgraded connections (WebSocket).
//! - [`h1`]: strict HTTP/1 request framing (request smuggling), checked before hyper parses
//!   and by the fast path's parser.
//! - [`fast`]: the HTTP/1.1 fast path: the gateway's own per-connection server loop and
//!   per-worker upstream pools for plain-text HTTP/1.1, running the same phases as hyper's
//!   server; HTTP/2, TLS and upgrades are handed to hyper.
//! - [`error`]: errors the gateway answers itself, as JSON or gRPC status.
//! - [`dns`]: DNS (A/AAAA, SRV) as an endpoint source, re-resolved on TTL.
//! - [`tls`], [`clock`]: certificate loading; a monotonic clock for atomics.

pub mod auth;
pub mod body;
pub mod circuit;
pub mod clock;
pub mod compile;
pub mod config;
pub mod dns;
pub mod error;
pub mod fast;
pub mod h1;
pub mod path;
pub mod proxy;
pub mod ratelimit;
pub mod retry;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod tracectx;
pub mod traffic;
pub mod tunnel;
pub mod upstream;

use arc_swap::ArcSwap;
use compile::{CompileContext, Followers};
use config::GatewayConfig;
use serde_json::{Value, json};
use signalbox_core::config::Problems;
use signalbox_core::discovery::EndpointSource;
use signalbox_core::metrics::Registry;
use signalbox_core::shutdown::Shutdown;
use signalbox_core::telemetry::SpanSink;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// What a gateway is built from besides its config.
pub struct Deps {
    /// Where the gateway's metrics are registered.
    pub registry: Registry,
    /// Where finished spans go.
    pub spans: Arc<dyn SpanSink>,
    /// Where services without static endpoints find theirs.
    pub discovery: Option<Arc<dyn EndpointSource>>,
    /// Where access-log records go besides the access-log file (the node's log store).
    pub logs: Option<Arc<dyn signalbox_core::log::LogOffer>>,
}

/// A running gateway's control handle. Cheap to share behind an `Arc`.
pub struct Gateway {
    shared: Arc<proxy::Shared>,
    registry: Registry,
    discovery: Option<Arc<dyn EndpointSource>>,
    followers: Mutex<Vec<JoinHandle<()>>>,
    reloads: signalbox_core::metrics::Counter,
    reload_failures: signalbox_core::metrics::Counter,
}

impl Gateway {
    /// Validates `cfg` and builds the gateway; nothing is bound yet.
    pub fn new(cfg: GatewayConfig, deps: Deps) -> Result<Arc<Self>, Problems> {
        let cx = CompileContext {
            registry: Some(&deps.registry),
            discovery: deps.discovery.as_deref(),
            previous: None,
            prefix: "gateway",
            spawn: true,
        };
        let (snap, followers) = compile::compile(&cfg, &cx)?;
        let telemetry =
            telemetry::Telemetry::new(&cfg.telemetry, &cfg.service_name, deps.spans, deps.logs, &deps.registry)
                .map_err(|e| {
                    let mut p = Problems::default();
                    p.add("gateway.telemetry.access_log", format!("cannot open `{}`: {e}", cfg.telemetry.access_log));
                    p
                })?;
        let gw = Arc::new(Gateway {
            shared: Arc::new(proxy::Shared {
                traffic: Arc::new(traffic::TrafficState::new(&deps.registry, cfg.traffic.mirror_max_inflight)),
                snapshot: ArcSwap::from_pointee(snap),
                telemetry: Arc::new(telemetry),
            }),
            reloads: deps.registry.counter(
                "signalbox_gateway_config_reloads_total",
                "Gateway configs applied.",
                &[("result", "ok")],
            ),
            reload_failures: deps.registry.counter(
                "signalbox_gateway_config_reloads_total",
                "Gateway configs applied.",
                &[("result", "rejected")],
            ),
            registry: deps.registry,
            discovery: deps.discovery,
            followers: Mutex::new(Vec::new()),
        });
        gw.follow(followers);
        gw.register_state_metrics();
        Ok(gw)
    }

    /// Validates `cfg` and swaps it in; on error the running config stays. Listener
    /// addresses and telemetry outlets are fixed at start-up.
    pub fn reload(&self, cfg: GatewayConfig) -> Result<(), Problems> {
        let current = self.shared.snapshot.load_full();
        let cx = CompileContext {
            registry: Some(&self.registry),
            discovery: self.discovery.as_deref(),
            previous: Some(&current),
            prefix: "gateway",
            spawn: true,
        };
        match compile::compile(&cfg, &cx) {
            Ok((snap, followers)) => {
                if snap.config.listen != current.config.listen || snap.config.tls != current.config.tls {
                    tracing::warn!("listener addresses changed; they take effect at the next restart");
                }
                self.shared.traffic.mirrors.set_max_inflight(snap.config.traffic.mirror_max_inflight);
                self.shared.snapshot.store(Arc::new(snap));
                self.follow(followers);
                self.reloads.inc();
                Ok(())
            }
            Err(p) => {
                self.reload_failures.inc();
                Err(p)
            }
        }
    }

    /// The running config.
    pub fn config(&self) -> GatewayConfig {
        self.shared.snapshot.load().config.clone()
    }

    /// Binds the configured listeners, one socket per worker.
    pub async fn bind(&self) -> std::io::Result<server::Listeners> {
        let cfg = self.config();
        let workers = if cfg.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            cfg.workers
        };
        let plain = server::bind_many(&cfg.listen, workers).await?;
        let tls = match &cfg.tls {
            None => None,
            Some(t) => {
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(tls::load(&t.cert, &t.key).map_err(std::io::Error::other)?);
                let (addr, socks) = server::bind_many(&t.listen, workers).await?;
                Some((addr, socks, acceptor))
            }
        };
        Ok(server::Listeners::new(plain, tls))
    }

    /// Serves on `listeners` until `shutdown`, then drains.
    pub async fn serve(self: &Arc<Self>, listeners: server::Listeners, shutdown: Shutdown) {
        let l = self.config().limits;
        let settings = server::ServeSettings {
            header_read_timeout: l.header_read_timeout.0,
            h2_keepalive_interval: l.h2_keepalive_interval.0,
            h2_max_concurrent_streams: l.h2_max_concurrent_streams,
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            drain_timeout: l.drain_timeout.0,
            parser_max_buf: (l.max_header_bytes.0 as usize * 2).max(64 * 1024),
            parser_max_headers: l.max_headers * 2 + 16,
            http1_fast: self.config().http1 == "fast",
        };
        server::serve(self.shared.clone(), listeners, settings, shutdown).await;
    }

    /// Follows discovery for services without static endpoints. Followers of replaced
    /// services end on their own when their service is dropped.
    fn follow(&self, followers: Followers) {
        let mut tasks = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        for (up, mut rx) in followers {
            let weak = Arc::downgrade(&up);
            drop(up);
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let Some(up) = weak.upgrade() else { return };
                            let set = rx.borrow_and_update().clone();
                            up.set_endpoints(&set, None);
                        }
                        // A replaced service is dropped by the reload; stop following it
                        // (and let its source stop) even if nothing changes any more.
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
                            if weak.strong_count() == 0 {
                                return;
                            }
                        }
                    }
                }
            }));
        }
    }

    fn register_state_metrics(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.registry.add_collector(move |out| {
            if let Some(gw) = weak.upgrade() {
                gw.render_state_metrics(out);
            }
        });
    }

    /// Circuit and ejection state as Prometheus gauges (labels change with the config, so
    /// they are rendered at scrape time).
    fn render_state_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let snap = self.shared.snapshot.load();
        out.push_str("# HELP signalbox_gateway_circuit_state Circuit state: 0 closed, 1 open, 2 half-open.\n# TYPE signalbox_gateway_circuit_state gauge\n");
        for (name, up) in &snap.services {
            if let Some(b) = &up.breaker {
                let _ = writeln!(
                    out,
                    "signalbox_gateway_circuit_state{{scope=\"service\",service=\"{name}\",endpoint=\"\"}} {}",
                    b.state() as u8
                );
            }
            for e in up.endpoints() {
                if let Some(b) = &e.breaker {
                    let _ = writeln!(
                        out,
                        "signalbox_gateway_circuit_state{{scope=\"endpoint\",service=\"{name}\",endpoint=\"{}\"}} {}",
                        e.info.address,
                        b.state() as u8
                    );
                }
            }
        }
        out.push_str("# HELP signalbox_gateway_endpoint_ejected Whether an endpoint is ejected as an outlier.\n# TYPE signalbox_gateway_endpoint_ejected gauge\n");
        for (name, up) in &snap.services {
            for e in up.endpoints() {
                let _ = writeln!(
                    out,
                    "signalbox_gateway_endpoint_ejected{{service=\"{name}\",endpoint=\"{}\"}} {}",
                    e.info.address,
                    e.ejected_for().is_some() as u8
                );
            }
        }
    }

    /// Routes as JSON, for the admin API (secrets left out).
    pub fn routes_view(&self) -> Value {
        let snap = self.shared.snapshot.load();
        Value::Array(
            snap.routes
                .iter()
                .map(|r| {
                    json!({
                        "name": &*r.name,
                        "match": r.config.matcher,
                        "service": &*r.upstream.name,
                        "rewrite_prefix": r.config.rewrite_prefix,
                        "timeouts": {
                            "connect_ms": r.timeouts.connect.as_millis() as u64,
                            "per_try_ms": r.timeouts.per_try.as_millis() as u64,
                            "request_ms": r.timeouts.request.as_millis() as u64,
                            "idle_ms": r.timeouts.idle.as_millis() as u64,
                        },
                        "retry": { "attempts": r.retry.attempts, "budget_ratio": r.retry.budget_ratio },
                        "max_body_bytes": r.max_body,
                        "rate_limits": r.config.rate_limits,
                        "auth": r.config.auth.as_ref().map(|a| json!({
                            "api_keys": a.api_keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
                            "jwt": a.jwt.is_some(),
                        })),
                        "sample_rate": r.sample_rate,
                    })
                })
                .collect(),
        )
    }

    /// Services with their endpoints' health, load, ejections and circuits.
    pub fn services_view(&self) -> Value {
        let snap = self.shared.snapshot.load();
        Value::Array(
            snap.services
                .values()
                .map(|up| {
                    let endpoints: Vec<Value> = up
                        .endpoints()
                        .iter()
                        .map(|e| {
                            json!({
                                "address": e.info.address,
                                "id": e.info.id,
                                "version": e.info.version,
                                "inflight": e.inflight(),
                                "latency_ewma_ms": e.ewma_seconds() * 1e3,
                                "ejected": e.ejected_for().is_some(),
                                "ejected_for_seconds": e.ejected_for(),
                                "ejections": e.ejection_count(),
                                "circuit": e.breaker.as_ref().map(|b| b.state()),
                            })
                        })
                        .collect();
                    json!({
                        "name": &*up.name,
                        "protocol": up.protocol,
                        "balancer": up.config.balancer.kind,
                        "discovered": up.discovered,
                        "circuit": up.breaker.as_ref().map(|b| b.state()),
                        "endpoints": endpoints,
                    })
                })
                .collect(),
        )
    }

    /// Every circuit breaker with its state.
    pub fn circuits_view(&self) -> Value {
        let snap = self.shared.snapshot.load();
        let mut out = Vec::new();
        for up in snap.services.values() {
            if let Some(b) = &up.breaker {
                out.push(
                    json!({ "scope": "service", "service": &*up.name, "state": b.state(), "opened": b.opened_count(), "permits_in_use": b.outstanding_permits() }),
                );
            }
            for e in up.endpoints() {
                if let Some(b) = &e.breaker {
                    out.push(json!({ "scope": "endpoint", "service": &*up.name, "endpoint": e.info.address, "state": b.state(), "opened": b.opened_count(), "permits_in_use": b.outstanding_permits() }));
                }
            }
        }
        Value::Array(out)
    }
}

/// Validates a gateway config without building anything that runs.
pub fn check(cfg: &GatewayConfig, discovery: Option<&dyn EndpointSource>) -> Result<(), Problems> {
    let cx = CompileContext { registry: None, discovery, previous: None, prefix: "gateway", spawn: false };
    compile::compile(cfg, &cx).map(|_| ())
}

impl signalbox_core::views::GatewayView for Gateway {
    fn routes(&self) -> Value {
        self.routes_view()
    }
    fn services(&self) -> Value {
        self.services_view()
    }
    fn circuits(&self) -> Value {
        self.circuits_view()
    }
    fn span_service(&self) -> Option<String> {
        Some(self.shared.telemetry.service_name.clone())
    }
    fn traffic(&self, service: &str) -> Value {
        self.traffic_view(service)
    }
}
