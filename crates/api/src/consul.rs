//! The subset of Consul's HTTP API that Spring Cloud Consul, consul-template and the common
//! Go and Rust clients use, served on Consul's port (8500) and under `/consul` on the
//! console port. Shapes follow Consul's documented responses (PascalCase fields, base64 KV
//! values, `X-Consul-Index` on every read, blocking queries with `?index=&wait=`).
//! `docs/consul.md` lists what is covered.
//!
//! Signalbox is one node: catalog entries carry a fixed node name and datacenter, and the
//! node's own `serfHealth` check is always passing.

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
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/services", get(agent_services))
        .route("/v1/agent/checks", get(agent_checks))
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/check/pass/{id}", put(|s, p, q, h| ttl(s, p, q, h, Status::Passing)))
        .route("/v1/agent/check/warn/{id}", put(|s, p, q, h| ttl(s, p, q, h, Status::Warning)))
        .route("/v1/agent/check/fail/{id}", put(|s, p, q, h| ttl(s, p, q, h, Status::Critical)))
        .route("/v1/agent/check/update/{id}", put(check_update))
        .route("/v1/agent/service/maintenance/{id}", put(maintenance))
        .route("/v1/catalog/nodes", get(catalog_nodes))
        .route(
            "/v1/event/list",
            get(|s: State<AppState>, h: HeaderMap| async move {
                need(&s, &h, Role::Read).map(|_| indexed(s.control.index.current(), StatusCode::OK, json!([])))
            }),
        )
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog_service))
        .route("/v1/catalog/datacenters", get(|| async { Json(json!([DATACENTER])) }))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/v1/health/checks/{name}", get(health_checks))
        .route("/v1/kv/", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(|s: State<AppState>| async move { Json(json!([leader_addr(&s)])) }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found: this Consul endpoint is not provided by Signalbox") })
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

/// Go's `time.ParseDuration` forms: `300ms`, `1.5h`, `1h2m3s`, `10us`.
pub fn go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    (total.is_finite() && (0.0..1e10).contains(&total)).then(|| Duration::from_secs_f64(total))
}

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

async fn agent_self(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    need(&s, &headers, Role::Read)?;
    Ok(Json(json!({
        "Config": {
            "Datacenter": DATACENTER,
            "PrimaryDatacenter": DATACENTER,
            "NodeName": s.node_name,
            "NodeID": NODE_ID,
            "Server": true,
            "Revision": "signalbox",
            "Version": "1.17.0",
        },
        "DebugConfig": {},
        "Coord": null,
        "Member": {
            "Name": s.node_name,
            "Addr": s.node_address,
            "Port": 8301,
            "Tags": { "dc": DATACENTER, "role": "consul", "id": NODE_ID, "build": "1.17.0:signalbox" },
            "Status": 1,
        },
        "Meta": {},
        "xDS": null,
    })))
}

fn weights(i: &InstanceView) -> Value {
    json!({ "Passing": i.weight, "Warning": 1 })
}

fn service_json(i: &InstanceView) -> Value {
    json!({
        "ID": i.id,
        "Service": i.service,
        "Tags": i.tags,
        "Address": i.address,
        "Meta": i.meta,
        "Port": i.port,
        "Weights": weights(i),
        "EnableTagOverride": false,
        "Datacenter": DATACENTER,
        "CreateIndex": i.create_index,
        "ModifyIndex": i.modify_index,
    })
}

fn check_type(kind: &signalbox_control::registry::model::CheckKind) -> &'static str {
    use signalbox_control::registry::model::CheckKind::*;
    match kind {
        Http { .. } => "http",
        Tcp { .. } => "tcp",
        Grpc { .. } => "grpc",
        Ttl { .. } => "ttl",
    }
}

