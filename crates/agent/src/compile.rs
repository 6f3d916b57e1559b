//! Stage two of the config: validate an [`AgentConfig`] into [`Compiled`], the tables the
//! agent runs on. Every problem is collected with its key path, so one check reports all.

use crate::config::{AgentConfig, FilterConfig, MultilineConfig, ParserConfig, SourceConfig};
use crate::filter::Filter;
use crate::multiline::{JAVA_CONTINUATION, Multiline, PYTHON_CONTINUATION, Rule};
use crate::parse::{Format, Parser, TsFormat};
use crate::record::{Labels, normalize_severity};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;
use signalbox_core::config::Problems;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where batches go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Native,
    Otlp,
}

/// The compiled output.
#[derive(Debug)]
pub struct Output {
    pub kind: OutputKind,
    /// The full URL posted to (`/api/logs` or `/v1/logs` added).
    pub url: http::Uri,
    pub authorization: Option<http::HeaderValue>,
    /// TLS settings for `https` endpoints.
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// A compiled source.
#[derive(Debug)]
pub struct Source {
    /// `(base directory, deepest level below it to walk)` for each include pattern.
    pub roots: Vec<(PathBuf, usize)>,
    pub include: GlobSet,
    pub exclude: GlobSet,
    pub labels: Arc<Labels>,
    pub read_from_end: bool,
    pub max_line_bytes: usize,
    pub close_inactive: Duration,
    pub default_severity: String,
    pub multiline: Option<Multiline>,
    pub parser: Parser,
    pub filters: Vec<Filter>,
}

/// The validated config.
#[derive(Debug)]
pub struct Compiled {
    pub data_dir: PathBuf,
    pub output: Output,
    pub sources: Vec<Source>,
    pub batch_max_records: usize,
    pub batch_max_bytes: usize,
    pub batch_timeout: Duration,
    pub compression_level: u32,
    pub buffer_max_bytes: u64,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
    pub scan_interval: Duration,
    pub poll_interval: Duration,
    pub max_open_files: usize,
    pub metrics_listen: Option<SocketAddr>,
    pub progress_interval: Option<Duration>,
    pub drain_timeout: Duration,
    /// The host name records and metrics carry.
    pub host: String,
    /// Host metrics, when enabled.
    pub host_metrics: Option<HostMetrics>,
}

/// The compiled `host_metrics` section.
#[derive(Debug)]
pub struct HostMetrics {
    pub settings: crate::host::HostSettings,
    pub interval: Duration,
    /// Where collections are pushed (remote_write), if anywhere.
    pub push_url: Option<http::Uri>,
    pub job: String,
    pub buffer_max_bytes: u64,
}

/// Validates `cfg`; key paths in problems start with `prefix` (may be empty).
pub fn compile(cfg: &AgentConfig, prefix: &str) -> Result<Compiled, Problems> {
    let key = |k: &str| if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
    let mut p = Problems::default();
    if cfg.data_dir.trim().is_empty() {
        p.add(key("data_dir"), "must not be empty");
    }
    let output = compile_output(cfg, &key, &mut p);
    let host = if cfg.host.is_empty() { system_host_name() } else { cfg.host.clone() };
    if cfg.sources.is_empty() && !cfg.host_metrics.enabled {
        p.add(key("sources"), "at least one source is needed (or host_metrics.enabled)");
    }
    let mut sources = Vec::new();
    for (i, s) in cfg.sources.iter().enumerate() {
        if let Some(src) = compile_source(s, &key(&format!("sources[{i}]")), &host, &mut p) {
            sources.push(src);
        }
    }
    let b = &cfg.batch;
    if !(1..=100_000).contains(&b.max_records) {
        p.add(key("batch.max_records"), "must be between 1 and 100000");
    }
    if !(1024..=64 * 1024 * 1024).contains(&b.max_bytes.0) {
        p.add(key("batch.max_bytes"), "must be between 1KiB and 64MiB");
    }
    if b.timeout.0.is_zero() {
        p.add(key("batch.timeout"), "must be more than 0");
    }
    if b.compression_level > 9 {
        p.add(key("batch.compression_level"), "must be between 0 and 9");
    }
    if cfg.buffer.max_bytes.0 < 2 * b.max_bytes.0 {
        p.add(key("buffer.max_bytes"), "must hold at least two batches (2 × batch.max_bytes)");
    }
    let r = &cfg.retry;
    if r.initial_backoff.0.is_zero() {
        p.add(key("retry.initial_backoff"), "must be more than 0");
    }
    if r.max_backoff.0 < r.initial_backoff.0 {
        p.add(key("retry.max_backoff"), "must be at least retry.initial_backoff");
    }
    for (name, d) in [("scan_interval", cfg.scan_interval), ("poll_interval", cfg.poll_interval)] {
        if d.0 < Duration::from_millis(10) || d.0 > Duration::from_secs(3600) {
            p.add(key(name), "must be between 10ms and 1h");
        }
    }
    if !(1..=1_000_000).contains(&cfg.max_open_files) {
        p.add(key("max_open_files"), "must be between 1 and 1000000");
    }
    let metrics_listen = if cfg.metrics_listen.is_empty() {
        None
    } else {
        match cfg.metrics_listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.add(key("metrics_listen"), format!("`{}` is not an address like 127.0.0.1:9901", cfg.metrics_listen));
                None
            }
        }
    };
    let host_metrics = compile_host_metrics(cfg, &host, &key, &mut p);
    let (Some(output), true) = (output, p.is_empty()) else { return Err(p) };
    Ok(Compiled {
        data_dir: PathBuf::from(&cfg.data_dir),
        output,
        sources,
        batch_max_records: b.max_records,
        batch_max_bytes: b.max_bytes.0 as usize,
        batch_timeout: b.timeout.0,
        compression_level: b.compression_level,
        buffer_max_bytes: cfg.buffer.max_bytes.0,
        initial_backoff: r.initial_backoff.0,
        max_backoff: r.max_backoff.0,
        max_retry_after: r.max_retry_after.0,
        scan_interval: cfg.scan_interval.0,
        poll_interval: cfg.poll_interval.0,
        max_open_files: cfg.max_open_files,
        metrics_listen,
        progress_interval: (!cfg.progress_interval.0.is_zero()).then_some(cfg.progress_interval.0),
        drain_timeout: cfg.drain_timeout.0,
        host,
        host_metrics,
    })
}

