//! Stored configuration documents as Spring properties, the way Spring Cloud Config Server
//! serves them: a key's type is its extension.
//!
//! - `*.properties`: `k=v` / `k: v` lines, `#` and `!` comments.
//! - `*.json`: leaves flattened to `a.b[0].c`.
//! - `*.yml` / `*.yaml`: flattened like JSON. A file may hold several `---` documents; one
//!   with `spring.config.activate.on-profile` (or the older `spring.profiles`) applies only
//!   when a requested profile matches it (`!p` negates, a comma list matches any), and later
//!   documents override earlier ones, as Spring Boot loads them.
//! - anything else: one property named after the key.
//!
//! Documents are checked when written ([`check_document`]), so a broken one is refused with
//! its line instead of being served as nonsense.

use serde_json::Value;
use std::collections::BTreeMap;
use yaml_rust2::{Yaml, YamlLoader};

fn is_yaml(key: &str) -> bool {
    key.ends_with(".yml") || key.ends_with(".yaml")
}

/// Whether `value` parses as the document type `key` names; the problem otherwise.
pub fn check_document(key: &str, value: &str) -> Result<(), String> {
    if key.ends_with(".json") {
        serde_json::from_str::<Value>(value)
            .map(drop)
            .map_err(|e| format!("is not valid JSON ({key} is a JSON document): {e}"))
    } else if is_yaml(key) {
        YamlLoader::load_from_str(value)
            .map(drop)
            .map_err(|e| format!("is not valid YAML ({key} is a YAML document): {e}"))
    } else {
        Ok(())
    }
}

/// Adds the properties of one stored value to `out`, for a request naming `profiles`.
pub fn flatten_entry(key: &str, value: &str, profiles: &[&str], out: &mut BTreeMap<String, Value>) {
    if key.ends_with(".properties") {
        for line in value.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
                continue;
            }
            let split = l.find(['=', ':']).unwrap_or(l.len());
            let (k, v) = l.split_at(split);
            let v = v.get(1..).unwrap_or("").trim();
            out.insert(k.trim().to_owned(), Value::String(v.to_owned()));
        }
    } else if key.ends_with(".json")
        && let Ok(v) = serde_json::from_str::<Value>(value)
    {
        flatten_json("", &v, out);
    } else if is_yaml(key)
        && let Ok(docs) = YamlLoader::load_from_str(value)
    {
        for doc in docs.iter().filter(|d| applies(d, profiles)) {
            flatten_yaml("", doc, out);
        }
    } else {
        out.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// Whether a YAML document is active for `profiles`.
fn applies(doc: &Yaml, profiles: &[&str]) -> bool {
    let spring = &doc["spring"];
    let condition = match (&spring["config"]["activate"]["on-profile"], &spring["profiles"]) {
        (Yaml::String(s), _) | (Yaml::BadValue, Yaml::String(s)) => s.clone(),
        _ => return true,
    };
    let active = |p: &str| profiles.contains(&p) || (p == "default" && profiles.is_empty());
    condition.split(',').map(str::trim).filter(|c| !c.is_empty()).any(|c| match c.strip_prefix('!') {
        Some(negated) => !active(negated.trim()),
        None => active(c),
    })
}

fn flatten_json(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                flatten_json(&join(prefix, k), x, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten_json(&format!("{prefix}[{i}]"), x, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

fn flatten_yaml(prefix: &str, v: &Yaml, out: &mut BTreeMap<String, Value>) {
    let leaf = match v {
        Yaml::Hash(m) => {
            for (k, x) in m {
                let name = match k {
                    Yaml::String(s) | Yaml::Real(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => continue,
                };
                flatten_yaml(&join(prefix, &name), x, out);
            }
            return;
        }
        Yaml::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten_yaml(&format!("{prefix}[{i}]"), x, out);
            }
            return;
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::Boolean(b) => Value::Bool(*b),
        // Spring reads a YAML null as an empty value.
        Yaml::Null => Value::String(String::new()),
        Yaml::Alias(_) | Yaml::BadValue => return,
    };
    if !prefix.is_empty() {
        out.insert(prefix.to_owned(), leaf);
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_properties_and_json() {
        let mut out = BTreeMap::new();
        flatten_entry("app.properties", "# c\na.b=1\nc: two\n", &[], &mut out);
        flatten_entry("x.json", r#"{"db":{"url":"u","pool":[1,2]}}"#, &[], &mut out);
        flatten_entry("feature.flag", "on", &[], &mut out);
        assert_eq!(out["a.b"], "1");
        assert_eq!(out["c"], "two");
        assert_eq!(out["db.url"], "u");
        assert_eq!(out["db.pool[1]"], 2);
        assert_eq!(out["feature.flag"], "on");
    }

    #[test]
    fn flattens_yaml_with_profile_documents() {
        let yaml = "\
server:
  port: 8081
  ratio: 0.5
spring:
  datasource:
    url: jdbc:postgresql://db/orders
hosts: [a, b]
debug: false
empty:
---
spring:
  config:
    activate:
      on-profile: prod
server:
  port: 80
---
spring:
  profiles: '!prod'
banner: dev
";
        let flat = |profiles: &[&str]| {
            let mut out = BTreeMap::new();
            flatten_entry("application.yml", yaml, profiles, &mut out);
            out
        };
        let dev = flat(&["dev"]);
        assert_eq!(dev["server.port"], 8081);
        assert_eq!(dev["server.ratio"], 0.5);
        assert_eq!(dev["spring.datasource.url"], "jdbc:postgresql://db/orders");
        assert_eq!(dev["hosts[1]"], "b");
        assert_eq!(dev["debug"], false);
        assert_eq!(dev["empty"], "");
        assert_eq!(dev["banner"], "dev");
        let prod = flat(&["prod"]);
        assert_eq!(prod["server.port"], 80, "the prod document overrides");
        assert!(!prod.contains_key("banner"), "!prod excludes it");
        assert_eq!(flat(&[])["server.port"], 8081);
    }

    #[test]
    fn documents_are_checked_by_their_extension() {
        assert!(check_document("a.json", "{\"a\": 1}").is_ok());
        assert!(check_document("a.json", "{\"a\": ").unwrap_err().contains("not valid JSON"));
        assert!(check_document("a.yml", "a:\n  b: 1\n").is_ok());
        let e = check_document("a.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.contains("not valid YAML") && e.contains("line"), "{e}");
        assert!(check_document("a.properties", "{{{").is_ok(), "properties accept anything");
        assert!(check_document("flag", "[").is_ok());
    }
}
