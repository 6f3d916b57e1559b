//! Upstream services: their endpoints, connection pools, balancing, per-endpoint circuit
//! breakers and outlier ejection.
//!
//! The endpoint set of a service is an immutable table swapped whole when discovery reports a
//! change; an endpoint keeps its state (load, latency, breaker, ejections) across swaps and
//! config reloads as long as its address stays in the set.
//!
//! [`answer_first`] wraps the HTTP/1 client's connections so an answer sent before the whole
//! request body was taken still reaches the client.

mod answer_first;

use crate::body::UpstreamBody;
use crate::circuit::{self, CircuitBreaker};
use crate::clock;
use crate::config::{OutlierConfig, ServiceConfig};
use crate::retry::RetryBudget;
use crate::telemetry::EndpointMetrics;
use crate::tls::UpstreamTls;
use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use signalbox_core::discovery::EndpointInfo;
use signalbox_core::metrics::Registry;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Latency assumed for an endpoint before it has answered (Linkerd uses a similar default).
const DEFAULT_RTT_NANOS: f64 = 5_000_000.0;

/// Upstream protocol choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Http1,
    Http2,
    Auto,
}

/// Balancing algorithm.
#[derive(Clone, Debug, PartialEq)]
pub enum Balance {
    P2cEwma { decay: Duration },
    RoundRobin,
    RingHash { header: Option<http::HeaderName>, cookie: Option<String>, vnodes: u32 },
}

/// Outlier ejection settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierSettings {
    pub consecutive_5xx: u32,
    pub consecutive_gateway: u32,
    pub base: Duration,
    pub max: Duration,
    pub max_percent: u32,
}

impl From<&OutlierConfig> for OutlierSettings {
    fn from(c: &OutlierConfig) -> Self {
        OutlierSettings {
            consecutive_5xx: c.consecutive_5xx,
            consecutive_gateway: c.consecutive_gateway_failures,
            base: c.base_ejection_time.0,
            max: c.max_ejection_time.0,
            max_percent: c.max_ejection_percent.min(100),
        }
    }
}

/// One endpoint of a service.
pub struct Endpoint {
    pub info: EndpointInfo,
    /// `info.version`, shared cheaply with the request's telemetry.
    pub version: Option<Arc<str>>,
    pub authority: http::uri::Authority,
    inflight: AtomicU32,
    ewma_bits: AtomicU64,
    ewma_stamp: AtomicU64,
    pub breaker: Option<Arc<CircuitBreaker>>,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    ejected_until: AtomicU64,
    times_ejected: AtomicU32,
    last_ejection_end: AtomicU64,
    pub metrics: Option<EndpointMetrics>,
}