fn compile_host_metrics(
    cfg: &AgentConfig,
    host: &str,
    key: &impl Fn(&str) -> String,
    p: &mut Problems,
) -> Option<HostMetrics> {
    use crate::host::collect::{ALL, ProcessMatch, ProcessSpec};
    let h = &cfg.host_metrics;
    if !h.enabled {
        return None;
    }
    let mut settings = crate::host::HostSettings::defaults(host);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&h.interval.0) {
        p.add(key("host_metrics.interval"), "must be between 1s and 1h");
    }
    if !h.collectors.is_empty() {
        settings.enabled.clear();
        for (i, c) in h.collectors.iter().enumerate() {
            match ALL.iter().find(|a| **a == c.as_str()) {
                Some(a) => {
                    settings.enabled.insert(a);
                }
                None => p.add(
                    key(&format!("host_metrics.collectors[{i}]")),
                    format!("unknown collector `{c}`: expected one of {}", ALL.join(", ")),
                ),
            }
        }
    }
    let mut regex = |name: &str, text: &str| match Regex::new(text) {
        Ok(r) => Some(r),
        Err(e) => {
            p.add(key(&format!("host_metrics.{name}")), format!("invalid regex: {e}"));
            None
        }
    };
    if let Some(r) = regex("filesystem_mount_points_exclude", &h.filesystem_mount_points_exclude) {
        settings.fs_mount_exclude = r;
    }
    if let Some(r) = regex("filesystem_fs_types_exclude", &h.filesystem_fs_types_exclude) {
        settings.fs_type_exclude = r;
    }
    if let Some(r) = regex("diskstats_device_exclude", &h.diskstats_device_exclude) {
        settings.disk_exclude = r;
    }
    if let Some(r) = regex("netdev_device_exclude", &h.netdev_device_exclude) {
        settings.netdev_exclude = r;
    }
    for (i, pc) in h.processes.iter().enumerate() {
        let at = |k: &str| key(&format!("host_metrics.processes[{i}].{k}"));
        if pc.service.trim().is_empty() {
            p.add(at("service"), "must not be empty");
        }
        let set = [!pc.pids.is_empty(), !pc.pid_file.is_empty(), !pc.name.is_empty()].iter().filter(|b| **b).count();
        if set != 1 {
            p.add(at("pids"), "set exactly one of pids, pid_file and name");
            continue;
        }
        let matcher = if !pc.pids.is_empty() {
            ProcessMatch::Pids(pc.pids.clone())
        } else if !pc.pid_file.is_empty() {
            ProcessMatch::PidFile(PathBuf::from(&pc.pid_file))
        } else {
            match Regex::new(&pc.name) {
                Ok(r) => ProcessMatch::Name(r),
                Err(e) => {
                    p.add(at("name"), format!("invalid regex: {e}"));
                    continue;
                }
            }
        };
        let instance = if pc.instance.is_empty() { host.to_owned() } else { pc.instance.clone() };
        settings.processes.push(ProcessSpec { service: pc.service.clone(), instance, matcher });
    }
    settings.log_processes = h.log_processes;
    settings.proc_path = PathBuf::from(&h.proc_path);
    settings.sys_path = PathBuf::from(&h.sys_path);
    settings.rootfs_path = PathBuf::from(&h.rootfs_path);
    settings.cgroup_mount = crate::host::cgroup::detect_mount(&settings.sys_path);
    if !h.cgroup_root.is_empty() {
        if !h.cgroup_root.starts_with('/') {
            p.add(key("host_metrics.cgroup_root"), "must be a path below the cgroup v2 mount, starting with /");
        }
        settings.cgroup_root = Some(h.cgroup_root.clone());
    }
    if h.test_clock_skew_ms.unsigned_abs() > 86_400_000 {
        p.add(key("host_metrics.test_clock_skew_ms"), "must be within a day (±86400000)");
    }
    settings.clock_skew_ms = h.test_clock_skew_ms;
    if h.job.trim().is_empty() {
        p.add(key("host_metrics.job"), "must not be empty");
    }
    if h.buffer_max_bytes.0 < 1024 * 1024 {
        p.add(key("host_metrics.buffer_max_bytes"), "must be at least 1MiB");
    }
    let push_url = match (h.remote_write_url.as_str(), cfg.output.kind.as_str()) {
        ("none", _) | ("", "otlp") => None,
        ("", _) => {
            format!("{}/prometheus/api/v1/write", cfg.output.endpoint.trim_end_matches('/')).parse::<http::Uri>().ok()
        }
        (url, _) => match url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
            _ => {
                p.add(
                    key("host_metrics.remote_write_url"),
                    format!("`{url}` is not a URL like http://127.0.0.1:9900/prometheus/api/v1/write"),
                );
                None
            }
        },
    };
    Some(HostMetrics {
        settings,
        interval: h.interval.0,
        push_url,
        job: h.job.clone(),
        buffer_max_bytes: h.buffer_max_bytes.0,
    })
}

