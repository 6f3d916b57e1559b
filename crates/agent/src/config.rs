//! The agent's config file as written by users (stage one of two).
//!
//! Every field has a default and a `///` doc: these docs are the user's reference, and
//! `examples/agent.toml` mirrors them. [`crate::compile`] validates this raw form into the
//! runtime tables and reports every problem with its key path.

use serde::{Deserialize, Serialize};
use signalbox_core::config::{ByteSize, Dur, Problems};
use std::collections::BTreeMap;

/// `signalbox agent`: which files to follow, how to read them and where to ship them.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Directory for the agent's state: file checkpoints and the disk buffer. One agent per
    /// directory (it is locked while the agent runs).
    pub data_dir: String,
    /// The host name every record carries (empty: this machine's host name).
    pub host: String,
    /// Where batches are shipped.
    pub output: OutputConfig,
    /// Groups of files to follow, each with its parsing, filters and labels.
    pub sources: Vec<SourceConfig>,
    /// When a batch is sealed and how it is compressed.
    pub batch: BatchConfig,
    /// The disk buffer that holds sealed batches until the output acknowledges them.
    pub buffer: BufferConfig,
    /// Retries of failed deliveries.
    pub retry: RetryConfig,
    /// How often the globs are expanded again to find new and rotated files.
    pub scan_interval: Dur,
    /// How often followed files are checked for new data while data flows. While every file
    /// is idle the checks back off, doubling up to four times this (at most 1 s, never less
    /// than this), and return to this interval as soon as a line is read; so the first line
    /// after an idle spell is read within that longer wait.
    pub poll_interval: Dur,
    /// Most files open at once; further matches wait until others are closed.
    pub max_open_files: usize,
    /// Address of the Prometheus `/metrics` listener (empty: no listener).
    pub metrics_listen: String,
    /// How often a progress line is logged (0: never).
    pub progress_interval: Dur,
    /// On shutdown, how long buffered batches may still be delivered before the agent exits
    /// (they stay on disk and are sent on the next start).
    pub drain_timeout: Dur,
    /// Host, container and process metrics (node_exporter, cAdvisor and `process_*` names),
    /// served on `metrics_listen` and pushed to the node through their own disk buffer.
    pub host_metrics: HostMetricsConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            data_dir: "./signalbox-agent-data".into(),
            host: String::new(),
            output: OutputConfig::default(),
            sources: Vec::new(),
            batch: BatchConfig::default(),
            buffer: BufferConfig::default(),
            retry: RetryConfig::default(),
            scan_interval: Dur::secs(1),
            poll_interval: Dur::millis(250),
            max_open_files: 1024,
            metrics_listen: String::new(),
            progress_interval: Dur::secs(30),
            drain_timeout: Dur::secs(5),
            host_metrics: HostMetricsConfig::default(),
        }
    }
}

impl AgentConfig {
    /// Validates the config without side effects; every problem names its key path
    /// (`sources[0].parser.pattern`).
    pub fn check(&self) -> Result<(), Problems> {
        self.check_at("")
    }

    /// Like [`AgentConfig::check`], with key paths under `prefix` (`agent` gives
    /// `agent.sources[0]...`) for configs embedded in a larger file.
    pub fn check_at(&self, prefix: &str) -> Result<(), Problems> {
        crate::compile::compile(self, prefix).map(|_| ())
    }
}

/// The receiver of batches.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// `native`: the node's `POST /api/logs` (gzip NDJSON); `otlp`: OTLP logs over
    /// HTTP/protobuf (`POST /v1/logs`), for any OpenTelemetry backend.
    pub kind: String,
    /// Base URL of the receiver, `http://HOST:PORT` or `https://HOST:PORT` (the path is
    /// added: `/api/logs` or `/v1/logs`).
    pub endpoint: String,
    /// For `https` endpoints: a PEM file of the CA certificates the receiver's certificate
    /// must chain to (empty: the Mozilla root set).
    pub ca_file: String,
    /// Bearer token sent as `Authorization: Bearer TOKEN` (empty: none).
    pub token: String,
    /// A file holding the bearer token instead (surrounding whitespace ignored), read at
    /// start; set `token` or `token_file`, not both.
    pub token_file: String,
    /// Time to establish a connection to the receiver.
    pub connect_timeout: Dur,
    /// Time one delivery may take, from sending the request to the complete answer.
    pub timeout: Dur,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            kind: "native".into(),
            endpoint: "http://127.0.0.1:9900".into(),
            ca_file: String::new(),
            token: String::new(),
            token_file: String::new(),
            connect_timeout: Dur::secs(5),
            timeout: Dur::secs(30),
        }
    }
}

/// Batching.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records in one batch.
    pub max_records: usize,
    /// Most bytes of records (uncompressed) in one batch.
    pub max_bytes: ByteSize,
    /// Longest time a record waits in an unsealed batch.
    pub timeout: Dur,
    /// gzip level, 0 (store) to 9 (smallest).
    pub compression_level: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_records: 1000, max_bytes: ByteSize(1024 * 1024), timeout: Dur::secs(1), compression_level: 6 }
    }
}

