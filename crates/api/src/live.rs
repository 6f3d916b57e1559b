//! `GET /api/live?topics=registry,alerts`: the console's one live-update stream per tab.
//! A browser allows six HTTP/1.1 connections per host, so pages do not open an EventSource
//! each; they subscribe to topics of this one stream (ui/js/live.js).
//!
//! Every event is an unnamed server-sent event whose data is one JSON object:
//!
//! ```text
//! {"topic": "registry", "kind": "snapshot", "data": {...}}
//! ```
//!
//! - `registry`: `snapshot` `{index, instances}`, then `change` `{index, instances, removed}`
//!   and `gateway` `{index, instances}`, exactly as `/api/registry/events` sends them.
//! - `alerts`: `snapshot` `{generation, alerts}` (pending and firing alerts, as Prometheus's
//!   `/api/v1/alerts` lists them) first and again after every alert state change or rule
//!   reload; `unavailable` `{reason}` once when the node evaluates no rules.
//! - `config`: `hello` `{index}`, then `change` `{index, changes}` and `reset` `{index}`,
//!   exactly as `/api/config/events` sends them (every application and profile).
//!
//! Each topic is a stream its reader pulls (no queue between producer and connection): a
//! slow reader gets the state as of its next read, never an unbounded backlog.

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{BoxStream, StreamExt};
use serde::Deserialize;
use serde_json::json;

/// Every topic, in the order the error message lists them.
pub const TOPICS: &[&str] = &["registry", "alerts", "config"];

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/live", get(live))
}

#[derive(Deserialize)]
struct LiveParams {
    topics: Option<String>,
}

/// The topics a `topics` parameter names (comma-separated, duplicates merged), or the error
/// naming the one that is not a topic.
pub fn parse_topics(raw: Option<&str>) -> Result<Vec<&'static str>, ApiError> {
    let raw = raw.unwrap_or("").trim();
    if raw.is_empty() {
        return Err(ApiError::field("topics", format!("name at least one topic of: {}", TOPICS.join(", "))));
    }
    let mut out: Vec<&'static str> = Vec::new();
    for t in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let Some(known) = TOPICS.iter().find(|k| **k == t) else {
            return Err(ApiError::field(
                "topics",
                format!("`{t}` is not a topic; the topics are {}", TOPICS.join(", ")),
            ));
        };
        if !out.contains(known) {
            out.push(known);
        }
    }
    if out.is_empty() {
        return Err(ApiError::field("topics", format!("name at least one topic of: {}", TOPICS.join(", "))));
    }
    Ok(out)
}

async fn live(State(s): State<AppState>, Query(p): Query<LiveParams>) -> Response {
    let topics = match parse_topics(p.topics.as_deref()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let streams: Vec<BoxStream<'static, String>> = topics
        .into_iter()
        .map(|t| match t {
            "registry" => tagged("registry", crate::registry::event_stream(s.clone())),
            "config" => tagged("config", crate::config::event_stream(s.clone(), None, None)),
            _ => tagged("alerts", alert_stream(s.clone())),
        })
        .collect();
    let merged = futures_util::stream::select_all(streams)
        .map(|data| Ok::<_, std::convert::Infallible>(Event::default().data(data)));
    Sse::new(merged).keep_alive(KeepAlive::default()).into_response()
}

/// `(kind, JSON)` events of one topic as the envelope's text.
fn tagged(
    topic: &'static str,
    events: impl futures_util::Stream<Item = (&'static str, String)> + Send + 'static,
) -> BoxStream<'static, String> {
    events.map(move |(kind, data)| envelope(topic, kind, &data)).boxed()
}

/// `{"topic":..,"kind":..,"data":..}` around already-serialised JSON `data`.
pub fn envelope(topic: &str, kind: &str, data: &str) -> String {
    format!("{{\"topic\":{},\"kind\":{},\"data\":{data}}}", json!(topic), json!(kind))
}

/// The `alerts` topic: the active alerts now and after every change.
fn alert_stream(s: AppState) -> BoxStream<'static, (&'static str, String)> {
    let rules = s.metric_store.as_ref().and_then(|m| m.rules.clone());
    let Some(rules) = rules else {
        let reason = if s.metric_store.is_none() {
            "metrics are not enabled on this node"
        } else {
            "this node evaluates no rules"
        };
        let first = ("unavailable", json!({ "reason": reason }).to_string());
        // Once, then nothing more: the connection stays open for the other topics.
        return futures_util::stream::once(async move { first }).chain(futures_util::stream::pending()).boxed();
    };
    let rx = rules.watch_alerts();
    futures_util::stream::unfold((rules, rx, true), |(rules, mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            // The rule manager is gone (the node is stopping).
            return None;
        }
        let generation = *rx.borrow_and_update();
        let mut data = rules.alerts_json();
        data["generation"] = json!(generation);
        Some((("snapshot", data.to_string()), (rules, rx, false)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_parsed_merged_and_checked() {
        assert_eq!(parse_topics(Some("registry,alerts,registry")).unwrap(), vec!["registry", "alerts"]);
        assert_eq!(parse_topics(Some(" alerts ")).unwrap(), vec!["alerts"]);
        let e = parse_topics(Some("registry,logs")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("topics"));
        assert!(e.message.contains("`logs` is not a topic"), "{}", e.message);
        assert!(parse_topics(None).unwrap_err().message.contains("registry, alerts, config"));
        assert!(parse_topics(Some(",")).is_err());
    }

    #[test]
    fn the_envelope_is_json_with_the_data_inline() {
        let e = envelope("alerts", "snapshot", r#"{"alerts":[]}"#);
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v, json!({"topic": "alerts", "kind": "snapshot", "data": {"alerts": []}}));
    }
}