fn compile_output(cfg: &AgentConfig, key: &impl Fn(&str) -> String, p: &mut Problems) -> Option<Output> {
    let o = &cfg.output;
    let (kind, path) = match o.kind.as_str() {
        "native" => (Some(OutputKind::Native), "/api/logs"),
        "otlp" => (Some(OutputKind::Otlp), "/v1/logs"),
        other => {
            p.add(key("output.kind"), format!("unknown output `{other}`: expected native or otlp"));
            (None, "")
        }
    };
    let base = o.endpoint.trim_end_matches('/');
    let url = match format!("{base}{path}").parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
        _ => {
            p.add(key("output.endpoint"), format!("`{}` is not a URL like http://127.0.0.1:9900", o.endpoint));
            None
        }
    };
    let token = match (o.token.as_str(), o.token_file.as_str()) {
        (t, "") => t.to_owned(),
        ("", file) => match std::fs::read_to_string(file) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            Ok(_) => {
                p.add(key("output.token_file"), format!("`{file}` is empty"));
                String::new()
            }
            Err(e) => {
                p.add(key("output.token_file"), format!("cannot read `{file}`: {e}"));
                String::new()
            }
        },
        _ => {
            p.add(key("output.token_file"), "set `token` or `token_file`, not both");
            String::new()
        }
    };
    let authorization = if token.is_empty() {
        None
    } else {
        match http::HeaderValue::try_from(format!("Bearer {token}")) {
            Ok(mut v) => {
                v.set_sensitive(true);
                Some(v)
            }
            Err(_) => {
                p.add(key("output.token"), "must be printable ASCII");
                None
            }
        }
    };
    for (name, d) in [("output.connect_timeout", o.connect_timeout), ("output.timeout", o.timeout)] {
        if d.0.is_zero() {
            p.add(key(name), "must be more than 0");
        }
    }
    if !o.ca_file.is_empty() && !o.endpoint.starts_with("https://") {
        p.add(key("output.ca_file"), "is only used with an https:// endpoint");
    }
    let tls = match tls_config(&o.ca_file) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            p.add(key("output.ca_file"), e);
            None
        }
    };
    Some(Output {
        kind: kind?,
        url: url?,
        authorization,
        tls: tls?,
        connect_timeout: o.connect_timeout.0,
        timeout: o.timeout.0,
    })
}

