//! The internal endpoints a node answers for its peers, from its own data only (they never
//! fan out again): `POST /internal/cluster/v1/{metrics/select, traces/get, traces/search,
//! traces/services, traces/operations, logs/records, logs/labels, logs/search}`.
//!
//! A caller needs the cluster token (`[cluster] token`, as a bearer token) or, as for the
//! public read APIs, a credential with the `read` role. Request bodies are capped at
//! [`MAX_REQUEST`].

use super::merged;
use super::wire::{self, Found, FoundList, LabelSets, RecordList, SeriesList, WireSeries};
use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use prost::Message;
use signalbox_control::access::Role;
use signalbox_core::ids::TraceId;

/// Largest internal request body.
pub const MAX_REQUEST: usize = 1024 * 1024;
/// Most trace ids one `traces/get` asks for.
const MAX_IDS: usize = 1_000;

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(merged::METRICS_SELECT, post(metrics_select))
        .route(merged::TRACES_GET, post(traces_get))
        .route(merged::TRACES_SEARCH, post(traces_search))
        .route(merged::TRACES_SERVICES, post(traces_services))
        .route(merged::TRACES_OPERATIONS, post(traces_operations))
        .route(merged::LOGS_RECORDS, post(logs_records))
        .route(merged::LOGS_LABELS, post(logs_labels))
        .route(merged::LOGS_SEARCH, post(logs_search))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_peer))
}

/// Whether `headers` carry the cluster token.
fn has_cluster_token(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(want) = state.cluster.as_ref().and_then(|c| c.token()) else { return false };
    let Some(got) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    // Constant time in the token's length: the comparison must not leak a prefix.
    got.len() == want.len() && got.bytes().zip(want.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn require_peer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if has_cluster_token(&state, req.headers()) {
        return next.run(req).await;
    }
    match crate::auth::principal(&state, req.headers()) {
        Ok(p) if p.role.allows(Role::Read) => next.run(req).await,
        Ok(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this token cannot read").into_response(),
        Err(d) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", d.message()).into_response(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_request", format!("the request body: {e}")))
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => ([(http::header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into_response(),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

async fn metrics_select(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: wire::Select = parse(&body)?;
    let matchers = req
        .matchers
        .iter()
        .map(wire::matcher_in)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ApiError::field("matchers", m))?;
    let svc = s.metric_store.as_ref().map(|m| m.service.clone());
    let Some(svc) = svc else { return Ok(json(&SeriesList::default())) };
    let db = svc.db_arc();
    let list = tokio::task::spawn_blocking(move || {
        let series = db.select(&matchers, req.mint, req.maxt)?;
        Ok::<_, signalbox_metrics::storage::StorageError>(SeriesList {
            series: series
                .iter()
                .map(|x| {
                    let mut w = WireSeries::from(x);
                    if req.labels_only {
                        w.samples.clear();
                    }
                    w
                })
                .collect(),
        })
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(json(&list))
}

async fn traces_get(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: wire::TraceIds = parse(&body)?;
    if req.ids.len() > MAX_IDS {
        return Err(ApiError::field("ids", format!("at most {MAX_IDS} ids")));
    }
    let ids = req
        .ids
        .iter()
        .map(|i| TraceId::from_hex(i).ok_or_else(|| ApiError::field("ids", format!("`{i}` is not a trace id"))))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(t) = s.traces.clone() else {
        return Ok(signalbox_otlp::traces::to_request(Vec::new()).encode_to_vec().into_response());
    };
    let bytes = tokio::task::spawn_blocking(move || {
        let spans: Vec<_> = ids.iter().flat_map(|id| t.trace(id)).collect();
        signalbox_otlp::traces::to_request(spans).encode_to_vec()
    })
    .await
    .map_err(internal)?;
    Ok(([(http::header::CONTENT_TYPE, "application/x-protobuf")], bytes).into_response())
}

async fn traces_search(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: wire::TraceSearch = parse(&body)?;
    let Some(t) = s.traces.clone() else { return Ok(json(&FoundList::default())) };
    let q: signalbox_events::spans::query::Search = req.into();
    let found = tokio::task::spawn_blocking(move || t.search(&q)).await.map_err(internal)?;
    Ok(json(&FoundList {
        traces: found
            .into_iter()
            .map(|f| Found { trace_id: f.trace_id, start_unix_nanos: f.start_unix_nanos })
            .collect(),
    }))
}

async fn traces_services(State(s): State<AppState>) -> Result<Response, ApiError> {
    let names = s.traces.as_ref().map(|t| t.services()).unwrap_or_default();
    Ok(json(&wire::Names { names, ..Default::default() }))
}

async fn traces_operations(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: wire::Names = parse(&body)?;
    let service = req.service.ok_or_else(|| ApiError::field("service", "is required"))?;
    let kinds = s.traces.as_ref().map(|t| t.operation_kinds(&service)).unwrap_or_default();
    Ok(json(&wire::Names { service: Some(service), names: kinds.keys().cloned().collect(), kinds }))
}

async fn logs_records(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: wire::LogRecords = parse(&body)?;
    if s.logs.is_none() {
        return Ok(json(&RecordList::default()));
    }
    let recs = tokio::task::spawn_blocking(move || {
        crate::logs::loki_query::local_records(&s, &req.query, req.start, req.end, req.cap)
    })
    .await
    .map_err(internal)??;
    Ok(json(&RecordList { records: recs.iter().map(wire::WireRecord::from).collect() }))
}

async fn logs_labels(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: wire::LogLabels = parse(&body)?;
    if s.logs.is_none() {
        return Ok(json(&LabelSets::default()));
    }
    let sets = tokio::task::spawn_blocking(move || crate::logs::loki_query::local_label_sets(&s, &req.params))
        .await
        .map_err(internal)??;
    Ok(json(&LabelSets { sets }))
}

async fn logs_search(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: wire::LogSearch = parse(&body)?;
    if s.logs.is_none() {
        return Ok(json(&RecordList::default()));
    }
    let recs = tokio::task::spawn_blocking(move || crate::logs::native_query::local_search(&s, &req))
        .await
        .map_err(internal)??;
    Ok(json(&RecordList { records: recs.iter().map(wire::WireRecord::from).collect() }))
}
