//! The node's config file: loading, environment overrides, validation, and problem reports
//! that name the file, line and key.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, `SIGNALBOX_*` environment
//! variables, command-line flags. An environment variable names a key path with `__`
//! between sections: `SIGNALBOX_GATEWAY__LISTEN=0.0.0.0:8080` sets `gateway.listen`, and
//! `SIGNALBOX_GATEWAY__TELEMETRY__SAMPLE_RATE=0.1` sets `gateway.telemetry.sample_rate`.
//! Values are read as TOML (numbers, booleans, arrays) and otherwise as strings.

use serde::{Deserialize, Serialize};
use signalbox_core::config::{Problem, Problems};
use signalbox_gateway::config::GatewayConfig;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Table;

/// The whole config file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Process-wide settings.
    pub node: NodeConfig,
    /// The console port: the web console and every HTTP API (admin, native, compatibility).
    pub console: ConsoleConfig,
    /// The edge gateway.
    pub gateway: GatewayConfig,
    /// The Consul-compatible API on its own port.
    pub consul: ConsulConfig,
    /// Who may use the APIs and the console.
    pub access: AccessConfig,
    /// The service registry.
    pub registry: RegistryConfig,
    /// Central configuration.
    pub configuration: CentralConfig,
    /// Where the control state (registry, configuration, KV, tokens) lives: the embedded
    /// store or an etcd cluster shared by several nodes.
    pub control: signalbox_control::backend::config::ControlConfig,
    /// How storage nodes share telemetry and answer each other's queries (etcd only).
    pub cluster: signalbox_api::cluster::config::ClusterConfig,
    /// The trace store and tail sampling.
    pub traces: signalbox_events::config::TracesConfig,
    /// The log store.
    pub logs: signalbox_events::config::LogsConfig,
    /// The metrics store, scrapes and PromQL.
    pub metrics: signalbox_metrics::config::MetricsConfig,
    /// Where receivers put what they accept: the local stores (the default) or a NATS
    /// JetStream stream that storage nodes consume.
    pub ingest: signalbox_ingest::IngestConfig,

    /// Exporters: what the node stores, sent on to remote_write, OTLP and Loki receivers.
    pub export: signalbox_export::config::ExportConfig,
    /// OTLP receivers.
    pub otlp: OtlpConfig,
    /// The Zipkin receiver.
    pub zipkin: ZipkinConfig,
    /// Connection limits of every API port (the gateway's are under `[gateway.limits]`).
    pub connections: crate::listeners::ConnectionsConfig,
}

/// OTLP receivers.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// OTLP/gRPC (empty: off).
    pub grpc_listen: String,
    /// OTLP/HTTP (empty: off).
    pub http_listen: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig { grpc_listen: "127.0.0.1:4317".into(), http_listen: "127.0.0.1:4318".into() }
    }
}

/// Zipkin receiver.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZipkinConfig {
    /// Zipkin's port for `POST /api/v2/spans` (empty: off; always under /zipkin on the
    /// console port).
    pub listen: String,
}

impl Default for ZipkinConfig {
    fn default() -> Self {
        ZipkinConfig { listen: "127.0.0.1:9411".into() }
    }
}

/// The Consul-compatible API (also under `/consul` on the console port).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsulConfig {
    /// Serve it on `listen` as well (Consul's default port, so clients need no settings).
    pub enabled: bool,
    pub listen: String,
    /// The node name Consul clients see.
    pub node_name: String,
}

impl Default for ConsulConfig {
    fn default() -> Self {
        ConsulConfig { enabled: true, listen: "127.0.0.1:8500".into(), node_name: "signalbox".into() }
    }
}

/// Access control. With no tokens, access control is off, and the node refuses to listen
/// on anything but loopback unless started with `--insecure`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Bootstrap tokens (more can be created through `/api/tokens`).
    pub tokens: Vec<TokenConfig>,
    /// How long a console login lasts.
    pub session_ttl: signalbox_core::config::Dur,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig { tokens: Vec::new(), session_ttl: signalbox_core::config::Dur::secs(12 * 3600) }
    }
}

