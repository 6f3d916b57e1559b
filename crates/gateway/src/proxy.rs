//! The request path: a fixed pipeline of phases run for every request.
//!
//! 1. limits: header count and size (431), Host (400);
//! 2. trace context and request id;
//! 3. route (404);
//! 4. auth (401/403), rate limits (429), body size (413);
//! 5. service circuit (503 fast-fail);
//! 6. tries: pick an endpoint, send with the per-try timeout, classify, maybe back off and
//!    retry within the retry budget and the request deadline;
//! 7. response: header changes, then the body streams back under the idle timeout while the
//!    telemetry record waits for it to end.

use crate::body::{ClientBody, ClientFault, Fault, Guard, UpstreamBody, Watched};
use crate::compile::Snapshot;
use crate::error::GatewayError;
use crate::ratelimit::Decision;
use crate::router::Route;
use crate::telemetry::{Finish, Telemetry, TryRecord};
use crate::tracectx::TraceContext;
use crate::upstream::{Endpoint, NoEndpoint, Protocol, TryResult};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use signalbox_core::ids::{SpanId, TraceId};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// State shared by every connection of the gateway.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub telemetry: Arc<Telemetry>,
}

/// What the server knows about the client connection.
pub struct ConnInfo {
    pub client: SocketAddr,
    pub tls: bool,
    /// Requests in progress on this connection (their response bodies not yet finished).
    pub active: std::sync::atomic::AtomicU32,
    /// `clock::now()` when the connection last became idle.
    pub idle_since: std::sync::atomic::AtomicU64,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, tls: bool) -> Self {
        ConnInfo { client, tls, active: Default::default(), idle_since: crate::clock::now().into() }
    }
}

/// Counts a request as active on its connection until its response body is dropped (sent
/// or abandoned), so the connection watchdog knows when the connection is idle.
pub struct ActiveGuard(Arc<ConnInfo>);

