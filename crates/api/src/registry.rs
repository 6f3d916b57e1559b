//! The native registry API under `/api/registry`: register, deregister, TTL reports, reads
//! with blocking queries, and a server-sent-events stream of changes. Instance views are
//! joined with the gateway's view of the same endpoint (outlier ejection, circuit state).

use crate::AppState;
use crate::blocking::{BlockParams, wait_for};
use crate::error::ApiError;
use crate::json::JsonBody;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use signalbox_control::registry::InstanceView;
use signalbox_control::registry::model::{RegisterRequest, Status};
use std::collections::HashMap;
use std::convert::Infallible;

pub const INDEX_HEADER: &str = "x-signalbox-index";

/// Rendered service views, shared by the watchers that wake for the same index: with a
/// thousand watchers on one service, one change is serialised once, not a thousand times.
/// An entry lives at most [`VIEW_TTL`], which bounds how stale its gateway columns can be.
#[derive(Default)]
pub struct ViewCache {
    entries: std::sync::Mutex<HashMap<ViewKey, Rendered>>,
}

/// (service, passing only).
type ViewKey = (String, bool);
/// (index, when rendered, JSON).
type Rendered = (u64, std::time::Instant, bytes::Bytes);

const VIEW_TTL: std::time::Duration = std::time::Duration::from_millis(250);

impl ViewCache {
    fn get_or_render(&self, key: (String, bool), index: u64, render: impl FnOnce() -> bytes::Bytes) -> bytes::Bytes {
        if let Some((i, at, b)) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && *i == index
            && at.elapsed() < VIEW_TTL
        {
            return b.clone();
        }
        let b = render();
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(key, (index, std::time::Instant::now(), b.clone()));
        b
    }
}

pub fn reads() -> Router<AppState> {
    Router::new()
        .route("/api/registry/services", get(services))
        .route("/api/registry/services/{name}", get(service))
        .route("/api/registry/services/{name}/endpoints", get(endpoints))
        .route("/api/registry/instances/{id}", get(instance))
        .route("/api/registry/events", get(events))
}

pub fn writes() -> Router<AppState> {
    Router::new()
        .route("/api/registry/instances", post(register))
        .route("/api/registry/instances/{id}", axum::routing::delete(deregister))
        .route("/api/registry/instances/{id}/ttl", put(ttl))
}

fn with_index(index: u64, body: Value) -> Response {
    let mut r = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        r.headers_mut().insert(INDEX_HEADER, v);
    }
    r
}

/// The gateway's state of each endpoint, keyed by (service, address).
pub fn gateway_states(state: &AppState) -> HashMap<(String, String), Value> {
    let mut out = HashMap::new();
    if let Some(g) = &state.gateway
        && let Value::Array(services) = g.services()
    {
        for s in services {
            let name = s["name"].as_str().unwrap_or_default().to_owned();
            for e in s["endpoints"].as_array().into_iter().flatten() {
                let addr = e["address"].as_str().unwrap_or_default().to_owned();
                let v = json!({
                    "ejected": e["ejected"],
                    "ejected_for_seconds": e["ejected_for_seconds"],
                    "ejections": e["ejections"],
                    "circuit": e["circuit"],
                    "inflight": e["inflight"],
                    "latency_ewma_ms": e["latency_ewma_ms"],
                });
                out.insert((name.clone(), addr), v);
            }
        }
    }
    out
}

/// An instance as JSON, with the gateway's state of its endpoint when it has one.
pub fn instance_json(i: &InstanceView, gw: &HashMap<(String, String), Value>) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
    let authority = if i.address.contains(':') {
        format!("[{}]:{}", i.address, i.port)
    } else {
        format!("{}:{}", i.address, i.port)
    };
    v["gateway"] = gw.get(&(i.service.clone(), authority)).cloned().unwrap_or(Value::Null);
    v
}

async fn register(State(s): State<AppState>, JsonBody(req): JsonBody<RegisterRequest>) -> Result<Response, ApiError> {
    let view = s.control.registry.register(req).await?;
    Ok((StatusCode::CREATED, Json(instance_json(&view, &gateway_states(&s)))).into_response())
}

async fn deregister(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if s.control.registry.deregister(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("instance `{id}` not found")))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TtlReport {
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    note: Option<String>,
    /// A check id when the instance has several TTL checks.
    #[serde(default)]
    check: Option<String>,
}

