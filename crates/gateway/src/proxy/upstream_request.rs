//! Phase 4, the upstream request: the head the upstream sees (hop-by-hop headers removed,
//! credentials stripped as configured, forwarding headers, the route's header changes and
//! path rewrite). The body is the front end's (see [`super::Exchange`]).

use super::Downstream;
use super::admit::Admitted;
use super::context::{RequestCtx, X_REQUEST_ID};
use super::headers::{X_CLIENT, add_forwarded, is_upgrade, strip_hop_by_hop};
use crate::error::GatewayError;
use crate::router::Route;
use crate::traffic::mirror::{Dropped, MirrorRequest, Mirrors};
use crate::upstream::Protocol;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri};
use std::sync::Arc;

/// The upstream request's head, ready for the tries (the front end's [`super::Exchange`]
/// holds the body).
pub(crate) struct Prepared {
    pub method: Method,
    pub headers: HeaderMap,
    pub path_and_query: PathAndQuery,
    pub use_h2: bool,
    /// The client asked to upgrade the connection (WebSocket).
    pub upgrade: bool,
    /// The method and route allow retrying a try the upstream may have seen.
    pub may_retry: bool,
    /// A traffic split mirrors this request: bodies up to this many bytes are buffered so
    /// the mirror gets a copy (set by the pipeline before the body is prepared).
    pub mirror_max_body: Option<u64>,
}

pub(super) fn run(
    ctx: &mut RequestCtx,
    route: &Route,
    peer: &Downstream,
    req: Request<()>,
) -> Result<Prepared, GatewayError> {
    let upstream = &route.upstream;
    // The Host the upstream sees: the one routed on (the request filter made the target's
    // authority and the Host header agree; HTTP/2 clients send only :authority).
    let upstream_host = match req.headers().get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => HeaderValue::from_str(req.uri().authority().map(|a| a.as_str()).unwrap_or("")).ok(),
    };
    let upgrade = is_upgrade(&req);
    let (parts, ()) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade);
    headers.remove(&X_CLIENT);
    if let Some(a) = &route.auth
        && a.strip_credentials
    {
        a.strip(&mut headers);
    }
    if let Some(id) = ctx.identity.as_deref().and_then(|i| HeaderValue::from_str(i).ok()) {
        headers.insert(X_CLIENT.clone(), id);
    }
    add_forwarded(&mut headers, peer, upstream_host.as_ref());
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
    let path_and_query = upstream_path(route, &parts.uri).map_err(GatewayError::bad_request)?;

    let method = parts.method;
    let idempotent =
        matches!(method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE);
    let may_retry = route.retry.attempts > 1 && (idempotent || route.retry.non_idempotent) && !upgrade;
    Ok(Prepared { method, headers, path_and_query, use_h2, upgrade, may_retry, mirror_max_body: None })
}

/// Whether a body is buffered so a retry can send it again: whenever a retry is possible at
/// all and the body is small (even a POST may be retried after a connect failure, which
/// needs the body again). A mirrored request's small body is buffered too, so the mirror
/// gets a copy.
pub(crate) fn should_buffer(route: &Route, admitted: &Admitted, prepared: &Prepared) -> bool {
    !prepared.upgrade
        && admitted.content_length.is_some_and(|l| {
            (route.retry.attempts > 1 && l <= route.retry.buffer_body_bytes)
                || prepared.mirror_max_body.is_some_and(|m| l <= m)
        })
}

/// Sends a copy of the prepared request to `version` (see [`crate::traffic::mirror`]);
/// `body` is the buffered body (`None`: it streams, and is not mirrored); upgrades are not
/// mirrored.
pub(super) fn mirror(
    mirrors: &Mirrors,
    route: &Arc<Route>,
    version: Arc<str>,
    req: &Prepared,
    body: Option<Option<bytes::Bytes>>,
) {
    let Some(body) = body else {
        mirrors.drop_one(Dropped::Body);
        return;
    };
    if req.upgrade {
        return;
    }
    let copy = MirrorRequest {
        method: req.method.clone(),
        headers: req.headers.clone(),
        path_and_query: req.path_and_query.clone(),
        body,
        use_h2: req.use_h2,
    };
    crate::traffic::mirror::launch(mirrors, route, version, copy);
}

fn upstream_path(route: &Route, uri: &Uri) -> Result<PathAndQuery, &'static str> {
    let Some((prefix, with)) = &route.rewrite_prefix else {
        return Ok(uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    };
    let mut p = crate::router::rewrite_prefix(prefix, with, uri.path());
    if let Some(q) = uri.query() {
        p.push('?');
        p.push_str(q);
    }
    p.parse().map_err(|_| "rewritten path is not valid")
}