impl ActiveGuard {
    fn new(conn: Arc<ConnInfo>) -> Self {
        conn.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(conn)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(crate::clock::now(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_CLIENT: HeaderName = HeaderName::from_static("x-signalbox-client");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const BACKOFF_SLICE: Duration = Duration::from_millis(1);

/// Per-request facts gathered before the upstream call.
struct Ctx {
    started: Instant,
    trace: TraceContext,
    request_id: HeaderValue,
    grpc: bool,
    finish: Option<Box<Finish>>,
}

impl Ctx {
    fn fail(mut self, e: GatewayError) -> Response<ClientBody> {
        let mut resp = e.to_response(&self.trace.trace_id.to_hex(), Some(&self.request_id), self.grpc);
        if e.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(mut f) = self.finish.take() {
            f.status = resp.status().as_u16();
            f.error_code = Some(e.code);
            f.complete(0, None, None);
        }
        resp
    }
}

/// Handles one request. Never fails: every error becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<crate::body::Counted>, Infallible> {
    let guard = ActiveGuard::new(conn.clone());
    let snap = shared.snapshot.load_full();
    let version = req.version();
    let mut resp = run(&shared, &snap, &conn, req).await;
    // The client hears its own protocol version, whatever the upstream spoke (an HTTP/1.0
    // upstream must not turn an HTTP/1.1 client's keep-alive connection into HTTP/1.0).
    *resp.version_mut() = version;
    Ok(resp.map(|body| crate::body::Counted { body, _guard: guard }))
}

async fn run(shared: &Shared, snap: &Snapshot, conn: &ConnInfo, mut req: Request<Incoming>) -> Response<ClientBody> {
    let started = Instant::now();
    let tel = &shared.telemetry;
    let trace = TraceContext::extract(req.headers());
    let grpc = is_grpc(req.headers());
    let request_id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => new_request_id(),
    };
    let mut ctx = Ctx { started, trace, request_id, grpc, finish: None };

    // Phase 1: limits and basic validity.
    let limits = &snap.config.limits;
    if req.headers().len() > limits.max_headers {
        return ctx.fail(GatewayError::headers_too_large(format!("more than {} request headers", limits.max_headers)));
    }
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes as u64 > limits.max_header_bytes.0 {
        return ctx.fail(GatewayError::headers_too_large(format!(
            "request headers exceed {} bytes",
            limits.max_header_bytes.0
        )));
    }
    // Phase 2: one authority and one path, the ones that are forwarded.
    if let Err(m) = one_authority(&mut req) {
        return ctx.fail(GatewayError::bad_request(m));
    }
    let had_dots = match crate::path::normalize(req.uri().path(), snap.path_rules) {
        Ok(None) => false,
        Ok(Some(n)) => match with_path(req.uri(), &n.path) {
            Some(uri) => {
                *req.uri_mut() = uri;
                n.had_dots
            }
            None => return ctx.fail(GatewayError::bad_request("request path cannot be normalised")),
        },
        Err(e) => return ctx.fail(GatewayError::bad_request(e.message())),
    };
    let host = match request_host(&req) {
        Ok(h) => h,
        Err(m) => return ctx.fail(GatewayError::bad_request(m)),
    };

    // Phase 3: route.
    let Some(route) = snap.route_for(req.method(), &host, req.uri().path(), req.headers()) else {
        if tel.enabled() {
            ctx.finish = Some(new_finish(tel, None, &req, &host, conn, &ctx, false));
        }
        return ctx.fail(GatewayError::not_found());
    };
    let route = route.clone();
    if had_dots && route.reject_dot_segments {
        return ctx.fail(GatewayError::bad_request(crate::path::PathError::DotSegment.message()));
    }
    let sampled = ctx.trace.sampled.unwrap_or_else(|| route.sample_rate >= 1.0 || fastrand::f64() < route.sample_rate);
    if tel.enabled() {
        ctx.finish = Some(new_finish(tel, Some(&route), &req, &host, conn, &ctx, sampled));
    }

    // Phase 4: auth, rate limits, body size.
    let identity = match &route.auth {
        None => None,
        Some(a) => match a.check(req.headers()) {
            Ok(id) => Some(id),
            Err(crate::auth::Denied::Unauthenticated(m)) => {
                return ctx.fail(GatewayError::unauthorized(m));
            }
            Err(crate::auth::Denied::Forbidden(m)) => return ctx.fail(GatewayError::forbidden(m)),
        },
    };
    if let Some(f) = ctx.finish.as_mut() {
        f.identity = identity.clone();
    }
    let mut tightest: Option<(Decision, f64, u32)> = None;
    for l in &route.limits {
        let d = l.check(conn.client.ip(), identity.as_deref(), req.headers());
        let (rate, burst) = l.rate();
        if !d.allowed {
            let mut resp = ctx.fail(GatewayError::rate_limited(d.retry_after));
            rate_limit_headers(resp.headers_mut(), &d, rate, burst);
            return resp;
        }
        if tightest.as_ref().is_none_or(|(t, _, _)| d.remaining < t.remaining) {
            tightest = Some((d, rate, burst));
        }
    }
    let content_length =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if content_length.is_some_and(|l| l > route.max_body) {
        return ctx.fail(GatewayError::body_too_large(route.max_body));
    }

    // Phase 5: the service circuit.
    let upstream = route.upstream.clone();
    let svc_permit = match &upstream.breaker {
        None => false,
        Some(b) => match b.try_acquire() {
            Ok(()) => true,
            Err(r) => {
                let mut resp =
                    ctx.fail(GatewayError::circuit_open(&format!("service:{}", upstream.name), r.retry_after));
                if let Ok(v) = HeaderValue::from_str(&format!("service:{}", upstream.name)) {
                    resp.headers_mut().insert("x-signalbox-circuit", v);
                }
                return resp;
            }
        },
    };
    upstream.budget.deposit();

    // Prepare the upstream request.
    // The Host the upstream sees: the one routed on (`one_authority` made the target's
    // authority and the Host header agree; HTTP/2 clients send only :authority).
    let upstream_host = match req.headers().get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => HeaderValue::from_str(req.uri().authority().map(|a| a.as_str()).unwrap_or(&host)).ok(),
    };
    drop(host);
    let upgrade = is_upgrade(&req);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let method = parts.method;
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade);
    headers.remove(&X_CLIENT);
    if let Some(a) = &route.auth
        && a.strip_credentials
    {
        a.strip(&mut headers);
    }
    if let Some(id) = identity.as_deref().and_then(|i| HeaderValue::from_str(i).ok()) {
        headers.insert(X_CLIENT.clone(), id);
    }
    add_forwarded(&mut headers, conn, upstream_host.as_ref());
    headers.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    route.request_headers.apply(&mut headers);
    let use_h2 = match upstream.protocol {
        Protocol::Http2 => true,
        Protocol::Http1 => false,
        Protocol::Auto => ctx.grpc,
    };
    if use_h2 {
        headers.remove(header::HOST);
    } else if !headers.contains_key(header::HOST)
        && let Some(h) = upstream_host
    {
        headers.insert(header::HOST, h);
    }
    let path_and_query = match upstream_path(&route, &parts.uri) {
        Ok(pq) => pq,
        Err(m) => return ctx.fail(GatewayError::bad_request(m)),
    };

