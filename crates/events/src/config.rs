//! The `[traces]` section of the config file as users write it (stage one), its checks, and
//! the runtime settings it turns into (stage two).

use crate::spans::pipeline::PipelineSettings;
use crate::spans::sampler::SamplerConfig;
use crate::spans::store::StoreConfig;
use serde::{Deserialize, Serialize};
use signalbox_core::config::{ByteSize, Dur, Problems};
use std::path::Path;

/// The trace store.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracesConfig {
    /// Store spans (from the receivers and the gateway).
    pub enabled: bool,
    /// Delete spans older than this (whole hourly partitions).
    pub retention: Dur,
    /// Delete the oldest partitions while the blocks take more than this.
    pub max_disk: ByteSize,
    /// Spans per sealed block.
    pub block_spans: usize,
    /// Seal the in-memory head at least this often.
    pub seal_after: Dur,
    /// Batches that may wait for the write-ahead log before receivers are told to back off.
    pub queue_batches: usize,
    /// Memory for decompressed block columns kept between queries (0: none). The cache is
    /// the event store's, shared by trace and log queries.
    pub query_cache: ByteSize,
    /// Tail sampling.
    pub sampling: SamplingConfig,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            enabled: true,
            retention: Dur::secs(7 * 86_400),
            max_disk: ByteSize(10 * 1024 * 1024 * 1024),
            block_spans: 16_384,
            seal_after: Dur::secs(10),
            queue_batches: 1024,
            query_cache: ByteSize(256 * 1024 * 1024),
            sampling: SamplingConfig::default(),
        }
    }
}

/// Tail sampling: decided per trace once it has been quiet for `decision_wait`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Share of traces kept when no rule keeps them (1.0: keep everything, no buffering).
    pub keep_rate: f64,
    /// How long a trace must be quiet before it is decided.
    pub decision_wait: Dur,
    /// Keep traces with a span slower than this (any service without its own threshold).
    pub slow: Option<Dur>,
    /// Per-service slow thresholds.
    pub slow_by_service: std::collections::BTreeMap<String, Dur>,
    /// Keep traces with a span whose attribute equals a value.
    pub policies: Vec<PolicyConfig>,
    /// Most spans buffered while waiting; past it the oldest traces are decided early.
    pub max_buffered_spans: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            keep_rate: 1.0,
            decision_wait: Dur::secs(5),
            slow: None,
            slow_by_service: Default::default(),
            policies: Vec::new(),
            max_buffered_spans: 1_000_000,
        }
    }
}

/// An attribute rule.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub attribute: String,
    pub value: String,
}

impl TracesConfig {
    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        let sm = &self.sampling;
        if !(0.0..=1.0).contains(&sm.keep_rate) {
            p.add(format!("{prefix}.sampling.keep_rate"), "must be between 0.0 and 1.0");
        }
        if self.block_spans < 100 || self.block_spans > 1_000_000 {
            p.add(format!("{prefix}.block_spans"), "must be between 100 and 1000000");
        }
        if self.queue_batches == 0 {
            p.add(format!("{prefix}.queue_batches"), "must be at least 1");
        }
        for (i, pol) in sm.policies.iter().enumerate() {
            if pol.attribute.is_empty() {
                p.add(format!("{prefix}.sampling.policies[{i}].attribute"), "must not be empty");
            }
        }
    }

    /// The pipeline's settings, with its files under `dir`.
    pub fn pipeline(&self, dir: &Path) -> PipelineSettings {
        let sm = &self.sampling;
        PipelineSettings {
            dir: dir.to_path_buf(),
            queue_batches: self.queue_batches,
            store: StoreConfig {
                dir: dir.join("blocks"),
                block_spans: self.block_spans,
                seal_after: self.seal_after.0,
                retention_age: self.retention.0,
                retention_bytes: self.max_disk.0,
            },
            sampler: SamplerConfig {
                decision_wait: sm.decision_wait.0,
                keep_rate: sm.keep_rate,
                slow_default: sm.slow.map(|d| d.0),
                slow_by_service: sm.slow_by_service.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
                policies: sm.policies.iter().map(|p| (p.attribute.clone(), p.value.clone())).collect(),
                max_spans: sm.max_buffered_spans,
            },
            graph_retention: self.retention.0,
        }
    }
}

/// The `[logs]` section: the log store.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Store log records (from every log receiver).
    pub enabled: bool,
    /// Delete records older than this (whole blocks).
    pub retention: Dur,
    /// Delete the oldest blocks while all of them take more than this.
    pub max_disk: ByteSize,
    /// Records per sealed block.
    pub block_records: usize,
    /// Seal the in-memory head at least this often.
    pub seal_after: Dur,
    /// Batches that may wait for the write-ahead log before receivers answer 429.
    pub queue_batches: usize,
    /// Most compressed bytes one query may read.
    pub max_query_bytes: ByteSize,
    /// Longest a query may run.
    pub query_timeout: Dur,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            retention: Dur::secs(7 * 86_400),
            max_disk: ByteSize(10 * 1024 * 1024 * 1024),
            block_records: 65_536,
            seal_after: Dur::secs(10),
            queue_batches: 1024,
            max_query_bytes: ByteSize(2 * 1024 * 1024 * 1024),
            query_timeout: Dur::secs(30),
        }
    }
}

impl LogsConfig {
    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        if self.block_records < 100 || self.block_records > 10_000_000 {
            p.add(format!("{prefix}.block_records"), "must be between 100 and 10000000");
        }
        if self.queue_batches == 0 {
            p.add(format!("{prefix}.queue_batches"), "must be at least 1");
        }
        if self.query_timeout.0.is_zero() {
            p.add(format!("{prefix}.query_timeout"), "must be more than 0s");
        }
    }

    /// The store's settings, with its files under `dir`.
    pub fn store(&self, dir: &Path) -> crate::logs::store::LogStoreConfig {
        crate::logs::store::LogStoreConfig {
            dir: dir.to_path_buf(),
            block_records: self.block_records,
            seal_after: self.seal_after.0,
            retention_age: self.retention.0,
            retention_bytes: self.max_disk.0,
            queue_batches: self.queue_batches,
            max_query_bytes: self.max_query_bytes.0,
            query_timeout: self.query_timeout.0,
        }
    }
}
