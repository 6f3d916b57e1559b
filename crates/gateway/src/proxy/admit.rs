//! Phase 3, auth and limits: who the client is (401/403), its rate limits (429), the body
//! size it announces (413) and the service circuit (503 fast-fail). The service circuit's
//! permit is held by the request context and recorded once the tries are over.

use super::Downstream;
use super::context::{RateLimitSeen, RequestCtx};
use super::headers::{grpc_status_header, is_grpc_failure};
use crate::error::{GatewayError, Side};
use crate::router::Route;
use http::Request;
use http::header::{self, HeaderValue};

/// What admission learnt about the request.
pub(crate) struct Admitted {
    /// The announced body length, if any.
    pub content_length: Option<u64>,
}

pub(crate) fn run<B>(
    ctx: &mut RequestCtx,
    route: &Route,
    peer: &Downstream,
    req: &Request<B>,
) -> Result<Admitted, GatewayError> {
    if let Some(a) = &route.auth {
        match a.check(req.headers()) {
            Ok(id) => ctx.identity = Some(id),
            Err(crate::auth::Denied::Unauthenticated(m)) => return Err(GatewayError::unauthorized(m)),
            Err(crate::auth::Denied::Forbidden(m)) => return Err(GatewayError::forbidden(m)),
        }
    }
    if let Some(f) = ctx.finish.as_mut() {
        f.identity = ctx.identity.clone();
    }
    for l in &route.limits {
        let decision = l.check(peer.addr.ip(), ctx.identity.as_deref(), req.headers());
        let (rate, burst) = l.rate();
        if !decision.allowed {
            let retry_after = decision.retry_after;
            ctx.rate_limit = Some(RateLimitSeen { decision, rate, burst });
            return Err(GatewayError::rate_limited(retry_after));
        }
        if ctx.rate_limit.as_ref().is_none_or(|t| decision.remaining < t.decision.remaining) {
            ctx.rate_limit = Some(RateLimitSeen { decision, rate, burst });
        }
    }
    let content_length =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if content_length.is_some_and(|l| l > route.max_body) {
        return Err(GatewayError::body_too_large(route.max_body));
    }

    let upstream = &route.upstream;
    if let Some(b) = &upstream.breaker {
        match b.try_acquire() {
            Ok(p) => ctx.service_permit = Some(p),
            Err(r) => {
                let circuit = format!("service:{}", upstream.name);
                ctx.refused_by_circuit = HeaderValue::from_str(&circuit).ok();
                return Err(GatewayError::circuit_open(&circuit, r.retry_after));
            }
        }
    }
    upstream.budget.deposit();
    Ok(Admitted { content_length })
}

/// Records the request's outcome with the service circuit, if it holds a permit: a 5xx, a
/// failing gRPC status or an upstream-side error counts as a failure.
pub(crate) fn settle_service_circuit<R: super::exchange::UpstreamHead>(
    ctx: &mut RequestCtx,
    route: &Route,
    outcome: &Result<R, GatewayError>,
) {
    let Some(permit) = ctx.service_permit.take() else { return };
    let Some(b) = permit.breaker() else { return };
    let failure = match outcome {
        Ok(r) => r.status().as_u16() >= 500 || grpc_status_header(r.headers()).is_some_and(is_grpc_failure),
        Err(e) => e.side == Side::Upstream,
    };
    let slow = ctx.started.elapsed() > b.settings().slow_call;
    if let Some(state) = permit.record(crate::circuit::Outcome { failure, slow }) {
        tracing::info!(service = %route.upstream.name, state = ?state, "service circuit changed state");
    }
}
