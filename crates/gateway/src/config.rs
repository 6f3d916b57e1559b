//! The `[gateway]` section of the config file, as written by users (stage one of two).
//!
//! Every field has a default and a `///` doc: these docs are the user's reference, and
//! `examples/signalbox.toml` mirrors them. [`crate::compile`] validates this raw form into the
//! runtime tables and reports every problem with its key path.

use serde::{Deserialize, Serialize};
use signalbox_core::config::{ByteSize, Dur};
use std::collections::BTreeMap;

/// The gateway: listeners, limits, telemetry, services and routes.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the plain-text listener (HTTP/1.1 and HTTP/2 prior knowledge, h2c).
    pub listen: String,
    /// An optional TLS listener (HTTP/1.1 and HTTP/2 negotiated by ALPN).
    pub tls: Option<TlsConfig>,
    /// Worker threads, each with its own listening socket, event loop and upstream pools
    /// (0: one per CPU).
    pub workers: usize,
    /// How plain-text HTTP/1.1 connections are served: `fast`, the gateway's own HTTP/1.1
    /// server and upstream client (heads parsed in place, bodies copied through, per-worker
    /// upstream pools), or `hyper`, the general server it shares with HTTP/2 and TLS. Both
    /// run the same request phases; HTTP/2, TLS, WebSocket upgrades, HTTP/1.0 clients and
    /// routes to TLS or HTTP/2 upstreams always use hyper. Fixed at start-up.
    pub http1: String,
    /// The `service.name` the gateway's own spans carry.
    pub service_name: String,
    /// Protection against oversized or slow clients.
    pub limits: LimitsConfig,
    /// How request paths are normalised before routing (the upstream gets the same path).
    pub paths: PathsConfig,
    /// What the gateway records for each request.
    pub telemetry: TelemetryConfig,
    /// Policies every route and service starts from; each can override them.
    pub defaults: PolicyDefaults,
    /// Upstream services: named groups of endpoints with their balancing and resilience.
    pub services: Vec<ServiceConfig>,
    /// Routes, matched in order; the first match wins.
    pub routes: Vec<RouteConfig>,
    /// Traffic splitting and mirroring (the policies themselves live in central
    /// configuration, application `gateway`, profile `traffic`).
    pub traffic: TrafficConfig,
}

/// Limits of traffic splitting and mirroring.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficConfig {
    /// Most mirrored requests in flight at once; a mirror beyond it is dropped and counted
    /// (`signalbox_gateway_mirror_dropped_total{reason="budget"}`), never waited for.
    pub mirror_max_inflight: usize,
    /// Largest request body copied to a mirror: a body of known length up to this size is
    /// buffered (as for retries) when the request is mirrored; a larger or streamed body
    /// is not mirrored (`reason="body"`).
    pub mirror_max_body: ByteSize,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig { mirror_max_inflight: 256, mirror_max_body: ByteSize(64 * 1024) }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8080".into(),
            tls: None,
            workers: 0,
            http1: "fast".into(),
            service_name: "signalbox-gateway".into(),
            limits: LimitsConfig::default(),
            paths: PathsConfig::default(),
            telemetry: TelemetryConfig::default(),
            defaults: PolicyDefaults::default(),
            services: Vec::new(),
            routes: Vec::new(),
            traffic: TrafficConfig::default(),
        }
    }
}

/// A TLS listener.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener.
    pub listen: String,
    /// PEM file with the certificate chain, leaf first.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { listen: "127.0.0.1:8443".into(), cert: String::new(), key: String::new() }
    }
}

/// Downstream limits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest total size of request headers; larger requests get 431.
    pub max_header_bytes: ByteSize,
    /// Most request headers; more get 431.
    pub max_headers: usize,
    /// Time a client has to send complete request headers, which also bounds how long an
    /// idle keep-alive HTTP/1 connection is kept open.
    pub header_read_timeout: Dur,
    /// HTTP/2: interval of keep-alive pings to detect dead peers.
    pub h2_keepalive_interval: Dur,
    /// HTTP/2: most concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Most open downstream connections, counted exactly across worker threads; a further
    /// connection is refused at once (plain text: a JSON 503 `too_many_connections`, then
    /// closed; TLS: closed).
    pub max_connections: usize,
    /// Most open connections from one client IP address; further ones are closed at once,
    /// so one address cannot take every slot of `max_connections` (0: no per-address limit).
    pub max_connections_per_ip: usize,
    /// On shutdown or listener replacement, how long in-flight requests may take to finish.
    pub drain_timeout: Dur,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_bytes: ByteSize(32 * 1024),
            max_headers: 100,
            header_read_timeout: Dur::secs(30),
            h2_keepalive_interval: Dur::secs(30),
            h2_max_concurrent_streams: 256,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            drain_timeout: Dur::secs(30),
        }
    }
}

