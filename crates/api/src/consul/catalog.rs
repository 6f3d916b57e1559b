//! `/v1/catalog/*` and `/v1/health/*`: the one node's services and checks, with blocking
//! queries.

use super::*;

pub(super) fn weights(i: &InstanceView) -> Value {
    json!({ "Passing": i.weight, "Warning": 1 })
}

pub(super) fn service_json(i: &InstanceView) -> Value {
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

pub(super) fn check_type(kind: &signalbox_control::registry::model::CheckKind) -> &'static str {
    use signalbox_control::registry::model::CheckKind::*;
    match kind {
        Http { .. } => "http",
        Tcp { .. } => "tcp",
        Grpc { .. } => "grpc",
        Ttl { .. } => "ttl",
    }
}

pub(super) fn checks_json(s: &AppState, i: &InstanceView) -> Vec<Value> {
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

pub(super) fn serf_check(s: &AppState) -> Value {
    json!({
        "Node": s.node_name, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
        "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "", "ServiceTags": [],
        "Type": "", "CreateIndex": 1, "ModifyIndex": 1,
    })
}

/// This node, as the catalog lists it.
fn node_json(s: &AppState) -> Value {
    json!({
        "ID": NODE_ID, "Node": s.node_name, "Address": s.node_address, "Datacenter": DATACENTER,
        "TaggedAddresses": { "lan": s.node_address, "wan": s.node_address }, "Meta": {}, "CreateIndex": 1, "ModifyIndex": 1,
    })
}

pub(super) async fn catalog_nodes(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    Ok(indexed(s.control.index.current(), StatusCode::OK, json!([node_json(&s)])))
}

/// `GET /v1/catalog/node/{node}`: the node and its services by ID; `null` for another node,
/// as Consul answers for a node it does not know.
pub(super) async fn catalog_node(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let idx = block(&s, &Q::parse(q), None).await?;
    if node != s.node_name {
        return Ok(indexed(idx, StatusCode::OK, Value::Null));
    }
    let services: BTreeMap<String, Value> =
        s.control.registry.all().iter().map(|i| (i.id.clone(), service_json(i))).collect();
    Ok(indexed(idx, StatusCode::OK, json!({ "Node": node_json(&s), "Services": services })))
}

/// `GET /v1/health/node/{node}`: the node's own check and every service check on it; `[]`
/// for another node.
pub(super) async fn health_node(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let idx = block(&s, &Q::parse(q), None).await?;
    if node != s.node_name {
        return Ok(indexed(idx, StatusCode::OK, json!([])));
    }
    let mut list = vec![serf_check(&s)];
    list.extend(s.control.registry.all().iter().flat_map(|i| checks_json(&s, i)));
    Ok(indexed(idx, StatusCode::OK, Value::Array(list)))
}

/// `GET /v1/health/state/{state}`: every check in `passing`, `warning` or `critical`, or
/// all of them for `any`.
pub(super) async fn health_state(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(state): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    if !["any", "passing", "warning", "critical"].contains(&state.as_str()) {
        return Err(ApiError::field("state", format!("`{state}` is not any, passing, warning or critical")));
    }
    let idx = block(&s, &Q::parse(q), None).await?;
    let mut list = vec![serf_check(&s)];
    list.extend(s.control.registry.all().iter().flat_map(|i| checks_json(&s, i)));
    list.retain(|c| state == "any" || c["Status"] == state.as_str());
    Ok(indexed(idx, StatusCode::OK, Value::Array(list)))
}

pub(super) async fn catalog_services(
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

pub(super) async fn block(s: &AppState, q: &Q, service: Option<&str>) -> Result<u64, ApiError> {
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
pub(super) async fn watched_instances(
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

pub(super) async fn catalog_service(
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

pub(super) async fn health_service(
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
                "Node": node_json(&s),
                "Service": service_json(i),
                "Checks": checks,
            })
        })
        .collect();
    Ok(indexed(idx, StatusCode::OK, Value::Array(list)))
}

pub(super) async fn health_checks(
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

/// `PUT /v1/catalog/register`: a service on this node. Signalbox is one node, so `Node`
/// must name it; catalog checks (status records nobody runs) are refused: checks belong to
/// `/v1/agent/check/register`, where the control loop runs them.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct CatalogRegistration {
    node: String,
    service: Option<CatalogService>,
    check: Option<Value>,
    checks: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct CatalogService {
    #[serde(rename = "ID")]
    id: Option<String>,
    service: String,
    tags: Option<Vec<String>>,
    address: Option<String>,
    port: Option<i64>,
    meta: Option<BTreeMap<String, String>>,
}

fn this_node(s: &AppState, node: &str) -> Result<(), ApiError> {
    if node == s.node_name {
        return Ok(());
    }
    let what = if node.is_empty() { "missing node name".to_owned() } else { format!("unknown node {node:?}") };
    Err(ApiError::field("Node", format!("{what}: Signalbox is one node, {:?}", s.node_name)))
}

pub(super) async fn catalog_register(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let r: CatalogRegistration = super::body(&body)?;
    this_node(&s, &r.node)?;
    for (field, given) in
        [("Check", r.check.is_some_and(|c| !c.is_null())), ("Checks", r.checks.is_some_and(|c| !c.is_null()))]
    {
        if given {
            return Err(ApiError::field(field, "catalog checks are not supported; use /v1/agent/check/register"));
        }
    }
    // Registering the node alone changes nothing: it is always registered.
    if let Some(svc) = r.service {
        let address = svc.address.filter(|a| !a.is_empty()).unwrap_or_else(|| s.node_address.clone());
        let id = svc.id.filter(|i| !i.is_empty()).unwrap_or_else(|| svc.service.clone());
        let req = RegisterRequest {
            service: svc.service,
            id: Some(id),
            address,
            port: match svc.port.unwrap_or(0) {
                0 => 1,
                p => p,
            },
            tags: svc.tags.unwrap_or_default(),
            meta: svc.meta.unwrap_or_default(),
            weight: None,
            checks: Vec::new(),
        };
        s.control.registry.register(req).await.map_err(|e| agent::consul_field(e.into())).map_err(|mut e| {
            // The catalog names the service `Service`, not `Name`.
            if e.field.as_deref() == Some("Name") {
                e.field = Some("Service.Service".into());
                e.message = e.message.replacen("Name", "Service.Service", 1);
            } else if let Some(f) = e.field.take() {
                e.message = e.message.replacen(&f, &format!("Service.{f}"), 1);
                e.field = Some(format!("Service.{f}"));
            }
            e
        })?;
    }
    Ok(Json(json!(true)).into_response())
}

/// `PUT /v1/catalog/deregister`: a service (`ServiceID`) or a check (`CheckID`) of this
/// node. The node itself cannot be removed.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct CatalogDeregistration {
    node: String,
    #[serde(rename = "ServiceID")]
    service_id: Option<String>,
    #[serde(rename = "CheckID")]
    check_id: Option<String>,
}

pub(super) async fn catalog_deregister(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let d: CatalogDeregistration = super::body(&body)?;
    this_node(&s, &d.node)?;
    match (d.service_id.filter(|x| !x.is_empty()), d.check_id.filter(|x| !x.is_empty())) {
        (Some(id), _) => {
            s.control.registry.deregister(&id).await?;
        }
        (None, Some(id)) => {
            s.control.registry.remove_check(&id).await?;
        }
        (None, None) => {
            return Err(ApiError::field(
                "ServiceID",
                "name a ServiceID or a CheckID: this node cannot be deregistered",
            ));
        }
    }
    // Consul answers true for an ID it does not know, too.
    Ok(Json(json!(true)).into_response())
}
