//! Phases 5 and 6, pick an upstream and try: each try picks an endpoint (holding its breaker
//! permit), sends under the per-try timeout and classifies the result into a response or a
//! typed [`GatewayError`]. Whether to try again reads that classification (its
//! [`Retry`](crate::error::Retry) allowance), the method, whether the body can be sent again,
//! the retry budget and the request's deadline.

use super::context::RequestCtx;
use super::exchange::{Exchange, TryFailure, UpstreamHead};
use super::headers::{grpc_status_header, is_grpc_failure};
use super::upstream_request::Prepared;
use crate::body::Fault;
use crate::circuit::Permit;
use crate::error::{GatewayError, Retry};
use crate::router::Route;
use crate::telemetry::TryRecord;
use crate::upstream::{Endpoint, NoEndpoint, Picked, TryResult, Upstream};
use http::{Request, Uri};
use signalbox_core::ids::SpanId;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BACKOFF_SLICE: Duration = Duration::from_millis(1);

impl TryFailure {
    /// The name in the try's telemetry record.
    fn as_str(self) -> &'static str {
        match self {
            TryFailure::Timeout => "timeout",
            TryFailure::ConnectFailed => "connect_failed",
            TryFailure::Reset => "reset",
        }
    }

    /// The error, with the retry allowance the route gives this failure.
    fn to_error(self, route: &Route) -> GatewayError {
        let (name, on) = (&route.upstream.name, &route.retry.on);
        match self {
            TryFailure::Timeout => GatewayError::upstream_timeout(name).retry_if(on.timeout),
            TryFailure::ConnectFailed => GatewayError::connect_failed(name).retry_if(on.connect_failure),
            TryFailure::Reset => GatewayError::upstream_reset(name).retry_if(on.reset),
        }
    }
}

/// Runs the tries; the result is the response to relay or the error to answer.
/// `version` keeps every try within that version's endpoints (a traffic split's choice).
pub(super) async fn run<X: Exchange>(
    ctx: &mut RequestCtx,
    route: &Route,
    version: Option<&str>,
    mut req: Prepared,
    x: &mut X,
) -> Result<X::Response, GatewayError> {
    let upstream = &route.upstream;
    let deadline = ctx.started + route.timeouts.request;
    let hash = upstream.hash_key(&req.headers);
    let mut prev: Option<Arc<Endpoint>> = None;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let now = Instant::now();
        let Picked { endpoint: ep, permit } = pick(upstream, version, hash, prev.as_ref(), now)?;
        // From here on, returning early drops `permit` unrecorded: a try that was never sent
        // (or a request abandoned mid-try) gives its breaker slot back.
        if now >= deadline {
            return Err(GatewayError::upstream_timeout(&upstream.name));
        }
        let budget = route.timeouts.per_try.min(deadline - now);
        let last_possible = attempt >= route.retry.attempts || !x.replayable();
        let span_id = SpanId::random();
        let mut try_headers = if last_possible { std::mem::take(&mut req.headers) } else { req.headers.clone() };
        ctx.trace.inject(span_id, ctx.sampled, &mut try_headers);
        let uri = Uri::builder()
            .scheme(if upstream.tls.is_some() { "https" } else { "http" })
            .authority(ep.authority.clone())
            .path_and_query(req.path_and_query.clone())
            .build();
        let Ok(uri) = uri else {
            return Err(GatewayError::bad_request("request target cannot be forwarded"));
        };
        let mut up_req = Request::new(());
        *up_req.method_mut() = req.method.clone();
        *up_req.uri_mut() = uri;
        *up_req.headers_mut() = try_headers;
        let t0 = now;
        // Every timestamp of a request derives from its server span's start and the
        // monotonic clock, so a try always lies inside the request even if the wall clock
        // is stepped or slewed meanwhile.
        let try_start_unix =
            ctx.finish.as_ref().map_or(0, |f| f.start_unix + t0.saturating_duration_since(f.started).as_nanos() as u64);
        let inflight = ep.start();
        let res = tokio::time::timeout(budget, x.send(route, &ep, up_req)).await;
        drop(inflight);
        if x.abandoned() {
            // The endpoint's permit goes back unrecorded.
            return Err(GatewayError::request_body_broken());
        }
        let t1 = Instant::now();
        let rtt = t1 - t0;
        // A try that failed because the client's body failed is the client's fault: the
        // endpoint is not blamed (no breaker or ejection count, no latency sample).
        if res.as_ref().is_ok_and(|r| r.is_err())
            && let Some(f) = x.client_fault()
        {
            return Err(match f {
                Fault::TooLarge => GatewayError::body_too_large(route.max_body),
                Fault::Broken => GatewayError::request_body_broken(),
                Fault::Stalled => GatewayError::request_body_timeout(),
            });
        }
        let outcome = classify(route, res);
        record_try(upstream, &ep, permit, &outcome, rtt, t1);
        if let Some(f) = ctx.finish.as_mut() {
            f.endpoint = Some(ep.info.address.clone());
            f.version = ep.version.clone();
            let (status, error) = match &outcome {
                Outcome::Response { resp, .. } => (Some(resp.status().as_u16()), None),
                Outcome::Failed(f, _) => (None, Some(f.as_str())),
            };
            f.tries.push(TryRecord {
                span_id,
                endpoint: ep.info.address.clone(),
                start_unix: try_start_unix,
                end_unix: try_start_unix + rtt.as_nanos() as u64,
                status,
                error,
            });
        }
        let again = attempt < route.retry.attempts
            && x.replayable()
            && allows(outcome.retry(), &req)
            && upstream.budget.try_withdraw(route.retry.budget_ratio, route.retry.budget_min_per_second);
        if again {
            let pause = route.retry.backoff(attempt).max(BACKOFF_SLICE);
            if Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                prev = Some(ep);
                if !req.headers.is_empty() {
                    continue;
                }
            }
        }
        return outcome.into_result();
    }
}

