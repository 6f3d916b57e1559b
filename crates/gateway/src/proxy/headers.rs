//! Header helpers shared by the phases: hop-by-hop removal, forwarding headers, rate-limit
//! headers, host syntax and gRPC status.

use super::Downstream;
use crate::ratelimit::Decision;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};

pub(super) static X_CLIENT: HeaderName = HeaderName::from_static("x-signalbox-client");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The host part of a `host[:port]` (RFC 3986 reg-name, IPv4, or bracketed IPv6), checked.
pub(super) fn split_host(s: &str) -> Option<&str> {
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

pub(super) fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

pub(super) fn grpc_status_header(h: &HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// gRPC codes that mean the server failed (UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
/// INTERNAL, UNAVAILABLE, DATA_LOSS), as opposed to the caller's mistakes.
pub(super) fn is_grpc_failure(c: u32) -> bool {
    matches!(c, 2 | 4 | 8 | 13 | 14 | 15)
}

pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
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
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
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

pub(super) fn add_forwarded(h: &mut HeaderMap, peer: &Downstream, host_header: Option<&HeaderValue>) {
    use std::io::Write as _;
    // Formatted on the stack: this runs for every request.
    let mut buf = [0u8; 512];
    let mut w = std::io::Cursor::new(&mut buf[..]);
    let ok = match h.get(&X_FORWARDED_FOR) {
        Some(prev) => w.write_all(prev.as_bytes()).and_then(|_| write!(w, ", {}", peer.addr.ip())).is_ok(),
        None => write!(w, "{}", peer.addr.ip()).is_ok(),
    };
    let n = w.position() as usize;
    if ok && let Ok(v) = HeaderValue::from_bytes(&buf[..n]) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(if peer.tls { "https" } else { "http" }));
    }
    if let Some(host) = host_header
        && !h.contains_key(&X_FORWARDED_HOST)
    {
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
}

/// `RateLimit-*` headers as in the IETF httpapi draft, plus `RateLimit-Policy`.
pub(super) fn rate_limit_headers(h: &mut HeaderMap, d: &Decision, rate: f64, burst: u32) {
    let reset = d.reset.as_secs_f64().ceil() as u64;
    h.insert("ratelimit-limit", HeaderValue::from(burst));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
    let window = (burst as f64 / rate).ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&format!("{burst};w={window}")) {
        h.insert("ratelimit-policy", v);
    }
}