fn checks_json(s: &AppState, i: &InstanceView) -> Vec<Value> {
    let maint = i.maintenance.as_ref().map(|reason| {
        json!({
            "Node": s.node_name, "CheckID": format!("_service_maintenance:{}", i.id), "Name": "Service Maintenance Mode",
            "Status": "critical", "Notes": reason, "Output": "", "ServiceID": i.id, "ServiceName": i.service,
            "ServiceTags": i.tags, "Type": "maintenance", "CreateIndex": i.create_index, "ModifyIndex": i.modify_index,
        })
    });
    maint
        .into_iter()
        .chain(i.checks.iter().map(|c| {
            json!({
                "Node": s.node_name,
                "CheckID": c.id,
                "Name": c.name,
                "Status": c.status.as_str(),
                "Notes": "",
                "Output": c.output,
                "ServiceID": i.id,
                "ServiceName": i.service,
                "ServiceTags": i.tags,
                "Type": check_type(&c.kind),
                "Interval": format!("{}ms", c.interval_ms),
                "CreateIndex": i.create_index,
                "ModifyIndex": i.modify_index,
            })
        }))
        .collect()
}

fn serf_check(s: &AppState) -> Value {
    json!({
        "Node": s.node_name, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
        "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "", "ServiceTags": [],
        "Type": "", "CreateIndex": 1, "ModifyIndex": 1,
    })
}

async fn agent_services(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    need(&s, &headers, Role::Read)?;
    let map: BTreeMap<String, Value> =
        s.control.registry.all().iter().map(|i| (i.id.clone(), service_json(i))).collect();
    Ok(Json(json!(map)))
}

async fn agent_checks(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    need(&s, &headers, Role::Read)?;
    let mut map = BTreeMap::new();
    for i in s.control.registry.all() {
        for c in checks_json(&s, &i) {
            map.insert(c["CheckID"].as_str().unwrap_or_default().to_owned(), c);
        }
    }
    Ok(Json(json!(map)))
}

/// Consul's service definition (`PUT /v1/agent/service/register`); unknown fields are
/// accepted and ignored, as Consul's own decoder does for forward compatibility.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConsulService {
    #[serde(rename = "ID")]
    id: Option<String>,
    name: String,
    tags: Option<Vec<String>>,
    address: Option<String>,
    port: Option<i64>,
    meta: Option<BTreeMap<String, String>>,
    weights: Option<ConsulWeights>,
    check: Option<ConsulCheck>,
    checks: Option<Vec<ConsulCheck>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConsulWeights {
    passing: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConsulCheck {
    #[serde(rename = "CheckID")]
    check_id: Option<String>,
    #[serde(rename = "ID")]
    id: Option<String>,
    name: Option<String>,
    #[serde(rename = "HTTP")]
    http: Option<String>,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: Option<bool>,
    #[serde(rename = "TCP")]
    tcp: Option<String>,
    #[serde(rename = "GRPC")]
    grpc: Option<String>,
    #[serde(rename = "TTL")]
    ttl: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    deregister_critical_service_after: Option<String>,
    status: Option<String>,
    success_before_passing: Option<u32>,
    failures_before_critical: Option<u32>,
    args: Option<Vec<String>>,
    script: Option<String>,
    docker_container_id: Option<String>,
}

fn dur(field: &str, v: &Option<String>) -> Result<Option<signalbox_core::config::Dur>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => go_duration(s)
            .map(|d| Some(signalbox_core::config::Dur(d)))
            .ok_or_else(|| ApiError::field(field, format!("`{s}` is not a duration like 10s"))),
    }
}

