//! The central configuration API under `/api/config`, and the long-poll and SSE watches.
//! Spring Cloud Config Server's endpoints under `/config` are in [`crate::spring`].

use crate::AppState;
use crate::blocking::BlockParams;
use crate::error::ApiError;
use crate::json::JsonBody;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use signalbox_control::access::Principal;
use signalbox_control::config::Write;
use std::convert::Infallible;

pub fn reads() -> Router<AppState> {
    Router::new()
        .route("/api/config", get(list))
        .route("/api/config/watch", get(watch))
        .route("/api/config/events", get(events))
        .route("/api/config/{app}/{profile}/{key}", get(get_one))
        .route("/api/config/{app}/{profile}/{key}/history", get(history))
        .route("/api/config/{app}/{profile}/{key}/diff", get(diff))
}

pub fn writes() -> Router<AppState> {
    Router::new()
        .route("/api/config/{app}/{profile}/{key}", axum::routing::put(put_one).delete(delete_one))
        .route("/api/config/{app}/{profile}/{key}/rollback", post(rollback))
}

#[derive(Deserialize, Default)]
struct ListParams {
    application: Option<String>,
    profile: Option<String>,
}

async fn list(State(s): State<AppState>, Query(p): Query<ListParams>) -> Json<Value> {
    let entries = s.control.config.list(p.application.as_deref(), p.profile.as_deref());
    Json(json!({ "index": s.control.index.current(), "entries": entries }))
}

#[derive(Deserialize, Default)]
struct VersionParam {
    version: Option<u64>,
}

async fn get_one(
    State(s): State<AppState>,
    Path((app, profile, key)): Path<(String, String, String)>,
    Query(v): Query<VersionParam>,
) -> Result<Response, ApiError> {
    let e = s.control.config.get(&app, &profile, &key, v.version)?;
    let mut r = Json(&e).into_response();
    if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", e.version)) {
        r.headers_mut().insert(http::header::ETAG, etag);
    }
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    value: String,
    #[serde(default)]
    comment: String,
    /// Compare-and-set: the version the writer last saw (0: create only).
    #[serde(default)]
    expected_version: Option<u64>,
}

/// `If-Match: "N"` is the header form of `expected_version`.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(http::header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().trim_matches('"').parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::field("If-Match", "must be a version number like \"3\"")),
    }
}

async fn put_one(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((app, profile, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<PutBody>,
) -> Result<Response, ApiError> {
    let expected = b.expected_version.or(if_match(&headers)?);
    if let Some(check) = &s.config_checks
        && let Err(m) = check(&app, &profile, &key, &b.value)
    {
        return Err(ApiError::field("value", m));
    }
    let e = s
        .control
        .config
        .put(
            &app,
            &profile,
            &key,
            Write { value: b.value, author: who.token_id, comment: b.comment, expected_version: expected },
        )
        .await?;
    Ok((StatusCode::OK, Json(e)).into_response())
}

#[derive(Deserialize, Default)]
struct DeleteParams {
    expected_version: Option<u64>,
}

async fn delete_one(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((app, profile, key)): Path<(String, String, String)>,
    Query(q): Query<DeleteParams>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let expected = q.expected_version.or(if_match(&headers)?);
    let e = s.control.config.delete(&app, &profile, &key, &who.token_id, expected).await?;
    Ok(Json(json!(e)))
}

async fn history(
    State(s): State<AppState>,
    Path((app, profile, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "versions": s.control.config.history(&app, &profile, &key)? })))
}

#[derive(Deserialize)]
struct DiffParams {
    from: u64,
    to: u64,
}

