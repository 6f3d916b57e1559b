//! Relabeling, Prometheus's subset that targets and scraped series go through: `replace`,
//! `keep`, `drop`, `labelmap`, `labeldrop`, `labelkeep`, `hashmod`, `lowercase`,
//! `uppercase`. Regexes are anchored at both ends, replacements expand `$1`, `${1}` and
//! `${name}`, as Prometheus's do.

use crate::storage::Labels;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// One rule as written in a config (`relabel_configs`, `metric_relabel_configs`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub modulus: u64,
    #[serde(default)]
    pub target_label: String,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

/// A checked rule, its regex compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    cfg: RuleConfig,
    regex: regex::Regex,
}

impl Rule {
    /// Checks a rule as Prometheus does and compiles its regex; the error names the field.
    pub fn new(cfg: RuleConfig) -> Result<Rule, String> {
        let regex = regex::Regex::new(&format!("^(?s:{})$", cfg.regex)).map_err(|e| format!("regex: {e}"))?;
        match cfg.action {
            Action::Replace | Action::HashMod | Action::Lowercase | Action::Uppercase
                if cfg.target_label.is_empty() =>
            {
                return Err(format!("target_label: required for action {:?}", cfg.action).to_lowercase());
            }
            Action::HashMod if cfg.modulus == 0 => return Err("modulus: required (non-zero) for action hashmod".into()),
            Action::Keep | Action::Drop | Action::HashMod | Action::Lowercase | Action::Uppercase
                if cfg.source_labels.is_empty() =>
            {
                return Err(format!("source_labels: required for action {:?}", cfg.action).to_lowercase());
            }
            _ => {}
        }
        Ok(Rule { cfg, regex })
    }
}

fn get<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

fn set(labels: &mut Labels, name: &str, value: String) {
    labels.retain(|(k, _)| k != name);
    if !value.is_empty() {
        labels.push((name.to_string(), value));
    }
}

/// Applies rules in order; `None` when a rule drops the series or target. The result is
/// sorted by name.
pub fn apply(rules: &[Rule], mut labels: Labels) -> Option<Labels> {
    for r in rules {
        let value = r.cfg.source_labels.iter().map(|s| get(&labels, s)).collect::<Vec<_>>().join(&r.cfg.separator);
        match r.cfg.action {
            Action::Keep => {
                if !r.regex.is_match(&value) {
                    return None;
                }
            }
            Action::Drop => {
                if r.regex.is_match(&value) {
                    return None;
                }
            }
            Action::Replace => {
                if let Some(caps) = r.regex.captures(&value) {
                    let mut target = String::new();
                    caps.expand(&r.cfg.target_label, &mut target);
                    let mut out = String::new();
                    caps.expand(&r.cfg.replacement, &mut out);
                    if crate::remote_write::valid_label_name(&target) {
                        set(&mut labels, &target, out);
                    }
                }
            }
            Action::Lowercase => set(&mut labels, &r.cfg.target_label, value.to_lowercase()),
            Action::Uppercase => set(&mut labels, &r.cfg.target_label, value.to_uppercase()),
            Action::HashMod => {
                let digest = Md5::digest(value.as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let m = u64::from_be_bytes(tail) % r.cfg.modulus;
                set(&mut labels, &r.cfg.target_label, m.to_string());
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(k, v)| {
                        r.regex.captures(k).map(|caps| {
                            let mut name = String::new();
                            caps.expand(&r.cfg.replacement, &mut name);
                            (name, v.clone())
                        })
                    })
                    .collect();
                for (k, v) in mapped {
                    if crate::remote_write::valid_label_name(&k) {
                        set(&mut labels, &k, v);
                    }
                }
            }
            Action::LabelDrop => labels.retain(|(k, _)| !r.regex.is_match(k)),
            Action::LabelKeep => labels.retain(|(k, _)| r.regex.is_match(k)),
        }
    }
    labels.sort();
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Rule {
        Rule::new(toml::from_str(toml_text).unwrap()).unwrap()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        let mut v: Labels = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        v.sort();
        v
    }

    #[test]
    fn every_action_as_prometheus_applies_it() {
        let base = l(&[("__address__", "10.0.0.1:9100"), ("__meta_service", "orders"), ("env", "Prod")]);
        let replace = rule(
            r#"source_labels = ["__address__"]
               regex = "([^:]+):\\d+"
               target_label = "host"
               replacement = "${1}""#,
        );
        let out = apply(&[replace], base.clone()).unwrap();
        assert_eq!(get(&out, "host"), "10.0.0.1");
        let keep = rule(
            r#"action = "keep"
               source_labels = ["__meta_service"]
               regex = "ord.*""#,
        );
        assert!(apply(std::slice::from_ref(&keep), base.clone()).is_some());
        let drop_orders = rule(
            r#"action = "drop"
               source_labels = ["__meta_service"]
               regex = "orders""#,
        );
        assert!(apply(&[drop_orders], base.clone()).is_none());
        let partial = rule(
            r#"action = "keep"
               source_labels = ["__meta_service"]
               regex = "ord""#,
        );
        assert!(apply(&[partial], base.clone()).is_none(), "regexes are anchored");
        let map = rule(
            r#"action = "labelmap"
               regex = "__meta_(.+)""#,
        );
        assert_eq!(get(&apply(&[map], base.clone()).unwrap(), "service"), "orders");
        let ldrop = rule(
            r#"action = "labeldrop"
               regex = "__.*""#,
        );
        assert_eq!(apply(&[ldrop], base.clone()).unwrap(), l(&[("env", "Prod")]));
        let lkeep = rule(
            r#"action = "labelkeep"
               regex = "env""#,
        );
        assert_eq!(apply(&[lkeep], base.clone()).unwrap(), l(&[("env", "Prod")]));
        let lower = rule(
            r#"action = "lowercase"
               source_labels = ["env"]
               target_label = "env""#,
        );
        assert_eq!(get(&apply(&[lower], base.clone()).unwrap(), "env"), "prod");
        let empty = rule(
            r#"source_labels = ["missing"]
               target_label = "env""#,
        );
        assert_eq!(get(&apply(&[empty], base.clone()).unwrap(), "env"), "", "an empty result removes the label");
    }

    #[test]
    fn hashmod_matches_prometheus_sharding() {
        // md5("10.0.0.1:9100") read as Prometheus does (last 8 bytes, big endian), mod 8.
        let r = rule(
            r#"action = "hashmod"
               source_labels = ["__address__"]
               modulus = 8
               target_label = "shard""#,
        );
        let digest = Md5::digest(b"10.0.0.1:9100");
        let expect = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 8;
        let out = apply(&[r], l(&[("__address__", "10.0.0.1:9100")])).unwrap();
        assert_eq!(get(&out, "shard"), expect.to_string());
    }

    #[test]
    fn invalid_rules_name_the_field() {
        let cfg: RuleConfig = toml::from_str(r#"action = "hashmod""#).unwrap();
        assert!(Rule::new(cfg).unwrap_err().contains("target_label"));
        let cfg: RuleConfig = toml::from_str(r#"regex = "(""#).unwrap();
        assert!(Rule::new(cfg).unwrap_err().starts_with("regex"));
    }
}