    let idempotent =
        matches!(method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE);
    let may_retry = route.retry.attempts > 1 && (idempotent || route.retry.non_idempotent) && !upgrade;
    let fault = Arc::new(ClientFault::default());
    let mut body_state = if body.is_end_stream() {
        BodyState::Replay(None)
    } else if route.retry.attempts > 1 && !upgrade && content_length.is_some_and(|l| l <= route.retry.buffer_body_bytes)
    {
        // Small bodies are buffered whenever a retry is possible at all: even a POST may be
        // retried after a connect failure, which needs the body again.
        let guard = Guard { limit: route.max_body, idle: route.timeouts.idle, fault: Some(fault.clone()) };
        let collect = Watched::new(body, guard, None).collect();
        match tokio::time::timeout(route.timeouts.request, collect).await {
            Ok(Ok(c)) => BodyState::Replay(Some(c.to_bytes())),
            Ok(Err(crate::body::BodyError::TooLarge(l))) => {
                return ctx.fail(GatewayError::body_too_large(l));
            }
            Ok(Err(crate::body::BodyError::Hyper(_))) => return ctx.fail(GatewayError::request_body_broken()),
            _ => return ctx.fail(GatewayError::request_body_timeout()),
        }
    } else {
        let guard = Guard { limit: route.max_body, idle: route.timeouts.idle, fault: Some(fault.clone()) };
        BodyState::Stream(Some(Box::new(Watched::new(body, guard, None))))
    };

