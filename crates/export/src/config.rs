//! The `[export]` section: any number of `[[export.remote_write]]`, `[[export.otlp]]` and
//! `[[export.loki]]` tables, checked at start with problems that name the key.

use serde::{Deserialize, Serialize};
use signalbox_core::config::{ByteSize, Dur, Problems};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `[export]` section.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Prometheus remote_write 1.0 receivers: every sample the metrics store appends.
    pub remote_write: Vec<TargetConfig>,
    /// OTLP receivers (collectors, tracing backends): spans and log records.
    pub otlp: Vec<TargetConfig>,
    /// Loki push receivers: log records.
    pub loki: Vec<TargetConfig>,
}

/// One exporter table. The three kinds share one set of keys; a key of another kind is a
/// problem naming it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// remote_write and Loki: the receiver's URL (`http://prometheus:9090/api/v1/write`,
    /// `http://loki:3100/loki/api/v1/push`).
    pub url: String,
    /// OTLP: for `grpc`, `http://host:4317` (plain HTTP/2; use `http/protobuf` for TLS); for
    /// `http/protobuf`, the base URL (`https://host:4318`) to which `/v1/traces` and
    /// `/v1/logs` are appended.
    pub endpoint: String,
    /// OTLP: `grpc` (the default) or `http/protobuf`.
    pub protocol: String,
    /// OTLP: which signals to send, `traces` and/or `logs` (default: both).
    pub signals: Vec<String>,
    /// Loki: sent as `X-Scope-OrgID` (the tenant) when set.
    pub tenant: String,
    /// Names the exporter in metrics, logs and the default queue directory (default: the
    /// kind and its index, `remote_write-0`). Unique across all exporters.
    pub name: String,
    /// Extra request headers (`X-Scope-OrgID`, an API key...).
    pub headers: BTreeMap<String, String>,
    /// HTTP basic authentication (not with `bearer_token`).
    pub basic_auth: Option<BasicAuth>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: String,
    /// The durable queue's directory (default: `<data_dir>/export/<name>`).
    pub queue_dir: String,
    /// Most bytes the queue holds on disk; batches sealed while it is full are dropped and
    /// counted (`signalbox_export_dropped_records_total{reason="queue_full"}`).
    pub max_queue_bytes: ByteSize,
    /// Most records (spans, log records or samples) in one request.
    pub batch_size: usize,
    /// How long a partial batch waits for more records before it is queued.
    pub batch_wait: Dur,
    /// Deadline of one request.
    pub timeout: Dur,
    /// First retry delay; it doubles (with jitter) up to `max_backoff`.
    pub min_backoff: Dur,
    /// Longest delay between retries, and the cap on a receiver's `Retry-After`.
    pub max_backoff: Dur,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            url: String::new(),
            endpoint: String::new(),
            protocol: String::new(),
            signals: Vec::new(),
            tenant: String::new(),
            name: String::new(),
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token: String::new(),
            queue_dir: String::new(),
            max_queue_bytes: ByteSize(1024 * 1024 * 1024),
            batch_size: 2000,
            batch_wait: Dur::secs(1),
            timeout: Dur::secs(30),
            min_backoff: Dur::millis(100),
            max_backoff: Dur::secs(30),
        }
    }
}

/// HTTP basic authentication.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

/// What an exporter sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }
}

/// The wire protocol of one exporter, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Protocol {
    RemoteWrite { url: http::Uri },
    OtlpGrpc { endpoint: http::Uri },
    OtlpHttp { traces: http::Uri, logs: http::Uri },
    Loki { url: http::Uri },
}

/// One exporter, ready to start.
#[derive(Clone, Debug, PartialEq)]
pub struct Exporter {
    pub name: String,
    pub protocol: Protocol,
    pub signals: Vec<Signal>,
    /// Every header a request carries besides the protocol's own (auth included).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub queue_dir: PathBuf,
    pub max_queue_bytes: u64,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl ExportConfig {
    /// Whether any exporter is configured.
    pub fn is_empty(&self) -> bool {
        self.remote_write.is_empty() && self.otlp.is_empty() && self.loki.is_empty()
    }

    /// Adds every problem of this section to `p`, with key paths under `prefix`.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        self.compile(prefix, Path::new("."), p);
    }

