//! Stage two of the config: validate a [`GatewayConfig`] into a [`Snapshot`], the immutable
//! tables the proxy reads. Every problem is collected with its key path, so one run of
//! `signalbox check-config` reports all of them.

use crate::auth::Authenticator;
use crate::circuit;
use crate::config::{GatewayConfig, MatchConfig, RouteConfig, ServiceConfig};
use crate::path::{DotSegments, PathRules};
use crate::ratelimit::{Gcra, GlobalLimiter, KeyedLimiter};
use crate::retry::RetryPolicy;
use crate::router::{HeaderCond, HeaderOps, HostMatch, KeySource, Limiter, Matcher, PathMatch, Route, Timeouts};
use crate::telemetry::RouteMetrics;
use crate::upstream::{Balance, Protocol, Upstream};
use http::{HeaderName, HeaderValue, Method};
use regex::Regex;
use signalbox_core::config::Problems;
use signalbox_core::discovery::{EndpointInfo, EndpointSet, EndpointSource};
use signalbox_core::metrics::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// The compiled gateway tables, swapped whole on reload.
pub struct Snapshot {
    pub routes: Vec<Arc<Route>>,
    /// How paths are normalised before routing.
    pub path_rules: PathRules,
    pub services: BTreeMap<String, Arc<Upstream>>,
    pub config: GatewayConfig,
    /// Some service speaks HTTP/2 or TLS to its endpoints (or may, for gRPC): the HTTP/1
    /// fast path then checks each request's route before taking it.
    pub hyper_upstreams: bool,
}

impl Snapshot {
    /// The first route matching the request.
    pub fn route_for(&self, method: &Method, host: &str, path: &str, headers: &http::HeaderMap) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matcher.matches(method, host, path, headers))
    }
}

/// Services whose endpoints come from discovery, with the channel to follow.
pub type Followers = Vec<(Arc<Upstream>, watch::Receiver<EndpointSet>)>;

/// Inputs that outlive one config: where metrics go, where discovered endpoints come from,
/// and the previous snapshot whose state (endpoints, breakers) carries over.
pub struct CompileContext<'a> {
    pub registry: Option<&'a Registry>,
    pub discovery: Option<&'a dyn EndpointSource>,
    pub previous: Option<&'a Snapshot>,
    /// The key path of the gateway section, for problem reports (`gateway`).
    pub prefix: &'a str,
    /// Start background work (DNS followers); false when only checking a config.
    pub spawn: bool,
}