impl Endpoint {
    fn new(
        info: EndpointInfo,
        authority: http::uri::Authority,
        breaker: Option<circuit::Settings>,
        metrics: Option<EndpointMetrics>,
        initial_rtt_nanos: f64,
    ) -> Self {
        Endpoint {
            version: info.version.as_deref().map(Arc::from),
            info,
            authority,
            inflight: AtomicU32::new(0),
            ewma_bits: AtomicU64::new(initial_rtt_nanos.to_bits()),
            ewma_stamp: AtomicU64::new(clock::now()),
            breaker: breaker.map(|s| Arc::new(CircuitBreaker::new(s))),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            times_ejected: AtomicU32::new(0),
            last_ejection_end: AtomicU64::new(0),
            metrics,
        }
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    fn available(&self, now: u64) -> bool {
        !self.is_ejected(now) && self.breaker.as_ref().is_none_or(|b| b.looks_available())
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Latency EWMA in seconds.
    pub fn ewma_seconds(&self) -> f64 {
        f64::from_bits(self.ewma_bits.load(Ordering::Relaxed)) / 1e9
    }

    /// Load estimate: latency EWMA × (in-flight + 1). The EWMA decays towards zero while no
    /// sample arrives (as Finagle's peak EWMA does), so an endpoint that got no traffic —
    /// because it looked slow once — is tried again instead of starving.
    fn cost(&self, now: u64, decay: Duration) -> f64 {
        let ewma = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let idle = now.saturating_sub(self.ewma_stamp.load(Ordering::Relaxed)) as f64;
        let decayed = ewma * (-idle / decay.as_nanos().max(1) as f64).exp();
        decayed * (self.inflight.load(Ordering::Relaxed) as f64 + 1.0)
    }

    /// Marks a try as started; the guard ends it.
    pub fn start(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// Peak-EWMA update (Finagle): a slower sample is taken at once, faster ones decay in
    /// with time constant `decay`, so a sudden slowdown steers traffic away immediately.
    pub fn observe_rtt(&self, rtt: Duration, decay: Duration, now: u64) {
        let rtt = rtt.as_nanos() as f64;
        let prev = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let last = self.ewma_stamp.swap(now, Ordering::Relaxed);
        let next = if rtt > prev {
            rtt
        } else {
            let elapsed = now.saturating_sub(last) as f64;
            let w = (-elapsed / decay.as_nanos().max(1) as f64).exp();
            prev * w + rtt * (1.0 - w)
        };
        self.ewma_bits.store(next.to_bits(), Ordering::Relaxed);
    }

    pub fn ejection_count(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Seconds left in the current ejection.
    pub fn ejected_for(&self) -> Option<f64> {
        let now = clock::now();
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until > now).then(|| (until - now) as f64 / 1e9)
    }
}

/// Decrements an endpoint's in-flight count when dropped.
pub struct InflightGuard(Arc<Endpoint>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The kind of result a try had, for ejection and breakers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryResult {
    /// A response below 500.
    Ok,
    /// A 5xx response (or a gRPC failure status).
    ServerError,
    /// No response: connect failure, reset or timeout.
    GatewayFailure,
}

struct Table {
    endpoints: Vec<Arc<Endpoint>>,
    /// Consistent-hash ring: (point, endpoint index), sorted by point.
    ring: Vec<(u64, u32)>,
    /// The endpoints of each version, with their own ring, for traffic splits.
    versions: Vec<Subset>,
}

/// The endpoints of one version.
struct Subset {
    version: Arc<str>,
    endpoints: Vec<Arc<Endpoint>>,
    ring: Vec<(u64, u32)>,
}

/// HTTP clients with pooled keep-alive connections, one per upstream protocol. Each gateway
/// worker thread has its own, so a request and its upstream connection live on one thread
/// and never wake another (measured: cross-thread wake-ups cost more than the proxying
/// itself; see docs/benchmarks.md).
pub struct Clients {
    pub h1: Client<answer_first::AnswerFirst<Connector>, UpstreamBody>,
    pub h2: Client<Connector, UpstreamBody>,
    pub connect_timeout: Duration,
}

/// TCP, with TLS for `https` URIs (services with upstream TLS).
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The client config plain services carry; never used for a handshake (their URIs are
/// `http`), built once.
fn plain_tls() -> Arc<rustls::ClientConfig> {
    static PLAIN: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    PLAIN
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                // Invariant: ring implements both default versions (TLS 1.2 and 1.3).
                .expect("the ring provider supports the default TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            Arc::new(cfg)
        })
        .clone()
}

fn connector(tcp: HttpConnector, tls: Option<&UpstreamTls>, h2: bool) -> Connector {
    let config = tls.map(|t| t.config.clone()).unwrap_or_else(plain_tls);
    let mut b = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((*config).clone()).https_or_http();
    if let Some(name) = tls.and_then(|t| t.server_name.clone()) {
        b = b.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    // ALPN: `h2` for the HTTP/2 client; none for HTTP/1.1, which servers then assume.
    if h2 { b.enable_http2().wrap_connector(tcp) } else { b.enable_http1().wrap_connector(tcp) }
}

impl Clients {
    fn new(connect_timeout: Duration, idle: Duration, max_idle: usize, tls: Option<&UpstreamTls>) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(connect_timeout));
        conn.set_nodelay(true);
        conn.set_keepalive(Some(Duration::from_secs(60)));
        // `https` URIs reach the TLS layer above.
        conn.enforce_http(false);
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_timer(TokioTimer::new()).pool_idle_timeout(idle).pool_max_idle_per_host(max_idle);
        let h1 = b.build(answer_first::AnswerFirst(connector(conn.clone(), tls, false)));
        let mut b2 = Client::builder(TokioExecutor::new());
        b2.pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .http2_only(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10));
        let h2 = b2.build(connector(conn, tls, true));
        Clients { h1, h2, connect_timeout }
    }
}

/// A service's runtime state.
pub struct Upstream {
    pub name: Arc<str>,
    pub config: ServiceConfig,
    pub protocol: Protocol,
    pub balance: Balance,
    table: ArcSwap<Table>,
    rr: AtomicU32,
    pub breaker: Option<Arc<CircuitBreaker>>,
    endpoint_breaker: Option<circuit::Settings>,
    outlier: OutlierSettings,
    pub budget: RetryBudget,
    clients: thread_local::ThreadLocal<std::cell::RefCell<Vec<Clients>>>,
    registry: Option<Registry>,
    /// Set when endpoints come from discovery rather than config.
    pub discovered: bool,
    /// TLS to the endpoints, if the service asks for it.
    pub tls: Option<UpstreamTls>,
}

/// The endpoint chosen for a try, with its breaker permit (released unrecorded when the try
/// is dropped before it reports).
pub struct Picked {
    pub endpoint: Arc<Endpoint>,
    pub permit: Option<circuit::Permit>,
}

/// Why no endpoint could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEndpoint {
    /// The service has no endpoints at all.
    Empty,
    /// Every endpoint is ejected or has an open circuit.
    AllUnavailable { circuits_open: bool },
}

impl Upstream {
    pub fn new(
        config: ServiceConfig,
        protocol: Protocol,
        balance: Balance,
        breaker: Option<circuit::Settings>,
        endpoint_breaker: Option<circuit::Settings>,
        registry: Option<Registry>,
        tls: Option<UpstreamTls>,
    ) -> Self {
        Upstream {
            tls,
            name: config.name.as_str().into(),
            outlier: OutlierSettings::from(&config.outlier),
            discovered: config.endpoints.is_empty() && config.versions.values().all(Vec::is_empty),
            config,
            protocol,
            balance,
            table: ArcSwap::from_pointee(Table { endpoints: Vec::new(), ring: Vec::new(), versions: Vec::new() }),
            rr: AtomicU32::new(0),
            breaker: breaker.map(|s| Arc::new(CircuitBreaker::new(s))),
            endpoint_breaker,
            budget: RetryBudget::default(),
            clients: thread_local::ThreadLocal::new(),
            registry,
        }
    }

