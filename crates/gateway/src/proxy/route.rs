//! Phase 2, routing: the host the client addressed, the route, and with it sampling and the
//! request's telemetry record.

use super::Downstream;
use super::context::RequestCtx;
use super::headers::split_host;
use crate::compile::Snapshot;
use crate::error::GatewayError;
use crate::router::Route;
use crate::telemetry::Telemetry;
use http::{Request, Version, header};
use std::borrow::Cow;
use std::sync::Arc;

/// Chooses the route. `had_dots` says whether the path had dot segments before it was
/// normalised.
pub(crate) fn run<B>(
    ctx: &mut RequestCtx,
    tel: &Arc<Telemetry>,
    snap: &Snapshot,
    peer: &Downstream,
    req: &Request<B>,
    had_dots: bool,
) -> Result<Arc<Route>, GatewayError> {
    let host = request_host(req).map_err(GatewayError::bad_request)?;
    let Some(route) = snap.route_for(req.method(), &host, req.uri().path(), req.headers()) else {
        if tel.enabled() {
            ctx.finish = Some(super::log::new_finish(tel, None, req, &host, peer, ctx));
        }
        return Err(GatewayError::not_found());
    };
    let route = route.clone();
    if had_dots && route.reject_dot_segments {
        return Err(GatewayError::bad_request(crate::path::PathError::DotSegment.message()));
    }
    ctx.sampled =
        ctx.trace.sampled.unwrap_or_else(|| crate::telemetry::head_sampled(&ctx.trace.trace_id, route.sample_rate));
    if tel.enabled() {
        ctx.finish = Some(super::log::new_finish(tel, Some(&route), req, &host, peer, ctx));
    }
    Ok(route)
}

/// The host the client addressed, without port: from the URI (HTTP/2, absolute-form) or the
/// Host header. HTTP/1.1 requires one.
pub(crate) fn request_host<B>(req: &Request<B>) -> Result<Cow<'_, str>, &'static str> {
    fn lower(h: &str) -> Cow<'_, str> {
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