/// The disk buffer.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Most bytes of sealed, unacknowledged batches kept on disk. When it is full the agent
    /// stops reading files until the output acknowledges some; nothing is dropped.
    pub max_bytes: ByteSize,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig { max_bytes: ByteSize(256 * 1024 * 1024) }
    }
}

/// Retries: jittered exponential backoff between `initial_backoff` and `max_backoff`; a
/// `Retry-After` answer (429, 503) is honoured up to `max_retry_after`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Wait before the first retry (then doubled each time, with jitter).
    pub initial_backoff: Dur,
    /// Longest wait between two tries.
    pub max_backoff: Dur,
    /// Longest `Retry-After` honoured; longer ones are cut to this.
    pub max_retry_after: Dur,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { initial_backoff: Dur::millis(200), max_backoff: Dur::secs(30), max_retry_after: Dur::secs(60) }
    }
}

/// A group of files read the same way.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Glob patterns of files to follow (`/var/log/app/*.log`, `/srv/**/*.log`). To follow
    /// a file across copytruncate rotation, the pattern must match the rotated copies too
    /// (`app.log*`): the copy is recognised and read from where the original stopped.
    pub include: Vec<String>,
    /// Glob patterns of files never to follow (`*.gz`).
    pub exclude: Vec<String>,
    /// The `service` label of every record.
    pub service: String,
    /// The `instance` label (empty: the host name).
    pub instance: String,
    /// Static labels added to every record's attributes.
    pub labels: BTreeMap<String, String>,
    /// Where to start in files found at the agent's very first start (no checkpoint yet):
    /// `beginning` or `end`. Files that appear later are always read from the beginning.
    pub read_from: String,
    /// Longest line; longer lines are split into pieces of this size. (The node refuses
    /// records whose JSON line passes 256KiB.)
    pub max_line_bytes: ByteSize,
    /// A file whose path no longer matches (renamed away) or that has not grown for this long
    /// is closed once read to its end; a deleted file is closed as soon as it is read.
    pub close_inactive: Dur,
    /// The severity of records that carry none.
    pub default_severity: String,
    /// How lines are grouped into records (absent: one line is one record).
    pub multiline: Option<MultilineConfig>,
    /// How a record's text is parsed into fields.
    pub parser: ParserConfig,
    /// Keep or drop records; see [`FilterConfig`].
    pub filters: Vec<FilterConfig>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            service: String::new(),
            instance: String::new(),
            labels: BTreeMap::new(),
            read_from: "beginning".into(),
            max_line_bytes: ByteSize(128 * 1024),
            close_inactive: Dur::secs(300),
            default_severity: "INFO".into(),
            multiline: None,
            parser: ParserConfig::default(),
            filters: Vec::new(),
        }
    }
}

/// Multi-line records (stack traces). A record starts at a line matching `start_pattern`
/// and takes every following line that does not; or, with a `preset`, continuation lines are
/// recognised by their shape.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultilineConfig {
    /// `java` (Java and Spring stack traces: `at ...`, `Caused by:`, `... N more`, the
    /// exception line) or `python` (tracebacks, chained exceptions).
    pub preset: Option<String>,
    /// A regex matching the first line of every record (`^\d{4}-\d{2}-\d{2}`).
    pub start_pattern: Option<String>,
    /// Most lines in one record; a longer group is cut into several records.
    pub max_lines: usize,
    /// Most bytes in one record; a longer group is cut into several records.
    pub max_bytes: ByteSize,
    /// A record whose next line has not arrived for this long is complete.
    pub timeout: Dur,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            preset: None,
            start_pattern: None,
            max_lines: 500,
            max_bytes: ByteSize(128 * 1024),
            timeout: Dur::millis(500),
        }
    }
}

/// Parsing of a record's text.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParserConfig {
    /// `none` (the text is the body), `json` (one object; nested keys become `a.b`),
    /// `logfmt` (`key=value key="quoted value"`) or `regex` (named groups of `pattern`).
    /// A record that does not parse is kept whole as its body.
    pub format: String,
    /// The regex of `format = "regex"`; its named groups become fields. For multi-line
    /// records it is matched against the first line.
    pub pattern: String,
    /// The field holding the record's time (empty: the first of `timestamp`, `time`, `ts`,
    /// `@timestamp`). Without one, the time the line was read is used.
    pub timestamp_field: String,
    /// How that field is written: `rfc3339`, `unix` (seconds, decimals allowed), `unix_ms`,
    /// `unix_us`, `unix_ns`, or a strftime pattern such as `%Y-%m-%d %H:%M:%S%.f` (UTC unless
    /// it has `%z`).
    pub timestamp_format: String,
    /// The field holding the severity (empty: `level`, `severity` or `lvl`).
    pub level_field: String,
    /// The field holding the message, which becomes the body (empty: `message` or `msg`).
    pub message_field: String,
}

impl Default for ParserConfig {
    fn default() -> Self {
        ParserConfig {
            format: "none".into(),
            pattern: String::new(),
            timestamp_field: String::new(),
            timestamp_format: "rfc3339".into(),
            level_field: String::new(),
            message_field: String::new(),
        }
    }
}