    /// Runs `f` with this thread's pooled clients for a connect timeout (routes with the same
    /// timeout share them).
    pub fn with_clients<R>(&self, connect_timeout: Duration, f: impl FnOnce(&Clients) -> R) -> R {
        let cell = self.clients.get_or(|| std::cell::RefCell::new(Vec::new()));
        let mut list = cell.borrow_mut();
        let i = match list.iter().position(|c| c.connect_timeout == connect_timeout) {
            Some(i) => i,
            None => {
                list.push(Clients::new(
                    connect_timeout,
                    self.config.pool_idle_timeout.0,
                    self.config.pool_max_idle_per_endpoint,
                    self.tls.as_ref(),
                ));
                list.len() - 1
            }
        };
        f(&list[i])
    }

    /// Replaces the endpoint set, keeping the state of endpoints that stay. `previous`
    /// lends endpoint state from an older runtime of the same service (config reload).
    pub fn set_endpoints(&self, infos: &[EndpointInfo], previous: Option<&Upstream>) {
        let mut known: HashMap<&str, &Arc<Endpoint>> = HashMap::new();
        let old = self.table.load();
        let prev_table = previous.map(|p| p.table.load_full());
        if let Some(t) = &prev_table {
            for e in &t.endpoints {
                if e.breaker.as_ref().map(|b| b.settings()) == self.endpoint_breaker.as_ref() {
                    known.insert(&e.info.address, e);
                }
            }
        }
        for e in &old.endpoints {
            known.insert(&e.info.address, e);
        }
        // A new (or returning) endpoint starts at the lowest current latency estimate of its
        // peers, so it competes on equal terms at once: seeded higher, it would wait behind
        // the incumbents until their estimates rose or its own decayed (seconds).
        let now = crate::clock::now();
        let decay = match &self.balance {
            Balance::P2cEwma { decay } => *decay,
            _ => Duration::from_secs(10),
        };
        let seed = old
            .endpoints
            .iter()
            .map(|e| e.cost(now, decay) / (e.inflight.load(Ordering::Relaxed) as f64 + 1.0))
            .min_by(f64::total_cmp)
            .unwrap_or(DEFAULT_RTT_NANOS);
        let mut endpoints = Vec::with_capacity(infos.len());
        for info in infos {
            if let Some(e) = known.get(info.address.as_str())
                && e.info == *info
            {
                endpoints.push((*e).clone());
                continue;
            }
            let Ok(authority) = info.address.parse::<http::uri::Authority>() else {
                tracing::warn!(service = %self.name, address = %info.address, "ignoring endpoint with an invalid address");
                continue;
            };
            let metrics = self.registry.as_ref().map(|r| EndpointMetrics::new(r, &self.name, &info.address));
            endpoints.push(Arc::new(Endpoint::new(
                info.clone(),
                authority,
                self.endpoint_breaker.clone(),
                metrics,
                seed,
            )));
        }
        let ring_of = |eps: &[Arc<Endpoint>]| match &self.balance {
            Balance::RingHash { vnodes, .. } => build_ring(eps, *vnodes),
            _ => Vec::new(),
        };
        let mut versions: Vec<Subset> = Vec::new();
        for e in &endpoints {
            let Some(v) = &e.version else { continue };
            match versions.iter_mut().find(|s| s.version == *v) {
                Some(s) => s.endpoints.push(e.clone()),
                None => versions.push(Subset { version: v.clone(), endpoints: vec![e.clone()], ring: Vec::new() }),
            }
        }
        for s in &mut versions {
            s.ring = ring_of(&s.endpoints);
        }
        let ring = ring_of(&endpoints);
        self.table.store(Arc::new(Table { endpoints, ring, versions }));
    }

