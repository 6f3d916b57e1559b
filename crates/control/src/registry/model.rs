//! Registration requests as clients send them, their validation, and the stored form.

use crate::error::{ControlError, Result};
use serde::{Deserialize, Serialize};
use signalbox_core::config::Dur;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most tags, meta entries and checks per instance, and their sizes.
pub const MAX_TAGS: usize = 64;
pub const MAX_META: usize = 64;
pub const MAX_CHECKS: usize = 8;
pub const MAX_TEXT: usize = 512;

/// Health of a check or an instance, worst first when ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Critical,
    Warning,
    Passing,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// `POST /api/registry/instances`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Service name.
    pub service: String,
    /// Instance id, unique in the registry (default: `service-address-port`).
    #[serde(default)]
    pub id: Option<String>,
    /// IP address or host name the instance is reached at.
    pub address: String,
    pub port: i64,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Relative weight for balancers that honour weights (1 to 1000).
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub checks: Vec<CheckRequest>,
}

/// One health check: exactly one of `http`, `tcp`, `grpc`, `ttl`.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// A path on the instance (`/health`) or a full `http://` or `https://` URL.
    #[serde(default)]
    pub http: Option<String>,
    /// For `https://` checks: accept any certificate (Consul's `TLSSkipVerify`), for
    /// instances with self-signed certificates. Default: verify against the Mozilla roots.
    #[serde(default)]
    pub tls_skip_verify: Option<bool>,
    /// `host:port` to connect to (empty: the instance's address and port).
    #[serde(default)]
    pub tcp: Option<String>,
    /// gRPC health-checking protocol: the service name to ask about (empty: the server).
    #[serde(default)]
    pub grpc: Option<String>,
    /// `host:port` of the gRPC server (default: the instance's address and port).
    #[serde(default)]
    pub grpc_address: Option<String>,
    /// The instance must report within this time (`PUT .../ttl`).
    #[serde(default)]
    pub ttl: Option<Dur>,
    #[serde(default)]
    pub interval: Option<Dur>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Consecutive successes needed to become passing.
    #[serde(default)]
    pub success_threshold: Option<u32>,
    /// Consecutive failures needed to become critical.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Remove the instance after being critical this long.
    #[serde(default)]
    pub deregister_after: Option<Dur>,
    /// Status before the first result (default critical, as Consul does).
    #[serde(default)]
    pub initial_status: Option<Status>,
}

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CheckKind {
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tls_skip_verify: bool,
    },
    Tcp {
        address: String,
    },
    Grpc {
        address: String,
        service: String,
    },
    Ttl {
        ttl_ms: u64,
    },
}

/// A validated check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub kind: CheckKind,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    pub deregister_after_ms: Option<u64>,
    pub initial_status: Status,
}

impl CheckSpec {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// A validated registration, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub service: String,
    pub id: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub weight: u32,
    pub checks: Vec<CheckSpec>,
}

