//! Traffic policies: how the gateway shares a service's requests among its versions.
//!
//! A policy is a JSON document kept in central configuration under application
//! [`GATEWAY_APP`], profile [`TRAFFIC_PROFILE`], key = the service name, so it has a history
//! and rolls back like any config value. Every field is optional:
//!
//! ```json
//! {"weights": {"v1": 95, "v2": 5},
//!  "pins": [{"header": "x-canary", "value": "always", "version": "v2"},
//!           {"cookie": "canary", "value": "1", "version": "v2"}],
//!  "sticky": {"header": "x-user"},
//!  "mirror": {"version": "v2", "percent": 10}}
//! ```
//!
//! Weights are whole percentages summing to 100. A pin sends matching requests to its
//! version whatever the weights. Sticky requests hash the header or cookie value onto the
//! weight ranges (versions in name order, each owning `[start, start + weight)` of 10,000
//! points scaled from percent), so a user keeps its version while weights stay and only the
//! users whose point falls in a range that changed owner move when they change. A mirror
//! copies `percent`% of requests to a version and discards the answers.
//!
//! The control plane validates documents before storing them, the gateway again before
//! applying them (keeping the last good policy when one is bad); both call
//! [`TrafficPolicy::parse`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The central-configuration application that holds traffic policies.
pub const GATEWAY_APP: &str = "gateway";
/// The profile of traffic policies; the key is the service name.
pub const TRAFFIC_PROFILE: &str = "traffic";
/// The registry metadata key (and tag prefix `version=`) that names an instance's version.
pub const VERSION_KEY: &str = "version";
/// Points on the sticky hash ring: percent weights scale by 100 onto it.
pub const STICKY_POINTS: u32 = 10_000;

const MAX_PINS: usize = 32;
const MAX_VERSIONS: usize = 32;
const MAX_VALUE: usize = 256;

/// A service's traffic policy (see the module doc for the JSON form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Share of requests per version, in whole percent summing to 100.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// Requests matching a pin go to its version; the first matching pin wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<Pin>,
    /// Keep a user on one version by hashing this header or cookie onto the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// Copy a share of requests to a version, discarding its answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
}

/// A pin: a header or a cookie (exactly one) with a value, and the version it sends to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The exact value that matches.
    pub value: String,
    pub version: String,
}

/// What a sticky request is hashed on: a header or a cookie (exactly one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// Mirroring: `percent`% of requests are also sent to `version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub version: String,
    /// 0 to 100.
    pub percent: u32,
}

/// What is wrong with a policy document: the field (`weights.v2`, `pins[0].header`; empty
/// for the document as a whole) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError { field: field.into(), message: message.into() }
}

