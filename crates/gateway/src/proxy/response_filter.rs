//! Phase 7, the response filter: the upstream's response on its way back, with hop-by-hop
//! headers removed (or the connection handed to a tunnel after `101`), the route's header
//! changes, the request id and rate-limit headers. The front end then streams the body back
//! under the route's idle timeout, carrying the telemetry record to the log phase.

use super::context::{RequestCtx, X_REQUEST_ID};
use super::exchange::UpstreamHead;
use super::headers::{grpc_status_header, rate_limit_headers, strip_hop_by_hop};
use crate::router::Route;
use http::StatusCode;

/// Filters the response head in place. `upgrade`: the client asked to upgrade, so a `101`
/// keeps its `Connection` and `Upgrade` headers (the front end then joins the tunnel).
pub(super) fn run<R: UpstreamHead>(ctx: &mut RequestCtx, route: &Route, resp: &mut R, upgrade: bool) {
    if !(upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS) {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    let status = resp.status();
    let headers = resp.headers_mut();
    route.response_headers.apply(headers);
    headers.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    if let Some(r) = &ctx.rate_limit {
        rate_limit_headers(headers, &r.decision, r.rate, r.burst);
    }
    if let Some(f) = ctx.finish.as_mut() {
        f.status = status.as_u16();
        f.grpc_status = grpc_status_header(headers);
    }
}