    // Phase 6: tries.
    let deadline = started + route.timeouts.request;
    let hash = upstream.hash_key(&headers);
    let mut prev: Option<Arc<Endpoint>> = None;
    let mut attempt = 0u32;
    let outcome = loop {
        attempt += 1;
        let now = Instant::now();
        let ep = match upstream.pick(hash, prev.as_ref(), crate::clock::at(now)) {
            Ok(ep) => ep,
            Err(NoEndpoint::AllUnavailable { circuits_open: true }) => {
                break Err(GatewayError::circuit_open(&format!("endpoints:{}", upstream.name), Duration::from_secs(1)));
            }
            Err(_) => break Err(GatewayError::no_endpoint(&upstream.name)),
        };
        if now >= deadline {
            release_permit(&ep);
            break Err(GatewayError::upstream_timeout(&upstream.name));
        }
        let budget = route.timeouts.per_try.min(deadline - now);
        let last_possible = attempt >= route.retry.attempts || !matches!(body_state, BodyState::Replay(_));
        let body = match &mut body_state {
            BodyState::Replay(b) => UpstreamBody::Full(b.clone()),
            BodyState::Stream(s) => match s.take() {
                Some(w) => UpstreamBody::Stream(w),
                None => {
                    release_permit(&ep);
                    break Err(GatewayError::upstream_reset(&upstream.name));
                }
            },
        };
        let span_id = SpanId::random();
        let mut try_headers = if last_possible { std::mem::take(&mut headers) } else { headers.clone() };
        ctx.trace.inject(span_id, sampled, &mut try_headers);
        let uri = Uri::builder()
            .scheme(if upstream.tls.is_some() { "https" } else { "http" })
            .authority(ep.authority.clone())
            .path_and_query(path_and_query.clone())
            .build();
        let Ok(uri) = uri else {
            release_permit(&ep);
            break Err(GatewayError::bad_request("request target cannot be forwarded"));
        };
        let mut up_req = Request::new(body);
        *up_req.method_mut() = method.clone();
        *up_req.uri_mut() = uri;
        *up_req.version_mut() = if use_h2 { Version::HTTP_2 } else { Version::HTTP_11 };
        *up_req.headers_mut() = try_headers;
        let t0 = now;
        // Every timestamp of a request derives from its server span's start and the
        // monotonic clock, so a try always lies inside the request even if the wall clock
        // is stepped or slewed meanwhile.
        let try_start_unix =
            ctx.finish.as_ref().map_or(0, |f| f.start_unix + t0.saturating_duration_since(f.started).as_nanos() as u64);
        let inflight = ep.start();
        let fut = upstream
            .with_clients(route.timeouts.connect, |c| if use_h2 { c.h2.request(up_req) } else { c.h1.request(up_req) });
        let res = tokio::time::timeout(budget, fut).await;
        drop(inflight);
        let t1 = Instant::now();
        let rtt = t1 - t0;
        // A try that failed because the client's body failed is the client's fault: the
        // endpoint is not blamed (no breaker or ejection count, no latency sample).
        if res.as_ref().is_ok_and(|r| r.is_err())
            && let Some(f) = fault.get()
        {
            release_permit(&ep);
            break Err(match f {
                Fault::TooLarge => GatewayError::body_too_large(route.max_body),
                Fault::Broken => GatewayError::request_body_broken(),
                Fault::Stalled => GatewayError::request_body_timeout(),
            });
        }
        let (result, status, err, retry_ok) = match &res {
            Err(_) => (TryResult::GatewayFailure, None, Some("timeout"), route.retry.on.timeout),
            Ok(Err(e)) if e.is_connect() => {
                (TryResult::GatewayFailure, None, Some("connect_failed"), route.retry.on.connect_failure)
            }
            Ok(Err(_)) => (TryResult::GatewayFailure, None, Some("reset"), route.retry.on.reset),
            Ok(Ok(resp)) => {
                let s = resp.status().as_u16();
                let grpc_code = grpc_status_header(resp.headers());
                let failed = s >= 500 || grpc_code.is_some_and(is_grpc_failure);
                let retry = route.retry.on.status(s) || (route.retry.on.grpc_unavailable && grpc_code == Some(14));
                (if failed { TryResult::ServerError } else { TryResult::Ok }, Some(s), None, retry)
            }
        };
        let slow = ep.breaker.as_ref().is_some_and(|b| rtt > b.settings().slow_call);
        upstream.report(&ep, result, slow);
        let decay = match &upstream.balance {
            crate::upstream::Balance::P2cEwma { decay } => *decay,
            _ => Duration::from_secs(10),
        };
        let sample = if result == TryResult::GatewayFailure { rtt.max(Duration::from_secs(1)) } else { rtt };
        ep.observe_rtt(sample, decay, crate::clock::at(t1));
        if let Some(m) = &ep.metrics {
            m.record(status, rtt.as_secs_f64());
        }
        if let Some(f) = ctx.finish.as_mut() {
            f.endpoint = Some(ep.info.address.clone());
            f.tries.push(TryRecord {
                span_id,
                endpoint: ep.info.address.clone(),
                start_unix: try_start_unix,
                end_unix: try_start_unix + rtt.as_nanos() as u64,
                status,
                error: err,
            });
        }
        // A connect failure never sent the request, so it is safe to retry whatever the
        // method, as long as the body can be sent again.
        let connect_failure = err == Some("connect_failed");
        let replayable = matches!(body_state, BodyState::Replay(_));
        let can_retry = retry_ok
            && attempt < route.retry.attempts
            && replayable
            && (may_retry || (connect_failure && !upgrade))
            && upstream.budget.try_withdraw(route.retry.budget_ratio, route.retry.budget_min_per_second);
        if can_retry {
            let pause = route.retry.backoff(attempt).max(BACKOFF_SLICE);
            if Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                prev = Some(ep);
                if !headers.is_empty() {
                    continue;
                }
            }
        }
        break match res {
            Err(_) => Err(GatewayError::upstream_timeout(&upstream.name)),
            Ok(Err(e)) if e.is_connect() => Err(GatewayError::connect_failed(&upstream.name)),
            Ok(Err(_)) => Err(GatewayError::upstream_reset(&upstream.name)),
            Ok(Ok(resp)) => Ok(resp),
        };
    };

    if svc_permit && let Some(b) = &upstream.breaker {
        let failed = match &outcome {
            Ok(r) => r.status().as_u16() >= 500 || grpc_status_header(r.headers()).is_some_and(is_grpc_failure),
            Err(e) => e.side == crate::error::Side::Upstream,
        };
        let slow = started.elapsed() > b.settings().slow_call;
        if let Some(state) = b.record(crate::circuit::Outcome { failure: failed, slow }) {
            tracing::info!(service = %upstream.name, state = ?state, "service circuit changed state");
        }
    }

    // Phase 7: response.
    let mut resp = match outcome {
        Ok(r) => r,
        Err(e) => return ctx.fail(e),
    };
    if let (Some(down), StatusCode::SWITCHING_PROTOCOLS) = (on_upgrade, resp.status()) {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(crate::tunnel::run(down, up, route.timeouts.idle));
    } else {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    let (mut parts, body) = resp.into_parts();
    route.response_headers.apply(&mut parts.headers);
    parts.headers.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    if let Some((d, rate, burst)) = &tightest {
        rate_limit_headers(&mut parts.headers, d, *rate, *burst);
    }
    if let Some(f) = ctx.finish.as_mut() {
        f.status = parts.status.as_u16();
        f.grpc_status = grpc_status_header(&parts.headers);
    }
    let guard = Guard { limit: u64::MAX, idle: route.timeouts.idle, fault: None };
    Response::from_parts(parts, ClientBody::Stream(Watched::new(body, guard, ctx.finish.take())))
}