/// One bootstrap token.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Name shown in logs and as the author of config changes.
    pub id: String,
    /// `read`, `ingest`, `edit` or `admin`.
    pub role: String,
    /// Hex SHA-256 of the secret (`signalbox hash-key SECRET` prints it).
    pub sha256: String,
    pub description: String,
}

/// The service registry.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Most registered instances.
    pub max_instances: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { max_instances: 100_000 }
    }
}

/// Central configuration.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CentralConfig {
    /// Largest value.
    pub max_value_bytes: signalbox_core::config::ByteSize,
    /// Most keys (live, all applications and profiles).
    pub max_keys: usize,
    /// `application/profile/key` of a TOML document with more gateway `[[services]]` and
    /// `[[routes]]`; changes to it are validated on write and hot-reloaded. Empty: off.
    pub gateway_key: String,
}

impl Default for CentralConfig {
    fn default() -> Self {
        CentralConfig {
            max_value_bytes: signalbox_core::config::ByteSize(1024 * 1024),
            max_keys: 10_000,
            gateway_key: "signalbox/default/gateway.toml".into(),
        }
    }
}

/// Process-wide settings.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory for all stored data.
    pub data_dir: String,
    /// Log format of the node's own logs: `text` or `json`.
    pub log_format: String,
    /// Log filter, in `tracing` env-filter syntax (`info`, `signalbox_gateway=debug`).
    pub log_level: String,
    /// How often the config file is checked for changes (a change is applied like SIGHUP).
    pub watch_interval: signalbox_core::config::Dur,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: "./signalbox-data".into(),
            log_format: "text".into(),
            log_level: "info".into(),
            watch_interval: signalbox_core::config::Dur::secs(2),
        }
    }
}

/// The console port.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address of the console and API listener.
    pub listen: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { listen: "127.0.0.1:9900".into() }
    }
}

/// Problems found in a config, ready to print.
#[derive(Debug)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    /// (line, problem); line 0 when the key is not in the file (a default or an override).
    pub problems: Vec<(usize, Problem)>,
    /// The config with every bad key replaced by its default, when the file parsed at all,
    /// so the remaining keys can still be validated and reported together.
    pub repaired: Option<Box<FileConfig>>,
}

impl ConfigError {
    fn with_config(mut self, c: FileConfig) -> Self {
        self.repaired = Some(Box::new(c));
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<defaults>".into());
        for (i, (line, p)) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if *line > 0 {
                write!(f, "{file}:{line}: {}: {}", p.path, p.message)?;
            } else {
                write!(f, "{file}: {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A loaded config with the text it came from (kept to locate keys in problem reports).
pub struct Loaded {
    pub config: FileConfig,
    pub file: Option<PathBuf>,
    source: String,
}

/// Reads `file` (or starts from defaults), applies `SIGNALBOX_*` overrides from `env`.
pub fn load(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Loaded, ConfigError> {
    let err = |line, path: &str, message: String| ConfigError {
        file: file.map(Path::to_path_buf),
        problems: vec![(line, Problem { path: path.into(), message })],
        repaired: None,
    };
    let source = match file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| err(0, "", format!("cannot read the config file: {e}")))?,
        None => String::new(),
    };
    let mut table: Table = source.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| line_of(&source, s.start)).unwrap_or(0);
        err(line, "", format!("invalid TOML: {}", e.message()))
    })?;
    for (name, value) in env {
        // Overrides name a key inside a section (`SECTION__KEY`); single-word names such as
        // SIGNALBOX_CONFIG, SIGNALBOX_URL or SIGNALBOX_TOKEN belong to the command line.
        let Some(rest) = name.strip_prefix("SIGNALBOX_") else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let keys: Vec<String> = rest.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(err(0, &name, "malformed override: use SECTION__KEY, e.g. SIGNALBOX_GATEWAY__LISTEN".into()));
        }
        set_path(&mut table, &keys, &value).map_err(|m| err(0, &keys.join("."), format!("{m} (from ${name})")))?;
    }
    // A type error stops serde at the first bad key. To report every one, remove each bad
    // key and deserialize again (the default takes its place), collecting the problems.
    let mut problems = Vec::new();
    let config = loop {
        match serde_path_to_error::deserialize::<_, FileConfig>(toml::Value::Table(table.clone())) {
            Ok(c) => break c,
            Err(e) => {
                let path = toml_path(&e.path().to_string());
                let message = e.into_inner().message().to_owned();
                // For an unknown field the path may end at its table; point at the field.
                let full = match message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
                    Some(field) if path.is_empty() => field.to_owned(),
                    Some(field) if !path.ends_with(field) => format!("{path}.{field}"),
                    _ => path,
                };
                let removed = remove_path(&mut table, &full);
                problems.push((locate(&source, &full), Problem { path: full, message }));
                if !removed || problems.len() >= 100 {
                    return Err(ConfigError { file: file.map(Path::to_path_buf), problems, repaired: None });
                }
            }
        }
    };
    if !problems.is_empty() {
        return Err(ConfigError { file: file.map(Path::to_path_buf), problems, repaired: None }.with_config(config));
    }
    Ok(Loaded { config, file: file.map(Path::to_path_buf), source })
}

