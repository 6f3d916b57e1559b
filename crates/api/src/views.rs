//! The console's joined views: one answer per page that puts the gateway's RED metrics (from
//! the node's TSDB, through PromQL), the registry's health, the gateway's circuits, the
//! alerting rules, the trace dependency graph and the configuration history side by side, so
//! the browser makes one call instead of ten.
//!
//! Every view takes a window as `since=15m`, or `start=`/`end=` (Unix seconds, ms, µs, ns or
//! RFC 3339, as the trace APIs take them). 64-bit ids and nanosecond times are strings. A
//! source that fails does not fail the view: its message lands in `problems` and the
//! fields it would fill are `null`.
//!
//! # Layout
//! - [`red`]: request rate, error ratio and p99 per service, now and as sparklines.
//! - [`overview`]: `GET /api/overview`, every service with what needs attention first.
//! - [`map`]: `GET /api/service-map` (nodes and edges, the gateway's hop seen through) and
//!   `GET /api/service-map/edge` (failing and recent traces across one edge).
//! - [`service`]: `GET /api/services/{name}/summary`, everything the service page shows.
//! - [`hosts`]: the machines, containers and processes a service runs on, and which of
//!   them are in trouble (the service page's section, the overview's and map's marks).

pub mod hosts;
pub mod map;
pub mod overview;
pub mod red;
pub mod service;
#[cfg(test)]
mod tests;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The view routes (mounted behind the `read` role).
pub fn reads() -> Router<AppState> {
    Router::new()
        .route("/api/overview", get(overview::overview))
        .route("/api/service-map", get(map::service_map))
        .route("/api/service-map/edge", get(map::edge))
        .route("/api/services/{name}/summary", get(service::summary))
}

/// Error ratio at or above which a service or edge is `warn`.
pub const ERROR_WARN: f64 = 0.01;
/// Error ratio at or above which a service or edge is `fail`.
pub const ERROR_FAIL: f64 = 0.05;
/// p99 latency (ms) at or above which a service or edge is `warn`.
pub const P99_WARN_MS: f64 = 500.0;
/// p99 latency (ms) at or above which a service or edge is `fail`.
pub const P99_FAIL_MS: f64 = 2000.0;

/// The thresholds as the console reads them.
pub fn thresholds_json() -> Value {
    json!({ "error_warn": ERROR_WARN, "error_fail": ERROR_FAIL, "p99_warn_ms": P99_WARN_MS, "p99_fail_ms": P99_FAIL_MS })
}

/// `idle` (no traffic), `ok`, `warn` or `fail` from traffic, errors and latency.
pub fn traffic_health(rate: Option<f64>, error_ratio: Option<f64>, p99_ms: Option<f64>) -> &'static str {
    let e = error_ratio.unwrap_or(0.0);
    let p = p99_ms.unwrap_or(0.0);
    if rate.is_none_or(|r| r <= 0.0) && error_ratio.is_none() {
        "idle"
    } else if e >= ERROR_FAIL || p >= P99_FAIL_MS {
        "fail"
    } else if e >= ERROR_WARN || p >= P99_WARN_MS {
        "warn"
    } else {
        "ok"
    }
}

/// Shortest and longest window a view accepts.
const MIN_WINDOW_MS: i64 = 10_000;
const MAX_WINDOW_MS: i64 = 31 * 86_400_000;
const DEFAULT_WINDOW_MS: i64 = 15 * 60_000;

/// The time window of a view, in Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    pub fn seconds(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }
    pub fn start_nanos(&self) -> u64 {
        self.start_ms as u64 * 1_000_000
    }
    pub fn end_nanos(&self) -> u64 {
        self.end_ms as u64 * 1_000_000
    }
    /// The window in the answer: nanoseconds as strings, milliseconds as numbers.
    pub fn json(&self) -> Value {
        json!({
            "start_unix_nanos": self.start_nanos().to_string(),
            "end_unix_nanos": self.end_nanos().to_string(),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "seconds": self.seconds(),
        })
    }
}

/// The query's parameters, refusing names outside `known` (a typo is named, not ignored).
pub fn params(q: HashMap<String, String>, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut unknown: Vec<&String> = q.keys().filter(|k| !known.contains(&k.as_str())).collect();
    unknown.sort();
    if let Some(k) = unknown.first() {
        return Err(ApiError::field(k.as_str(), format!("unknown parameter; use {}", known.join(", "))));
    }
    Ok(q)
}