enum BodyState {
    Replay(Option<Bytes>),
    Stream(Option<Box<Watched>>),
}

/// Returns a breaker permit taken by `pick` for a try that was never sent.
fn release_permit(ep: &Endpoint) {
    if let Some(b) = &ep.breaker {
        b.record(crate::circuit::Outcome { failure: false, slow: false });
    }
}

fn new_finish(
    tel: &Arc<Telemetry>,
    route: Option<&Arc<Route>>,
    req: &Request<Incoming>,
    host: &str,
    conn: &ConnInfo,
    ctx: &Ctx,
    sampled: bool,
) -> Box<Finish> {
    let (route_name, service, metrics): (Arc<str>, Arc<str>, _) = match route {
        Some(r) => (r.name.clone(), r.upstream.name.clone(), r.metrics.clone()),
        None => ("-".into(), "-".into(), None),
    };
    Box::new(Finish {
        tel: tel.clone(),
        route_name,
        service,
        metrics: if tel.metrics { metrics } else { None },
        started: ctx.started,
        start_unix: signalbox_core::time::unix_nanos().saturating_sub(ctx.started.elapsed().as_nanos() as u64),
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        host: host.to_owned(),
        client: conn.client.ip().to_string(),
        user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        protocol: match req.version() {
            Version::HTTP_2 => "2",
            Version::HTTP_10 => "1.0",
            _ => "1.1",
        },
        request_id: ctx.request_id.to_str().unwrap_or("").to_owned(),
        trace: ctx.trace.clone(),
        server_span: SpanId::random(),
        sampled,
        status: 0,
        error_code: None,
        endpoint: None,
        tries: Vec::new(),
        grpc: ctx.grpc,
        grpc_status: None,
        identity: None,
    })
}

fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; 32];
    signalbox_core::ids::hex_into(&TraceId::random().0, &mut buf);
    // 32 hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

/// Makes the request carry exactly one authority: a second Host header is refused (RFC 9112
/// §3.2), and an absolute-form target's authority replaces the Host header (§3.2.2), so the
/// route is chosen on the same host the upstream is told.
fn one_authority(req: &mut Request<Incoming>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let Some(authority) = req.uri().authority() else { return Ok(()) };
    if authority.as_str().contains('@') {
        return Err("request target must not carry user information");
    }
    if split_host(authority.as_str()).is_none() {
        return Err("request target's authority is not a valid host[:port]");
    }
    let value = HeaderValue::from_str(authority.as_str()).map_err(|_| "request target's authority is not valid")?;
    req.headers_mut().insert(header::HOST, value);
    Ok(())
}

/// `uri` with its path replaced (query, scheme and authority kept).
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The host the client addressed, without port: from the URI (HTTP/2, absolute-form) or the
/// Host header. HTTP/1.1 requires one.
fn request_host(req: &Request<Incoming>) -> Result<std::borrow::Cow<'_, str>, &'static str> {
    fn lower(h: &str) -> std::borrow::Cow<'_, str> {
        if h.bytes().any(|b| b.is_ascii_uppercase()) { h.to_ascii_lowercase().into() } else { h.into() }
    }
    if let Some(h) = req.uri().host() {
        return Ok(lower(h));
    }
    match req.headers().get(header::HOST) {
        Some(v) => {
            let s = v.to_str().map_err(|_| "Host header is not valid text")?;
            split_host(s).map(lower).ok_or("Host header is not a valid host[:port]")
        }
        None if req.version() == Version::HTTP_11 => Err("HTTP/1.1 request without a Host header"),
        None => Ok("".into()),
    }
}