    /// The exporters, with queue directories under `data_dir` unless set; problems go to `p`
    /// (the list is then incomplete).
    pub fn compile(&self, prefix: &str, data_dir: &Path, p: &mut Problems) -> Vec<Exporter> {
        let mut out = Vec::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |path: String, q: &TargetConfig, protocol: Option<Protocol>, signals, p: &mut Problems| {
            let name = if q.name.is_empty() { path_name(&path) } else { q.name.clone() };
            let before = p.list.len();
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) || name.is_empty() {
                p.add(format!("{path}.name"), "use letters, digits, `-`, `_` and `.` only");
            }
            if let Some(first) = names.insert(name.clone(), path.clone()) {
                p.add(format!("{path}.name"), format!("`{name}` is also the name of {first}; names must be unique"));
            }
            let headers = check_queue(&path, q, p);
            if let Some(protocol) = protocol
                && p.list.len() == before
            {
                let queue_dir = if q.queue_dir.is_empty() {
                    data_dir.join("export").join(&name)
                } else {
                    PathBuf::from(&q.queue_dir)
                };
                out.push(Exporter {
                    name,
                    protocol,
                    signals,
                    headers,
                    queue_dir,
                    max_queue_bytes: q.max_queue_bytes.0,
                    batch_size: q.batch_size,
                    batch_wait: q.batch_wait.0,
                    timeout: q.timeout.0,
                    min_backoff: q.min_backoff.0,
                    max_backoff: q.max_backoff.0,
                });
            }
        };
        for (i, c) in self.remote_write.iter().enumerate() {
            let path = format!("{prefix}.remote_write[{i}]");
            only(&path, c, &["endpoint", "protocol", "signals", "tenant"], "[[export.otlp]] or [[export.loki]]", p);
            let url = http_url(&format!("{path}.url"), &c.url, p);
            add(path, c, url.map(|url| Protocol::RemoteWrite { url }), vec![Signal::Metrics], p);
        }
        for (i, c) in self.otlp.iter().enumerate() {
            let path = format!("{prefix}.otlp[{i}]");
            only(&path, c, &["url", "tenant"], "[[export.remote_write]] or [[export.loki]]", p);
            let mut signals = Vec::new();
            let named =
                if c.signals.is_empty() { vec!["traces".to_owned(), "logs".to_owned()] } else { c.signals.clone() };
            for (j, s) in named.iter().enumerate() {
                match s.as_str() {
                    "traces" => signals.push(Signal::Traces),
                    "logs" => signals.push(Signal::Logs),
                    other => p.add(format!("{path}.signals[{j}]"), format!("`{other}` is not traces or logs")),
                }
            }
            signals.dedup();
            let key = format!("{path}.endpoint");
            let protocol = match c.protocol.as_str() {
                "grpc" | "" => http_url(&key, &c.endpoint, p).and_then(|endpoint| {
                    if endpoint.scheme_str() == Some("https") {
                        p.add(
                            &key,
                            "gRPC export speaks plain HTTP/2 (http://); for TLS use protocol = \"http/protobuf\"",
                        );
                        return None;
                    }
                    Some(Protocol::OtlpGrpc { endpoint })
                }),
                "http/protobuf" => {
                    let base = c.endpoint.trim_end_matches('/');
                    let traces = http_url(&key, &format!("{base}/v1/traces"), p);
                    let logs = http_url(&key, &format!("{base}/v1/logs"), p);
                    traces.zip(logs).map(|(traces, logs)| Protocol::OtlpHttp { traces, logs })
                }
                other => {
                    p.add(format!("{path}.protocol"), format!("`{other}` is not grpc or http/protobuf"));
                    None
                }
            };
            add(path, c, protocol, signals, p);
        }
        for (i, c) in self.loki.iter().enumerate() {
            let path = format!("{prefix}.loki[{i}]");
            only(&path, c, &["endpoint", "protocol", "signals"], "[[export.otlp]]", p);
            let url = http_url(&format!("{path}.url"), &c.url, p);
            let mut q = c.clone();
            if !c.tenant.is_empty() {
                q.headers.insert("X-Scope-OrgID".into(), c.tenant.clone());
            }
            add(path, &q, url.map(|url| Protocol::Loki { url }), vec![Signal::Logs], p);
        }
        out
    }
}