impl Loaded {
    /// Turns validation problems into a report with line numbers.
    pub fn report(&self, problems: Problems) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            problems: problems.list.into_iter().map(|p| (locate(&self.source, &p.path), p)).collect(),
            repaired: None,
        }
    }
}

/// Validation problems of a config that failed to load, located in `file`'s text.
pub fn locate_all(file: &Path, problems: Problems) -> Vec<(usize, Problem)> {
    let source = std::fs::read_to_string(file).unwrap_or_default();
    problems.list.into_iter().map(|p| (locate(&source, &p.path), p)).collect()
}

/// Removes the key at a path like `gateway.routes[1].timeouts.connect`; false if absent.
fn remove_path(t: &mut Table, path: &str) -> bool {
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    remove_in(t, &segs)
}

fn remove_in(t: &mut Table, segs: &[&str]) -> bool {
    let Some((first, rest)) = segs.split_first() else { return false };
    if rest.is_empty() {
        return remove_seg(t, first);
    }
    let (key, index) = split_index(first);
    let Some(mut v) = t.get_mut(key) else { return false };
    if let Some(i) = index {
        match v.as_array_mut().and_then(|a| a.get_mut(i)) {
            Some(item) => v = item,
            None => return false,
        }
    }
    match v.as_table_mut() {
        Some(inner) => remove_in(inner, rest),
        None => false,
    }
}

