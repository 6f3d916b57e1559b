//! The subset of Consul's HTTP API that Spring Cloud Consul, consul-template, py-consul,
//! python-consul2 and the common Go and Rust clients use, served on Consul's port (8500) and
//! under `/consul` on the console port. Shapes follow Consul's documented responses
//! (PascalCase fields, base64 KV values, `X-Consul-Index` on every read, blocking queries
//! with `?index=&wait=`); request bodies are read with field names matched as Consul's own
//! decoder does ([`keys`]). `docs/consul.md` lists what is covered.
//!
//! Signalbox is one node: catalog entries carry a fixed node name and datacenter, and the
//! node's own `serfHealth` check is always passing.
//!
//! # Layout
//! - [`agent`]: `/v1/agent/*`: this node, service and check registration, TTL reports.
//! - [`catalog`]: `/v1/catalog/*` (services of this node registered and deregistered
//!   there too) and `/v1/health/*`.
//! - [`kv`]: `/v1/kv/*` and `/v1/txn`.
//! - [`keys`]: case-insensitive request field names.

mod agent;
mod catalog;
pub mod keys;
mod kv;

use crate::AppState;
use crate::auth::principal;
use crate::blocking::{DEFAULT_WAIT, MAX_WAIT, wait_for};
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use signalbox_control::access::Role;
use signalbox_control::registry::InstanceView;
use signalbox_control::registry::model::{CheckRequest, RegisterRequest, Status};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub const DATACENTER: &str = "dc1";
const NODE_ID: &str = "5e1f0000-5b0c-4a1e-9c11-000000000001";

/// The Consul API, rooted at `/v1`.
pub fn router() -> Router<AppState> {
    use Status::*;
    Router::new()
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/services", get(agent::agent_services))
        .route("/v1/agent/checks", get(agent::agent_checks))
        .route("/v1/agent/service/register", put(agent::register))
        .route("/v1/agent/service/deregister/{id}", put(agent::deregister))
        .route("/v1/agent/check/register", put(agent::check_register))
        .route("/v1/agent/check/deregister/{id}", put(agent::check_deregister))
        .route("/v1/agent/check/pass/{id}", put(|s, p, q, h| agent::ttl(s, p, q, h, Passing)))
        .route("/v1/agent/check/warn/{id}", put(|s, p, q, h| agent::ttl(s, p, q, h, Warning)))
        .route("/v1/agent/check/fail/{id}", put(|s, p, q, h| agent::ttl(s, p, q, h, Critical)))
        .route("/v1/agent/check/update/{id}", put(agent::check_update))
        .route("/v1/agent/service/maintenance/{id}", put(agent::maintenance))
        .route("/v1/catalog/nodes", get(catalog::catalog_nodes))
        .route("/v1/catalog/node/{node}", get(catalog::catalog_node))
        .route("/v1/catalog/register", put(catalog::catalog_register))
        .route("/v1/catalog/deregister", put(catalog::catalog_deregister))
        .route(
            "/v1/event/list",
            get(|s: State<AppState>, h: HeaderMap| async move {
                need(&s, &h, Role::Read).map(|_| indexed(s.control.index.current(), StatusCode::OK, json!([])))
            }),
        )
        .route("/v1/catalog/services", get(catalog::catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog::catalog_service))
        .route("/v1/catalog/datacenters", get(|| async { Json(json!([DATACENTER])) }))
        .route("/v1/health/service/{name}", get(catalog::health_service))
        .route("/v1/health/checks/{name}", get(catalog::health_checks))
        .route("/v1/health/node/{node}", get(catalog::health_node))
        .route("/v1/health/state/{state}", get(catalog::health_state))
        .route("/v1/kv/", get(kv::kv_get).put(kv::kv_put).delete(kv::kv_delete))
        .route("/v1/kv/{*key}", get(kv::kv_get).put(kv::kv_put).delete(kv::kv_delete))
        .route("/v1/txn", put(kv::txn))
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(|s: State<AppState>| async move { Json(json!([leader_addr(&s)])) }))
        .fallback(|| async { ApiError::not_found("this Consul endpoint is not provided by Signalbox") })
}