/// Validates `cfg` and builds its tables.
pub fn compile(cfg: &GatewayConfig, cx: &CompileContext) -> Result<(Snapshot, Followers), Problems> {
    let mut p = Problems::default();
    let pre = cx.prefix;
    if cfg.listen.parse::<std::net::SocketAddr>().is_err() {
        p.add(format!("{pre}.listen"), format!("`{}` is not an address like 127.0.0.1:8080", cfg.listen));
    }
    if let Some(tls) = &cfg.tls {
        if tls.listen.parse::<std::net::SocketAddr>().is_err() {
            p.add(format!("{pre}.tls.listen"), format!("`{}` is not an address like 127.0.0.1:8443", tls.listen));
        }
        if let Err(e) = crate::tls::load(&tls.cert, &tls.key) {
            p.add(format!("{pre}.tls"), e);
        }
    }
    if !matches!(cfg.http1.as_str(), "fast" | "hyper") {
        p.add(format!("{pre}.http1"), format!("unknown mode `{}`: expected fast or hyper", cfg.http1));
    }
    if !(0.0..=1.0).contains(&cfg.telemetry.sample_rate) {
        p.add(format!("{pre}.telemetry.sample_rate"), "must be between 0.0 and 1.0");
    }
    if cfg.telemetry.queue_capacity == 0 || cfg.telemetry.queue_capacity > 1_000_000 {
        p.add(format!("{pre}.telemetry.queue_capacity"), "must be between 1 and 1000000");
    }
    let dot_segments = match cfg.paths.dot_segments.as_str() {
        "normalize" => DotSegments::Normalize,
        "reject" => DotSegments::Reject,
        other => {
            p.add(format!("{pre}.paths.dot_segments"), format!("unknown mode `{other}`: expected normalize or reject"));
            DotSegments::Normalize
        }
    };
    let path_rules = PathRules { dot_segments, merge_slashes: cfg.paths.merge_slashes };
    if cfg.limits.max_headers == 0 {
        p.add(format!("{pre}.limits.max_headers"), "must be at least 1");
    }
    if cfg.limits.max_header_bytes.0 < 1024 {
        p.add(format!("{pre}.limits.max_header_bytes"), "must be at least 1KiB");
    }

    let mut services = BTreeMap::new();
    let mut followers = Vec::new();
    for (i, s) in cfg.services.iter().enumerate() {
        let path = format!("{pre}.services[{i}]");
        if services.contains_key(&s.name) {
            p.add(format!("{path}.name"), format!("service `{}` is defined twice", s.name));
            continue;
        }
        let prev = cx.previous.and_then(|snap| snap.services.get(&s.name));
        if let Some((up, follow)) = compile_service(s, &path, cx, prev, &mut p) {
            if let Some(rx) = follow {
                followers.push((up.clone(), rx));
            }
            services.insert(s.name.clone(), up);
        }
    }

    let mut routes = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let path = format!("{pre}.routes[{i}]");
        let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
        if !names.insert(name.clone()) {
            p.add(format!("{path}.name"), format!("route name `{name}` is used twice"));
        }
        if let Some(route) = compile_route(cfg, r, name, &path, &services, cx, &mut p) {
            routes.push(Arc::new(route));
        }
    }
    if !p.is_empty() {
        return Err(p);
    }
    let hyper_upstreams = services.values().any(|u| u.tls.is_some() || u.protocol != crate::upstream::Protocol::Http1);
    Ok((Snapshot { routes, path_rules, services, config: cfg.clone(), hyper_upstreams }, followers))
}

type Follow = Option<watch::Receiver<EndpointSet>>;

