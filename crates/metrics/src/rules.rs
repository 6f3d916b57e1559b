//! Recording and alerting rules, Prometheus-compatible: rule files in Prometheus's YAML
//! format, groups evaluated every interval, recording rules written back to the store,
//! alerts with `for` and `keep_firing_for`, the `ALERTS` and `ALERTS_FOR_STATE` series,
//! notifications to Alertmanagers and webhooks, and alert state kept across restarts.
//!
//! Differences from Prometheus a user may notice: templates are a subset (see
//! [`template`]); the `for` state is restored from the state file, not from
//! `ALERTS_FOR_STATE`; failed notifications are retried (Prometheus drops them); webhooks
//! get one payload per batch, grouped by nothing; there are no external labels and no
//! `query_offset`.
//!
//! # Layout
//! - [`RulesConfig`]: the `[metrics.rules]` config section.
//! - [`file`](mod@file): rule files parsed with line numbers; [`check_file`] for `check-rules`.
//! - [`yaml`]: YAML read into a tree that keeps each node's line.
//! - [`template`]: the Go-template subset labels and annotations use.
//! - [`alert`]: an alerting rule's alerts and their state machine.
//! - [`manager`]: [`RuleManager`]: evaluation tasks, reload, the rules and alerts APIs.
//! - [`notifier`]: the bounded notification queue, Alertmanager API v2 and webhooks.
//! - [`persist`]: the alert state file.
//! - `defaults.yml`: the default rules over the node's own metrics and the host, container
//!   and process metrics of agents and node_exporters.

pub mod alert;
pub mod file;
pub mod manager;
pub mod notifier;
pub mod persist;
pub mod template;
#[cfg(test)]
mod tests;
pub mod yaml;

pub use alert::{Alert, AlertState, Transition};
pub use file::{RuleFileSummary, check_file};
pub use manager::RuleManager;

use serde::{Deserialize, Serialize};
use signalbox_core::config::{Dur, Problems};
use std::path::PathBuf;

/// The default rules, over the node's own metrics.
pub const DEFAULT_RULES: &str = include_str!("rules/defaults.yml");
/// The file name the default rules are reported under.
pub const DEFAULT_RULES_FILE: &str = "signalbox:defaults.yml";

/// The rules section (`[metrics.rules]`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files in Prometheus's format; `*`, `?` and `[...]` may appear in file names.
    pub files: Vec<String>,
    /// How often a group without its own `interval` is evaluated.
    pub evaluation_interval: Dur,
    /// Alertmanager base URLs (`http://am:9093`); alerts go to `{url}/api/v2/alerts`.
    pub alertmanagers: Vec<String>,
    /// URLs that receive alerts in Alertmanager's webhook payload format.
    pub webhooks: Vec<String>,
    /// How often a firing alert is sent again.
    pub resend_delay: Dur,
    /// The console's external URL, for `$externalURL` and the alerts' generator links.
    pub external_url: String,
    /// Load the default rules over the node's own metrics.
    pub default_rules: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            evaluation_interval: Dur::secs(60),
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            resend_delay: Dur::secs(60),
            external_url: String::new(),
            default_rules: true,
        }
    }
}

impl RulesConfig {
    /// Adds every problem of this section to `p`, with key paths under `prefix`; rule file
    /// problems are reported with their file and line.
    pub fn check(&self, prefix: &str, p: &mut Problems) {
        if self.evaluation_interval.0.is_zero() {
            p.add(format!("{prefix}.evaluation_interval"), "must be more than 0");
        }
        if self.resend_delay.0.is_zero() {
            p.add(format!("{prefix}.resend_delay"), "must be more than 0");
        }
        for (key, urls) in [("alertmanagers", &self.alertmanagers), ("webhooks", &self.webhooks)] {
            for (i, u) in urls.iter().enumerate() {
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.parse::<http::Uri>().is_err() {
                    p.add(format!("{prefix}.{key}[{i}]"), format!("{u:?} is not an http:// or https:// URL"));
                }
            }
        }
        if !self.external_url.is_empty() && self.external_url.parse::<http::Uri>().is_err() {
            p.add(format!("{prefix}.external_url"), format!("{:?} is not a URL", self.external_url));
        }
        if let Err(e) = manager::load_groups(self) {
            for line in e.lines() {
                p.add(format!("{prefix}.files"), line);
            }
        }
    }
}

/// The files `patterns` name: a pattern with glob characters in its file name matches the
/// files of its directory (in name order); others are taken as they are.
pub fn expand_globs(patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for pat in patterns {
        let path = PathBuf::from(pat);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(['*', '?', '[']) {
            out.push(path);
            continue;
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| ".".into());
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            return Err(format!("{pat}: globs are only allowed in the file name"));
        }
        let re = glob_regex(&name).map_err(|e| format!("{pat}: {e}"))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{pat}: {}: {e}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| re.is_match(&e.file_name().to_string_lossy()))
            .map(|e| dir.join(e.file_name()))
            .collect();
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn glob_regex(glob: &str) -> Result<regex::Regex, String> {
    let mut re = String::from("^");
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' {
                        re.push_str("\\\\");
                    } else {
                        re.push(c);
                    }
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("bad glob: {e}"))
}