/// One filter rule. A rule matches a record when every condition it sets holds. Records
/// pass when no `drop` rule matches and, if there are `keep` rules, at least one matches.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// `keep` or `drop`.
    pub action: String,
    /// Matches records with one of these severities (`DEBUG`, `INFO`, `WARN`, `ERROR`...).
    pub levels: Vec<String>,
    /// A parsed field to test with `equals` or `regex` (absent: `regex` tests the body;
    /// alone: matches records that have the field).
    pub field: Option<String>,
    /// Matches when `field` has exactly this value.
    pub equals: Option<String>,
    /// Matches when `field` (or the body) matches this regex.
    pub regex: Option<String>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig { action: "drop".into(), levels: Vec::new(), field: None, equals: None, regex: None }
    }
}

/// Host, container and process metrics.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostMetricsConfig {
    /// Collect them at all.
    pub enabled: bool,
    /// Time between two collections.
    pub interval: Dur,
    /// Collectors to run (empty: all): `cpu`, `stat`, `loadavg`, `meminfo`, `pressure`,
    /// `filesystem`, `diskstats`, `netdev`, `netstat`, `sockstat`, `tcpstat`, `filefd`, `time`,
    /// `timex`, `uname`, `vmstat` (node_exporter's names), `cgroup` (containers) and `process`.
    pub collectors: Vec<String>,
    /// Push every collection to this Prometheus remote_write URL (empty: the node's
    /// `{output.endpoint}/prometheus/api/v1/write` when `output.kind` is `native`, no push for
    /// `otlp`; `none`: never push, only serve them on `metrics_listen`).
    pub remote_write_url: String,
    /// The `job` label of pushed series (`instance` is the host name unless a series has one).
    pub job: String,
    /// Most bytes of collections kept on disk while the receiver is unreachable; when full,
    /// new collections are not buffered (counted in
    /// `signalbox_agent_host_snapshots_dropped_total`).
    pub buffer_max_bytes: ByteSize,
    /// Where procfs is mounted (`/host/proc` for an agent in a container).
    pub proc_path: String,
    /// Where sysfs is mounted.
    pub sys_path: String,
    /// Prefix of every mount point for filesystem statistics (`/host` when the host's root
    /// is mounted there).
    pub rootfs_path: String,
    /// A cgroup v2 group (path below the cgroup v2 mount, such as `/system.slice`) whose child
    /// groups are reported as containers (empty: only the groups of `processes`).
    pub cgroup_root: String,
    /// Mount points left out of the filesystem collector (node_exporter's default).
    pub filesystem_mount_points_exclude: String,
    /// Filesystem types left out (node_exporter's default).
    pub filesystem_fs_types_exclude: String,
    /// Block devices left out of diskstats (node_exporter's default).
    pub diskstats_device_exclude: String,
    /// Network interfaces left out of netdev (node_exporter's default: `^lo$`).
    pub netdev_device_exclude: String,
    /// Processes reported as `process_*` (and their cgroups as containers); the agent
    /// itself is always reported with `service="signalbox-agent"`.
    pub processes: Vec<ProcessConfig>,
    /// Also report the processes that hold a followed log file open (the programs writing
    /// the logs the agent ships) as `process_*`, labelled with that source's `service` and
    /// `instance`, and their cgroups as containers.
    pub log_processes: bool,
    /// For tests only (leave at 0): shifts the agent's clock by this many milliseconds
    /// (negative: behind) in its samples' timestamps, `node_time_seconds` and the send time
    /// of its pushes, as on a machine whose clock is off, so the node's measurement of the
    /// agent's clock offset (`signalbox_agent_clock_offset_seconds`) can be checked.
    pub test_clock_skew_ms: i64,
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        use crate::host::collect as c;
        HostMetricsConfig {
            enabled: false,
            interval: Dur::secs(15),
            collectors: Vec::new(),
            remote_write_url: String::new(),
            job: "node".into(),
            buffer_max_bytes: ByteSize(64 * 1024 * 1024),
            proc_path: "/proc".into(),
            sys_path: "/sys".into(),
            rootfs_path: "/".into(),
            cgroup_root: String::new(),
            filesystem_mount_points_exclude: c::FS_MOUNT_EXCLUDE.into(),
            filesystem_fs_types_exclude: c::FS_TYPE_EXCLUDE.into(),
            diskstats_device_exclude: c::DISK_EXCLUDE.into(),
            netdev_device_exclude: c::NETDEV_EXCLUDE.into(),
            processes: Vec::new(),
            log_processes: true,
            test_clock_skew_ms: 0,
        }
    }
}

/// One watched process: set exactly one of `pids`, `pid_file` and `name`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// The `service` label of its series (required).
    pub service: String,
    /// The `instance` label (empty: the host name).
    pub instance: String,
    /// Fixed process ids.
    pub pids: Vec<u32>,
    /// A file holding the process id, read at every collection.
    pub pid_file: String,
    /// A regex matched against the process name (`/proc/PID/comm`) and its command line;
    /// every match counts (their values are summed).
    pub name: String,
}