fn compile_service(
    s: &ServiceConfig,
    path: &str,
    cx: &CompileContext,
    prev: Option<&Arc<Upstream>>,
    p: &mut Problems,
) -> Option<(Arc<Upstream>, Follow)> {
    let before = p.list.len();
    if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        p.add(format!("{path}.name"), "must be non-empty and use only letters, digits, `-`, `_` and `.`");
    }
    let protocol = match s.protocol.as_str() {
        "http1" => Protocol::Http1,
        "http2" => Protocol::Http2,
        "auto" => Protocol::Auto,
        other => {
            p.add(format!("{path}.protocol"), format!("unknown protocol `{other}`: expected http1, http2 or auto"));
            Protocol::Auto
        }
    };
    let balance = match s.balancer.kind.as_str() {
        "p2c_ewma" => Balance::P2cEwma { decay: s.balancer.ewma_decay.0 },
        "round_robin" => Balance::RoundRobin,
        "ring_hash" => {
            let header = s.balancer.hash_header.as_ref().and_then(|h| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    p.add(format!("{path}.balancer.hash_header"), format!("`{h}` is not a valid header name"));
                    None
                }
            });
            if s.balancer.hash_header.is_none() && s.balancer.hash_cookie.is_none() {
                p.add(format!("{path}.balancer"), "ring_hash needs `hash_header` or `hash_cookie`");
            }
            if s.balancer.ring_size_per_endpoint == 0 || s.balancer.ring_size_per_endpoint > 10_000 {
                p.add(format!("{path}.balancer.ring_size_per_endpoint"), "must be between 1 and 10000");
            }
            Balance::RingHash {
                header,
                cookie: s.balancer.hash_cookie.clone(),
                vnodes: s.balancer.ring_size_per_endpoint,
            }
        }
        other => {
            p.add(
                format!("{path}.balancer.kind"),
                format!("unknown balancer `{other}`: expected p2c_ewma, round_robin or ring_hash"),
            );
            Balance::RoundRobin
        }
    };
    let mut breaker = |c: &Option<crate::config::CircuitBreakerConfig>, field: &str| {
        c.as_ref().and_then(|c| match circuit::Settings::from_config(c) {
            Ok(s) => Some(s),
            Err(list) => {
                for (f, m) in list {
                    p.add(format!("{path}.{field}.{f}"), m);
                }
                None
            }
        })
    };
    let svc_breaker = breaker(&s.circuit_breaker, "circuit_breaker");
    let ep_breaker = breaker(&s.endpoint_circuit_breaker, "endpoint_circuit_breaker");
    if s.outlier.max_ejection_percent > 100 {
        p.add(format!("{path}.outlier.max_ejection_percent"), "must be between 0 and 100");
    }
    let mut infos = Vec::new();
    let mut schemes = (false, false); // (http seen, https seen)
    let unversioned = s.endpoints.iter().enumerate().map(|(j, e)| (format!("{path}.endpoints[{j}]"), e, None));
    let versioned = s.versions.iter().flat_map(|(v, list)| {
        list.iter().enumerate().map(move |(j, e)| (format!("{path}.versions.{v}[{j}]"), e, Some(v)))
    });
    for (at, e, version) in unversioned.chain(versioned) {
        if let Some(v) = version
            && !signalbox_core::traffic::version_ok(v)
        {
            p.add(at, format!("`{v}` is not a version: 1-64 letters, digits, `-`, `_`, `.` or `+`"));
            continue;
        }
        match parse_endpoint(e) {
            Ok((addr, https)) => {
                if https {
                    schemes.1 = true;
                } else {
                    schemes.0 = true;
                }
                infos.push(EndpointInfo::new(addr).with_version(version.cloned()));
            }
            Err(m) => p.add(at, m),
        }
    }
    if schemes == (true, true) {
        p.add(format!("{path}.endpoints"), "mixes http:// and https:// endpoints; a service uses one or the other");
    }
    let explicit_http = s.endpoints.iter().chain(s.versions.values().flatten()).any(|e| e.starts_with("http://"));
    if s.tls.is_some() && explicit_http {
        p.add(format!("{path}.tls"), "is set but the endpoints are http://; use https:// or host:port");
    }
    let tls = if s.tls.is_some() || schemes.1 {
        let t = s.tls.clone().unwrap_or_default();
        let client = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => Some((c.as_str(), k.as_str())),
            (None, None) => None,
            _ => {
                p.add(
                    format!("{path}.tls"),
                    "give both `cert_file` and `key_file` for a client certificate, or neither",
                );
                None
            }
        };
        match crate::tls::client_config(t.ca_file.as_deref(), client) {
            Ok(config) => {
                let server_name = t.server_name.as_ref().and_then(|name| {
                    let parsed = rustls_pki_types::ServerName::try_from(name.clone()).ok();
                    if parsed.is_none() {
                        p.add(
                            format!("{path}.tls.server_name"),
                            format!("`{name}` is not a valid DNS name or IP address"),
                        );
                    }
                    parsed
                });
                Some(crate::tls::UpstreamTls { config: Arc::new(config), server_name })
            }
            Err(e) => {
                let (key, m) = match e {
                    crate::tls::TlsFileError::Ca(m) => ("ca_file", m),
                    crate::tls::TlsFileError::Cert(m) => ("cert_file", m),
                    crate::tls::TlsFileError::Key(m) => ("key_file", m),
                };
                p.add(format!("{path}.tls.{key}"), m);
                None
            }
        }
    } else {
        None
    };
    let dns = match &s.dns {
        None => None,
        Some(d) => match dns_settings(d, &format!("{path}.dns"), p) {
            Some(settings) => Some(settings),
            None => return None,
        },
    };
    let no_static = s.endpoints.is_empty() && s.versions.values().all(Vec::is_empty);
    if dns.is_some() && !no_static {
        p.add(format!("{path}.dns"), "give either `endpoints` or `dns`, not both");
    }
    let from_discovery = no_static && dns.is_none();
    if from_discovery && cx.discovery.is_none_or(|d| d.subscribe(&s.name).is_none()) {
        p.add(
            format!("{path}.endpoints"),
            format!("service `{}` has no endpoints and no discovery source knows it", s.name),
        );
    }
    if p.list.len() > before {
        return None;
    }
    // Keep the whole runtime (breaker state, pools, budget, and the follower already
    // feeding it) when nothing about the service changed; otherwise build a new one that
    // inherits endpoint state.
    if let Some(prev) = prev.filter(|u| u.config == *s) {
        return Some((prev.clone(), None));
    }
    let follow = match (dns, from_discovery) {
        (Some(settings), _) if cx.spawn => Some(crate::dns::follow(settings, s.name.clone())),
        (None, true) => cx.discovery.and_then(|d| d.subscribe(&s.name)),
        _ => None,
    };
    let up = Arc::new(Upstream::new(s.clone(), protocol, balance, svc_breaker, ep_breaker, cx.registry.cloned(), tls));
    let initial: Vec<EndpointInfo> = match &follow {
        Some(rx) => rx.borrow().as_ref().clone(),
        None => infos,
    };
    up.set_endpoints(&initial, prev.map(|a| a.as_ref()));
    Some((up, follow))
}