/// Request-path normalisation. Routes match, and upstreams receive, the normalised path:
/// percent-encoded unreserved characters decoded (`%2e` is `.`), `.` and `..` segments
/// resolved or refused, and optionally runs of `/` merged. A segment like `..;x`, which Java
/// servlet containers read as `..`, is always refused with 400.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// `normalize`: resolve `.` and `..` (RFC 3986) and forward the result; `reject`: answer
    /// 400 to any path that has them. Routes can also refuse them on their own.
    pub dot_segments: String,
    /// Merge runs of `/` into one (`//admin//x` is `/admin/x`), as nginx does by default.
    pub merge_slashes: bool,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig { dot_segments: "normalize".into(), merge_slashes: false }
    }
}

/// Per-request telemetry.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Record a server span per request and a client span per upstream try.
    pub spans: bool,
    /// Record RED metrics (requests by status class, latency histograms) per route, service
    /// and endpoint.
    pub metrics: bool,
    /// Where the JSON access log goes: `"stdout"`, `"off"`, or a file path (appended).
    pub access_log: String,
    /// Head sampling: share of new traces (no sampled flag from the client) whose spans are
    /// recorded, 0.0 to 1.0, decided from the trace id so every node decides alike. A
    /// sampled flag the client sends (`traceparent`, B3) is honoured. Metrics and the access
    /// log still cover every request. Routes can override it.
    pub sample_rate: f64,
    /// Capacity of the in-process queues that carry spans and access-log lines off the hot
    /// path; when full, items are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            spans: true,
            metrics: true,
            access_log: "stdout".into(),
            sample_rate: 1.0,
            queue_capacity: 8192,
        }
    }
}

/// Policies that routes and services inherit.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyDefaults {
    /// Route timeouts.
    pub timeouts: TimeoutsConfig,
    /// Route retry policy.
    pub retry: RetryConfig,
    /// Largest request body a route accepts; larger bodies get 413.
    pub max_body_bytes: Option<ByteSize>,
}

/// Timeouts of a route.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Time to establish a TCP connection to an endpoint.
    pub connect: Dur,
    /// Time one try may take until the upstream's response headers arrive.
    pub per_try: Dur,
    /// Time the whole request may take until response headers, across all tries and backoff.
    pub request: Dur,
    /// Longest silence while streaming a body in either direction before the exchange is
    /// aborted.
    pub idle: Dur,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig { connect: Dur::secs(2), per_try: Dur::secs(15), request: Dur::secs(30), idle: Dur::secs(60) }
    }
}

/// When and how a route retries.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Most tries in total, the first included (1 disables retries).
    pub attempts: u32,
    /// Conditions that allow a retry: `connect-failure`, `timeout`, `502`, `503`, `504`,
    /// `grpc-unavailable`, `reset`.
    pub retry_on: Vec<String>,
    /// Retry non-idempotent methods (POST, PATCH) too. A connect failure is always safe to
    /// retry because the request never left the gateway.
    pub non_idempotent: bool,
    /// First backoff; each further retry doubles it, with full jitter.
    pub backoff_base: Dur,
    /// Largest backoff.
    pub backoff_max: Dur,
    /// Retry budget: retries may add at most this share of the service's request rate.
    pub budget_ratio: f64,
    /// Retries per second always allowed regardless of the ratio, so low-traffic services
    /// can still retry.
    pub budget_min_per_second: u32,
    /// Bodies up to this size are buffered so the request can be replayed; requests with
    /// larger or unknown-length bodies are not retried (except on connect failure without
    /// a body sent).
    pub buffer_body_bytes: ByteSize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 3,
            retry_on: ["connect-failure", "502", "503", "504", "grpc-unavailable", "reset"].map(String::from).to_vec(),
            non_idempotent: false,
            backoff_base: Dur::millis(25),
            backoff_max: Dur::millis(250),
            budget_ratio: 0.2,
            budget_min_per_second: 10,
            buffer_body_bytes: ByteSize(64 * 1024),
        }
    }
}