impl ConsulCheck {
    fn into_request(self, at: &str) -> Result<CheckRequest, ApiError> {
        if self.args.is_some() || self.script.is_some() || self.docker_container_id.is_some() {
            return Err(ApiError::field(
                format!("{at}.Args"),
                "script and Docker checks are not supported; use HTTP, TCP, gRPC or TTL",
            ));
        }
        let (grpc, grpc_address) = match &self.grpc {
            None => (None, None),
            Some(g) => match g.split_once('/') {
                Some((addr, svc)) => (Some(svc.to_owned()), Some(addr.to_owned())),
                None => (Some(String::new()), Some(g.clone())),
            },
        };
        let initial = match self.status.as_deref() {
            None | Some("") => None,
            Some("passing") => Some(Status::Passing),
            Some("warning") => Some(Status::Warning),
            Some("critical") => Some(Status::Critical),
            Some(other) => {
                return Err(ApiError::field(
                    format!("{at}.Status"),
                    format!("`{other}` is not passing, warning or critical"),
                ));
            }
        };
        Ok(CheckRequest {
            id: self.check_id.or(self.id),
            name: self.name,
            http: self.http,
            tls_skip_verify: self.tls_skip_verify,
            tcp: self.tcp,
            grpc,
            grpc_address,
            ttl: dur(&format!("{at}.TTL"), &self.ttl)?,
            interval: dur(&format!("{at}.Interval"), &self.interval)?,
            timeout: dur(&format!("{at}.Timeout"), &self.timeout)?,
            success_threshold: self.success_before_passing.map(|n| n.max(1)),
            failure_threshold: self.failures_before_critical.map(|n| n.max(1)),
            deregister_after: dur(
                &format!("{at}.DeregisterCriticalServiceAfter"),
                &self.deregister_critical_service_after,
            )?
            .map(|d| signalbox_core::config::Dur(d.0.max(Duration::from_secs(1)))),
            initial_status: initial,
        })
    }
}

async fn register(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let svc: ConsulService = crate::json::parse(&body)?;
    let mut checks = Vec::new();
    if let Some(c) = svc.check {
        checks.push(c.into_request("Check")?);
    }
    let multiple = checks.len() + svc.checks.as_ref().map_or(0, Vec::len) > 1;
    for (i, c) in svc.checks.unwrap_or_default().into_iter().enumerate() {
        checks.push(c.into_request(&format!("Checks[{i}]"))?);
    }
    let address = svc.address.filter(|a| !a.is_empty()).unwrap_or_else(|| s.node_address.clone());
    let id = svc.id.filter(|i| !i.is_empty()).unwrap_or_else(|| svc.name.clone());
    // Consul names checks `service:<id>`, or `service:<id>:<n>` when there are several.
    if multiple {
        for (n, c) in checks.iter_mut().enumerate() {
            if c.id.is_none() {
                c.id = Some(format!("service:{id}:{}", n + 1));
            }
        }
    }
    let req = RegisterRequest {
        service: svc.name,
        id: Some(id),
        address,
        port: svc.port.unwrap_or(0),
        tags: svc.tags.unwrap_or_default(),
        meta: svc.meta.unwrap_or_default(),
        weight: svc.weights.and_then(|w| w.passing).map(|w| w.clamp(1, 1000)),
        checks,
    };
    let req = RegisterRequest { port: if req.port == 0 { 1 } else { req.port }, ..req };
    s.control.registry.register(req).await.map_err(|e| consul_field(e.into()))?;
    Ok(StatusCode::OK.into_response())
}

/// Names fields the way the Consul request spelled them.
fn consul_field(mut e: ApiError) -> ApiError {
    if let Some(f) = &e.field {
        let mapped = match f.as_str() {
            "service" => "Name".to_owned(),
            "id" => "ID".to_owned(),
            "address" => "Address".to_owned(),
            "port" => "Port".to_owned(),
            "tags" => "Tags".to_owned(),
            other => other
                .replace("checks[", "Checks[")
                .replace(".ttl", ".TTL")
                .replace(".interval", ".Interval")
                .replace(".timeout", ".Timeout")
                .replace(".http", ".HTTP")
                .replace(".tcp", ".TCP"),
        };
        e.message = e.message.replacen(f.as_str(), &mapped, 1);
        e.field = Some(mapped);
    }
    e
}

async fn deregister(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    if s.control.registry.deregister(&id).await? {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::not_found(format!("Unknown service ID {id:?}")))
    }
}