    /// Whether `version` has an endpoint that can take a request now (not ejected, circuit
    /// not open).
    pub fn version_available(&self, version: &str, now: u64) -> bool {
        let table = self.table.load();
        table
            .versions
            .iter()
            .find(|s| &*s.version == version)
            .is_some_and(|s| s.endpoints.iter().any(|e| e.available(now)))
    }

    /// Endpoints per version: (version, available now, total).
    pub fn version_counts(&self) -> Vec<(Arc<str>, usize, usize)> {
        let now = clock::now();
        let table = self.table.load();
        table
            .versions
            .iter()
            .map(|s| (s.version.clone(), s.endpoints.iter().filter(|e| e.available(now)).count(), s.endpoints.len()))
            .collect()
    }

    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.table.load().endpoints.clone()
    }

    /// Chooses an endpoint for a try and takes its breaker permit. `hash` is the request's
    /// hash key for `ring_hash`; `avoid` is the endpoint of the previous try, skipped when
    /// another one is available.
    pub fn pick(&self, hash: Option<u64>, avoid: Option<&Arc<Endpoint>>, now: u64) -> Result<Picked, NoEndpoint> {
        self.pick_in(None, hash, avoid, now)
    }

    /// [`Upstream::pick`] among the endpoints of `version` only (all endpoints for `None`).
    pub fn pick_in(
        &self,
        version: Option<&str>,
        hash: Option<u64>,
        avoid: Option<&Arc<Endpoint>>,
        now: u64,
    ) -> Result<Picked, NoEndpoint> {
        let table = self.table.load();
        let (eps, ring) = match version {
            None => (&table.endpoints, &table.ring),
            Some(v) => match table.versions.iter().find(|s| &*s.version == v) {
                Some(s) => (&s.endpoints, &s.ring),
                None => return Err(NoEndpoint::Empty),
            },
        };
        if eps.is_empty() {
            return Err(NoEndpoint::Empty);
        }
        let usable = |e: &Arc<Endpoint>| e.available(now) && avoid.is_none_or(|a| !Arc::ptr_eq(a, e));
        let candidate = match (&self.balance, hash) {
            (Balance::RingHash { .. }, Some(h)) => ring_pick(ring, eps, h, &usable),
            (Balance::RoundRobin, _) => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed) as usize;
                (0..eps.len()).map(|i| &eps[(start + i) % eps.len()]).find(|e| usable(e)).cloned()
            }
            (Balance::P2cEwma { decay }, _) => p2c(eps, &usable, now, *decay),
            (Balance::RingHash { .. }, None) => p2c(eps, &usable, now, Duration::from_secs(10)),
        };
        let acquire = |e: &Arc<Endpoint>| -> Option<Picked> {
            let permit = match &e.breaker {
                None => None,
                Some(b) => Some(b.try_acquire().ok()?),
            };
            Some(Picked { endpoint: e.clone(), permit })
        };
        if let Some(p) = candidate.as_ref().and_then(acquire) {
            return Ok(p);
        }
        // The choice was refused by its breaker (half-open trials used up), or nothing was
        // usable but the avoided endpoint: scan, and use the avoided one last.
        if let Some(p) = eps.iter().filter(|e| usable(e)).find_map(acquire) {
            return Ok(p);
        }
        if let Some(p) = avoid.filter(|a| a.available(now)).and_then(acquire) {
            return Ok(p);
        }
        let circuits_open = eps.iter().any(|e| e.breaker.as_ref().is_some_and(|b| b.state() != circuit::State::Closed));
        Err(NoEndpoint::AllUnavailable { circuits_open })
    }

    /// Feeds a try's result to the endpoint's breaker (through the try's permit) and to
    /// outlier ejection.
    pub fn report(&self, ep: &Endpoint, permit: Option<circuit::Permit>, result: TryResult, slow: bool) {
        if let Some(p) = permit
            && let Some(state) = p.record(circuit::Outcome { failure: result != TryResult::Ok, slow })
        {
            tracing::info!(service = %self.name, endpoint = %ep.info.address, state = ?state, "endpoint circuit changed state");
        }
        let o = &self.outlier;
        match result {
            TryResult::Ok => {
                ep.consecutive_5xx.store(0, Ordering::Relaxed);
                ep.consecutive_gateway.store(0, Ordering::Relaxed);
                self.decay_ejections(ep);
            }
            TryResult::ServerError => {
                ep.consecutive_gateway.store(0, Ordering::Relaxed);
                let n = ep.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                if o.consecutive_5xx > 0 && n >= o.consecutive_5xx {
                    self.try_eject(ep, "consecutive_5xx");
                }
            }
            TryResult::GatewayFailure => {
                let n = ep.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
                let n5 = ep.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                if (o.consecutive_gateway > 0 && n >= o.consecutive_gateway)
                    || (o.consecutive_5xx > 0 && n5 >= o.consecutive_5xx)
                {
                    self.try_eject(ep, "consecutive_gateway_failures");
                }
            }
        }
    }

    fn try_eject(&self, ep: &Endpoint, reason: &str) {
        let now = clock::now();
        if ep.is_ejected(now) {
            return;
        }
        let table = self.table.load();
        let total = table.endpoints.len();
        if total < 2 {
            // Ejecting the only endpoint would turn a degraded service into a dead one.
            return;
        }
        let ejected = table.endpoints.iter().filter(|e| e.is_ejected(now)).count();
        let allowed = ((total * self.outlier.max_percent as usize) / 100).max(1);
        if ejected >= allowed {
            return;
        }
        let times = ep.times_ejected.fetch_add(1, Ordering::Relaxed) + 1;
        let time = self.outlier.base.saturating_mul(times).min(self.outlier.max.max(self.outlier.base));
        let until = now + clock::nanos(time);
        ep.ejected_until.store(until, Ordering::Relaxed);
        ep.last_ejection_end.store(until, Ordering::Relaxed);
        ep.consecutive_5xx.store(0, Ordering::Relaxed);
        ep.consecutive_gateway.store(0, Ordering::Relaxed);
        tracing::warn!(service = %self.name, endpoint = %ep.info.address, reason, seconds = time.as_secs_f64(), "endpoint ejected");
    }

    /// An endpoint healthy for a base ejection time after its last ejection ended earns one
    /// ejection back, so old incidents stop lengthening new ejections.
    fn decay_ejections(&self, ep: &Endpoint) {
        let times = ep.times_ejected.load(Ordering::Relaxed);
        if times == 0 {
            return;
        }
        let end = ep.last_ejection_end.load(Ordering::Relaxed);
        let now = clock::now();
        if now > end + clock::nanos(self.outlier.base)
            && ep.last_ejection_end.compare_exchange(end, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            ep.times_ejected.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Hash key of a request for `ring_hash`, if the balancer uses one and it is present.
    pub fn hash_key(&self, headers: &http::HeaderMap) -> Option<u64> {
        let Balance::RingHash { header, cookie, .. } = &self.balance else {
            return None;
        };
        let value = header
            .as_ref()
            .and_then(|h| headers.get(h))
            .map(|v| v.as_bytes())
            .or_else(|| cookie.as_ref().and_then(|c| cookie_value(headers, c)))?;
        let mut h = DefaultHasher::new();
        value.hash(&mut h);
        Some(h.finish())
    }
}

pub(crate) fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    for v in headers.get_all(http::header::COOKIE) {
        let s = v.to_str().ok()?;
        for pair in s.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == name
            {
                return Some(val.as_bytes());
            }
        }
    }
    None
}