/// The pick-upstream phase: an endpoint and its breaker permit, or why there is none.
fn pick(
    upstream: &Upstream,
    version: Option<&str>,
    hash: Option<u64>,
    avoid: Option<&Arc<Endpoint>>,
    now: Instant,
) -> Result<Picked, GatewayError> {
    match upstream.pick_in(version, hash, avoid, crate::clock::at(now)) {
        Ok(p) => Ok(p),
        Err(NoEndpoint::AllUnavailable { circuits_open: true }) => {
            Err(GatewayError::circuit_open(&format!("endpoints:{}", upstream.name), Duration::from_secs(1)))
        }
        Err(_) => Err(GatewayError::no_endpoint(&upstream.name)),
    }
}

/// Whether the request may be sent again after a try that allows `retry`.
fn allows(retry: Retry, req: &Prepared) -> bool {
    match retry {
        Retry::Never => false,
        Retry::IfIdempotent => req.may_retry,
        // A connect failure never sent the request, so it is safe to retry whatever the
        // method (an upgrade is never replayed).
        Retry::Always => req.may_retry || !req.upgrade,
    }
}

/// A try's result, classified.
enum Outcome<R> {
    Response { resp: R, failed: bool, retry: Retry },
    Failed(TryFailure, GatewayError),
}

impl<R: UpstreamHead> Outcome<R> {
    fn retry(&self) -> Retry {
        match self {
            Outcome::Response { retry, .. } => *retry,
            Outcome::Failed(_, e) => e.retry,
        }
    }

    fn try_result(&self) -> TryResult {
        match self {
            Outcome::Response { failed: false, .. } => TryResult::Ok,
            Outcome::Response { failed: true, .. } => TryResult::ServerError,
            Outcome::Failed(..) => TryResult::GatewayFailure,
        }
    }

    /// A response is relayed whatever its status (a 5xx that was not retried reaches the
    /// client as the upstream sent it).
    fn into_result(self) -> Result<R, GatewayError> {
        match self {
            Outcome::Response { resp, .. } => Ok(resp),
            Outcome::Failed(_, e) => Err(e),
        }
    }
}

fn classify<R: UpstreamHead>(
    route: &Route,
    res: Result<Result<R, TryFailure>, tokio::time::error::Elapsed>,
) -> Outcome<R> {
    let failure = match res {
        Err(_) => TryFailure::Timeout,
        Ok(Err(f)) => f,
        Ok(Ok(resp)) => {
            let s = resp.status().as_u16();
            let grpc_code = grpc_status_header(resp.headers());
            let failed = s >= 500 || grpc_code.is_some_and(is_grpc_failure);
            let retryable = route.retry.on.status(s) || (route.retry.on.grpc_unavailable && grpc_code == Some(14));
            let retry = if retryable { Retry::IfIdempotent } else { Retry::Never };
            return Outcome::Response { resp, failed, retry };
        }
    };
    Outcome::Failed(failure, failure.to_error(route))
}

/// Feeds the try to the endpoint's breaker (consuming its permit), outlier ejection, the
/// latency estimate and the endpoint's metrics.
fn record_try<R: UpstreamHead>(
    upstream: &Upstream,
    ep: &Endpoint,
    permit: Option<Permit>,
    outcome: &Outcome<R>,
    rtt: Duration,
    t1: Instant,
) {
    let result = outcome.try_result();
    let slow = ep.breaker.as_ref().is_some_and(|b| rtt > b.settings().slow_call);
    upstream.report(ep, permit, result, slow);
    let decay = match &upstream.balance {
        crate::upstream::Balance::P2cEwma { decay } => *decay,
        _ => Duration::from_secs(10),
    };
    let sample = if result == TryResult::GatewayFailure { rtt.max(Duration::from_secs(1)) } else { rtt };
    ep.observe_rtt(sample, decay, crate::clock::at(t1));
    if let Some(m) = &ep.metrics {
        let status = match outcome {
            Outcome::Response { resp, .. } => Some(resp.status().as_u16()),
            Outcome::Failed(..) => None,
        };
        m.record(status, rtt.as_secs_f64());
    }
}
