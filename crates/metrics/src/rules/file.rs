//! Rule files in Prometheus's format, read with line numbers: every problem is reported as
//! `file:line: key: message`, and all problems of a file are reported at once.
//!
//! ```yaml
//! groups:
//!   - name: example
//!     interval: 30s        # optional; the configured evaluation interval otherwise
//!     limit: 10            # optional; 0 is no limit
//!     rules:
//!       - record: job:up:sum
//!         expr: sum by (job) (up)
//!       - alert: InstanceDown
//!         expr: up == 0
//!         for: 5m
//!         keep_firing_for: 1m
//!         labels: { severity: page }
//!         annotations: { summary: "{{ $labels.instance }} is down" }
//! ```

use super::template::Template;
use super::yaml::{self, Kind, Node};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// One parsed rule group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDef {
    pub name: String,
    /// The file it came from, as given.
    pub file: String,
    /// `None`: the configured evaluation interval.
    pub interval_ms: Option<i64>,
    /// Most series a recording rule, or alerts an alerting rule, may produce (0: no limit).
    pub limit: usize,
    pub rules: Vec<RuleDef>,
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    /// The record or alert name.
    pub name: String,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
    pub kind: RuleKind,
    /// Where the rule starts in its file.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Recording,
    Alerting {
        for_ms: i64,
        keep_firing_for_ms: i64,
        annotations: BTreeMap<String, String>,
        /// The label and annotation templates, compiled.
        label_templates: Vec<(String, Template)>,
        annotation_templates: Vec<(String, Template)>,
    },
}

/// What `signalbox check-rules` prints for a good file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFileSummary {
    pub file: String,
    pub groups: usize,
    pub recording_rules: usize,
    pub alerting_rules: usize,
}

/// Checks one rule file: its summary, or every problem as `file:line: key: message`.
pub fn check_file(path: impl AsRef<std::path::Path>) -> Result<RuleFileSummary, Vec<String>> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| vec![format!("{name}:0: file: cannot read it: {e}")])?;
    let groups = parse_rule_file(&name, &src)?;
    let count = |alerting: bool| {
        groups.iter().flat_map(|g| &g.rules).filter(|r| matches!(r.kind, RuleKind::Alerting { .. }) == alerting).count()
    };
    Ok(RuleFileSummary { file: name, groups: groups.len(), recording_rules: count(false), alerting_rules: count(true) })
}

struct Problems<'a> {
    file: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, line: usize, key: &str, message: impl std::fmt::Display) {
        self.list.push(format!("{}:{line}: {key}: {message}", self.file));
    }
}

/// Parses rule file `src` (named `file` in messages).
pub fn parse_rule_file(file: &str, src: &str) -> Result<Vec<GroupDef>, Vec<String>> {
    let mut p = Problems { file, list: Vec::new() };
    let root = match yaml::parse(src) {
        Ok(Some(root)) => root,
        Ok(None) => return Ok(Vec::new()),
        Err((line, m)) => {
            p.add(line, "yaml", m);
            return Err(p.list);
        }
    };
    let mut groups = Vec::new();
    if let Some(fields) = mapping(&root, "file", &["groups"], &mut p)
        && let Some(list) = fields.get("groups")
    {
        match &list.kind {
            Kind::Seq(items) => {
                let mut names = HashSet::new();
                for (i, g) in items.iter().enumerate() {
                    if let Some(g) = parse_group(file, &format!("groups[{i}]"), g, &mut p) {
                        if !names.insert(g.name.clone()) {
                            p.add(
                                items[i].line,
                                &format!("groups[{i}].name"),
                                format!("group name {:?} is repeated in the same file", g.name),
                            );
                        }
                        groups.push(g);
                    }
                }
            }
            Kind::Null => {}
            _ => p.add(list.line, "groups", "must be a list of groups"),
        }
    }
    if p.list.is_empty() { Ok(groups) } else { Err(p.list) }
}