/// Flags the keys of `c` in `keys` that are set: they belong to another kind of exporter.
fn only(path: &str, c: &TargetConfig, keys: &[&str], owners: &str, p: &mut Problems) {
    for k in keys {
        let set = match *k {
            "url" => !c.url.is_empty(),
            "endpoint" => !c.endpoint.is_empty(),
            "protocol" => !c.protocol.is_empty(),
            "signals" => !c.signals.is_empty(),
            "tenant" => !c.tenant.is_empty(),
            _ => false,
        };
        if set {
            p.add(format!("{path}.{k}"), format!("does not apply here; it belongs to {owners}"));
        }
    }
}

/// `export.remote_write[0]` → `remote_write-0`.
fn path_name(path: &str) -> String {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.replace('[', "-").replace(']', "")
}

fn http_url(key: &str, s: &str, p: &mut Problems) -> Option<http::Uri> {
    if s.is_empty() {
        p.add(key, "must be set (an http:// or https:// URL)");
        return None;
    }
    match s.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
        _ => {
            p.add(key, format!("`{s}` is not an http:// or https:// URL with a host"));
            None
        }
    }
}

fn check_queue(path: &str, q: &TargetConfig, p: &mut Problems) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut headers = Vec::new();
    for (k, v) in &q.headers {
        match (http::HeaderName::try_from(k.as_str()), http::HeaderValue::try_from(v.as_str())) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            (Err(_), _) => p.add(format!("{path}.headers.{k}"), "is not a valid header name"),
            (_, Err(_)) => p.add(format!("{path}.headers.{k}"), "holds characters a header value cannot"),
        }
    }
    match (&q.basic_auth, q.bearer_token.is_empty()) {
        (Some(_), false) => p.add(format!("{path}.bearer_token"), "set basic_auth or bearer_token, not both"),
        (Some(b), true) => {
            if b.username.is_empty() {
                p.add(format!("{path}.basic_auth.username"), "must not be empty");
            }
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", b.username, b.password));
            match http::HeaderValue::try_from(format!("Basic {token}")) {
                Ok(v) => headers.push((http::header::AUTHORIZATION, v)),
                Err(_) => p.add(format!("{path}.basic_auth"), "cannot go in a header"),
            }
        }
        (None, false) => match http::HeaderValue::try_from(format!("Bearer {}", q.bearer_token)) {
            Ok(v) => headers.push((http::header::AUTHORIZATION, v)),
            Err(_) => p.add(format!("{path}.bearer_token"), "holds characters a header value cannot"),
        },
        (None, true) => {}
    }
    if q.max_queue_bytes.0 < 1024 * 1024 {
        p.add(format!("{path}.max_queue_bytes"), "must be at least 1MiB");
    }
    if q.batch_size == 0 || q.batch_size > 100_000 {
        p.add(format!("{path}.batch_size"), "must be between 1 and 100000");
    }
    if q.batch_wait.0 > Duration::from_secs(60) {
        p.add(format!("{path}.batch_wait"), "must be at most 60s");
    }
    if q.timeout.0.is_zero() {
        p.add(format!("{path}.timeout"), "must be more than 0s");
    }
    if q.min_backoff.0.is_zero() {
        p.add(format!("{path}.min_backoff"), "must be more than 0s");
    }
    if q.max_backoff.0 < q.min_backoff.0 {
        p.add(format!("{path}.max_backoff"), "must be at least min_backoff");
    }
    headers
}

#[cfg(test)]
mod tests;
