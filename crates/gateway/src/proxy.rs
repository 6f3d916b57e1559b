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
//!    Then the service's traffic policy, if it has one ([`crate::traffic`]), picks the
//!    version whose endpoints serve the request and whether a copy is mirrored.
//! 4. `upstream_request`: the request the upstream sees (hop-by-hop headers, forwarding
//!    headers, header changes, path rewrite); the exchange then prepares its body,
//!    buffered when it may be replayed or mirrored. A mirror copy starts here, on its own
//!    task.
//! 5. `tries`: pick an endpoint within the chosen version (its breaker permit held by the
//!    try), send under the per-try timeout, classify into a response or a typed error, and
//!    retry where that error, the route's policy, the retry budget and the deadline allow.
//! 6. `response_filter`: hop-by-hop and header changes, upgrades, rate-limit headers; the
//!    body then streams back under the idle timeout.
//! 7. `log`: the telemetry record (metrics, spans, access log) completes when the body ends,
//!    or at once for an error the gateway answers itself.
//!
//! Both front ends run the same phases ([`run`]): hyper's server through
//! [`handle`], the HTTP/1 fast path through [`crate::fast`]. What differs between them is behind the
//! [`Exchange`] trait: where the request body comes from, how a try reaches the upstream
//! (hyper's pooled client, or the fast path's per-worker HTTP/1 pools) and what the
//! upstream's response is.
//!
//! Breaker permits are guards: a request whose future is dropped mid-flight (the client went
//! away) releases them without an outcome.

mod admit;
pub(crate) mod context;
pub(crate) mod exchange;
mod headers;
mod hyper_exchange;
mod log;
mod request_filter;
mod response_filter;
mod route;
mod tries;
mod upstream_request;

use crate::body::{ClientBody, Guard, Watched};
use crate::compile::Snapshot;
use crate::error::GatewayError;
use crate::telemetry::Telemetry;
pub(crate) use admit::Admitted;
use arc_swap::ArcSwap;
use context::RequestCtx;
pub(crate) use exchange::{Exchange, UpstreamHead};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_exchange::HyperExchange;
use std::net::SocketAddr;
use std::sync::Arc;
pub(crate) use upstream_request::{Prepared, should_buffer};

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

/// Handles one request that hyper parsed (HTTP/2, TLS, upgrades, and HTTP/1.1 when the fast
/// path is off). Never fails: every error becomes a response.
pub async fn handle(shared: Arc<Shared>, peer: Downstream, req: Request<Incoming>) -> Response<ClientBody> {
    let snap = shared.snapshot.load_full();
    let version = req.version();
    let (parts, body) = req.into_parts();
    let mut req = Request::from_parts(parts, ());
    let mut ctx = RequestCtx::new(req.headers());
    let mut x = HyperExchange::new(body, &mut req);
    let mut resp = match run(&mut ctx, &shared, &snap, &peer, req, &mut x).await {
        Ok((route, mut resp)) => {
            if let (Some(down), StatusCode::SWITCHING_PROTOCOLS) = (x.on_upgrade.take(), resp.status()) {
                let up = hyper::upgrade::on(&mut resp);
                tokio::spawn(crate::tunnel::run(down, up, route.timeouts.idle));
            }
            let guard = Guard { limit: u64::MAX, idle: route.timeouts.idle, fault: None };
            let finish = ctx.finish.take();
            resp.map(|body| ClientBody::Stream(Watched::new(body, guard, finish)))
        }
        Err(e) => ctx.fail(e),
    };
    // The client hears its own protocol version, whatever the upstream spoke (an HTTP/1.0
    // upstream must not turn an HTTP/1.1 client's keep-alive connection into HTTP/1.0).
    *resp.version_mut() = version;
    resp
}

/// The phases in order, shared by both front ends (hyper's server and the HTTP/1 fast path):
/// the first error ends the request with the gateway's own answer. `x` carries the request
/// body and sends the tries; the response comes back with its head filtered and the
/// telemetry record still in `ctx.finish`, for the front end to stream the body under.
pub(crate) async fn run<X: Exchange>(
    ctx: &mut RequestCtx,
    shared: &Shared,
    snap: &Snapshot,
    peer: &Downstream,
    mut req: Request<()>,
    x: &mut X,
) -> Result<(Arc<crate::router::Route>, X::Response), GatewayError> {
    let had_dots = request_filter::run(ctx, snap, &mut req)?;
    let route = route::run(ctx, &shared.telemetry, snap, peer, &req, had_dots)?;
    let admitted = admit::run(ctx, &route, peer, &req)?;
    let split = shared
        .traffic
        .policy(&route.upstream.name)
        .map(|p| p.decide(&route.upstream, req.headers(), crate::clock::now()))
        .unwrap_or_default();
    let mut prepared = upstream_request::run(ctx, &route, peer, req)?;
    prepared.mirror_max_body = split.mirror.as_ref().map(|_| snap.config.traffic.mirror_max_body.0);
    x.prepare_body(ctx, &route, &admitted, &prepared).await?;
    if let Some(version) = split.mirror {
        upstream_request::mirror(&shared.traffic.mirrors, &route, version, &prepared, x.buffered_body());
    }
    let upgrade = prepared.upgrade;
    let outcome = tries::run(ctx, &route, split.version.as_deref(), prepared, x).await;
    if x.abandoned() {
        // The service permit goes back unrecorded too.
        ctx.service_permit = None;
        return Err(GatewayError::request_body_broken());
    }
    admit::settle_service_circuit(ctx, &route, &outcome);
    let mut resp = outcome?;
    response_filter::run(ctx, &route, &mut resp, upgrade);
    Ok((route, resp))
}

/// Whether the HTTP/1 fast path must leave `req` to hyper: its route's upstream speaks
/// HTTP/2 or TLS (gRPC included), which only hyper's client does. Routing here has no side
/// effects; the phases route again when the fast path keeps the request.
pub(crate) fn needs_hyper(snap: &Snapshot, req: &Request<()>) -> bool {
    if !snap.hyper_upstreams {
        return false;
    }
    let normalised = crate::path::normalize(req.uri().path(), snap.path_rules);
    let path = match &normalised {
        Ok(Some(n)) => n.path.as_str(),
        Ok(None) => req.uri().path(),
        // The request filter refuses it, on either path.
        Err(_) => return false,
    };
    let Ok(host) = route::request_host(req) else { return false };
    let Some(route) = snap.route_for(req.method(), &host, path, req.headers()) else { return false };
    let up = &route.upstream;
    up.tls.is_some()
        || match up.protocol {
            crate::upstream::Protocol::Http1 => false,
            crate::upstream::Protocol::Http2 => true,
            crate::upstream::Protocol::Auto => headers::is_grpc(req.headers()),
        }
}

#[cfg(test)]
mod tests;
