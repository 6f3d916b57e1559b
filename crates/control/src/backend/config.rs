//! The `[control]` section: which backend holds the control state, and how to reach etcd.
//!
//! ```toml
//! [control]
//! backend = "etcd"          # or "embedded", the default
//! [control.etcd]
//! endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
//! prefix = "/signalbox/"
//! ```

use serde::{Deserialize, Serialize};
use signalbox_core::config::{Dur, Problems};
use std::time::Duration;

/// Which backend holds the control state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The redb file in the data directory: one node.
    #[default]
    Embedded,
    /// An etcd cluster (v3 API) shared by every node.
    Etcd,
}

/// The `[control]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// `embedded` (the default: a file in the data directory) or `etcd`.
    pub backend: BackendKind,
    /// How to reach etcd, when `backend = "etcd"`.
    pub etcd: EtcdConfig,
    /// For `signalbox gateway`: the nodes to follow (console URLs), in order of preference;
    /// the gateway follows one and moves to the next when it fails. `--control-plane`
    /// replaces this list.
    pub control_planes: Vec<String>,
}

/// The `[control.etcd]` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://` or `https://`).
    pub endpoints: Vec<String>,
    /// Every key Signalbox writes starts with this; nodes with the same prefix share state.
    pub prefix: String,
    /// PEM file of the CA that signed the members' certificates (for `https://`).
    pub ca: Option<String>,
    /// PEM client certificate, when etcd asks for one (needs `key`).
    pub cert: Option<String>,
    /// PEM private key of `cert`.
    pub key: Option<String>,
    /// etcd user, when etcd's authentication is on (needs `password`).
    pub username: Option<String>,
    /// That user's password.
    pub password: Option<String>,
    /// How long a node's lease lives without a keep-alive: a dead node's health checks
    /// move to the others after about this long.
    pub lease_ttl: Dur,
    /// Longest wait for one etcd call (and for the first contact at start).
    pub request_timeout: Dur,
    /// This node's name among the members (default: host name and a random suffix).
    pub node_name: Option<String>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/signalbox/".into(),
            ca: None,
            cert: None,
            key: None,
            username: None,
            password: None,
            lease_ttl: Dur::secs(5),
            request_timeout: Dur::secs(5),
            node_name: None,
        }
    }
}

impl ControlConfig {
    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        if self.backend == BackendKind::Etcd {
            self.etcd.check(&format!("{prefix}.etcd"), p);
        }
        for (i, u) in self.control_planes.iter().enumerate() {
            if let Err(m) = check_node_url(u) {
                p.add(format!("{prefix}.control_planes[{i}]"), m);
            }
        }
    }
}

/// A node's console URL as a gateway follows it: `http://host:port` or `https://...`.
pub fn check_node_url(u: &str) -> Result<(), String> {
    let ok = (u.starts_with("http://") || u.starts_with("https://"))
        && u.parse::<http::Uri>().is_ok_and(|x| x.host().is_some_and(|h| !h.is_empty()));
    if ok { Ok(()) } else { Err(format!("`{u}` is not an http:// or https:// URL of a node")) }
}

impl EtcdConfig {
    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        if self.endpoints.is_empty() {
            p.add(format!("{prefix}.endpoints"), "must list at least one etcd client URL");
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let ok = (e.starts_with("http://") || e.starts_with("https://")) && e.parse::<http::Uri>().is_ok();
            if !ok {
                p.add(format!("{prefix}.endpoints[{i}]"), format!("`{e}` is not an http:// or https:// URL"));
            }
        }
        if self.endpoints.iter().any(|e| e.starts_with("https://")) && self.ca.is_none() {
            p.add(format!("{prefix}.ca"), "https:// endpoints need the CA that signed the members' certificates");
        }
        if self.prefix.is_empty() || !self.prefix.ends_with('/') {
            p.add(format!("{prefix}.prefix"), "must be non-empty and end with `/`");
        }
        if self.cert.is_some() != self.key.is_some() {
            p.add(format!("{prefix}.cert"), "`cert` and `key` go together");
        }
        if self.username.is_some() != self.password.is_some() {
            p.add(format!("{prefix}.username"), "`username` and `password` go together");
        }
        for (name, path) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if let Some(path) = path
                && !std::path::Path::new(path).is_file()
            {
                p.add(format!("{prefix}.{name}"), format!("`{path}` is not a readable file"));
            }
        }
        if self.lease_ttl.0 < Duration::from_secs(2) || self.lease_ttl.0 > Duration::from_secs(600) {
            p.add(format!("{prefix}.lease_ttl"), "must be between 2s and 10m");
        }
        if self.request_timeout.0 < Duration::from_millis(100) {
            p.add(format!("{prefix}.request_timeout"), "must be at least 100ms");
        }
        if let Some(n) = &self.node_name
            && (n.is_empty() || n.len() > 128 || n.contains('/'))
        {
            p.add(format!("{prefix}.node_name"), "must be 1-128 characters without `/`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let cfg = ControlConfig {
            backend: BackendKind::Etcd,
            etcd: EtcdConfig {
                endpoints: vec!["127.0.0.1:2379".into()],
                prefix: "nope".into(),
                cert: Some("/nonexistent.pem".into()),
                username: Some("root".into()),
                ..Default::default()
            },
            control_planes: vec!["http://10.0.0.1:9900".into(), "10.0.0.2:9900".into()],
        };
        let mut p = Problems::default();
        cfg.check("control", &mut p);
        let paths: Vec<&str> = p.list.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "control.etcd.endpoints[0]",
                "control.etcd.prefix",
                "control.etcd.cert",
                "control.etcd.username",
                "control.etcd.cert",
                "control.control_planes[1]"
            ]
        );
        let mut ok = Problems::default();
        ControlConfig::default().check("control", &mut ok);
        assert!(ok.is_empty(), "the embedded default needs nothing");
    }

    #[test]
    fn parses_the_documented_form() {
        let cfg: ControlConfig = toml_like(
            r#"{"backend":"etcd","etcd":{"endpoints":["http://10.0.0.1:2379"],"prefix":"/sb/","lease_ttl":"3s"}}"#,
        );
        assert_eq!(cfg.backend, BackendKind::Etcd);
        assert_eq!(cfg.etcd.lease_ttl, Dur::secs(3));
        assert_eq!(cfg.etcd.prefix, "/sb/");
        let bad = serde_json::from_str::<ControlConfig>(r#"{"backend":"zookeeper"}"#).unwrap_err();
        assert!(bad.to_string().contains("unknown variant `zookeeper`"), "{bad}");
    }

    fn toml_like(json: &str) -> ControlConfig {
        serde_json::from_str(json).unwrap()
    }
}