/// An upstream service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name routes refer to.
    pub name: String,
    /// Static endpoints, as `host:port` or `http://host:port`. Leave empty to follow a
    /// discovery source (the registry) under the service's name.
    pub endpoints: Vec<String>,
    /// Static endpoints by the version they run (`v2 = ["127.0.0.1:9002"]`), for traffic
    /// splits; they join `endpoints`. Discovered endpoints carry the version the registry
    /// knows (metadata `version` or a `version=…` tag).
    pub versions: BTreeMap<String, Vec<String>>,
    /// Upstream protocol: `http1`, `http2` (prior knowledge), or `auto` (HTTP/1.1, except
    /// gRPC requests which need HTTP/2).
    pub protocol: String,
    /// How an endpoint is chosen for each try.
    pub balancer: BalancerConfig,
    /// Circuit breaker over all calls to the service.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Circuit breaker per endpoint; an open endpoint gets no traffic until it half-opens.
    pub endpoint_circuit_breaker: Option<CircuitBreakerConfig>,
    /// Endpoints from DNS (A/AAAA or SRV records), re-resolved on TTL.
    pub dns: Option<DnsConfig>,
    /// Outlier ejection of misbehaving endpoints.
    pub outlier: OutlierConfig,
    /// Idle pooled connections are closed after this time.
    pub pool_idle_timeout: Dur,
    /// Most idle pooled connections kept per endpoint.
    pub pool_max_idle_per_endpoint: usize,
    /// TLS to the endpoints. On when this table is given or the endpoints are `https://`.
    pub tls: Option<UpstreamTlsConfig>,
}

/// TLS from the gateway to a service's endpoints (HTTP/1.1 or HTTP/2 by ALPN, per the
/// service's `protocol`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM file of the certificate authorities to trust; default: the Mozilla root set.
    pub ca_file: Option<String>,
    /// Name sent in SNI and checked against the certificate; default: the endpoint's host
    /// (set it when endpoints are IP addresses from the registry or DNS).
    pub server_name: Option<String>,
    /// Client certificate chain and key (PEM) for endpoints that require mutual TLS.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            name: String::new(),
            endpoints: Vec::new(),
            versions: BTreeMap::new(),
            protocol: "auto".into(),
            balancer: BalancerConfig::default(),
            circuit_breaker: None,
            endpoint_circuit_breaker: None,
            dns: None,
            outlier: OutlierConfig::default(),
            pool_idle_timeout: Dur::secs(90),
            pool_max_idle_per_endpoint: 1024,
            tls: None,
        }
    }
}

/// DNS as the endpoint source of a service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// A name whose A and AAAA records are the endpoints (with `port`).
    pub name: Option<String>,
    /// The port for `name`'s addresses.
    pub port: Option<u16>,
    /// An SRV name (`_http._tcp.orders.internal`): targets, ports and weights from the records.
    pub srv: Option<String>,
    /// Name server (`ip` or `ip:port`); default: the first in /etc/resolv.conf.
    pub nameserver: Option<String>,
    /// Shortest and longest time between lookups (the records' TTL, clamped to these).
    pub min_ttl: Dur,
    pub max_ttl: Dur,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            name: None,
            port: None,
            srv: None,
            nameserver: None,
            min_ttl: Dur::secs(1),
            max_ttl: Dur::secs(300),
        }
    }
}

/// Load balancing.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BalancerConfig {
    /// `p2c_ewma` (power of two choices, least loaded by in-flight × latency EWMA),
    /// `round_robin`, or `ring_hash` (consistent hashing on `hash_header` or `hash_cookie`).
    pub kind: String,
    /// Time constant of the latency EWMA for `p2c_ewma`.
    pub ewma_decay: Dur,
    /// `ring_hash`: the request header whose value is hashed.
    pub hash_header: Option<String>,
    /// `ring_hash`: the cookie whose value is hashed (used when `hash_header` is unset or
    /// absent from the request).
    pub hash_cookie: Option<String>,
    /// `ring_hash`: virtual nodes per endpoint.
    pub ring_size_per_endpoint: u32,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            kind: "p2c_ewma".into(),
            ewma_decay: Dur::secs(10),
            hash_header: None,
            hash_cookie: None,
            ring_size_per_endpoint: 128,
        }
    }
}

/// A circuit breaker with Resilience4j's semantics.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// `count` (the last `window_size` calls) or `time` (calls of the last `window_size`
    /// seconds).
    pub window: String,
    /// Size of the sliding window, in calls or seconds.
    pub window_size: u32,
    /// Calls needed in the window before rates are evaluated.
    pub minimum_calls: u32,
    /// Failure rate, in percent, at or above which the circuit opens.
    pub failure_rate_threshold: f64,
    /// Slow-call rate, in percent, at or above which the circuit opens.
    pub slow_call_rate_threshold: f64,
    /// A call slower than this counts as slow.
    pub slow_call_duration: Dur,
    /// How long the circuit stays open before letting trial calls through.
    pub wait_in_open: Dur,
    /// Trial calls allowed while half-open; their outcome closes or re-opens the circuit.
    pub half_open_calls: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            window: "count".into(),
            window_size: 100,
            minimum_calls: 20,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Dur::secs(5),
            wait_in_open: Dur::secs(30),
            half_open_calls: 5,
        }
    }
}

