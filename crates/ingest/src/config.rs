//! The `[ingest]` section: whether receivers write to the local stores (the default) or
//! publish to a NATS JetStream stream that storage nodes consume.
//!
//! ```toml
//! [ingest]
//! buffer = "nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222"
//! [ingest.nats]
//! stream = "SIGNALBOX_INGEST"
//! subject_prefix = "signalbox.ingest"
//! replicas = 3
//! max_bytes = "8GiB"
//! max_age = "72h"
//! duplicate_window = "2m"
//! high_water = 0.9
//! ```

use serde::{Deserialize, Serialize};
use signalbox_core::config::{ByteSize, Dur, Problems};
use std::time::Duration;

/// The `[ingest]` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Empty (the default): receivers write to this node's stores directly. Otherwise a
    /// comma-separated list of `nats://` (or `tls://`) server URLs: receivers answer once
    /// JetStream has the batch, and storage consumers move it into the stores.
    pub buffer: String,
    /// Partitions of every signal; fixed for the life of a cluster (changing it moves
    /// almost every trace, stream and series to another partition).
    pub partitions: u32,
    /// The JetStream stream and its limits.
    pub nats: NatsConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            buffer: String::new(),
            partitions: signalbox_core::partition::DEFAULT_PARTITIONS,
            nats: NatsConfig::default(),
        }
    }
}

/// The `[ingest.nats]` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// The stream's name (created when missing; its limits are updated to these).
    pub stream: String,
    /// Subjects are `<prefix>.<signal>.<partition>` (signal: traces, logs or metrics).
    pub subject_prefix: String,
    /// Copies of every message: 3 on a three-server cluster (a batch is acknowledged to
    /// the client only once a majority has it), 1 on a single server.
    pub replicas: usize,
    /// Most bytes the stream holds; new batches are refused (429) above `high_water` of it.
    pub max_bytes: ByteSize,
    /// How long an unconsumed batch stays: the longest a storage node may be down.
    pub max_age: Dur,
    /// JetStream drops a second publish of a batch id seen within this window.
    pub duplicate_window: Dur,
    /// Fraction of `max_bytes` at which receivers start refusing with 429 /
    /// RESOURCE_EXHAUSTED (the storage nodes are behind).
    pub high_water: f64,
    /// Longest wait for JetStream's acknowledgement of one batch.
    pub publish_timeout: Dur,
    /// Batches published at once by this node; more are refused with 429 (bounds memory).
    pub max_in_flight: usize,
    /// Run the storage consumers on this node (for the partitions it owns).
    pub consume: bool,
    /// NATS user (needs `password`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// NATS token (instead of user and password).
    pub token: Option<String>,
    /// PEM file of the CA that signed the servers' certificates (for `tls://`).
    pub tls_ca: Option<String>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            stream: "SIGNALBOX_INGEST".into(),
            subject_prefix: "signalbox.ingest".into(),
            replicas: 1,
            max_bytes: ByteSize(1 << 30),
            max_age: Dur::secs(72 * 3600),
            duplicate_window: Dur::secs(120),
            high_water: 0.9,
            publish_timeout: Dur::secs(5),
            max_in_flight: 1024,
            consume: true,
            user: None,
            password: None,
            token: None,
            tls_ca: None,
        }
    }
}

impl IngestConfig {
    /// True when receivers publish to NATS.
    pub fn buffered(&self) -> bool {
        !self.buffer.trim().is_empty()
    }