/// Whether `v` is a usable version name: 1-64 letters, digits, `-`, `_`, `.` or `+`.
pub fn version_ok(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

/// Header names are RFC 9110 tokens; the gateway compares them lower-case.
fn header_ok(h: &str) -> bool {
    !h.is_empty() && h.len() <= 128 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn cookie_ok(c: &str) -> bool {
    header_ok(c)
}

/// Exactly one of a header or a cookie, checked; `at` is the field path.
fn one_source(header: &Option<String>, cookie: &Option<String>, at: &str) -> Result<(), PolicyError> {
    match (header, cookie) {
        (Some(h), None) if header_ok(h) => Ok(()),
        (Some(h), None) => Err(err(format!("{at}.header"), format!("`{h}` is not a valid header name"))),
        (None, Some(c)) if cookie_ok(c) => Ok(()),
        (None, Some(c)) => Err(err(format!("{at}.cookie"), format!("`{c}` is not a valid cookie name"))),
        _ => Err(err(at, "give exactly one of `header` or `cookie`")),
    }
}

impl TrafficPolicy {
    /// Parses and validates a stored document.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let p: TrafficPolicy =
            serde_json::from_str(text).map_err(|e| err("", format!("is not a traffic policy document: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// Every request to `version`.
    pub fn all_to(version: &str) -> Self {
        TrafficPolicy { weights: BTreeMap::from([(version.to_owned(), 100)]), ..Default::default() }
    }

    /// The document as stored.
    pub fn to_json(&self) -> String {
        // Invariant: a struct of strings, maps and integers always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.weights.len() > MAX_VERSIONS {
            return Err(err("weights", format!("at most {MAX_VERSIONS} versions")));
        }
        let mut sum = 0u32;
        for (v, w) in &self.weights {
            if !version_ok(v) {
                return Err(err(format!("weights.{v}"), "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
            }
            if *w > 100 {
                return Err(err(format!("weights.{v}"), format!("{w} is not a percentage (0 to 100)")));
            }
            sum += w;
        }
        if !self.weights.is_empty() && sum != 100 {
            return Err(err("weights", format!("must sum to 100; they sum to {sum}")));
        }
        if self.pins.len() > MAX_PINS {
            return Err(err("pins", format!("at most {MAX_PINS} pins")));
        }
        for (i, p) in self.pins.iter().enumerate() {
            let at = format!("pins[{i}]");
            one_source(&p.header, &p.cookie, &at)?;
            if p.value.is_empty() || p.value.len() > MAX_VALUE || p.value.bytes().any(|b| b.is_ascii_control()) {
                return Err(err(format!("{at}.value"), format!("must be 1-{MAX_VALUE} printable characters")));
            }
            if !version_ok(&p.version) {
                return Err(err(format!("{at}.version"), "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
            }
        }
        if let Some(s) = &self.sticky {
            one_source(&s.header, &s.cookie, "sticky")?;
        }
        if let Some(m) = &self.mirror {
            if !version_ok(&m.version) {
                return Err(err("mirror.version", "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
            }
            if m.percent > 100 {
                return Err(err("mirror.percent", format!("{} is not a percentage (0 to 100)", m.percent)));
            }
        }
        Ok(())
    }

    /// Every version the policy names (weights, pins, mirror), sorted.
    pub fn versions(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.weights.keys().map(String::as_str).collect();
        v.extend(self.pins.iter().map(|p| p.version.as_str()));
        v.extend(self.mirror.iter().map(|m| m.version.as_str()));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The version whose weight range holds `point` (`0..STICKY_POINTS`): versions in name
    /// order, each owning `weight × 100` points. `None` without weights.
    pub fn version_at(&self, point: u32) -> Option<&str> {
        let mut end = 0;
        for (v, w) in &self.weights {
            end += w * (STICKY_POINTS / 100);
            if point < end {
                return Some(v);
            }
        }
        None
    }
}

/// The sticky point of a header or cookie value, in `0..STICKY_POINTS`: FNV-1a with a final
/// mix, the same on every node and in every build.
pub fn sticky_point(value: &[u8]) -> u32 {
    (crate::partition::stable_hash(value) % u64::from(STICKY_POINTS)) as u32
}

/// An instance's version from its registry metadata (`version`) or a `version=…` tag (as
/// Consul users tag instances); metadata wins.
pub fn version_of(meta: &BTreeMap<String, String>, tags: &[String]) -> Option<String> {
    if let Some(v) = meta.get(VERSION_KEY).filter(|v| version_ok(v)) {
        return Some(v.clone());
    }
    tags.iter()
        .filter_map(|t| t.strip_prefix("version=").or_else(|| t.strip_prefix("version:")))
        .find(|v| version_ok(v))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_full_document() {
        let p = TrafficPolicy::parse(
            r#"{"weights": {"v1": 95, "v2": 5},
                "pins": [{"header": "x-canary", "value": "always", "version": "v2"},
                         {"cookie": "canary", "value": "1", "version": "v2"}],
                "sticky": {"header": "x-user"},
                "mirror": {"version": "v2", "percent": 10}}"#,
        )
        .unwrap();
        assert_eq!(p.weights["v2"], 5);
        assert_eq!(p.pins[1].cookie.as_deref(), Some("canary"));
        assert_eq!(p.mirror.as_ref().unwrap().percent, 10);
        assert_eq!(TrafficPolicy::parse(&p.to_json()).unwrap(), p);
        assert_eq!(TrafficPolicy::parse("{}").unwrap(), TrafficPolicy::default());
    }

    #[test]
    fn bad_documents_name_the_field() {
        let field = |doc: &str| TrafficPolicy::parse(doc).unwrap_err().field;
        assert_eq!(field(r#"{"weights": {"v1": 90, "v2": 5}}"#), "weights");
        assert_eq!(field(r#"{"weights": {"v1": 150}}"#), "weights.v1");
        assert_eq!(field(r#"{"weights": {"v 1": 100}}"#), "weights.v 1");
        assert_eq!(field(r#"{"pins": [{"value": "a", "version": "v2"}]}"#), "pins[0]");
        assert_eq!(field(r#"{"pins": [{"header": "x a", "value": "a", "version": "v2"}]}"#), "pins[0].header");
        assert_eq!(field(r#"{"pins": [{"header": "x", "value": "", "version": "v2"}]}"#), "pins[0].value");
        assert_eq!(field(r#"{"sticky": {"header": "a", "cookie": "b"}}"#), "sticky");
        assert_eq!(field(r#"{"mirror": {"version": "v2", "percent": 101}}"#), "mirror.percent");
        assert_eq!(field(r#"{"wieghts": {}}"#), "");
        assert_eq!(field("not json"), "");
    }

    #[test]
    fn sticky_ranges_follow_version_order() {
        let mut p = TrafficPolicy::parse(r#"{"weights": {"v1": 90, "v2": 10}}"#).unwrap();
        assert_eq!(p.version_at(0), Some("v1"));
        assert_eq!(p.version_at(8_999), Some("v1"));
        assert_eq!(p.version_at(9_000), Some("v2"));
        assert_eq!(p.version_at(9_999), Some("v2"));
        p.weights.insert("v1".into(), 70);
        p.weights.insert("v2".into(), 30);
        assert_eq!(p.version_at(6_999), Some("v1"));
        assert_eq!(p.version_at(7_000), Some("v2"));
        // Points spread evenly.
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            buckets[(sticky_point(format!("user-{i}").as_bytes()) / 1_000) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| (850..1150).contains(b)), "{buckets:?}");
    }

    #[test]
    fn versions_come_from_meta_or_tags() {
        let meta = BTreeMap::from([("version".to_owned(), "v3".to_owned())]);
        assert_eq!(version_of(&meta, &["version=v2".into()]).as_deref(), Some("v3"));
        assert_eq!(version_of(&BTreeMap::new(), &["a".into(), "version=v2".into()]).as_deref(), Some("v2"));
        assert_eq!(version_of(&BTreeMap::new(), &["v2".into()]), None);
    }
}