/// The fields of a mapping node, reporting unknown and repeated keys.
fn mapping<'n>(node: &'n Node, key: &str, known: &[&str], p: &mut Problems) -> Option<BTreeMap<String, &'n Node>> {
    let Kind::Map(entries) = &node.kind else {
        p.add(node.line, key, "must be a mapping");
        return None;
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let Some(name) = k.scalar() else {
            p.add(k.line, key, "keys must be strings");
            continue;
        };
        let path = if key == "file" { name.to_owned() } else { format!("{key}.{name}") };
        if !known.contains(&name) {
            p.add(k.line, &path, format!("unknown field; expected one of {}", known.join(", ")));
        } else if out.insert(name.to_owned(), v).is_some() {
            p.add(k.line, &path, "repeated field");
        }
    }
    Some(out)
}

fn string_field(node: &Node, key: &str, p: &mut Problems) -> Option<String> {
    match &node.kind {
        Kind::Scalar { text, .. } => Some(text.clone()),
        Kind::Null => Some(String::new()),
        _ => {
            p.add(node.line, key, "must be a string");
            None
        }
    }
}

/// A Prometheus duration (`30s`, `1h30m`, `0s`) in milliseconds.
fn duration_field(node: &Node, key: &str, p: &mut Problems) -> Option<i64> {
    let text = string_field(node, key, p)?;
    match parse_model_duration(&text) {
        Ok(ms) => Some(ms),
        Err(m) => {
            p.add(node.line, key, m);
            None
        }
    }
}

/// Prometheus's `model.Duration` syntax in milliseconds.
pub fn parse_model_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.starts_with('0') && t.trim_start_matches('0').chars().all(|c| c.is_ascii_alphabetic()) {
        return Ok(0);
    }
    match promql_parser::util::parse_duration(t) {
        Ok(d) => i64::try_from(d.as_millis()).map_err(|_| format!("duration {t:?} is too long")),
        Err(_) => Err(format!("not a valid duration: {t:?} (expected a duration such as 30s, 5m or 1h30m)")),
    }
}

/// Whether `name` is a valid label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is a valid metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_group(file: &str, key: &str, node: &Node, p: &mut Problems) -> Option<GroupDef> {
    let fields = mapping(node, key, &["name", "interval", "limit", "rules"], p)?;
    let name = match fields.get("name") {
        Some(n) => string_field(n, &format!("{key}.name"), p).unwrap_or_default(),
        None => String::new(),
    };
    if name.is_empty() {
        p.add(fields.get("name").map_or(node.line, |n| n.line), &format!("{key}.name"), "a group needs a name");
    }
    let interval_ms = fields.get("interval").and_then(|n| duration_field(n, &format!("{key}.interval"), p));
    if let (Some(0), Some(n)) = (interval_ms, fields.get("interval")) {
        p.add(n.line, &format!("{key}.interval"), "must be more than 0");
    }
    let limit = match fields.get("limit") {
        None => 0,
        Some(n) => match n.scalar().map(str::parse::<usize>) {
            Some(Ok(l)) => l,
            _ => {
                p.add(n.line, &format!("{key}.limit"), "must be a whole number, 0 or more");
                0
            }
        },
    };
    let mut rules = Vec::new();
    match fields.get("rules").map(|n| (n.line, &n.kind)) {
        Some((_, Kind::Seq(items))) => {
            for (i, r) in items.iter().enumerate() {
                if let Some(rule) = parse_rule(&format!("{key}.rules[{i}]"), r, p) {
                    rules.push(rule);
                }
            }
        }
        Some((_, Kind::Null)) | None => {}
        Some((line, _)) => p.add(line, &format!("{key}.rules"), "must be a list of rules"),
    }
    Some(GroupDef { name, file: file.to_owned(), interval_ms: interval_ms.filter(|i| *i > 0), limit, rules })
}

fn string_map(node: &Node, key: &str, what: &str, p: &mut Problems) -> Vec<(usize, String, String)> {
    match &node.kind {
        Kind::Null => Vec::new(),
        Kind::Map(entries) => {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for (k, v) in entries {
                let Some(name) = k.scalar() else {
                    p.add(k.line, key, format!("{what} names must be strings"));
                    continue;
                };
                let path = format!("{key}.{name}");
                if !valid_label_name(name) {
                    p.add(k.line, &path, format!("invalid {what} name: {name:?}"));
                } else if !seen.insert(name.to_owned()) {
                    p.add(k.line, &path, "repeated field");
                } else if let Some(val) = string_field(v, &path, p) {
                    out.push((v.line, name.to_owned(), val));
                }
            }
            out
        }
        _ => {
            p.add(node.line, key, format!("must be a mapping of {what} names to values"));
            Vec::new()
        }
    }
}