/// Outlier ejection.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Eject after this many consecutive 5xx responses (0 disables).
    pub consecutive_5xx: u32,
    /// Eject after this many consecutive gateway failures: connect errors, resets and
    /// timeouts (0 disables).
    pub consecutive_gateway_failures: u32,
    /// Ejection time is this × the number of times the endpoint was ejected.
    pub base_ejection_time: Dur,
    /// Longest ejection.
    pub max_ejection_time: Dur,
    /// Never eject more than this share of the service's endpoints, in percent (at least
    /// one endpoint can always be ejected when the service has two or more).
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_gateway_failures: 5,
            base_ejection_time: Dur::secs(30),
            max_ejection_time: Dur::secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// A route: what requests it matches and where they go.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics, logs and the admin API (default: `route-N`).
    pub name: Option<String>,
    /// What a request must look like to take this route.
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    /// The upstream service (a name from `gateway.services`).
    pub service: String,
    /// Replace the matched path prefix with this (prefix routes only).
    pub rewrite_prefix: Option<String>,
    /// Header changes on the way to the upstream.
    pub request_headers: HeaderOps,
    /// Header changes on the way back to the client.
    pub response_headers: HeaderOps,
    /// Overrides `gateway.defaults.timeouts`.
    pub timeouts: Option<TimeoutsConfig>,
    /// Overrides `gateway.defaults.retry`.
    pub retry: Option<RetryConfig>,
    /// Overrides `gateway.defaults.max_body_bytes`.
    pub max_body_bytes: Option<ByteSize>,
    /// Rate limits; a request must pass all of them.
    pub rate_limits: Vec<RateLimitConfig>,
    /// Edge authentication.
    pub auth: Option<AuthConfig>,
    /// Overrides `gateway.telemetry.sample_rate`.
    pub sample_rate: Option<f64>,
    /// `reject`: refuse requests to this route whose path had `.` or `..` segments before
    /// normalisation, even when `gateway.paths.dot_segments` resolves them.
    pub dot_segments: Option<String>,
}

/// Request matching. Every given condition must hold.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// Host (without port): exact, or `*.example.com` for any subdomain.
    pub host: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Path prefix on segment boundaries: `/api` matches `/api` and `/api/x`, not `/apix`.
    pub path_prefix: Option<String>,
    /// Regular expression the whole path must match.
    pub path_regex: Option<String>,
    /// Allowed methods (any when empty).
    pub methods: Vec<String>,
    /// Header conditions.
    pub headers: Vec<HeaderMatch>,
}

/// One header condition: `value` (exact), `regex`, or neither (present).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub value: Option<String>,
    pub regex: Option<String>,
    /// Match when the header is absent instead.
    pub absent: bool,
}

/// Header additions (replacing existing values) and removals.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderOps {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// A GCRA rate limit.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate.
    pub requests_per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// What the limit is counted per: `route` (all clients together), `client_ip`, `api_key`
    /// (the authenticated key id or JWT subject), or `header:NAME`.
    pub per: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { requests_per_second: 100.0, burst: 100, per: "client_ip".into() }
    }
}

/// Edge authentication. When both API keys and JWT are configured, either is accepted.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted API keys, stored hashed.
    pub api_keys: Vec<ApiKeyConfig>,
    /// The header that carries an API key.
    pub api_key_header: String,
    /// JWT bearer tokens in `Authorization: Bearer`.
    pub jwt: Option<JwtConfig>,
    /// Remove the credential headers before forwarding.
    pub strip_credentials: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { api_keys: Vec::new(), api_key_header: "x-api-key".into(), jwt: None, strip_credentials: true }
    }
}

/// One API key.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key; forwarded as `x-signalbox-client` and used for `per = "api_key"`.
    pub id: String,
    /// Hex SHA-256 of the key (`signalbox hash-key` prints it).
    pub sha256: String,
}

/// JWT validation.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms: `HS256`, `RS256`, `ES256`.
    pub algorithms: Vec<String>,
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// PEM files with RSA or EC public keys.
    pub public_key_files: Vec<String>,
    /// A JWKS (JSON Web Key Set) file; keys are picked by `kid`.
    pub jwks_file: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud` (any of these).
    pub audiences: Vec<String>,
    /// Clock skew tolerated for `exp` and `nbf`.
    pub leeway: Dur,
    /// Claims that must have these string values (or contain them, for array or
    /// space-separated claims such as `scope`); a valid token without them gets 403.
    pub required_claims: BTreeMap<String, String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            algorithms: vec!["RS256".into(), "ES256".into()],
            secret: None,
            public_key_files: Vec::new(),
            jwks_file: None,
            issuer: None,
            audiences: Vec::new(),
            leeway: Dur::secs(30),
            required_claims: BTreeMap::new(),
        }
    }
}
