//! Phase 7, the response filter: the upstream's response on its way back, with hop-by-hop
//! headers removed (or the connection handed to a tunnel after `101`), the route's header
//! changes, the request id and rate-limit headers. The body streams back under the route's
//! idle timeout and carries the telemetry record to the log phase.

use super::context::{RequestCtx, X_REQUEST_ID};
use super::headers::{grpc_status_header, rate_limit_headers, strip_hop_by_hop};
use crate::body::{ClientBody, Guard, Watched};
use crate::router::Route;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

pub(super) fn run(
    ctx: &mut RequestCtx,
    route: &Route,
    mut resp: Response<Incoming>,
    on_upgrade: Option<OnUpgrade>,
) -> Response<ClientBody> {
    if let (Some(down), StatusCode::SWITCHING_PROTOCOLS) = (on_upgrade, resp.status()) {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(crate::tunnel::run(down, up, route.timeouts.idle));
    } else {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    let (mut parts, body) = resp.into_parts();
    route.response_headers.apply(&mut parts.headers);
    parts.headers.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    if let Some(r) = &ctx.rate_limit {
        rate_limit_headers(&mut parts.headers, &r.decision, r.rate, r.burst);
    }
    if let Some(f) = ctx.finish.as_mut() {
        f.status = parts.status.as_u16();
        f.grpc_status = grpc_status_header(&parts.headers);
    }
    let guard = Guard { limit: u64::MAX, idle: route.timeouts.idle, fault: None };
    Response::from_parts(parts, ClientBody::Stream(Watched::new(body, guard, ctx.finish.take())))
}