fn compile(entries: &[(usize, String, String)], key: &str, p: &mut Problems) -> Vec<(String, Template)> {
    let mut out = Vec::new();
    for (line, name, text) in entries {
        match Template::parse(text) {
            Ok(t) => out.push((name.clone(), t)),
            Err(m) => p.add(*line, &format!("{key}.{name}"), format!("template: {m}")),
        }
    }
    out
}

fn parse_rule(key: &str, node: &Node, p: &mut Problems) -> Option<RuleDef> {
    let fields =
        mapping(node, key, &["record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"], p)?;
    let field =
        |name: &str, p: &mut Problems| fields.get(name).and_then(|n| string_field(n, &format!("{key}.{name}"), p));
    let record = field("record", p);
    let alert = field("alert", p);
    let line = node.line;
    let expr = field("expr", p).unwrap_or_default();
    let expr_line = fields.get("expr").map_or(line, |n| n.line);
    let before = p.list.len();
    if expr.trim().is_empty() {
        p.add(expr_line, &format!("{key}.expr"), "field 'expr' must be set in rule");
    } else if let Err(e) = crate::promql::parse_query(&expr) {
        p.add(expr_line, &format!("{key}.expr"), format!("could not parse expression: {e}"));
    }
    let labels = fields.get("labels").map(|n| string_map(n, &format!("{key}.labels"), "label", p)).unwrap_or_default();
    for (l, name, _) in &labels {
        if name == "__name__" {
            p.add(*l, &format!("{key}.labels.{name}"), "invalid label name: \"__name__\"");
        }
    }
    let label_map: BTreeMap<String, String> = labels.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect();
    let (name, kind) = match (record, alert) {
        (Some(_), Some(_)) => {
            p.add(line, key, "only one of 'record' and 'alert' must be set");
            return None;
        }
        (None, None) => {
            p.add(line, key, "one of 'record' or 'alert' must be set");
            return None;
        }
        (Some(record), None) => {
            let rline = fields.get("record").map_or(line, |n| n.line);
            if !valid_metric_name(&record) {
                p.add(rline, &format!("{key}.record"), format!("invalid recording rule name: {record:?}"));
            }
            for f in ["for", "keep_firing_for", "annotations"] {
                if let Some(n) = fields.get(f) {
                    p.add(n.line, &format!("{key}.{f}"), format!("invalid field '{f}' in recording rule"));
                }
            }
            (record, RuleKind::Recording)
        }
        (None, Some(alert)) => {
            if alert.is_empty() || !valid_label_name(&alert) {
                let aline = fields.get("alert").map_or(line, |n| n.line);
                p.add(aline, &format!("{key}.alert"), format!("invalid alert name: {alert:?}"));
            }
            let for_ms = fields.get("for").and_then(|n| duration_field(n, &format!("{key}.for"), p)).unwrap_or(0);
            let keep_firing_for_ms = fields
                .get("keep_firing_for")
                .and_then(|n| duration_field(n, &format!("{key}.keep_firing_for"), p))
                .unwrap_or(0);
            let annotations = fields
                .get("annotations")
                .map(|n| string_map(n, &format!("{key}.annotations"), "annotation", p))
                .unwrap_or_default();
            let label_templates = compile(&labels, &format!("{key}.labels"), p);
            let annotation_templates = compile(&annotations, &format!("{key}.annotations"), p);
            let annotations = annotations.into_iter().map(|(_, k, v)| (k, v)).collect();
            (
                alert,
                RuleKind::Alerting { for_ms, keep_firing_for_ms, annotations, label_templates, annotation_templates },
            )
        }
    };
    if p.list.len() > before {
        return None;
    }
    Some(RuleDef { name, expr, labels: label_map, kind, line })
}