async fn ttl(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    status: Status,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let note = Q::parse(q).get("note").map(str::to_owned);
    s.control.registry.report_ttl(&id, status, note).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CheckUpdate {
    status: Option<String>,
    output: Option<String>,
}

async fn check_update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let u: CheckUpdate = crate::json::parse(&body)?;
    let status = match u.status.as_deref() {
        Some("passing") => Status::Passing,
        Some("warning") => Status::Warning,
        Some("critical") => Status::Critical,
        _ => return Err(ApiError::field("Status", "must be passing, warning or critical")),
    };
    s.control.registry.report_ttl(&id, status, u.output).await?;
    Ok(StatusCode::OK.into_response())
}

async fn maintenance(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let q = Q::parse(q);
    let enable = match q.get("enable") {
        Some("true") => true,
        Some("false") => false,
        _ => return Err(ApiError::field("enable", "must be true or false")),
    };
    let reason = enable.then(|| {
        q.get("reason").filter(|r| !r.is_empty()).unwrap_or("Maintenance mode is enabled for this service").to_owned()
    });
    s.control.registry.set_maintenance(&id, reason).await?;
    Ok(StatusCode::OK.into_response())
}

async fn catalog_nodes(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let node = json!({
        "ID": NODE_ID, "Node": s.node_name, "Address": s.node_address, "Datacenter": DATACENTER,
        "TaggedAddresses": { "lan": s.node_address, "wan": s.node_address }, "Meta": {}, "CreateIndex": 1, "ModifyIndex": 1,
    });
    Ok(indexed(s.control.index.current(), StatusCode::OK, json!([node])))
}

async fn catalog_services(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let q = Q::parse(q);
    let idx = block(&s, &q, None).await?;
    let map: BTreeMap<String, Vec<String>> =
        s.control.registry.services().into_iter().map(|v| (v.name, v.tags)).collect();
    Ok(indexed(idx, StatusCode::OK, json!(map)))
}

async fn block(s: &AppState, q: &Q, service: Option<&str>) -> Result<u64, ApiError> {
    let reg = s.control.registry.clone();
    let current = || match service {
        Some(name) => reg.service_index(name).max(1),
        None => s.control.index.current(),
    };
    Ok(match q.num("index")? {
        Some(after) if after > 0 => wait_for(&s.control.index, after, q.wait()?, current).await,
        _ => current(),
    })
}

/// A service's instances for a catalog or health read: waits as a blocking query asks, then
/// keeps those with every `?tag=` (and only passing ones if asked). Returns the index too.
async fn watched_instances(
    s: &AppState,
    q: &Q,
    name: &str,
    passing: bool,
) -> Result<(u64, Vec<InstanceView>), ApiError> {
    let idx = block(s, q, Some(name)).await?;
    let tags = q.all("tag");
    let mut list = s.control.registry.instances(name, passing);
    list.retain(|i| tags.iter().all(|t| i.tags.iter().any(|x| x == t)));
    Ok((idx, list))
}

async fn catalog_service(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let (idx, instances) = watched_instances(&s, &Q::parse(q), &name, false).await?;
    let list: Vec<Value> = instances
        .iter()
        .map(|i| {
            json!({
                "ID": NODE_ID,
                "Node": s.node_name,
                "Address": s.node_address,
                "Datacenter": DATACENTER,
                "TaggedAddresses": { "lan": s.node_address, "wan": s.node_address },
                "NodeMeta": {},
                "ServiceKind": "",
                "ServiceID": i.id,
                "ServiceName": i.service,
                "ServiceTags": i.tags,
                "ServiceAddress": i.address,
                "ServiceWeights": weights(i),
                "ServiceMeta": i.meta,
                "ServicePort": i.port,
                "ServiceEnableTagOverride": false,
                "CreateIndex": i.create_index,
                "ModifyIndex": i.modify_index,
            })
        })
        .collect();
    Ok(indexed(idx, StatusCode::OK, Value::Array(list)))
}

