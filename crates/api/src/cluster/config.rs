//! The `[cluster]` section: how the storage nodes of an etcd deployment share stored
//! telemetry and answer each other's queries. Ignored on a single node (embedded control
//! state), which owns every partition and never fans out.
//!
//! ```toml
//! [cluster]
//! partitions = 16
//! advertise = "http://10.0.0.5:9900"
//! token = "a long random secret, the same on every node"
//! ```

use serde::{Deserialize, Serialize};
use signalbox_core::config::{Dur, Problems};
use std::time::Duration;

/// The `[cluster]` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Partitions of stored telemetry: the same on every node and fixed for the life of
    /// the cluster (changing it moves almost every trace, stream and series).
    pub partitions: u32,
    /// Where peers reach this node's internal query endpoints (`http://host:port` of the
    /// console port). Default: the console's listen address (127.0.0.1 when it listens on
    /// every address; set this on a real cluster).
    pub advertise: String,
    /// Bearer token nodes present to each other's internal endpoints; the same on every
    /// node. Needed when access control is on.
    pub token: String,
    /// Longest wait for one storage node's answer; a node that takes longer is named in
    /// the answer as missing.
    pub query_timeout: Dur,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            partitions: signalbox_core::partition::DEFAULT_PARTITIONS,
            advertise: String::new(),
            token: String::new(),
            query_timeout: Dur::secs(10),
        }
    }
}

impl ClusterConfig {
    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    /// `access_control` says whether the node checks credentials.
    pub fn check(&self, prefix: &str, access_control: bool, p: &mut Problems) {
        if !(1..=4096).contains(&self.partitions) {
            p.add(format!("{prefix}.partitions"), "must be between 1 and 4096");
        }
        if !self.advertise.is_empty() {
            let ok = self.advertise.starts_with("http://") && self.advertise.parse::<http::Uri>().is_ok();
            if !ok {
                p.add(format!("{prefix}.advertise"), format!("`{}` is not an http:// URL", self.advertise));
            }
        }
        if access_control && self.token.len() < 16 {
            p.add(
                format!("{prefix}.token"),
                "with access control on, nodes need a shared token of at least 16 characters",
            );
        }
        if self.query_timeout.0 < Duration::from_millis(100) || self.query_timeout.0 > Duration::from_secs(600) {
            p.add(format!("{prefix}.query_timeout"), "must be between 100ms and 10m");
        }
    }

    /// The advertised address, or `http://` and the console's bound address.
    pub fn address(&self, console: std::net::SocketAddr) -> String {
        if !self.advertise.is_empty() {
            return self.advertise.trim_end_matches('/').to_owned();
        }
        let ip = if console.ip().is_unspecified() { "127.0.0.1".to_owned() } else { console.ip().to_string() };
        format!("http://{ip}:{}", console.port())
    }
}