impl Registration {
    /// `address:port`, bracketing IPv6.
    pub fn authority(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn id_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?' && b != b'#')
}

fn host_ok(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl RegisterRequest {
    /// Validates into a [`Registration`]; the error names the first bad field.
    pub fn validate(self) -> Result<Registration> {
        if !name_ok(&self.service) {
            return Err(ControlError::invalid("service", "must be 1-128 letters, digits, `-`, `_` or `.`"));
        }
        if !host_ok(&self.address) {
            return Err(ControlError::invalid("address", "must be an IP address or a host name"));
        }
        let port = u16::try_from(self.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ControlError::invalid("port", "must be between 1 and 65535"))?;
        let id = self.id.unwrap_or_else(|| format!("{}-{}-{}", self.service, self.address, port));
        if !id_ok(&id) {
            return Err(ControlError::invalid("id", "must be 1-256 printable characters without `/`, `?` or `#`"));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(ControlError::limit("tags", format!("at most {MAX_TAGS} tags")));
        }
        if let Some(i) = self.tags.iter().position(|t| t.is_empty() || t.len() > MAX_TEXT) {
            return Err(ControlError::invalid(format!("tags[{i}]"), format!("must be 1-{MAX_TEXT} characters")));
        }
        if self.meta.len() > MAX_META {
            return Err(ControlError::limit("meta", format!("at most {MAX_META} entries")));
        }
        if let Some((k, _)) = self.meta.iter().find(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > MAX_TEXT) {
            return Err(ControlError::invalid(
                format!("meta.{k}"),
                format!("keys are 1-128 characters, values at most {MAX_TEXT}"),
            ));
        }
        let weight = self.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            return Err(ControlError::invalid("weight", "must be between 1 and 1000"));
        }
        if self.checks.len() > MAX_CHECKS {
            return Err(ControlError::limit("checks", format!("at most {MAX_CHECKS} checks")));
        }
        let mut checks = Vec::new();
        for (i, c) in self.checks.into_iter().enumerate() {
            let default_id = if i == 0 { format!("service:{id}") } else { format!("service:{id}:{}", i + 1) };
            checks.push(c.validate(&format!("checks[{i}]"), default_id, &self.address, port)?);
        }
        Ok(Registration {
            service: self.service,
            id,
            address: self.address,
            port,
            tags: self.tags,
            meta: self.meta,
            weight,
            checks,
        })
    }
}

impl CheckRequest {
    pub fn validate(self, at: &str, default_id: String, address: &str, port: u16) -> Result<CheckSpec> {
        let host = if address.contains(':') { format!("[{address}]") } else { address.to_owned() };
        let given = [self.http.is_some(), self.tcp.is_some(), self.grpc.is_some(), self.ttl.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given != 1 {
            return Err(ControlError::invalid(at, "give exactly one of `http`, `tcp`, `grpc` or `ttl`"));
        }
        let kind = if let Some(h) = self.http {
            let url = if h.starts_with("http://") || h.starts_with("https://") {
                h
            } else if h.starts_with('/') {
                format!("http://{host}:{port}{h}")
            } else {
                return Err(ControlError::invalid(
                    format!("{at}.http"),
                    "must be a path like /health or an http:// or https:// URL",
                ));
            };
            if url.parse::<http::Uri>().map(|u| u.authority().is_none()).unwrap_or(true) {
                return Err(ControlError::invalid(format!("{at}.http"), "is not a valid URL"));
            }
            CheckKind::Http { url, tls_skip_verify: self.tls_skip_verify.unwrap_or(false) }
        } else if let Some(t) = self.tcp {
            let address = if t.is_empty() { format!("{host}:{port}") } else { t };
            if address.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(ControlError::invalid(format!("{at}.tcp"), "must be host:port"));
            }
            CheckKind::Tcp { address }
        } else if let Some(service) = self.grpc {
            let address = self.grpc_address.unwrap_or_else(|| format!("{host}:{port}"));
            if address.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(ControlError::invalid(format!("{at}.grpc_address"), "must be host:port"));
            }
            CheckKind::Grpc { address, service }
        } else {
            let ttl = self.ttl.map(|d| d.0).unwrap_or_default();
            if ttl < Duration::from_millis(100) || ttl > Duration::from_secs(86_400) {
                return Err(ControlError::invalid(format!("{at}.ttl"), "must be between 100ms and 24h"));
            }
            CheckKind::Ttl { ttl_ms: ttl.as_millis() as u64 }
        };
        let interval = self.interval.map(|d| d.0).unwrap_or(Duration::from_secs(10));
        if interval < Duration::from_millis(50) || interval > Duration::from_secs(3600) {
            return Err(ControlError::invalid(format!("{at}.interval"), "must be between 50ms and 1h"));
        }
        let timeout = self.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(2).min(interval));
        if timeout.is_zero() || timeout > interval {
            return Err(ControlError::invalid(
                format!("{at}.timeout"),
                "must be greater than zero and at most the interval",
            ));
        }
        let success_threshold = self.success_threshold.unwrap_or(1);
        let failure_threshold = self.failure_threshold.unwrap_or(1);
        for (field, v) in [("success_threshold", success_threshold), ("failure_threshold", failure_threshold)] {
            if !(1..=100).contains(&v) {
                return Err(ControlError::invalid(format!("{at}.{field}"), "must be between 1 and 100"));
            }
        }
        let deregister_after = self.deregister_after.map(|d| d.0);
        if deregister_after.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err(ControlError::invalid(format!("{at}.deregister_after"), "must be at least 1s"));
        }
        let id = self.id.unwrap_or(default_id);
        if !id_ok(&id) {
            return Err(ControlError::invalid(
                format!("{at}.id"),
                "must be 1-256 printable characters without `/`, `?` or `#`",
            ));
        }
        Ok(CheckSpec {
            name: self.name.unwrap_or_else(|| {
                format!(
                    "{} check",
                    match &kind {
                        CheckKind::Http { .. } => "HTTP",
                        CheckKind::Tcp { .. } => "TCP",
                        CheckKind::Grpc { .. } => "gRPC",
                        CheckKind::Ttl { .. } => "TTL",
                    }
                )
            }),
            id,
            kind,
            interval_ms: interval.as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
            success_threshold,
            failure_threshold,
            deregister_after_ms: deregister_after.map(|d| d.as_millis() as u64),
            initial_status: self.initial_status.unwrap_or(Status::Critical),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> Result<Registration> {
        serde_json::from_value::<RegisterRequest>(json).unwrap().validate()
    }

    #[test]
    fn validates_and_names_the_bad_field() {
        let ok = req(serde_json::json!({"service": "users", "address": "10.0.0.1", "port": 8080, "checks": [{"http": "/health", "interval": "1s"}]})).unwrap();
        assert_eq!(ok.id, "users-10.0.0.1-8080");
        assert_eq!(ok.checks[0].id, "service:users-10.0.0.1-8080");
        assert_eq!(
            ok.checks[0].kind,
            CheckKind::Http { url: "http://10.0.0.1:8080/health".into(), tls_skip_verify: false }
        );
        let field = |j| match req(j) {
            Err(ControlError::Invalid { field, .. } | ControlError::Limit { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(serde_json::json!({"service": "", "address": "a", "port": 1})), "service");
        assert_eq!(field(serde_json::json!({"service": "s", "address": "a b", "port": 1})), "address");
        assert_eq!(field(serde_json::json!({"service": "s", "address": "a", "port": 70000})), "port");
        assert_eq!(
            field(
                serde_json::json!({"service": "s", "address": "a", "port": 1, "checks": [{"http": "/h", "tcp": ""}]})
            ),
            "checks[0]"
        );
        assert_eq!(
            field(serde_json::json!({"service": "s", "address": "a", "port": 1, "checks": [{"ttl": "1ms"}]})),
            "checks[0].ttl"
        );
        assert_eq!(
            field(
                serde_json::json!({"service": "s", "address": "a", "port": 1, "checks": [{"tcp": "", "interval": "1s", "timeout": "2s"}]})
            ),
            "checks[0].timeout"
        );
        assert_eq!(
            field(serde_json::json!({"service": "s", "address": "a", "port": 1, "tags": vec!["t"; 100]})),
            "tags"
        );
    }
}
