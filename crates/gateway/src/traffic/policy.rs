//! A traffic policy compiled for the request path, and the decision for one request: which
//! version serves it and whether it is mirrored.
//!
//! Order: the first matching pin; else the weights, drawn at random or, for sticky
//! requests, at the point the header or cookie value hashes to. A version with no available
//! endpoint gets nothing: the draw moves to the other weighted versions in proportion to
//! their weights (counted in `signalbox_gateway_traffic_fallbacks_total`), and to the whole
//! service when none is left.

use crate::upstream::Upstream;
use http::{HeaderMap, HeaderName};
use signalbox_core::metrics::{Counter, Registry};
use signalbox_core::traffic::{STICKY_POINTS, TrafficPolicy, sticky_point};
use std::sync::Arc;

/// Where a pin or stickiness reads its value.
#[derive(Clone, Debug)]
pub enum Source {
    Header(HeaderName),
    Cookie(String),
}

impl Source {
    fn new(header: &Option<String>, cookie: &Option<String>) -> Option<Source> {
        match (header, cookie) {
            (Some(h), _) => HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok().map(Source::Header),
            (None, Some(c)) => Some(Source::Cookie(c.clone())),
            _ => None,
        }
    }

    /// The value in the request, if present.
    pub fn value<'a>(&self, headers: &'a HeaderMap) -> Option<&'a [u8]> {
        match self {
            Source::Header(h) => headers.get(h).map(|v| v.as_bytes()),
            Source::Cookie(c) => crate::upstream::cookie_value(headers, c),
        }
    }
}

struct CompiledPin {
    source: Source,
    value: Vec<u8>,
    version: Arc<str>,
}

/// A version's share: its range of sticky points ends at `end` (exclusive).
struct Range {
    version: Arc<str>,
    weight: u32,
    end: u32,
    fallbacks: Counter,
}

/// A policy ready for the request path.
pub struct CompiledPolicy {
    /// The document as stored.
    pub policy: TrafficPolicy,
    ranges: Vec<Range>,
    pins: Vec<CompiledPin>,
    sticky: Option<Source>,
    mirror: Option<(Arc<str>, u32)>,
    pin_fallbacks: Counter,
    whole_service: Counter,
}

/// The decision for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The version whose endpoints serve the request (`None`: any endpoint of the service).
    pub version: Option<Arc<str>>,
    /// The version the request is copied to.
    pub mirror: Option<Arc<str>>,
}

impl CompiledPolicy {
    pub fn new(service: &str, policy: TrafficPolicy, reg: &Registry) -> Self {
        let fallback = |version: &str| {
            reg.counter(
                "signalbox_gateway_traffic_fallbacks_total",
                "Requests a traffic policy meant for a version with no available endpoint, sent to another version instead (`version`: the one that had none; `*`: no weighted version had one, the whole service served).",
                &[("service", service), ("version", version)],
            )
        };
        let mut end = 0;
        let ranges = policy
            .weights
            .iter()
            .map(|(v, w)| {
                end += w * (STICKY_POINTS / 100);
                Range { version: v.as_str().into(), weight: *w, end, fallbacks: fallback(v) }
            })
            .collect();
        let pins = policy
            .pins
            .iter()
            .filter_map(|p| {
                Some(CompiledPin {
                    source: Source::new(&p.header, &p.cookie)?,
                    value: p.value.as_bytes().to_vec(),
                    version: p.version.as_str().into(),
                })
            })
            .collect();
        CompiledPolicy {
            ranges,
            pins,
            sticky: policy.sticky.as_ref().and_then(|s| Source::new(&s.header, &s.cookie)),
            mirror: policy.mirror.as_ref().filter(|m| m.percent > 0).map(|m| (m.version.as_str().into(), m.percent)),
            pin_fallbacks: fallback("pinned"),
            whole_service: fallback("*"),
            policy,
        }
    }

    /// Decides which version serves a request, and whether it is mirrored.
    pub fn decide(&self, up: &Upstream, headers: &HeaderMap, now: u64) -> Decision {
        let version = self.choose(up, headers, now);
        let mirror = match &self.mirror {
            // A request already served by the mirror version is not sent there twice.
            Some((v, pct)) if version.as_ref() != Some(v) && fastrand::u32(..100) < *pct => Some(v.clone()),
            _ => None,
        };
        Decision { version, mirror }
    }

    fn choose(&self, up: &Upstream, headers: &HeaderMap, now: u64) -> Option<Arc<str>> {
        for p in &self.pins {
            if p.source.value(headers) == Some(p.value.as_slice()) {
                if up.version_available(&p.version, now) {
                    return Some(p.version.clone());
                }
                self.pin_fallbacks.inc();
                break;
            }
        }
        if self.ranges.is_empty() {
            return None;
        }
        let point = match self.sticky.as_ref().and_then(|s| s.value(headers)) {
            Some(v) => sticky_point(v),
            None => fastrand::u32(..STICKY_POINTS),
        };
        // Invariant: validated weights sum to 100, so the last range ends at STICKY_POINTS.
        let first = self.ranges.iter().find(|r| point < r.end)?;
        if up.version_available(&first.version, now) {
            return Some(first.version.clone());
        }
        first.fallbacks.inc();
        // Spread the point over the versions that can serve, in proportion to their weights
        // (the same sticky user lands on the same one while nothing changes).
        let open: Vec<&Range> =
            self.ranges.iter().filter(|r| r.weight > 0 && up.version_available(&r.version, now)).collect();
        let total: u32 = open.iter().map(|r| r.weight).sum();
        if total == 0 {
            self.whole_service.inc();
            return None;
        }
        let mut at = point % total;
        for r in open {
            if at < r.weight {
                return Some(r.version.clone());
            }
            at -= r.weight;
        }
        None
    }
}