/// Reads `bytes` as each JSON body this API accepts (a service definition, validated as
/// registration validates it; a check definition; a check update; a transaction; catalog
/// registrations) without acting on it. For the fuzz target and the mutation test: none of
/// them may panic.
pub fn decode_bodies(bytes: &[u8]) -> [Result<(), ApiError>; 6] {
    [
        agent::service_request(bytes, "127.0.0.1")
            .and_then(|r| r.validate().map(drop).map_err(|e| agent::consul_field(e.into()))),
        agent::check_request(bytes)
            .and_then(|(_, name, c)| c.validate("check", name, "127.0.0.1", 1).map(drop).map_err(ApiError::from)),
        body::<agent::CheckUpdate>(bytes).map(drop),
        kv::txn_ops(bytes).map(drop),
        body::<catalog::CatalogRegistration>(bytes).map(drop),
        body::<catalog::CatalogDeregistration>(bytes).map(drop),
    ]
}

/// Reads a Consul request body: field names match case-insensitively and in snake_case, as
/// Consul's decoder matches them ([`keys::canonical`]); errors name the field.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    let canon = keys::canonical(v);
    crate::json::parse(canon.to_string().as_bytes())
}

fn leader_addr(s: &AppState) -> String {
    format!("{}:8300", s.node_address)
}

async fn leader(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    need(&s, &headers, Role::Read)?;
    Ok(Json(json!(leader_addr(&s))))
}

/// Consul's ACL check: reads need `read`, writes `edit`.
fn need(s: &AppState, headers: &HeaderMap, role: Role) -> Result<(), ApiError> {
    match principal(s, headers) {
        Ok(p) if p.role.allows(role) => Ok(()),
        Ok(_) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Permission denied: token lacks the needed role"))
        }
        Err(d) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", d.message())),
    }
}

/// Parsed query string: Consul's flags (`?recurse`, `?passing`) have no value.
struct Q(HashMap<String, Vec<String>>);

impl Q {
    fn parse(raw: Option<String>) -> Q {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.entry(decode(k)).or_default().push(decode(v));
        }
        Q(m)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str)
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0.get(k).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default()
    }
    /// A flag: present with no value or any value but `false`/`0`.
    fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v != "false" && v != "0")
    }
    fn num(&self, k: &str) -> Result<Option<u64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::field(k, "must be a non-negative integer")),
        }
    }
    fn wait(&self) -> Result<Duration, ApiError> {
        match self.get("wait") {
            None | Some("") => Ok(DEFAULT_WAIT),
            Some(w) => go_duration(w)
                .map(|d| d.min(MAX_WAIT))
                .ok_or_else(|| ApiError::field("wait", "must be a duration like 10s or 5m")),
        }
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub use signalbox_core::time::go_duration;

fn headers_for(index: u64) -> [(&'static str, HeaderValue); 4] {
    [
        ("x-consul-index", HeaderValue::from(index.max(1))),
        ("x-consul-knownleader", HeaderValue::from_static("true")),
        ("x-consul-lastcontact", HeaderValue::from_static("0")),
        ("x-consul-effective-consistency", HeaderValue::from_static("leader")),
    ]
}

fn indexed(index: u64, status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    for (k, v) in headers_for(index) {
        r.headers_mut().insert(k, v);
    }
    r
}

trait EmptyBody {
    fn into_response_empty(self) -> Response;
}

impl EmptyBody for Response {
    /// Consul answers a missing key with 404 and an empty body.
    fn into_response_empty(self) -> Response {
        let (parts, _) = self.into_parts();
        let mut r = Response::from_parts(parts, axum::body::Body::empty());
        r.headers_mut().remove(http::header::CONTENT_TYPE);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(go_duration("5x"), None);
        assert_eq!(go_duration(""), None);
        assert_eq!(decode("a%2Fb+c"), "a/b c");
    }
}
