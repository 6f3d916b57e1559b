//! Consul's decoder matches a request's field names case-insensitively and accepts the
//! snake_case spellings of its documented names (`docker_container_id`, `service_id`), so
//! py-consul's `{"name": "web", "id": "web-1", "checks": [{"ttl": "15s"}]}` registers a
//! service. [`canonical`] rewrites a body's field names to the PascalCase names the typed
//! request structs read. Maps whose keys are the user's data (`Meta`, `NodeMeta`,
//! `TaggedAddresses`, `Header`) are left exactly as sent.

use serde_json::{Map, Value};

/// Every field name a Consul request body may carry, as Consul spells it.
const NAMES: &[&str] = &[
    "Address",
    "AliasNode",
    "AliasService",
    "Args",
    "Body",
    "Check",
    "CheckID",
    "Checks",
    "Connect",
    "Datacenter",
    "Definition",
    "DeregisterCriticalServiceAfter",
    "DockerContainerID",
    "EnableTagOverride",
    "FailuresBeforeCritical",
    "FailuresBeforeWarning",
    "Flags",
    "GRPC",
    "GRPCUseTLS",
    "H2PING",
    "Header",
    "HTTP",
    "ID",
    "Index",
    "Interval",
    "Key",
    "Kind",
    "KV",
    "Meta",
    "Method",
    "Name",
    "Namespace",
    "Node",
    "NodeMeta",
    "Notes",
    "Output",
    "OutputMaxSize",
    "Partition",
    "Passing",
    "Port",
    "Proxy",
    "Script",
    "ScriptArgs",
    "Service",
    "ServiceID",
    "Session",
    "Shell",
    "SkipNodeUpdate",
    "Status",
    "SuccessBeforePassing",
    "TaggedAddresses",
    "Tags",
    "TCP",
    "Timeout",
    "TLSServerName",
    "TLSSkipVerify",
    "TTL",
    "Value",
    "Verb",
    "Warning",
    "Weights",
];

/// Fields whose keys are the user's, not Consul's.
const OPAQUE: &[&str] = &["Meta", "NodeMeta", "TaggedAddresses", "Header"];

/// The canonical spelling of `key`: compared without case and underscores. Unknown names
/// are kept as sent (the request structs ignore them, as Consul does).
pub fn name(key: &str) -> Option<&'static str> {
    let folded: Vec<u8> = key.bytes().filter(|b| *b != b'_').collect();
    NAMES.iter().copied().find(|n| n.as_bytes().eq_ignore_ascii_case(&folded))
}

/// Rewrites every field name in `v` to its canonical spelling, recursively.
pub fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                match name(&k) {
                    Some(n) if OPAQUE.contains(&n) => out.insert(n.to_owned(), v),
                    Some(n) => out.insert(n.to_owned(), canonical(v)),
                    None => out.insert(k, canonical(v)),
                };
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_match_without_case_or_underscores() {
        assert_eq!(name("id"), Some("ID"));
        assert_eq!(name("ttl"), Some("TTL"));
        assert_eq!(name("docker_container_id"), Some("DockerContainerID"));
        assert_eq!(name("deregistercriticalserviceafter"), Some("DeregisterCriticalServiceAfter"));
        assert_eq!(name("check"), Some("Check"));
        assert_eq!(name("checks"), Some("Checks"));
        assert_eq!(name("chec"), None);
        assert_eq!(name("idx"), None);
    }

    #[test]
    fn user_keys_are_kept() {
        let v = canonical(json!({"name": "web", "meta": {"version": "1", "Port": "x"}, "checks": [{"ttl": "15s"}]}));
        assert_eq!(v, json!({"Name": "web", "Meta": {"version": "1", "Port": "x"}, "Checks": [{"TTL": "15s"}]}));
    }
}