async fn health_service(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let q = Q::parse(q);
    let (idx, instances) = watched_instances(&s, &q, &name, q.flag("passing")).await?;
    let list: Vec<Value> = instances
        .iter()
        .map(|i| {
            let mut checks = vec![serf_check(&s)];
            checks.extend(checks_json(&s, i));
            json!({
                "Node": {
                    "ID": NODE_ID, "Node": s.node_name, "Address": s.node_address, "Datacenter": DATACENTER,
                    "TaggedAddresses": { "lan": s.node_address, "wan": s.node_address }, "Meta": {},
                    "CreateIndex": 1, "ModifyIndex": 1,
                },
                "Service": service_json(i),
                "Checks": checks,
            })
        })
        .collect();
    Ok(indexed(idx, StatusCode::OK, Value::Array(list)))
}

async fn health_checks(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let q = Q::parse(q);
    let idx = block(&s, &q, Some(&name)).await?;
    let list: Vec<Value> = s.control.registry.instances(&name, false).iter().flat_map(|i| checks_json(&s, i)).collect();
    Ok(indexed(idx, StatusCode::OK, Value::Array(list)))
}

fn kv_json(e: &signalbox_control::kv::KvEntry) -> Value {
    json!({
        "LockIndex": 0,
        "Key": e.key,
        "Flags": e.flags,
        "Value": if e.value_b64.is_empty() { Value::Null } else { Value::String(e.value_b64.clone()) },
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    })
}

async fn kv_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    key: Option<Path<String>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let key = key.map(|Path(k)| k).unwrap_or_default();
    let q = Q::parse(q);
    let kv = s.control.kv.clone();
    let recurse = q.flag("recurse");
    let keys = q.0.contains_key("keys");
    let current = || {
        if recurse || keys {
            kv.list(&key).iter().map(|e| e.modify_index).max().unwrap_or(0).max(1)
        } else {
            kv.get(&key).map(|e| e.modify_index).unwrap_or(1)
        }
    };
    let idx = match q.num("index")? {
        Some(after) if after > 0 => {
            // KV blocking queries wake on any index change but only return once the watched
            // keys changed (or the wait ends), as Consul's do.
            wait_for(&s.control.index, after, q.wait()?, current).await;
            s.control.index.current()
        }
        _ => s.control.index.current(),
    };
    if keys {
        let list = kv.keys(&key, q.get("separator"));
        if list.is_empty() {
            return Ok(indexed(idx, StatusCode::NOT_FOUND, Value::Null).into_response_empty());
        }
        return Ok(indexed(idx, StatusCode::OK, json!(list)));
    }
    if recurse {
        let list: Vec<Value> = kv.list(&key).iter().map(kv_json).collect();
        if list.is_empty() {
            return Ok(indexed(idx, StatusCode::NOT_FOUND, Value::Null).into_response_empty());
        }
        return Ok(indexed(idx, StatusCode::OK, Value::Array(list)));
    }
    match kv.get(&key) {
        None => Ok(indexed(idx, StatusCode::NOT_FOUND, Value::Null).into_response_empty()),
        Some(e) if q.0.contains_key("raw") => {
            let mut r = (StatusCode::OK, e.value()).into_response();
            for (k, v) in headers_for(idx) {
                r.headers_mut().insert(k, v);
            }
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            Ok(r)
        }
        Some(e) => Ok(indexed(idx, StatusCode::OK, json!([kv_json(&e)]))),
    }
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

async fn kv_put(
    State(s): State<AppState>,
    headers: HeaderMap,
    key: Option<Path<String>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let key = key.map(|Path(k)| k).unwrap_or_default();
    if key.is_empty() {
        return Err(ApiError::field("key", "missing key name"));
    }
    let q = Q::parse(q);
    if q.0.contains_key("acquire") || q.0.contains_key("release") {
        return Err(ApiError::field("acquire", "sessions and locks are not supported"));
    }
    let ok = s.control.kv.put(&key, &body, q.num("flags")?.unwrap_or(0), q.num("cas")?).await?;
    Ok(Json(json!(ok)).into_response())
}

async fn kv_delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    key: Option<Path<String>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let key = key.map(|Path(k)| k).unwrap_or_default();
    let q = Q::parse(q);
    let ok = s.control.kv.delete(&key, q.flag("recurse"), q.num("cas")?).await?;
    Ok(Json(json!(ok)).into_response())
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