fn dns_settings(d: &crate::config::DnsConfig, path: &str, p: &mut Problems) -> Option<crate::dns::DnsSettings> {
    let before = p.list.len();
    let lookup = match (&d.name, d.port, &d.srv) {
        (Some(name), Some(port), None) if port > 0 => crate::dns::Lookup::Host { name: name.clone(), port },
        (Some(_), _, None) => {
            p.add(format!("{path}.port"), "an A/AAAA lookup needs the port to connect to");
            return None;
        }
        (None, _, Some(srv)) => crate::dns::Lookup::Srv { name: srv.clone() },
        _ => {
            p.add(path.to_owned(), "give `name` (with `port`) for A/AAAA records or `srv` for SRV records");
            return None;
        }
    };
    let name = match &lookup {
        crate::dns::Lookup::Host { name, .. } | crate::dns::Lookup::Srv { name } => name,
    };
    if name.is_empty() || name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        p.add(path.to_owned(), format!("`{name}` is not a DNS name"));
    }
    let nameserver = match &d.nameserver {
        Some(ns) => match ns
            .parse::<std::net::SocketAddr>()
            .or_else(|_| ns.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
        {
            Ok(a) => Some(a),
            Err(_) => {
                p.add(format!("{path}.nameserver"), format!("`{ns}` is not an address like 10.0.0.2 or 10.0.0.2:53"));
                None
            }
        },
        None => crate::dns::system_nameserver().or_else(|| {
            p.add(format!("{path}.nameserver"), "no name server in /etc/resolv.conf; set one");
            None
        }),
    };
    if d.min_ttl > d.max_ttl || d.min_ttl.0.is_zero() {
        p.add(format!("{path}.min_ttl"), "must be greater than zero and at most max_ttl");
    }
    (p.list.len() == before).then(|| crate::dns::DnsSettings {
        lookup,
        nameserver: nameserver.unwrap_or_else(|| ([127, 0, 0, 1], 53).into()),
        min_ttl: d.min_ttl.0,
        max_ttl: d.max_ttl.0,
    })
}

/// Accepts `host:port`, `http://host:port[/]` and `https://host:port[/]`; returns the
/// address and whether it asks for TLS.
pub fn parse_endpoint(e: &str) -> Result<(String, bool), String> {
    let (rest, https) = if let Some(r) = e.strip_prefix("http://") {
        (r.trim_end_matches('/'), false)
    } else if let Some(r) = e.strip_prefix("https://") {
        (r.trim_end_matches('/'), true)
    } else {
        (e, false)
    };
    let auth: http::uri::Authority =
        rest.parse().map_err(|_| format!("`{e}` is not an endpoint like 127.0.0.1:9000"))?;
    if auth.port_u16().is_none() {
        return Err(format!("`{e}` needs a port, like 127.0.0.1:9000"));
    }
    if rest.contains('/') || rest.contains('@') {
        return Err(format!("`{e}` must be host:port without a path or user info"));
    }
    Ok((rest.to_owned(), https))
}