/// The host part of a `host[:port]` (RFC 3986 reg-name, IPv4, or bracketed IPv6), checked.
fn split_host(s: &str) -> Option<&str> {
    let digits = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if s.starts_with('[') {
        let end = s.find(']')?;
        let rest = &s[end + 1..];
        let ok = rest.is_empty() || rest.strip_prefix(':').is_some_and(digits);
        let inner = &s[1..end];
        return (ok && !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'))
            .then_some(&s[..=end]);
    }
    let host = match s.rsplit_once(':') {
        Some((h, p)) if digits(p) => h,
        Some(_) => return None,
        None => s,
    };
    let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
    (!host.is_empty() && host.bytes().all(reg_name)).then_some(host)
}

fn upstream_path(route: &Route, uri: &Uri) -> Result<http::uri::PathAndQuery, &'static str> {
    let Some((prefix, with)) = &route.rewrite_prefix else {
        return Ok(uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
    };
    let mut p = crate::router::rewrite_prefix(prefix, with, uri.path());
    if let Some(q) = uri.query() {
        p.push('?');
        p.push_str(q);
    }
    p.parse().map_err(|_| "rewritten path is not valid")
}

fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn grpc_status_header(h: &HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// gRPC codes that mean the server failed (UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
/// INTERNAL, UNAVAILABLE, DATA_LOSS), as opposed to the caller's mistakes.
fn is_grpc_failure(c: u32) -> bool {
    matches!(c, 2 | 4 | 8 | 13 | 14 | 15)
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named by `Connection`.
/// `TE: trailers` stays (gRPC needs it); upgrades keep `Connection` and `Upgrade`.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // One pass to find out whether there is anything to do: most requests carry none of
    // these, and each `remove` of an absent name still costs a hash and a probe.
    let mut found = false;
    for name in h.keys() {
        if name == header::CONNECTION
            || name == header::TE
            || name == header::TRANSFER_ENCODING
            || name == header::PROXY_AUTHORIZATION
            || name == header::UPGRADE
            || name.as_str() == "keep-alive"
            || name.as_str() == "proxy-connection"
        {
            found = true;
            break;
        }
    }
    if !found {
        return;
    }
    if !upgrade {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
    h.remove(header::PROXY_AUTHORIZATION);
    h.remove(header::TRANSFER_ENCODING);
    if let Some(te) = h.get(header::TE) {
        if !te.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))) {
            h.remove(header::TE);
        } else {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

fn add_forwarded(h: &mut HeaderMap, conn: &ConnInfo, host_header: Option<&HeaderValue>) {
    use std::io::Write as _;
    // Formatted on the stack: this runs for every request.
    let mut buf = [0u8; 512];
    let mut w = std::io::Cursor::new(&mut buf[..]);
    let ok = match h.get(&X_FORWARDED_FOR) {
        Some(prev) => w.write_all(prev.as_bytes()).and_then(|_| write!(w, ", {}", conn.client.ip())).is_ok(),
        None => write!(w, "{}", conn.client.ip()).is_ok(),
    };
    let n = w.position() as usize;
    if ok && let Ok(v) = HeaderValue::from_bytes(&buf[..n]) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
    }
    if let Some(host) = host_header
        && !h.contains_key(&X_FORWARDED_HOST)
    {
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
}

/// `RateLimit-*` headers as in the IETF httpapi draft, plus `RateLimit-Policy`.
fn rate_limit_headers(h: &mut HeaderMap, d: &Decision, rate: f64, burst: u32) {
    let reset = d.reset.as_secs_f64().ceil() as u64;
    h.insert("ratelimit-limit", HeaderValue::from(burst));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
    let window = (burst as f64 / rate).ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&format!("{burst};w={window}")) {
        h.insert("ratelimit-policy", v);
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn host_headers_are_checked() {
        assert_eq!(split_host("api.example.com"), Some("api.example.com"));
        assert_eq!(split_host("api.example.com:8080"), Some("api.example.com"));
        assert_eq!(split_host("[::1]:8080"), Some("[::1]"));
        assert_eq!(split_host("[::1]"), Some("[::1]"));
        assert_eq!(split_host("127.0.0.1"), Some("127.0.0.1"));
        for bad in ["", "a b", "host:port", "a/b", "user@host", "[::1", "[zz]", "h:123456"] {
            assert_eq!(split_host(bad), None, "{bad}");
        }
    }
}
