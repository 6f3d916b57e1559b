//! Compiled routes and request matching. Routes are tried in config order; the first whose
//! every condition holds wins.

use crate::auth::Authenticator;
use crate::config::RouteConfig;
use crate::ratelimit::{Decision, GlobalLimiter, KeyedLimiter};
use crate::retry::RetryPolicy;
use crate::telemetry::RouteMetrics;
use crate::upstream::Upstream;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How the path must look.
pub enum PathMatch {
    Any,
    Exact(String),
    /// Prefix on segment boundaries (without a trailing slash, unless it is `/`).
    Prefix(String),
    Regex(Regex),
}

/// How the host must look.
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`: stored as `.example.com`.
    Suffix(String),
}

/// One header condition.
pub enum HeaderCond {
    Present(HeaderName),
    Absent(HeaderName),
    Equals(HeaderName, HeaderValue),
    Regex(HeaderName, Regex),
}

/// All conditions of a route.
pub struct Matcher {
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderCond>,
}

impl Matcher {
    pub fn matches(&self, method: &Method, host: &str, path: &str, headers: &HeaderMap) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        match &self.host {
            Some(HostMatch::Exact(h)) if !h.eq_ignore_ascii_case(host) => return false,
            Some(HostMatch::Suffix(s)) => {
                let ok = host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s);
                if !ok {
                    return false;
                }
            }
            _ => {}
        }
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Regex(r) => r.is_match(path),
        };
        if !path_ok {
            return false;
        }
        self.headers.iter().all(|c| match c {
            HeaderCond::Present(n) => headers.contains_key(n),
            HeaderCond::Absent(n) => !headers.contains_key(n),
            HeaderCond::Equals(n, v) => headers.get_all(n).iter().any(|x| x == v),
            HeaderCond::Regex(n, r) => headers.get_all(n).iter().any(|x| x.to_str().is_ok_and(|s| r.is_match(s))),
        })
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.starts_with(prefix) && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// Replaces the matched `prefix` of `path` with `with`, keeping exactly one slash at the seam.
pub fn rewrite_prefix(prefix: &str, with: &str, path: &str) -> String {
    let rest = if prefix == "/" { path } else { &path[prefix.len().min(path.len())..] };
    let mut out = String::with_capacity(with.len() + rest.len() + 1);
    out.push_str(with.trim_end_matches('/'));
    if rest.is_empty() {
        if out.is_empty() || with.ends_with('/') {
            out.push('/');
        }
    } else {
        if !rest.starts_with('/') {
            out.push('/');
        }
        out.push_str(rest);
    }
    out
}

/// Header changes.
#[derive(Default)]
pub struct HeaderOps {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn apply(&self, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// What a rate limit counts per.
pub enum KeySource {
    ClientIp,
    Identity,
    Header(HeaderName),
}

/// A compiled rate limit.
pub enum Limiter {
    Route(GlobalLimiter),
    Keyed(KeyedLimiter, KeySource),
}

impl Limiter {
    /// Applies the limit; a request without the key (no header, no identity) is counted
    /// under a shared empty key so it cannot dodge the limit.
    pub fn check(&self, client: IpAddr, identity: Option<&str>, headers: &HeaderMap) -> Decision {
        match self {
            Limiter::Route(g) => g.check(),
            Limiter::Keyed(k, KeySource::ClientIp) => k.check(&client),
            Limiter::Keyed(k, KeySource::Identity) => k.check(identity.unwrap_or("")),
            Limiter::Keyed(k, KeySource::Header(n)) => k.check(headers.get(n).map(|v| v.as_bytes()).unwrap_or(b"")),
        }
    }

    pub fn rate(&self) -> (f64, u32) {
        let g = match self {
            Limiter::Route(g) => g.gcra(),
            Limiter::Keyed(k, _) => k.gcra(),
        };
        (g.rate_per_second, g.burst())
    }
}

/// Timeouts of a route.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub per_try: Duration,
    pub request: Duration,
    pub idle: Duration,
}

/// A compiled route.
pub struct Route {
    pub name: Arc<str>,
    pub matcher: Matcher,
    pub upstream: Arc<Upstream>,
    pub rewrite_prefix: Option<(String, String)>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub max_body: u64,
    pub limits: Vec<Limiter>,
    pub auth: Option<Authenticator>,
    pub sample_rate: f64,
    /// Refuse requests whose path had dot segments before normalisation.
    pub reject_dot_segments: bool,
    pub metrics: Option<Arc<RouteMetrics>>,
    pub config: RouteConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_on_segment_boundaries() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/users"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn rewrites_keep_one_slash() {
        assert_eq!(rewrite_prefix("/api", "/", "/api/users"), "/users");
        assert_eq!(rewrite_prefix("/api", "/", "/api"), "/");
        assert_eq!(rewrite_prefix("/api", "/v2", "/api/users"), "/v2/users");
        assert_eq!(rewrite_prefix("/api", "/v2/", "/api/users"), "/v2/users");
        assert_eq!(rewrite_prefix("/api", "/v2", "/api"), "/v2");
        assert_eq!(rewrite_prefix("/", "/svc", "/x"), "/svc/x");
    }
}