#[allow(clippy::too_many_arguments)]
fn compile_route(
    cfg: &GatewayConfig,
    r: &RouteConfig,
    name: String,
    path: &str,
    services: &BTreeMap<String, Arc<Upstream>>,
    cx: &CompileContext,
    p: &mut Problems,
) -> Option<Route> {
    let before = p.list.len();
    let upstream = services.get(&r.service).cloned();
    if upstream.is_none() && !cfg.services.iter().any(|s| s.name == r.service) {
        p.add(format!("{path}.service"), format!("unknown service `{}`; define it under gateway.services", r.service));
    }
    let matcher = compile_match(&r.matcher, &format!("{path}.match"), p);
    let rewrite_prefix = match (&r.rewrite_prefix, &r.matcher.path_prefix) {
        (Some(w), Some(pre)) => Some((normalize_prefix(pre), w.clone())),
        (Some(_), None) => {
            p.add(format!("{path}.rewrite_prefix"), "needs `match.path_prefix`");
            None
        }
        _ => None,
    };
    let request_headers = compile_ops(&r.request_headers, &format!("{path}.request_headers"), p);
    let response_headers = compile_ops(&r.response_headers, &format!("{path}.response_headers"), p);
    let t = r.timeouts.as_ref().unwrap_or(&cfg.defaults.timeouts);
    let timeouts = Timeouts { connect: t.connect.0, per_try: t.per_try.0, request: t.request.0, idle: t.idle.0 };
    for (field, d) in [("connect", t.connect.0), ("per_try", t.per_try.0), ("request", t.request.0), ("idle", t.idle.0)]
    {
        if d.is_zero() {
            p.add(format!("{path}.timeouts.{field}"), "must be greater than zero: every wait is bounded");
        }
    }
    let retry_cfg = r.retry.as_ref().unwrap_or(&cfg.defaults.retry);
    let retry = match RetryPolicy::from_config(retry_cfg) {
        Ok(rp) => Some(rp),
        Err(list) => {
            for (f, m) in list {
                p.add(format!("{path}.retry.{f}"), m);
            }
            None
        }
    };
    let max_body = r.max_body_bytes.or(cfg.defaults.max_body_bytes).map(|b| b.0).unwrap_or(10 * 1024 * 1024);
    let mut limits = Vec::new();
    for (j, l) in r.rate_limits.iter().enumerate() {
        let lp = format!("{path}.rate_limits[{j}]");
        if !(l.requests_per_second > 0.0 && l.requests_per_second <= 1e9) {
            p.add(format!("{lp}.requests_per_second"), "must be greater than zero");
            continue;
        }
        let gcra = Gcra::new(l.requests_per_second, l.burst);
        let limiter = match l.per.as_str() {
            "route" => Limiter::Route(GlobalLimiter::new(gcra)),
            "client_ip" => Limiter::Keyed(KeyedLimiter::new(gcra), KeySource::ClientIp),
            "api_key" => {
                if r.auth.is_none() {
                    p.add(format!("{lp}.per"), "`api_key` needs `auth` on the route");
                }
                Limiter::Keyed(KeyedLimiter::new(gcra), KeySource::Identity)
            }
            other => match other.strip_prefix("header:").map(|h| HeaderName::from_bytes(h.as_bytes())) {
                Some(Ok(h)) => Limiter::Keyed(KeyedLimiter::new(gcra), KeySource::Header(h)),
                _ => {
                    p.add(
                        format!("{lp}.per"),
                        format!("unknown key `{other}`: expected route, client_ip, api_key or header:NAME"),
                    );
                    continue;
                }
            },
        };
        limits.push(limiter);
    }
    let auth = r.auth.as_ref().and_then(|a| match Authenticator::from_config(a) {
        Ok(a) => Some(a),
        Err(list) => {
            for (f, m) in list {
                let sep = if f.is_empty() { "" } else { "." };
                p.add(format!("{path}.auth{sep}{f}"), m);
            }
            None
        }
    });
    let sample_rate = r.sample_rate.unwrap_or(cfg.telemetry.sample_rate);
    if !(0.0..=1.0).contains(&sample_rate) {
        p.add(format!("{path}.sample_rate"), "must be between 0.0 and 1.0");
    }
    let reject_dot_segments = match r.dot_segments.as_deref() {
        None | Some("normalize") => false,
        Some("reject") => true,
        Some(other) => {
            p.add(format!("{path}.dot_segments"), format!("unknown mode `{other}`: expected normalize or reject"));
            false
        }
    };
    if p.list.len() > before {
        return None;
    }
    let upstream = upstream?;
    let metrics = (cfg.telemetry.metrics)
        .then(|| cx.registry.map(|reg| Arc::new(RouteMetrics::new(reg, &name, &r.service))))
        .flatten();
    Some(Route {
        name: name.into(),
        matcher: matcher?,
        upstream,
        rewrite_prefix,
        request_headers,
        response_headers,
        timeouts,
        retry: retry?,
        max_body,
        limits,
        auth,
        sample_rate,
        reject_dot_segments,
        metrics,
        config: r.clone(),
    })
}

