//! The request path: a fixed pipeline of phases run for every request, each a function over
//! a per-request `RequestCtx` that returns a typed [`GatewayError`] (the side that failed
//! and whether a retry is allowed), as pingora's `ProxyHttp` phases do:
//!
//! 1. `request_filter`: header count and size (431), one authority and one normalised path
//!    (400); trace context and request id are read into the context first. (An HTTP/1
//!    request's framing was already checked before hyper parsed it: [`crate::h1`].)
//! 2. `route`: the Host (400), the route (404), dot segments the route refuses (400),
//!    sampling, and the telemetry record.
//! 3. `admit`: auth (401/403), rate limits (429), body size (413), the service circuit (503
//!    fast-fail, its permit held by the context).
//! 4. `upstream_request`: the request the upstream sees (hop-by-hop headers, forwarding
//!    headers, header changes, path rewrite) and its body, buffered when it may be replayed.
//! 5. `tries`: pick an endpoint (its breaker permit held by the try), send under the per-try
//!    timeout, classify into a response or a typed error, and retry where that error, the
//!    route's policy, the retry budget and the deadline allow.
//! 6. `response_filter`: hop-by-hop and header changes, upgrades, rate-limit headers; the
//!    body then streams back under the idle timeout.
//! 7. `log`: the telemetry record (metrics, spans, access log) completes when the body ends,
//!    or at once for an error the gateway answers itself.
//!
//! Breaker permits are guards: a request whose future is dropped mid-flight (the client went
//! away) releases them without an outcome.

mod admit;
mod context;
mod headers;
mod log;
mod request_filter;
mod response_filter;
mod route;
mod tries;
mod upstream_request;

use crate::body::ClientBody;
use crate::compile::Snapshot;
use crate::error::GatewayError;
use crate::telemetry::Telemetry;
use arc_swap::ArcSwap;
use context::RequestCtx;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client side of a request, as far as the phases need it (the server keeps the rest
/// of what it knows about the connection).
#[derive(Clone, Copy, Debug)]
pub struct Downstream {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// State shared by every connection of the gateway.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub telemetry: Arc<Telemetry>,
    /// Traffic policies by service, apart from the snapshot so config reloads keep them.
    pub traffic: Arc<crate::traffic::TrafficState>,
}

/// Handles one request. Never fails: every error becomes a response.
pub async fn handle(shared: Arc<Shared>, peer: Downstream, req: Request<Incoming>) -> Response<ClientBody> {
    let snap = shared.snapshot.load_full();
    let version = req.version();
    let mut ctx = RequestCtx::new(req.headers());
    let mut resp = match run(&mut ctx, &shared, &snap, &peer, req).await {
        Ok(resp) => resp,
        Err(e) => ctx.fail(e),
    };
    // The client hears its own protocol version, whatever the upstream spoke (an HTTP/1.0
    // upstream must not turn an HTTP/1.1 client's keep-alive connection into HTTP/1.0).
    *resp.version_mut() = version;
    resp
}

/// The phases in order; the first error ends the request with the gateway's own answer.
async fn run(
    ctx: &mut RequestCtx,
    shared: &Shared,
    snap: &Snapshot,
    peer: &Downstream,
    mut req: Request<Incoming>,
) -> Result<Response<ClientBody>, GatewayError> {
    let had_dots = request_filter::run(ctx, snap, &mut req)?;
    let route = route::run(ctx, &shared.telemetry, snap, peer, &req, had_dots)?;
    let admitted = admit::run(ctx, &route, peer, &req)?;
    let split = shared
        .traffic
        .policy(&route.upstream.name)
        .map(|p| p.decide(&route.upstream, req.headers(), crate::clock::now()))
        .unwrap_or_default();
    let mirror_body = split.mirror.as_ref().map(|_| snap.config.traffic.mirror_max_body.0);
    let mut prepared = upstream_request::run(ctx, &route, peer, req, &admitted, mirror_body).await?;
    if let Some(version) = split.mirror {
        upstream_request::mirror(&shared.traffic.mirrors, &route, version, &prepared);
    }
    let on_upgrade = prepared.on_upgrade.take();
    let outcome = tries::run(ctx, &route, split.version.as_deref(), prepared).await;
    admit::settle_service_circuit(ctx, &route, &outcome);
    Ok(response_filter::run(ctx, &route, outcome?, on_upgrade))
}

#[cfg(test)]
mod tests;
