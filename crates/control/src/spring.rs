//! Stored configuration documents as Spring properties, the way Spring Cloud Config Server
//! serves them: a key's type is its extension.
//!
//! - `*.properties`: `k=v` / `k: v` lines, `#` and `!` comments.
//! - `*.json`: leaves flattened to `a.b[0].c`.
//! - `*.yml` / `*.yaml`: flattened like JSON. A file may hold several `---` documents; one
//!   with `spring.config.activate.on-profile` (or the older `spring.profiles`) applies only
//!   when a requested profile matches it (`!p` negates, a comma list matches any), and later
//!   documents override earlier ones, as Spring Boot loads them.
//! - a key with a `/` in it (`templates/mail.txt`): a file only, served as plain text and
//!   never a property.
//! - anything else: one property named after the key.
//!
//! Documents are checked when written ([`check_document`]), so a broken one is refused with
//! its line instead of being served as nonsense.
//!
//! The Config Server's file forms (`/{app}-{profile}.yml|.properties|.json`) render the
//! merged properties ([`merge`], with `${...}` placeholders resolved) as nested YAML or JSON
//! ([`nest`], [`to_yaml`]) or as `key: value` lines ([`to_properties`]).

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
    if key.contains('/') {
        return;
    }
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
            let mut props = BTreeMap::new();
            flatten_yaml("", doc, &mut props);
            // The activation condition selects the document; it is not a property of it.
            for k in ACTIVATION {
                props.remove(*k);
            }
            out.extend(props);
        }
    } else {
        out.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// The keys that say when a YAML document applies.
const ACTIVATION: &[&str] = &["spring.config.activate.on-profile", "spring.profiles"];

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

/// The properties of `sources` (most specific first, as [`crate::config::ConfigStore::property_sources`]
/// gives them) merged into one map, the most specific value winning, with `${name}` and
/// `${name:default}` placeholders resolved against the merged map, as the Config Server
/// does for its file forms.
pub fn merge(sources: &[(String, BTreeMap<String, Value>)]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (_, source) in sources.iter().rev() {
        out.extend(source.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    // One budget for the whole map, so many keys cannot each expand to the limit.
    let mut budget = MAX_RESOLVED;
    let resolved: Vec<(String, String)> = out
        .iter()
        .filter_map(|(k, v)| {
            v.as_str().filter(|s| s.contains("${")).map(|s| (k.clone(), resolve(s, &out, 0, &mut budget)))
        })
        .collect();
    for (k, v) in resolved {
        out.insert(k, Value::String(v));
    }
    out
}

/// `text` with `${name}` and `${name:default}` replaced from `props` (the Config Server
/// resolves them in the plain-text files it serves too). A placeholder that names no
/// property and has no default is left as written.
pub fn resolve_placeholders(text: &str, props: &BTreeMap<String, Value>) -> String {
    let mut budget = MAX_RESOLVED.max(text.len());
    resolve(text, props, 0, &mut budget)
}

/// How deep placeholders may refer to placeholders (a cycle stops here, left as written).
const MAX_DEPTH: usize = 8;
/// Most bytes one resolution may produce: values that expand each other many times over
/// (`a` = `${b}${b}…`, `b` = `${c}${c}…`) stop expanding here instead of growing
/// exponentially.
const MAX_RESOLVED: usize = 4 * 1024 * 1024;

fn resolve(s: &str, props: &BTreeMap<String, Value>, depth: usize, budget: &mut usize) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let raw = &rest[start..start + 3 + len];
        let inner = &rest[start + 2..start + 2 + len];
        let (name, default) = match inner.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let found = props.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let expansion = match (found, default) {
            (Some(v), _) if depth < MAX_DEPTH && v.len() <= *budget => {
                *budget -= v.len();
                resolve(&v, props, depth + 1, budget)
            }
            (None, Some(d)) => d.to_owned(),
            _ => raw.to_owned(),
        };
        out.push_str(&expansion);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    out
}

/// One step of a flattened name: `a.b[0]` is `a`, `b`, `[0]`.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(name: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in name.split('.') {
        let (key, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() {
            return None;
        }
        out.push(Step::Key(key));
        while let Some(rest) = idx.strip_prefix('[') {
            let end = rest.find(']')?;
            out.push(Step::Index(rest[..end].parse().ok().filter(|i| *i < 10_000)?));
            idx = &rest[end + 1..];
        }
        if !idx.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// Flattened properties (`a.b[0].c`) back into nested objects and arrays. A name that
/// cannot nest (it collides with a value, or is not `a.b[i]` shaped) is kept whole at the
/// top level.
pub fn nest(flat: &BTreeMap<String, Value>) -> Value {
    let mut root = Value::Object(serde_json::Map::new());
    for (name, value) in flat {
        let placed = steps(name).is_some_and(|path| place(&mut root, &path, value.clone()));
        if !placed && let Value::Object(m) = &mut root {
            m.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
    root
}

fn place(node: &mut Value, path: &[Step], value: Value) -> bool {
    let Some((first, rest)) = path.split_first() else {
        if node.is_null() {
            *node = value;
            return true;
        }
        return false;
    };
    let child = match first {
        Step::Key(k) => {
            if node.is_null() {
                *node = Value::Object(serde_json::Map::new());
            }
            match node {
                Value::Object(m) => m.entry(k.to_string()).or_insert(Value::Null),
                _ => return false,
            }
        }
        Step::Index(i) => {
            if node.is_null() {
                *node = Value::Array(Vec::new());
            }
            match node {
                Value::Array(a) => {
                    if a.len() <= *i {
                        a.resize(i + 1, Value::Null);
                    }
                    &mut a[*i]
                }
                _ => return false,
            }
        }
    };
    place(child, rest, value)
}

/// Nested properties as a YAML document (block style, no `---` header).
pub fn to_yaml(nested: &Value) -> String {
    fn yaml(v: &Value) -> Yaml {
        match v {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(a) => Yaml::Array(a.iter().map(yaml).collect()),
            Value::Object(m) => Yaml::Hash(m.iter().map(|(k, v)| (Yaml::String(k.clone()), yaml(v))).collect()),
        }
    }
    let mut out = String::new();
    let doc = yaml(nested);
    if matches!(&doc, Yaml::Hash(h) if h.is_empty()) {
        return "{}\n".to_owned();
    }
    // Writing into a String cannot fail.
    let _ = yaml_rust2::YamlEmitter::new(&mut out).dump(&doc);
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    format!("{body}\n")
}

/// Properties as `key: value` lines in key order, as the Config Server's `.properties` form.
pub fn to_properties(flat: &BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    for (k, v) in flat {
        let v = match v {
            Value::String(s) => s.replace('\n', "\\n"),
            other => other.to_string(),
        };
        out.push_str(k);
        out.push_str(": ");
        out.push_str(&v);
        out.push('\n');
    }
    out
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
        flatten_entry("templates/mail.txt", "Hello", &[], &mut out);
        assert_eq!(out["a.b"], "1");
        assert_eq!(out["c"], "two");
        assert_eq!(out["db.url"], "u");
        assert_eq!(out["db.pool[1]"], 2);
        assert_eq!(out["feature.flag"], "on");
        assert!(!out.contains_key("templates/mail.txt"), "a path is a file, not a property");
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

    #[test]
    fn profile_activation_is_not_a_property() {
        let yaml = "a: 1\n---\nspring:\n  config:\n    activate:\n      on-profile: prod\n  application:\n    name: x\na: 2\n---\nspring:\n  profiles: prod\nb: 3\n";
        let mut out = BTreeMap::new();
        flatten_entry("application.yml", yaml, &["prod"], &mut out);
        assert_eq!(out["a"], 2);
        assert_eq!(out["b"], 3);
        assert_eq!(out["spring.application.name"], "x", "other spring keys stay");
        assert!(!out.contains_key("spring.config.activate.on-profile"), "{out:?}");
        assert!(!out.contains_key("spring.profiles"), "{out:?}");
    }

    #[test]
    fn merges_resolves_and_renders() {
        let specific: BTreeMap<String, Value> = [
            ("db.url".to_owned(), Value::from("jdbc:${db.host}:${db.port:5432}/x")),
            ("db.host".to_owned(), Value::from("prod-db")),
        ]
        .into_iter()
        .collect();
        let general: BTreeMap<String, Value> = [
            ("db.host".to_owned(), Value::from("localhost")),
            ("db.pool[0]".to_owned(), Value::from(1)),
            ("db.pool[1]".to_owned(), Value::from(2)),
            ("loop".to_owned(), Value::from("${loop}")),
            ("x".to_owned(), Value::from(true)),
        ]
        .into_iter()
        .collect();
        let m = merge(&[("s".into(), specific), ("g".into(), general)]);
        assert_eq!(m["db.url"], "jdbc:prod-db:5432/x");
        assert_eq!(m["db.host"], "prod-db");
        assert_eq!(m["loop"], "${loop}", "a cycle is left as written");
        let nested = nest(&m);
        assert_eq!(nested["db"]["pool"], serde_json::json!([1, 2]));
        assert_eq!(nested["db"]["url"], "jdbc:prod-db:5432/x");
        let y = to_yaml(&nested);
        assert!(y.starts_with("db:\n  host: prod-db\n"), "{y}");
        assert!(y.contains("  pool:\n    - 1\n    - 2\n"), "{y}");
        let back = YamlLoader::load_from_str(&y).unwrap();
        assert_eq!(back[0]["x"], Yaml::Boolean(true));
        let p = to_properties(&m);
        assert!(p.contains("db.pool[1]: 2\n") && p.contains("db.url: jdbc:prod-db:5432/x\n"), "{p}");
        assert_eq!(to_yaml(&nest(&BTreeMap::new())), "{}\n");
        // Names that cannot nest stay whole.
        let odd: BTreeMap<String, Value> =
            [("a".to_owned(), Value::from(1)), ("a.b".to_owned(), Value::from(2)), ("c[x]".to_owned(), Value::from(3))]
                .into_iter()
                .collect();
        let n = nest(&odd);
        assert_eq!(n["a"], 1);
        assert_eq!(n["a.b"], 2);
        assert_eq!(n["c[x]"], 3);
    }

    #[test]
    fn placeholders_that_expand_each_other_stop_growing() {
        let mut props = BTreeMap::new();
        for level in 0..10 {
            props.insert(format!("p{level}"), Value::from(format!("${{p{}}}", level + 1).repeat(64)));
        }
        props.insert("p10".to_owned(), Value::from("x".repeat(1000)));
        let t = std::time::Instant::now();
        let out = resolve_placeholders("${p0}", &props);
        assert!(out.len() <= 2 * MAX_RESOLVED, "{}", out.len());
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(resolve_placeholders("${none} ${none:dflt} ${p10", &props), "${none} dflt ${p10");
    }

    /// Mutated documents of each type: flattening, merging and rendering never panic, and
    /// the YAML rendered is YAML that reads back.
    #[test]
    fn rendering_survives_mutated_documents() {
        let docs = [
            ("application.yml", "a:\n  b: [1, 2.5, {c: x}]\n  d: ${a.b[0]}\n---\nspring:\n  profiles: prod\ne: on\n"),
            ("x.json", r#"{"db": {"url": "u${p:1}", "pool": [1, {"n": null}], "on": true}}"#),
            ("app.properties", "a.b[0]=1\na.b[1].c: ${a.b[0]}\n! c\nd=\n"),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (key, doc) in docs {
            for _ in 0..1_500 {
                let mut b = doc.as_bytes().to_vec();
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % b.len().max(1);
                    match next() % 3 {
                        0 if !b.is_empty() => b[at] = b" {}[]:,-.$\n\"'ab01"[(next() % 17) as usize],
                        1 => b.insert(at.min(b.len()), b"[{.}]$:"[(next() % 7) as usize]),
                        _ if !b.is_empty() => {
                            b.remove(at);
                        }
                        _ => {}
                    }
                }
                let text = String::from_utf8_lossy(&b);
                let mut props = BTreeMap::new();
                flatten_entry(key, &text, &["prod"], &mut props);
                let merged = merge(&[("s".into(), props)]);
                let nested = nest(&merged);
                let y = to_yaml(&nested);
                assert!(YamlLoader::load_from_str(&y).is_ok(), "{text:?} rendered unreadable YAML:\n{y}");
                let _ = to_properties(&merged);
                let _ = resolve_placeholders(&text, &merged);
            }
        }
    }
}