fn normalize_prefix(p: &str) -> String {
    if p == "/" { p.to_owned() } else { p.trim_end_matches('/').to_owned() }
}

fn compile_match(m: &MatchConfig, path: &str, p: &mut Problems) -> Option<Matcher> {
    let before = p.list.len();
    let host = m.host.as_ref().map(|h| match h.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') => HostMatch::Suffix(suffix.to_ascii_lowercase()),
        _ => HostMatch::Exact(h.to_ascii_lowercase()),
    });
    let given = [m.path.is_some(), m.path_prefix.is_some(), m.path_regex.is_some()].iter().filter(|x| **x).count();
    if given > 1 {
        p.add(path.to_owned(), "use only one of `path`, `path_prefix` and `path_regex`");
    }
    let mut path_match = PathMatch::Any;
    if let Some(x) = &m.path {
        if !x.starts_with('/') {
            p.add(format!("{path}.path"), "must start with `/`");
        }
        path_match = PathMatch::Exact(x.clone());
    }
    if let Some(x) = &m.path_prefix {
        if !x.starts_with('/') {
            p.add(format!("{path}.path_prefix"), "must start with `/`");
        }
        path_match = PathMatch::Prefix(normalize_prefix(x));
    }
    if let Some(x) = &m.path_regex {
        match Regex::new(&format!("^(?:{x})$")) {
            Ok(r) => path_match = PathMatch::Regex(r),
            Err(e) => p.add(format!("{path}.path_regex"), format!("invalid regular expression: {e}")),
        }
    }
    let mut methods = Vec::new();
    for (i, s) in m.methods.iter().enumerate() {
        match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
            Ok(mt) => methods.push(mt),
            Err(_) => p.add(format!("{path}.methods[{i}]"), format!("`{s}` is not an HTTP method")),
        }
    }
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let hp = format!("{path}.headers[{i}]");
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            p.add(format!("{hp}.name"), format!("`{}` is not a valid header name", h.name));
            continue;
        };
        let cond = match (&h.value, &h.regex, h.absent) {
            (None, None, false) => HeaderCond::Present(name),
            (None, None, true) => HeaderCond::Absent(name),
            (Some(v), None, false) => match HeaderValue::from_str(v) {
                Ok(v) => HeaderCond::Equals(name, v),
                Err(_) => {
                    p.add(format!("{hp}.value"), "is not a valid header value");
                    continue;
                }
            },
            (None, Some(r), false) => match Regex::new(&format!("^(?:{r})$")) {
                Ok(r) => HeaderCond::Regex(name, r),
                Err(e) => {
                    p.add(format!("{hp}.regex"), format!("invalid regular expression: {e}"));
                    continue;
                }
            },
            _ => {
                p.add(hp, "use one of `value`, `regex` or `absent`");
                continue;
            }
        };
        headers.push(cond);
    }
    (p.list.len() == before).then_some(Matcher { host, path: path_match, methods, headers })
}

fn compile_ops(ops: &crate::config::HeaderOps, path: &str, p: &mut Problems) -> HeaderOps {
    let mut out = HeaderOps::default();
    for (k, v) in &ops.set {
        match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            (Ok(n), Ok(v)) => out.set.push((n, v)),
            (Err(_), _) => p.add(format!("{path}.set.{k}"), format!("`{k}` is not a valid header name")),
            (_, Err(_)) => p.add(format!("{path}.set.{k}"), "is not a valid header value"),
        }
    }
    for (i, k) in ops.remove.iter().enumerate() {
        match HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => out.remove.push(n),
            Err(_) => p.add(format!("{path}.remove[{i}]"), format!("`{k}` is not a valid header name")),
        }
    }
    out
}