/// A TLS client config trusting the CAs in `ca_file`, or the Mozilla root set.
fn tls_config(ca_file: &str) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| format!("cannot read `{ca_file}`: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad PEM in `{ca_file}`: {e}"))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("`{ca_file}` holds no usable CA certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn compile_source(s: &SourceConfig, path: &str, host: &str, p: &mut Problems) -> Option<Source> {
    let before = p.list.len();
    if s.include.is_empty() {
        p.add(format!("{path}.include"), "at least one glob pattern is needed");
    }
    let mut roots = Vec::new();
    let mut include = GlobSetBuilder::new();
    for (i, pat) in s.include.iter().enumerate() {
        let abs = absolute(pat);
        match GlobBuilder::new(&abs).literal_separator(true).build() {
            Ok(g) => {
                include.add(g);
                roots.push(walk_root(&abs));
            }
            Err(e) => p.add(format!("{path}.include[{i}]"), format!("`{pat}` is not a glob: {e}")),
        }
    }
    let mut exclude = GlobSetBuilder::new();
    for (i, pat) in s.exclude.iter().enumerate() {
        // An exclude without a directory (`*.gz`) applies in every directory.
        let pat_full = if pat.contains('/') { absolute(pat) } else { format!("**/{pat}") };
        match GlobBuilder::new(&pat_full).literal_separator(true).build() {
            Ok(g) => {
                exclude.add(g);
            }
            Err(e) => p.add(format!("{path}.exclude[{i}]"), format!("`{pat}` is not a glob: {e}")),
        }
    }
    if s.service.trim().is_empty() {
        p.add(format!("{path}.service"), "is required: the service these logs belong to");
    }
    let read_from_end = match s.read_from.as_str() {
        "beginning" => false,
        "end" => true,
        other => {
            p.add(format!("{path}.read_from"), format!("unknown value `{other}`: expected beginning or end"));
            false
        }
    };
    if !(1024..=64 * 1024 * 1024).contains(&s.max_line_bytes.0) {
        p.add(format!("{path}.max_line_bytes"), "must be between 1KiB and 64MiB");
    }
    if s.close_inactive.0 < Duration::from_millis(100) {
        p.add(format!("{path}.close_inactive"), "must be at least 100ms");
    }
    if s.default_severity.trim().is_empty() {
        p.add(format!("{path}.default_severity"), "must not be empty");
    }
    for k in s.labels.keys() {
        if k.is_empty() {
            p.add(format!("{path}.labels"), "label names must not be empty");
        }
    }
    let multiline = s.multiline.as_ref().and_then(|m| compile_multiline(m, &format!("{path}.multiline"), p));
    let parser = compile_parser(&s.parser, &format!("{path}.parser"), p);
    let filters: Vec<Filter> = s
        .filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| compile_filter(f, &format!("{path}.filters[{i}]"), p))
        .collect();
    if p.list.len() != before {
        return None;
    }
    let labels = Labels {
        service: s.service.clone(),
        instance: if s.instance.is_empty() { host.to_owned() } else { s.instance.clone() },
        host: host.to_owned(),
        static_labels: s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    Some(Source {
        roots,
        include: include.build().ok()?,
        exclude: exclude.build().ok()?,
        labels: Arc::new(labels),
        read_from_end,
        max_line_bytes: s.max_line_bytes.0 as usize,
        close_inactive: s.close_inactive.0,
        default_severity: normalize_severity(&s.default_severity),
        multiline,
        parser: parser?,
        filters,
    })
}

fn compile_multiline(m: &MultilineConfig, path: &str, p: &mut Problems) -> Option<Multiline> {
    let rule = match (&m.preset, &m.start_pattern) {
        (Some(_), Some(_)) => {
            p.add(path.to_owned(), "set either `preset` or `start_pattern`, not both");
            None
        }
        (None, None) => {
            p.add(path.to_owned(), "needs `preset` (java, python) or `start_pattern`");
            None
        }
        (Some(preset), None) => {
            let pat = match preset.as_str() {
                "java" => Some(JAVA_CONTINUATION),
                "python" => Some(PYTHON_CONTINUATION),
                other => {
                    p.add(format!("{path}.preset"), format!("unknown preset `{other}`: expected java or python"));
                    None
                }
            };
            // The presets are constants covered by unit tests.
            pat.and_then(|pat| Regex::new(pat).ok()).map(Rule::Continue)
        }
        (None, Some(pat)) => match Regex::new(pat) {
            Ok(re) => Some(Rule::Start(re)),
            Err(e) => {
                p.add(format!("{path}.start_pattern"), format!("not a valid regex: {e}"));
                None
            }
        },
    };
    if m.max_lines == 0 {
        p.add(format!("{path}.max_lines"), "must be at least 1");
    }
    if m.max_bytes.0 < 1024 {
        p.add(format!("{path}.max_bytes"), "must be at least 1KiB");
    }
    if m.timeout.0.is_zero() {
        p.add(format!("{path}.timeout"), "must be more than 0");
    }
    Some(Multiline { rule: rule?, max_lines: m.max_lines, max_bytes: m.max_bytes.0 as usize, timeout: m.timeout.0 })
}