    /// The server URLs of `buffer`.
    pub fn servers(&self) -> Vec<String> {
        self.buffer.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
    }

    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        if self.partitions == 0 || self.partitions > 4096 {
            p.add(format!("{prefix}.partitions"), "must be between 1 and 4096");
        }
        if !self.buffered() {
            return;
        }
        for s in self.servers() {
            let scheme_ok = s.starts_with("nats://") || s.starts_with("tls://");
            let rest = s.split_once("://").map(|(_, r)| r).unwrap_or("");
            if !scheme_ok || rest.is_empty() || rest.contains('/') {
                p.add(format!("{prefix}.buffer"), format!("`{s}` is not a nats://host:port or tls://host:port URL"));
            }
        }
        let n = &self.nats;
        let np = format!("{prefix}.nats");
        let token_ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !token_ok(&n.stream) {
            p.add(format!("{np}.stream"), "must be letters, digits, `_` or `-`");
        }
        if n.subject_prefix.is_empty() || n.subject_prefix.split('.').any(|t| !token_ok(t)) {
            p.add(format!("{np}.subject_prefix"), "must be dot-separated tokens of letters, digits, `_` or `-`");
        }
        if !(1..=5).contains(&n.replicas) {
            p.add(format!("{np}.replicas"), "must be between 1 and 5 (JetStream's limit)");
        }
        if n.max_bytes.0 < 64 * 1024 {
            p.add(format!("{np}.max_bytes"), "must be at least 64KiB");
        }
        if n.max_age.0 < Duration::from_secs(60) {
            p.add(format!("{np}.max_age"), "must be at least 1m (an unconsumed batch older than this is lost)");
        }
        if n.duplicate_window.0 < Duration::from_secs(1) || n.duplicate_window.0 > n.max_age.0 {
            p.add(format!("{np}.duplicate_window"), "must be between 1s and max_age");
        }
        if !(n.high_water > 0.0 && n.high_water <= 1.0) {
            p.add(format!("{np}.high_water"), "must be a fraction above 0 and at most 1");
        }
        if n.publish_timeout.0 < Duration::from_millis(100) || n.publish_timeout.0 > Duration::from_secs(60) {
            p.add(format!("{np}.publish_timeout"), "must be between 100ms and 60s");
        }
        if n.max_in_flight == 0 {
            p.add(format!("{np}.max_in_flight"), "must be at least 1");
        }
        if n.user.is_some() != n.password.is_some() {
            p.add(format!("{np}.user"), "`user` and `password` go together");
        }
        if n.token.is_some() && n.user.is_some() {
            p.add(format!("{np}.token"), "use a token or a user and password, not both");
        }
        if let Some(path) = &n.tls_ca
            && !std::path::Path::new(path).is_file()
        {
            p.add(format!("{np}.tls_ca"), format!("`{path}` is not a readable file"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_direct_writes_and_valid() {
        let c = IngestConfig::default();
        assert!(!c.buffered());
        let mut p = Problems::default();
        c.check("ingest", &mut p);
        assert!(p.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let c = IngestConfig {
            buffer: "nats://127.0.0.1:4222, http://x:1".into(),
            partitions: 0,
            nats: NatsConfig {
                stream: "a.b".into(),
                replicas: 7,
                max_bytes: ByteSize(10),
                high_water: 1.5,
                user: Some("u".into()),
                tls_ca: Some("/nonexistent.pem".into()),
                ..Default::default()
            },
        };
        let mut p = Problems::default();
        c.check("ingest", &mut p);
        let paths: Vec<&str> = p.list.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ingest.partitions",
                "ingest.buffer",
                "ingest.nats.stream",
                "ingest.nats.replicas",
                "ingest.nats.max_bytes",
                "ingest.nats.high_water",
                "ingest.nats.user",
                "ingest.nats.tls_ca"
            ]
        );
        assert!(p.list[1].message.contains("http://x:1"), "{}", p.list[1].message);
    }

    #[test]
    fn parses_the_documented_form() {
        let c: IngestConfig = serde_json::from_str(
            r#"{"buffer":"nats://a:4222,nats://b:4222","nats":{"replicas":3,"max_bytes":"8GiB","max_age":"72h"}}"#,
        )
        .unwrap();
        assert_eq!(c.servers(), ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(c.nats.replicas, 3);
        assert_eq!(c.nats.max_bytes, ByteSize(8 << 30));
        let bad = serde_json::from_str::<IngestConfig>(r#"{"nats":{"replica":3}}"#).unwrap_err();
        assert!(bad.to_string().contains("unknown field `replica`"), "{bad}");
    }
}
