//! The node's API listeners in one table. Validation, the exposure check and binding all
//! read [`table`], so a new listener is added here once and nowhere else.
//!
//! The gateway's own listeners are not in the table: the gateway owns its section and its
//! checks (`signalbox_gateway::check`), and it is meant to face clients, so the exposure
//! check does not apply to it.

use crate::config::FileConfig;
use serde::{Deserialize, Serialize};
use signalbox_core::config::{Dur, Problems};
use std::net::SocketAddr;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// The console and every HTTP API.
    Console,
    /// The Consul-compatible API on Consul's port.
    Consul,
    OtlpGrpc,
    OtlpHttp,
    Zipkin,
}

/// One API listener: the config key of its address, a name for messages, the address.
#[derive(Clone, Debug)]
pub struct Listener {
    pub key: &'static str,
    pub what: &'static str,
    pub addr: String,
    pub serves: Serves,
}

/// The listeners `cfg` turns on.
pub fn table(cfg: &FileConfig) -> Vec<Listener> {
    let mut t = vec![Listener {
        key: "console.listen",
        what: "the console",
        addr: cfg.console.listen.clone(),
        serves: Serves::Console,
    }];
    if cfg.consul.enabled {
        t.push(Listener {
            key: "consul.listen",
            what: "the Consul API",
            addr: cfg.consul.listen.clone(),
            serves: Serves::Consul,
        });
    }
    // The receivers exist only with a trace store to receive into; empty turns one off.
    if cfg.traces.enabled {
        for (key, what, addr, serves) in [
            ("otlp.grpc_listen", "the OTLP/gRPC receiver", &cfg.otlp.grpc_listen, Serves::OtlpGrpc),
            ("otlp.http_listen", "the OTLP/HTTP receiver", &cfg.otlp.http_listen, Serves::OtlpHttp),
            ("zipkin.listen", "the Zipkin receiver", &cfg.zipkin.listen, Serves::Zipkin),
        ] {
            if !addr.is_empty() {
                t.push(Listener { key, what, addr: addr.clone(), serves });
            }
        }
    }
    t
}

/// Problems with the listeners' addresses and limits.
pub fn check(cfg: &FileConfig, p: &mut Problems) {
    let mut seen: Vec<(SocketAddr, &str)> = Vec::new();
    for l in table(cfg) {
        match l.addr.parse::<SocketAddr>() {
            Err(_) => {
                p.add(l.key, format!("`{}` is not an address like 127.0.0.1:9900 (or empty to turn it off)", l.addr))
            }
            Ok(a) => {
                if a.port() != 0
                    && let Some((_, other)) = seen.iter().find(|(b, _)| *b == a)
                {
                    p.add(l.key, format!("`{a}` is already the address of `{other}`"));
                }
                seen.push((a, l.key));
            }
        }
    }
    cfg.connections.check("connections", p);
}

/// The connection limits of every API port (console and APIs, Consul, OTLP, Zipkin). The
/// gateway has its own under `[gateway.limits]`. See docs/security.md for what each defends.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Most open connections on each API port.
    pub max_connections: usize,
    /// Most open connections from one client address on each API port (0: unlimited).
    pub max_connections_per_ip: usize,
    /// Time from accept to a complete request head.
    pub header_read_timeout: Dur,
    /// How long a keep-alive connection with no request in progress stays open. Long polls
    /// and event streams are requests in progress: they last their own documented wait.
    pub idle_timeout: Dur,
    /// Time a request body may go without data.
    pub body_idle_timeout: Dur,
    /// Requests on one HTTP/1 connection before the node closes it (0: unlimited).
    pub max_requests_per_connection: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        let d = signalbox_api::ListenerLimits::default();
        ConnectionsConfig {
            max_connections: d.max_connections,
            max_connections_per_ip: d.max_connections_per_ip,
            header_read_timeout: Dur(d.header_read_timeout),
            idle_timeout: Dur(d.idle_timeout),
            body_idle_timeout: Dur(d.body_idle_timeout),
            max_requests_per_connection: d.max_requests_per_connection,
        }
    }
}

impl ConnectionsConfig {
    fn check(&self, prefix: &str, p: &mut Problems) {
        if self.max_connections == 0 {
            p.add(format!("{prefix}.max_connections"), "must be at least 1");
        }
        for (k, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
        ] {
            if d.0.is_zero() {
                p.add(format!("{prefix}.{k}"), "must be more than 0s");
            }
        }
    }

    /// The limits a listener runs with, its connection cap lowered to `max_connections`.
    pub fn limits(&self, max_connections: usize) -> signalbox_api::ListenerLimits {
        signalbox_api::ListenerLimits {
            max_connections: max_connections.max(1),
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: self.header_read_timeout.0,
            idle_timeout: self.idle_timeout.0,
            body_idle_timeout: self.body_idle_timeout.0,
            max_requests_per_connection: self.max_requests_per_connection,
        }
    }
}

/// Descriptors kept free for everything that is not a client connection: store files,
/// write-ahead logs, upstream connections of health checks, DNS.
const RESERVED_FDS: u64 = 1024;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and shares the descriptors out: each API
/// listener gets at most its configured cap, the gateway (which holds an upstream connection
/// for most client connections) counts twice, and `RESERVED_FDS` stay free, so a flood on
/// one port cannot take the descriptors another port or the store needs. Returns the caps
/// to use: (gateway, each API listener).
pub fn fd_budget(gateway_cap: usize, api_cap: usize, api_listeners: usize) -> (usize, usize) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            return (gateway_cap, api_cap);
        }
    };
    let wanted = 2 * gateway_cap as u64 + api_cap as u64 * api_listeners as u64;
    let available = limit.saturating_sub(RESERVED_FDS).max(64);
    if wanted <= available {
        return (gateway_cap, api_cap);
    }
    let scale = available as f64 / wanted as f64;
    let g = ((gateway_cap as f64 * scale) as usize).max(16);
    let a = ((api_cap as f64 * scale) as usize).max(16);
    tracing::warn!(
        open_file_limit = limit,
        gateway_max_connections = g,
        api_max_connections = a,
        "the open-file limit is too low for the configured connection caps; lowering them so every port keeps its share"
    );
    (g, a)
}
