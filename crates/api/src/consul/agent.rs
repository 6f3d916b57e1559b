//! `/v1/agent/*`: this node, its services and their checks.

use super::catalog::{checks_json, service_json};
use super::*;

pub(super) async fn agent_self(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
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
        "Member": member(&s),
        "Stats": {},
        "Meta": {},
        "xDS": null,
    })))
}

/// This node as a Serf LAN member (`Status` 1 is alive).
fn member(s: &AppState) -> Value {
    json!({
        "Name": s.node_name,
        "Addr": s.node_address,
        "Port": 8301,
        "Tags": {
            "dc": DATACENTER, "role": "consul", "id": NODE_ID, "build": "1.17.0:signalbox", "port": "8300",
            "bootstrap": "1", "vsn": "2", "vsn_min": "2", "vsn_max": "3",
        },
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// `GET /v1/agent/members`: the one node (LAN or `?wan`, the same single member).
pub(super) async fn members(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    need(&s, &headers, Role::Read)?;
    Ok(Json(json!([member(&s)])))
}

pub(super) async fn agent_services(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    need(&s, &headers, Role::Read)?;
    let map: BTreeMap<String, Value> =
        s.control.registry.all().iter().map(|i| (i.id.clone(), service_json(i))).collect();
    Ok(Json(json!(map)))
}

pub(super) async fn agent_checks(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
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
pub(super) struct ConsulCheck {
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

pub(super) fn dur(field: &str, v: &Option<String>) -> Result<Option<signalbox_core::config::Dur>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => go_duration(s)
            .map(|d| Some(signalbox_core::config::Dur(d)))
            .ok_or_else(|| ApiError::field(field, format!("`{s}` is not a duration like 10s"))),
    }
}

impl ConsulCheck {
    pub(super) fn into_request(self, at: &str) -> Result<CheckRequest, ApiError> {
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

pub(super) async fn register(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let req = service_request(&body, &s.node_address)?;
    s.control.registry.register(req).await.map_err(|e| consul_field(e.into()))?;
    Ok(StatusCode::OK.into_response())
}

/// A service definition as a registration (not yet validated); an empty `Address` is the
/// node's.
pub(super) fn service_request(body: &[u8], node_address: &str) -> Result<RegisterRequest, ApiError> {
    let svc: ConsulService = super::body(body)?;
    let mut checks = Vec::new();
    if let Some(c) = svc.check {
        checks.push(c.into_request("Check")?);
    }
    let multiple = checks.len() + svc.checks.as_ref().map_or(0, Vec::len) > 1;
    for (i, c) in svc.checks.unwrap_or_default().into_iter().enumerate() {
        checks.push(c.into_request(&format!("Checks[{i}]"))?);
    }
    let address = svc.address.filter(|a| !a.is_empty()).unwrap_or_else(|| node_address.to_owned());
    let id = svc.id.filter(|i| !i.is_empty()).unwrap_or_else(|| svc.name.clone());
    // Consul names checks `service:<id>`, or `service:<id>:<n>` when there are several.
    if multiple {
        for (n, c) in checks.iter_mut().enumerate() {
            if c.id.is_none() {
                c.id = Some(format!("service:{id}:{}", n + 1));
            }
        }
    }
    let port = match svc.port.unwrap_or(0) {
        0 => 1,
        p => p,
    };
    Ok(RegisterRequest {
        service: svc.name,
        id: Some(id),
        address,
        port,
        tags: svc.tags.unwrap_or_default(),
        meta: svc.meta.unwrap_or_default(),
        weight: svc.weights.and_then(|w| w.passing).map(|w| w.clamp(1, 1000)),
        checks,
    })
}

/// Names fields the way the Consul request spelled them.
pub(super) fn consul_field(mut e: ApiError) -> ApiError {
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

pub(super) async fn deregister(
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

pub(super) async fn ttl(
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
pub(super) struct CheckUpdate {
    status: Option<String>,
    output: Option<String>,
}

pub(super) async fn check_update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let u: CheckUpdate = super::body(&body)?;
    let status = match u.status.as_deref() {
        Some("passing") => Status::Passing,
        Some("warning") => Status::Warning,
        Some("critical") => Status::Critical,
        _ => return Err(ApiError::field("Status", "must be passing, warning or critical")),
    };
    s.control.registry.report_ttl(&id, status, u.output).await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn maintenance(
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

/// `PUT /v1/agent/check/register`: a check of a registered service (`ServiceID`), or a
/// replacement of one with the same id. Node-level checks (no `ServiceID`) are refused:
/// Signalbox's node health is its own.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CheckDefinition {
    #[serde(rename = "ServiceID")]
    service_id: Option<String>,
    #[serde(flatten)]
    check: ConsulCheck,
}

pub(super) async fn check_register(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let (service, name, req) = check_request(&body)?;
    if s.control.registry.instance(&service).is_none() {
        return Err(ApiError::field("ServiceID", format!("no service with ID {service:?} is registered")));
    }
    s.control.registry.add_check(&service, req, name).await.map_err(|e| check_field(e.into()))?;
    Ok(StatusCode::OK.into_response())
}

/// A check definition as (service ID, check name, check); Consul's default check ID is
/// its name.
pub(super) fn check_request(body: &[u8]) -> Result<(String, String, CheckRequest), ApiError> {
    let def: CheckDefinition = super::body(body)?;
    let Some(service) = def.service_id.filter(|x| !x.is_empty()) else {
        return Err(ApiError::field("ServiceID", "node-level checks are not supported; name the service's ID"));
    };
    let name = def.check.name.clone().filter(|n| !n.is_empty());
    let Some(name) = name else { return Err(ApiError::field("Name", "missing check name")) };
    Ok((service, name, def.check.into_request("Check")?))
}

/// Names fields of a check definition as Consul spells them (`check.ttl` → `TTL`).
fn check_field(mut e: ApiError) -> ApiError {
    if let Some(f) = e.field.take() {
        let mapped = match f.as_str() {
            "check" | "checks" => "Check",
            "check.id" => "ID",
            "check.ttl" => "TTL",
            "check.interval" => "Interval",
            "check.timeout" => "Timeout",
            "check.http" => "HTTP",
            "check.tcp" => "TCP",
            "check.grpc_address" => "GRPC",
            "check.success_threshold" => "SuccessBeforePassing",
            "check.failure_threshold" => "FailuresBeforeCritical",
            "check.deregister_after" => "DeregisterCriticalServiceAfter",
            other => other,
        };
        e.message = e.message.replacen(f.as_str(), mapped, 1);
        e.field = Some(mapped.to_owned());
    }
    e
}

/// `PUT /v1/agent/check/deregister/{id}`.
pub(super) async fn check_deregister(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    if s.control.registry.remove_check(&id).await? {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::not_found(format!("Unknown check ID {id:?}")))
    }
}