fn remove_seg(t: &mut Table, seg: &str) -> bool {
    let (key, index) = split_index(seg);
    match index {
        None => t.remove(key).is_some(),
        Some(i) => match t.get_mut(key).and_then(|v| v.as_array_mut()) {
            Some(a) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
    }
}

fn split_index(seg: &str) -> (&str, Option<usize>) {
    match seg.split_once('[') {
        Some((k, i)) => (k, i.trim_end_matches(']').parse().ok()),
        None => (seg, None),
    }
}

/// serde_path_to_error writes `gateway.routes[0].match`; keep that form, minus a leading `.`.
fn toml_path(p: &str) -> String {
    if p == "." { String::new() } else { p.trim_start_matches('.').to_owned() }
}

fn set_path(t: &mut Table, keys: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut cur = t;
    for k in parents {
        let entry = cur.entry(k.clone()).or_insert_with(|| toml::Value::Table(Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("`{k}` is not a table"))?;
    }
    let value = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    cur.insert(last.clone(), value);
    Ok(())
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The 1-based line of a key path like `gateway.routes[1].match.path_prefix` in `src`, or of
/// its closest ancestor present in the file; 0 when none is.
pub fn locate(src: &str, path: &str) -> usize {
    let Ok(doc) = toml::de::DeTable::parse(src) else {
        return 0;
    };
    let mut best = 0;
    let mut table = Some(doc.get_ref());
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (key, index) = match seg.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let found = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref().as_ref() == key));
        let Some((k, v)) = found else { break };
        best = line_of(src, k.span().start);
        let mut value = Some(v.get_ref());
        if let Some(i) = index {
            match value {
                Some(toml::de::DeValue::Array(a)) => match a.get(i) {
                    Some(item) => {
                        best = line_of(src, item.span().start);
                        value = Some(item.get_ref());
                    }
                    None => break,
                },
                _ => break,
            }
        }
        table = match value {
            Some(toml::de::DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys() {
        let src = "[gateway]\nlisten = \"x\"\n\n[[gateway.routes]]\nservice = \"a\"\n\n[[gateway.routes]]\nservice = \"b\"\n[gateway.routes.match]\npath = \"y\"\n";
        assert_eq!(locate(src, "gateway.listen"), 2);
        assert_eq!(locate(src, "gateway.routes[1].service"), 8);
        assert_eq!(locate(src, "gateway.routes[1].match.path"), 10);
        assert_eq!(locate(src, "gateway.routes[1].match.nope"), 9);
        assert_eq!(locate(src, "console.listen"), 0);
    }

    #[test]
    fn env_overrides_apply_typed_values() {
        let env = vec![
            ("SIGNALBOX_GATEWAY__LISTEN".to_string(), "0.0.0.0:18080".to_string()),
            ("SIGNALBOX_GATEWAY__TELEMETRY__SAMPLE_RATE".to_string(), "0.25".to_string()),
            ("SIGNALBOX_GATEWAY__TELEMETRY__SPANS".to_string(), "false".to_string()),
            ("UNRELATED".to_string(), "1".to_string()),
            ("SIGNALBOX_CONFIG".to_string(), "/not/a/section".to_string()),
        ];
        let l = load(None, env.into_iter()).unwrap();
        assert_eq!(l.config.gateway.listen, "0.0.0.0:18080");
        assert_eq!(l.config.gateway.telemetry.sample_rate, 0.25);
        assert!(!l.config.gateway.telemetry.spans);
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[gateway]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap();
        let e = load(Some(&p), std::iter::empty()).err().unwrap().to_string();
        assert!(e.contains("c.toml:3: gateway.listen_typo: unknown field `listen_typo`"), "{e}");
        std::fs::write(&p, "[gateway.limits]\nmax_headers = \"many\"\n").unwrap();
        let e = load(Some(&p), std::iter::empty()).err().unwrap().to_string();
        assert!(e.contains("c.toml:2: gateway.limits.max_headers: invalid type"), "{e}");
        std::fs::write(&p, "[gateway]\nworkers = \"x\"\n[gateway.limits]\nmax_headers = \"many\"\nbogus = 1\n")
            .unwrap();
        let e = load(Some(&p), std::iter::empty()).err().unwrap();
        assert_eq!(e.problems.len(), 3, "every type error is reported: {e}");
        assert!(e.repaired.is_some());
    }
}

#[cfg(test)]
mod example_tests {
    /// The documented example must load and validate, so it cannot drift from the code.
    #[test]
    fn example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/signalbox.toml");
        let loaded = super::load(Some(&path), std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
        let problems = crate::serve::validate(&loaded.config);
        assert!(problems.is_empty(), "{}", loaded.report(problems));
        let g = &loaded.config.gateway;
        assert_eq!(g.routes.len(), 3);
        assert!(g.routes[0].auth.as_ref().is_some_and(|a| a.jwt.is_some()));
        assert_eq!(g.services[0].circuit_breaker.as_ref().map(|c| c.window.as_str()), Some("count"));
    }

    /// The deployment examples (docs/deployment.md) load and validate too.
    #[test]
    fn deploy_examples_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deploy");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/deploy") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let loaded = super::load(Some(&path), std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
                let problems = crate::serve::validate(&loaded.config);
                assert!(problems.is_empty(), "{}: {}", path.display(), loaded.report(problems));
                n += 1;
            }
        }
        assert!(n >= 2, "expected the container and cluster-node examples in {}", dir.display());
    }
}
