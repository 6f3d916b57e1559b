//! Gateway integration tests: a real gateway on loopback in front of real upstream servers.
//! One test binary (one link step); each module covers one capability.
//!
//! Every test runs against the HTTP/1 front end named by `SIGNALBOX_GATEWAY_HTTP1` (`fast`,
//! the default, or `hyper`); scripts/test.sh runs the suite once with each, so both paths
//! pass the same tests. `fastpath` holds tests of the fast path's own behaviour.

mod auth;
mod balancing;
mod dns;
mod fastpath;
mod faults;
mod protocols;
mod reload;
mod resilience;
mod security;
mod smuggling;
mod telemetry;
mod traffic;

use signalbox_core::metrics::Registry;
use signalbox_core::shutdown::{self, ShutdownTrigger};
use signalbox_core::span::Span;
use signalbox_core::telemetry::ChannelSink;
use signalbox_gateway::config::{GatewayConfig, RouteConfig, ServiceConfig};
use signalbox_gateway::{Deps, Gateway};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A gateway running on free loopback ports.
pub struct Gw {
    pub gw: Arc<Gateway>,
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub registry: Registry,
    pub spans: mpsc::Receiver<Vec<Span>>,
    pub access_log: std::path::PathBuf,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Gw {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting and waits for the drain to finish.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }

    /// Lines of the access log, parsed.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("access log line is JSON"))
            .collect()
    }

    /// A counter or gauge value from the gateway's registry.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.registry.value(name, labels).unwrap_or(0.0)
    }

    /// Spans received so far.
    pub fn drain_spans(&mut self) -> Vec<Span> {
        let mut out = Vec::new();
        while let Ok(batch) = self.spans.try_recv() {
            out.extend(batch);
        }
        out
    }
}

/// A config with listeners on free ports and the access log in a temp dir (set by `start`).
pub fn config(services: Vec<ServiceConfig>, routes: Vec<RouteConfig>) -> GatewayConfig {
    let mut c = GatewayConfig { listen: "127.0.0.1:0".into(), services, routes, ..GatewayConfig::default() };
    c.http1 = http1_mode();
    c.limits.drain_timeout = signalbox_core::config::Dur::secs(5);
    c
}

/// The HTTP/1 front end under test: `SIGNALBOX_GATEWAY_HTTP1`, else the default (`fast`).
pub fn http1_mode() -> String {
    std::env::var("SIGNALBOX_GATEWAY_HTTP1").unwrap_or_else(|_| GatewayConfig::default().http1)
}

pub fn service(name: &str, endpoints: &[String]) -> ServiceConfig {
    ServiceConfig { name: name.into(), endpoints: endpoints.to_vec(), ..ServiceConfig::default() }
}

pub fn route(prefix: &str, service: &str) -> RouteConfig {
    let mut r = RouteConfig {
        name: Some(format!("r{}", prefix.replace('/', "-"))),
        service: service.into(),
        ..RouteConfig::default()
    };
    r.matcher.path_prefix = Some(prefix.into());
    r
}

pub async fn start(mut cfg: GatewayConfig) -> Gw {
    let dir = tempfile::tempdir().expect("tempdir");
    let access_log = dir.path().join("access.log");
    if cfg.telemetry.access_log == "stdout" {
        cfg.telemetry.access_log = access_log.display().to_string();
    }
    let registry = Registry::new();
    let (sink, spans) = ChannelSink::new(100_000, registry.counter("test_spans_total", "spans", &[]));
    let gw = Gateway::new(cfg, Deps { registry: registry.clone(), spans: Arc::new(sink), discovery: None, logs: None })
        .unwrap_or_else(|p| panic!("config rejected: {p:?}"));
    let listeners = gw.bind().await.expect("bind");
    let addr = listeners.plain_addr().expect("addr");
    let tls_addr = listeners.tls_addr();
    let (trigger, shutdown) = shutdown::channel();
    let g = gw.clone();
    let task = tokio::spawn(async move { g.serve(listeners, shutdown).await });
    Gw { gw, addr, tls_addr, registry, spans, access_log, trigger, task, _dir: dir }
}

pub fn secs(s: u64) -> signalbox_core::config::Dur {
    signalbox_core::config::Dur::secs(s)
}

pub fn millis(ms: u64) -> signalbox_core::config::Dur {
    signalbox_core::config::Dur::millis(ms)
}