async fn ttl(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let report: TtlReport = if body.is_empty() {
        TtlReport::default()
    } else {
        if !headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        crate::json::parse(&body)?
    };
    if report.note.as_ref().is_some_and(|n| n.len() > 4096) {
        return Err(ApiError::field("note", "at most 4096 characters"));
    }
    let check = report.check.unwrap_or(id);
    s.control.registry.report_ttl(&check, report.status.unwrap_or(Status::Passing), report.note).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn services(State(s): State<AppState>, Query(b): Query<BlockParams>) -> Result<Response, ApiError> {
    let index = s.control.index.clone();
    let idx = match b.index {
        Some(after) => wait_for(&index, after, b.wait()?, || index.current()).await,
        None => index.current(),
    };
    Ok(with_index(idx, serde_json::to_value(s.control.registry.services()).unwrap_or(Value::Null)))
}

#[derive(Deserialize, Default)]
struct ServiceParams {
    index: Option<u64>,
    wait: Option<String>,
    passing: Option<String>,
}

async fn service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<ServiceParams>,
) -> Result<Response, ApiError> {
    let idx = block_on_service(&s, &name, p.index, p.wait).await?;
    let passing = p.passing.as_deref().is_some_and(|v| v != "false");
    let body = s.views.get_or_render((name.clone(), passing), idx, || {
        let gw = gateway_states(&s);
        let list: Vec<Value> =
            s.control.registry.instances(&name, passing).iter().map(|i| instance_json(i, &gw)).collect();
        bytes::Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
    });
    let mut r = ([(http::header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&idx.to_string()) {
        r.headers_mut().insert(INDEX_HEADER, v);
    }
    Ok(r)
}

async fn block_on_service(s: &AppState, name: &str, index: Option<u64>, wait: Option<String>) -> Result<u64, ApiError> {
    let b = BlockParams { index, wait };
    let reg = s.control.registry.clone();
    Ok(match b.index {
        Some(after) => wait_for(&s.control.index, after, b.wait()?, || reg.service_index(name)).await,
        None => reg.service_index(name),
    }
    .max(1))
}

/// Endpoints the gateway would use (passing and warning instances), for remote gateways.
async fn endpoints(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<ServiceParams>,
) -> Result<Response, ApiError> {
    let idx = block_on_service(&s, &name, p.index, p.wait).await?;
    Ok(with_index(idx, json!({ "index": idx, "service": name, "endpoints": s.control.registry.endpoints(&name) })))
}

async fn instance(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let i =
        s.control.registry.instance(&id).ok_or_else(|| ApiError::not_found(format!("instance `{id}` not found")))?;
    Ok(Json(instance_json(&i, &gateway_states(&s))))
}

/// `text/event-stream`: a `snapshot` event with every instance, then a `change` event per
/// index step with the instances that changed (and the ids that left). The gateway's view
/// (ejections, circuits) is refreshed with every event and at least every 2 seconds.
async fn events(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    use futures_util::StreamExt;
    let stream = event_stream(s).map(|(kind, data)| Ok(Event::default().event(kind).data(data)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The registry's events as `(kind, JSON)`: `snapshot` first, then `change` and `gateway`
/// (see [`events`]). Pulled by its reader, so nothing queues: a slow reader skips to the
/// changes since the index it last saw. Also the `registry` topic of `/api/live`.
pub(crate) fn event_stream(s: AppState) -> impl Stream<Item = (&'static str, String)> + Send {
    let rx = s.control.index.subscribe();
    let start = s.control.index.current();
    let first = snapshot_event(&s, start);
    futures_util::stream::unfold((s, rx, start, Some(first)), |(s, mut rx, mut last, pending)| async move {
        if let Some(ev) = pending {
            return Some((ev, (s, rx, last, None)));
        }
        loop {
            // Changes, or a periodic refresh of gateway state (ejections change without an
            // index step).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), rx.changed()).await;
            let now = s.control.index.current();
            let gw = gateway_states(&s);
            let ev = match s.control.registry.changes_since(last) {
                None => Some(snapshot_event(&s, now)),
                Some(changes) => {
                    let mut ids: Vec<&str> = changes.iter().map(|c| c.instance.as_str()).collect();
                    ids.sort();
                    ids.dedup();
                    let mut updated = Vec::new();
                    let mut removed = Vec::new();
                    for id in ids {
                        match s.control.registry.instance(id) {
                            Some(i) => updated.push(instance_json(&i, &gw)),
                            None => removed.push(id.to_owned()),
                        }
                    }
                    if !updated.is_empty() || !removed.is_empty() {
                        Some(("change", json!({ "index": now, "instances": updated, "removed": removed }).to_string()))
                    } else if !gw.is_empty() {
                        // Nothing in the registry moved: refresh the gateway's columns of the
                        // instances it routes to.
                        let known: Vec<Value> = s
                            .control
                            .registry
                            .all()
                            .iter()
                            .map(|i| instance_json(i, &gw))
                            .filter(|v| !v["gateway"].is_null())
                            .collect();
                        Some(("gateway", json!({ "index": now, "instances": known }).to_string()))
                    } else {
                        None
                    }
                }
            };
            last = now;
            if let Some(ev) = ev {
                return Some((ev, (s, rx, last, None)));
            }
        }
    })
}

fn snapshot_event(s: &AppState, index: u64) -> (&'static str, String) {
    let gw = gateway_states(s);
    let all: Vec<Value> = s.control.registry.all().iter().map(|i| instance_json(i, &gw)).collect();
    ("snapshot", json!({ "index": index, "instances": all }).to_string())
}