fn p2c(
    eps: &[Arc<Endpoint>],
    usable: &impl Fn(&Arc<Endpoint>) -> bool,
    now: u64,
    decay: Duration,
) -> Option<Arc<Endpoint>> {
    let n = eps.len();
    if n == 1 {
        return usable(&eps[0]).then(|| eps[0].clone());
    }
    let a = fastrand::usize(..n);
    let mut b = fastrand::usize(..n - 1);
    if b >= a {
        b += 1;
    }
    let (ea, eb) = (&eps[a], &eps[b]);
    match (usable(ea), usable(eb)) {
        (true, true) => Some(if ea.cost(now, decay) <= eb.cost(now, decay) { ea } else { eb }.clone()),
        (true, false) => Some(ea.clone()),
        (false, true) => Some(eb.clone()),
        (false, false) => {
            eps.iter().filter(|e| usable(e)).min_by(|x, y| x.cost(now, decay).total_cmp(&y.cost(now, decay))).cloned()
        }
    }
}

fn point(address: &str, replica: u32) -> u64 {
    let mut h = DefaultHasher::new();
    address.hash(&mut h);
    replica.hash(&mut h);
    h.finish()
}

fn build_ring(eps: &[Arc<Endpoint>], vnodes: u32) -> Vec<(u64, u32)> {
    let mut ring = Vec::with_capacity(eps.len() * vnodes as usize);
    for (i, e) in eps.iter().enumerate() {
        let replicas = vnodes * e.info.weight.max(1);
        for r in 0..replicas {
            ring.push((point(&e.info.address, r), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

fn ring_pick(
    ring: &[(u64, u32)],
    eps: &[Arc<Endpoint>],
    hash: u64,
    usable: &impl Fn(&Arc<Endpoint>) -> bool,
) -> Option<Arc<Endpoint>> {
    if ring.is_empty() {
        return None;
    }
    let start = ring.partition_point(|(p, _)| *p < hash);
    (0..ring.len()).map(|i| &eps[ring[(start + i) % ring.len()].1 as usize]).find(|e| usable(e)).cloned()
}
