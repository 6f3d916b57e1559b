//! Phase 1, the request filter: limits on the head, then one authority and one normalised
//! path, the ones routed on and forwarded.

use super::context::RequestCtx;
use super::headers::split_host;
use crate::compile::Snapshot;
use crate::error::GatewayError;
use http::header::{self, HeaderValue};
use http::{Request, Uri};

/// Checks the head's limits and fixes its authority and path. Returns whether the path had
/// dot segments (routes may refuse them).
pub(crate) fn run<B>(_ctx: &mut RequestCtx, snap: &Snapshot, req: &mut Request<B>) -> Result<bool, GatewayError> {
    let limits = &snap.config.limits;
    if req.headers().len() > limits.max_headers {
        return Err(GatewayError::headers_too_large(format!("more than {} request headers", limits.max_headers)));
    }
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes as u64 > limits.max_header_bytes.0 {
        return Err(GatewayError::headers_too_large(format!(
            "request headers exceed {} bytes",
            limits.max_header_bytes.0
        )));
    }
    one_authority(req).map_err(GatewayError::bad_request)?;
    match crate::path::normalize(req.uri().path(), snap.path_rules) {
        Ok(None) => Ok(false),
        Ok(Some(n)) => match with_path(req.uri(), &n.path) {
            Some(uri) => {
                *req.uri_mut() = uri;
                Ok(n.had_dots)
            }
            None => Err(GatewayError::bad_request("request path cannot be normalised")),
        },
        Err(e) => Err(GatewayError::bad_request(e.message())),
    }
}

/// Makes the request carry exactly one authority: a second Host header is refused (RFC 9112
/// §3.2), and an absolute-form target's authority replaces the Host header (§3.2.2), so the
/// route is chosen on the same host the upstream is told.
fn one_authority<B>(req: &mut Request<B>) -> Result<(), &'static str> {
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