async fn diff(
    State(s): State<AppState>,
    Path((app, profile, key)): Path<(String, String, String)>,
    q: Result<Query<DiffParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::field("from", "give `from` and `to` as version numbers"))?;
    Ok(Json(json!(s.control.config.diff(&app, &profile, &key, q.from, q.to)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to_version: u64,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    expected_version: Option<u64>,
}

async fn rollback(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((app, profile, key)): Path<(String, String, String)>,
    JsonBody(b): JsonBody<RollbackBody>,
) -> Result<Json<Value>, ApiError> {
    let w =
        Write { value: String::new(), author: who.token_id, comment: b.comment, expected_version: b.expected_version };
    let old = s.control.config.get(&app, &profile, &key, Some(b.to_version))?;
    if let Some(check) = &s.config_checks
        && let Err(m) = check(&app, &profile, &key, &old.value)
    {
        return Err(ApiError::field("to_version", m));
    }
    Ok(Json(json!(s.control.config.rollback(&app, &profile, &key, b.to_version, w).await?)))
}

#[derive(Deserialize, Default)]
struct WatchParams {
    index: Option<u64>,
    wait: Option<String>,
    application: Option<String>,
    profile: Option<String>,
}

/// Long-poll: returns the changes after `index` (matching the filters) as soon as there are
/// any, or an empty list after `wait`. `reset: true` means the index is older than the change
/// log: re-read everything.
async fn watch(State(s): State<AppState>, Query(p): Query<WatchParams>) -> Result<Json<Value>, ApiError> {
    let b = BlockParams { index: p.index, wait: p.wait.clone() };
    let wait = b.wait()?;
    let after = p.index.unwrap_or(0);
    let cfg = s.control.config.clone();
    let (app, profile) = (p.application.clone(), p.profile.clone());
    let matching = || match cfg.changes_since(after, app.as_deref(), profile.as_deref()) {
        None => Some(None),
        Some(c) if !c.is_empty() => Some(Some(c)),
        Some(_) => None,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = s.control.index.subscribe();
    loop {
        let cur = s.control.index.current();
        if p.index.is_some() {
            if let Some(found) = matching() {
                return Ok(Json(match found {
                    None => json!({ "index": cur, "reset": true, "changes": [] }),
                    Some(c) => json!({ "index": c.last().map(|x| x.index).unwrap_or(cur), "changes": c }),
                }));
            }
        } else {
            return Ok(Json(json!({ "index": cur, "changes": [] })));
        }
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            return Ok(Json(json!({ "index": cur, "changes": [] })));
        }
    }
}

/// SSE: a `change` event per change (with the new value), filtered by application/profile.
async fn events(
    State(s): State<AppState>,
    Query(p): Query<ListParams>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    use futures_util::StreamExt;
    let stream =
        event_stream(s, p.application, p.profile).map(|(kind, data)| Ok(Event::default().event(kind).data(data)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The config events as `(kind, JSON)`: `hello` `{index}` first, then `change`
/// `{index, changes}` (each with its new value) and `reset` `{index}` when the changes since
/// the last index are no longer kept. Pulled by its reader: nothing queues. Also the
/// `config` topic of `/api/live` (unfiltered).
pub(crate) fn event_stream(
    s: AppState,
    application: Option<String>,
    profile: Option<String>,
) -> impl Stream<Item = (&'static str, String)> + Send {
    let rx = s.control.index.subscribe();
    let start = s.control.index.current();
    let hello = ("hello", json!({ "index": start }).to_string());
    futures_util::stream::unfold(
        (s, rx, start, (application, profile), Some(hello)),
        |(s, mut rx, mut last, p, pending)| async move {
            if let Some(ev) = pending {
                return Some((ev, (s, rx, last, p, None)));
            }
            loop {
                if rx.changed().await.is_err() {
                    return None;
                }
                let now = s.control.index.current();
                let changes = s.control.config.changes_since(last, p.0.as_deref(), p.1.as_deref());
                last = now;
                let ev = match changes {
                    None => Some(("reset", json!({ "index": now }).to_string())),
                    Some(c) if c.is_empty() => None,
                    Some(c) => {
                        let detailed: Vec<Value> = c
                        .iter()
                        .map(|ch| {
                            let value = s.control.config.get(&ch.application, &ch.profile, &ch.key, Some(ch.version)).ok().map(|e| e.value);
                            json!({ "index": ch.index, "application": ch.application, "profile": ch.profile, "key": ch.key, "version": ch.version, "deleted": ch.deleted, "value": value })
                        })
                        .collect();
                        Some(("change", json!({ "index": now, "changes": detailed }).to_string()))
                    }
                };
                if let Some(ev) = ev {
                    return Some((ev, (s, rx, last, p, None)));
                }
            }
        },
    )
}