/// The window from `since`, or `start`/`end` (default: the last 15 minutes until now).
pub fn window(q: &HashMap<String, String>, now_ms: i64) -> Result<Window, ApiError> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let to_ms = |field: &str, v: &str| -> Result<i64, ApiError> {
        Ok((crate::traces::parse_time(field, v)? / 1_000_000) as i64)
    };
    let end_ms = match get("end") {
        Some(e) => to_ms("end", e)?,
        None => now_ms,
    };
    let start_ms = match (get("start"), get("since")) {
        (Some(_), Some(_)) => return Err(ApiError::field("since", "give either since or start/end, not both")),
        (Some(s), None) => to_ms("start", s)?,
        (None, Some(d)) => {
            let d = signalbox_core::config::parse_duration(d)
                .map_err(|_| ApiError::field("since", "must be a duration like 15m, 1h or 30s"))?;
            end_ms - d.as_millis().min(i64::MAX as u128) as i64
        }
        (None, None) => end_ms - DEFAULT_WINDOW_MS,
    };
    let span = end_ms - start_ms;
    if span < MIN_WINDOW_MS {
        return Err(ApiError::field(
            if get("since").is_some() { "since" } else { "start" },
            "the window must be at least 10s long and start before it ends",
        ));
    }
    if span > MAX_WINDOW_MS {
        return Err(ApiError::field(
            if get("since").is_some() { "since" } else { "start" },
            "the window must be at most 31 days",
        ));
    }
    Ok(Window { start_ms, end_ms })
}

pub fn now_ms() -> i64 {
    (signalbox_core::time::unix_nanos() / 1_000_000) as i64
}

/// A firing or pending alert, as the views show it.
#[derive(Clone, Debug)]
pub struct AlertBrief {
    pub name: String,
    pub state: String,
    pub severity: String,
    pub summary: String,
    pub active_at: String,
    pub service: Option<String>,
}

impl AlertBrief {
    pub fn json(&self) -> Value {
        json!({ "name": self.name, "state": self.state, "severity": self.severity, "summary": self.summary,
            "active_at": self.active_at, "service": self.service })
    }
}

/// Pending and firing alerts from the rules manager (empty when the node runs no rules).
pub fn alerts(s: &AppState) -> Vec<AlertBrief> {
    let Some(rules) = s.metric_store.as_ref().and_then(|m| m.rules.as_ref()) else {
        return Vec::new();
    };
    let all = rules.alerts_json();
    let list = all["alerts"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|a| {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
            let annotation = |k: &str| a["annotations"][k].as_str().unwrap_or_default().to_string();
            let summary =
                Some(annotation("summary")).filter(|s| !s.is_empty()).unwrap_or_else(|| annotation("description"));
            AlertBrief {
                name: label("alertname"),
                state: a["state"].as_str().unwrap_or_default().to_string(),
                severity: label("severity"),
                summary,
                active_at: a["activeAt"].as_str().unwrap_or_default().to_string(),
                service: Some(label("service")).filter(|s| !s.is_empty()),
            }
        })
        .collect()
}

/// What the gateway knows about one upstream service right now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayState {
    /// Circuits (service-wide and per endpoint) now open or half-open.
    pub circuits_open: usize,
    pub circuits_half_open: usize,
    /// Endpoints ejected as outliers now.
    pub ejected: usize,
    pub endpoints: usize,
}

/// The gateway's services by name (empty when the node runs no gateway).
pub fn gateway_states(s: &AppState) -> BTreeMap<String, GatewayState> {
    let mut out = BTreeMap::new();
    let Some(g) = &s.gateway else { return out };
    for svc in g.services().as_array().into_iter().flatten() {
        let Some(name) = svc["name"].as_str() else { continue };
        let mut st = GatewayState::default();
        let mut count = |c: &Value| match c.as_str() {
            Some("open") => st.circuits_open += 1,
            Some("half_open") => st.circuits_half_open += 1,
            _ => {}
        };
        count(&svc["circuit"]);
        for e in svc["endpoints"].as_array().into_iter().flatten() {
            count(&e["circuit"]);
        }
        for e in svc["endpoints"].as_array().into_iter().flatten() {
            st.endpoints += 1;
            st.ejected += e["ejected"].as_bool().unwrap_or(false) as usize;
        }
        out.insert(name.to_string(), st);
    }
    out
}

/// The service name on the gateway's own spans, when a gateway runs here.
pub fn gateway_span_service(s: &AppState) -> Option<String> {
    s.gateway.as_ref().and_then(|g| g.span_service())
}

/// A label value inside PromQL double quotes.
pub fn promql_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number for JSON: `null` when absent or not finite.
pub fn num(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!(x),
        _ => Value::Null,
    }
}

/// Runs blocking work (PromQL, trace reads) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "a view query failed"))
}