fn compile_parser(c: &ParserConfig, path: &str, p: &mut Problems) -> Option<Parser> {
    let format = match c.format.as_str() {
        "none" => Some(Format::None),
        "json" => Some(Format::Json),
        "logfmt" => Some(Format::Logfmt),
        "regex" => match Regex::new(&c.pattern) {
            Ok(re) if re.capture_names().flatten().next().is_some() => Some(Format::Regex(re)),
            Ok(_) => {
                p.add(format!("{path}.pattern"), "needs at least one named group like (?P<level>\\w+)");
                None
            }
            Err(e) => {
                p.add(format!("{path}.pattern"), format!("not a valid regex: {e}"));
                None
            }
        },
        other => {
            p.add(format!("{path}.format"), format!("unknown format `{other}`: expected none, json, logfmt or regex"));
            None
        }
    };
    if c.format != "regex" && !c.pattern.is_empty() {
        p.add(format!("{path}.pattern"), "is only used with format = \"regex\"");
    }
    let ts_format = match TsFormat::from_config(&c.timestamp_format) {
        Ok(f) => Some(f),
        Err(e) => {
            p.add(format!("{path}.timestamp_format"), e);
            None
        }
    };
    let names = |v: &str, defaults: &[&str]| -> Vec<String> {
        if v.is_empty() { defaults.iter().map(|s| (*s).to_owned()).collect() } else { vec![v.to_owned()] }
    };
    Some(Parser {
        format: format?,
        ts_fields: names(&c.timestamp_field, &["timestamp", "time", "ts", "@timestamp"]),
        ts_format: ts_format?,
        level_fields: names(&c.level_field, &["level", "severity", "lvl"]),
        message_fields: names(&c.message_field, &["message", "msg"]),
    })
}

fn compile_filter(f: &FilterConfig, path: &str, p: &mut Problems) -> Option<Filter> {
    let keep = match f.action.as_str() {
        "keep" => true,
        "drop" => false,
        other => {
            p.add(format!("{path}.action"), format!("unknown action `{other}`: expected keep or drop"));
            return None;
        }
    };
    if f.levels.is_empty() && f.field.is_none() && f.regex.is_none() {
        p.add(path.to_owned(), "needs a condition: `levels`, `field` or `regex`");
        return None;
    }
    if f.equals.is_some() && f.field.is_none() {
        p.add(format!("{path}.equals"), "needs `field`");
        return None;
    }
    let regex = match f.regex.as_deref().map(Regex::new) {
        None => None,
        Some(Ok(re)) => Some(re),
        Some(Err(e)) => {
            p.add(format!("{path}.regex"), format!("not a valid regex: {e}"));
            return None;
        }
    };
    Some(Filter {
        keep,
        levels: f.levels.iter().map(|l| normalize_severity(l)).collect(),
        field: f.field.clone(),
        equals: f.equals.clone(),
        regex,
    })
}

/// `pat` made absolute against the working directory.
fn absolute(pat: &str) -> String {
    if pat.starts_with('/') {
        return pat.to_owned();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    format!("{}/{pat}", cwd.display().to_string().trim_end_matches('/'))
}

/// The directory to walk for a glob, and how deep below it files can match.
fn walk_root(pat: &str) -> (PathBuf, usize) {
    let parts: Vec<&str> = pat.split('/').collect();
    let first_glob =
        parts.iter().position(|c| c.contains(['*', '?', '[', '{'])).unwrap_or(parts.len().saturating_sub(1));
    let base = parts[..first_glob].join("/");
    let base = if base.is_empty() { "/".to_owned() } else { base };
    let depth = if parts[first_glob..].contains(&"**") { 16 } else { parts.len() - first_glob };
    (PathBuf::from(base), depth)
}

/// This machine's host name, from the kernel.
pub fn system_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
