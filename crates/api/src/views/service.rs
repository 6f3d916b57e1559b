//! `GET /api/services/{name}/summary`: what the service page shows beside its charts:
//! instances with their checks, the gateway's circuits and endpoints now and their history,
//! the routes that lead to the service, its application's configuration versions, firing
//! alerts, its slowest and failing traces, and the machines, containers and processes it
//! runs on ([`super::hosts`]).
//!
//! Circuit and ejection history is read back from the TSDB: the node stores the gateway's
//! `signalbox_gateway_circuit_state` and `signalbox_gateway_endpoint_ejected` gauges with its
//! own metrics, so every change is there at the self-metrics interval, and survives restarts.

use super::hosts;
use super::red::{self, Red};
use super::{AlertBrief, Window, blocking, num, params, promql_string, window};
use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use signalbox_events::spans::query::{Search, TraceSummary};
use signalbox_metrics::promql::Value as PromValue;
use signalbox_metrics::service::MetricsService;
use std::collections::HashMap;
use std::sync::Arc;

/// Most transitions and configuration versions listed.
const HISTORY_LIMIT: usize = 100;
/// Traces listed per kind.
const TRACES_LISTED: usize = 10;
/// Longest configuration value shown (the config page shows the rest).
const VALUE_PREVIEW: usize = 200;

/// One change of a circuit or an ejection.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub t_ms: i64,
    /// `circuit` or `ejection`.
    pub kind: &'static str,
    /// `service` (the service-wide circuit) or `endpoint`.
    pub scope: String,
    pub endpoint: String,
    pub from: &'static str,
    pub to: &'static str,
}

fn circuit_name(v: f64) -> &'static str {
    match v as i64 {
        0 => "closed",
        1 => "open",
        _ => "half_open",
    }
}

fn ejection_name(v: f64) -> &'static str {
    if v >= 0.5 { "ejected" } else { "in_service" }
}

/// The changes along one gauge's samples.
pub fn transitions(
    samples: &[(i64, f64)],
    kind: &'static str,
    scope: &str,
    endpoint: &str,
    name: fn(f64) -> &'static str,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut last: Option<&'static str> = None;
    for &(t, v) in samples {
        if !v.is_finite() {
            continue;
        }
        let now = name(v);
        if let Some(prev) = last
            && prev != now
        {
            out.push(Transition {
                t_ms: t,
                kind,
                scope: scope.to_string(),
                endpoint: endpoint.to_string(),
                from: prev,
                to: now,
            });
        }
        last = Some(now);
    }
    out
}

fn label<'a>(labels: &'a [(String, String)], k: &str) -> &'a str {
    labels.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Circuit and ejection changes of `service` in the window, newest first.
pub fn circuit_history(svc: &Arc<MetricsService>, service: &str, w: Window) -> Result<Vec<Transition>, String> {
    let db = svc.db_arc();
    // Raw samples: a range selector at the window's end returns every stored point.
    let range = format!("{}ms", w.end_ms - w.start_ms);
    let sel = promql_string(service);
    let mut out = Vec::new();
    for (metric, kind, name) in [
        ("signalbox_gateway_circuit_state", "circuit", circuit_name as fn(f64) -> &'static str),
        ("signalbox_gateway_endpoint_ejected", "ejection", ejection_name),
    ] {
        let q = format!("{metric}{{service={sel}}}[{range}]");
        if let PromValue::Matrix(m) = svc.engine.instant(&*db, &q, w.end_ms).map_err(|e| e.to_string())? {
            for s in m {
                let scope = if kind == "ejection" { "endpoint" } else { label(&s.labels, "scope") };
                out.extend(transitions(&s.samples, kind, scope, label(&s.labels, "endpoint"), name));
            }
        }
    }
    out.sort_by_key(|t| std::cmp::Reverse(t.t_ms));
    out.truncate(HISTORY_LIMIT);
    Ok(out)
}

fn trace_json(s: &TraceSummary) -> Value {
    json!({
        "trace_id": s.trace_id,
        "root_service": s.root_service,
        "root_operation": s.root_operation,
        "start_unix_nanos": s.start_unix_nanos.to_string(),
        "duration_nanos": s.duration_nanos.to_string(),
        "duration_ms": s.duration_nanos as f64 / 1e6,
        "span_count": s.span_count,
        "services": s.services,
        "error": s.error,
        "error_spans": s.error_spans,
    })
}

fn config_versions(s: &AppState, app: &str) -> Result<Vec<Value>, String> {
    let cfg = &s.control.config;
    let mut all = Vec::new();
    for head in cfg.list(Some(app), None) {
        let history = cfg.history(&head.application, &head.profile, &head.key).map_err(|e| e.to_string())?;
        all.extend(history);
    }
    all.sort_by_key(|e| std::cmp::Reverse(e.index));
    all.truncate(HISTORY_LIMIT);
    Ok(all
        .iter()
        .map(|e| {
            let mut preview: String = e.value.chars().take(VALUE_PREVIEW).collect();
            if preview.len() < e.value.len() {
                preview.push('…');
            }
            json!({
                "application": e.application,
                "profile": e.profile,
                "key": e.key,
                "version": e.version,
                "author": e.author,
                "comment": e.comment,
                "time_unix_ms": e.time_unix_ms,
                "deleted": e.deleted,
                "index": e.index.to_string(),
                "value_preview": preview,
            })
        })
        .collect())
}

pub async fn summary(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = params(q, &["since", "start", "end"])?;
    let w = window(&q, super::now_ms())?;
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::field("name", "must name a service"));
    }
    let mut problems: Vec<String> = Vec::new();

    let (red_now, history, host_data) = match &s.metric_store {
        Some(m) => {
            let (svc, n) = (m.service.clone(), name.clone());
            let (r, h, d) = blocking(move || {
                (red::by_service(&svc, w, Some(&n)), circuit_history(&svc, &n, w), hosts::read(&svc, w))
            })
            .await?;
            let r = r.map_err(|e| problems.push(format!("request rates could not be read: {e}"))).ok();
            let h = h.map_err(|e| problems.push(format!("circuit history could not be read: {e}"))).ok();
            let d = d.map_err(|e| problems.push(format!("host metrics could not be read: {e}"))).ok();
            (r.map(|r| r.get(&name).cloned().unwrap_or_default()), h, d)
        }
        None => {
            problems.push(
                "metrics are not enabled on this node: no request rates, no circuit history and no host metrics".into(),
            );
            (None, None, None)
        }
    };

    let gateway_service = s.gateway.as_ref().and_then(|g| {
        g.services().as_array().and_then(|l| l.iter().find(|v| v["name"].as_str() == Some(name.as_str())).cloned())
    });
    let routes: Option<Vec<Value>> = s.gateway.as_ref().map(|g| {
        g.routes()
            .as_array()
            .map(|l| l.iter().filter(|r| r["service"].as_str() == Some(name.as_str())).cloned().collect())
            .unwrap_or_default()
    });
    let config = config_versions(&s, &name).map_err(|e| problems.push(format!("configuration history: {e}"))).ok();
    let alerts: Vec<Value> = super::alerts(&s)
        .iter()
        .filter(|a| a.service.as_deref() == Some(name.as_str()))
        .map(AlertBrief::json)
        .collect();

    let traces = match s.traces.clone() {
        Some(t) => {
            let n = name.clone();
            Some(
                blocking(move || {
                    // Its own spans, and the gateway's calls to it (a service that sends no
                    // spans is still seen through the gateway).
                    let search = |errors: bool, limit: usize| {
                        let base = Search {
                            errors_only: errors,
                            start_nanos: w.start_nanos(),
                            end_nanos: w.end_nanos(),
                            limit,
                            ..Search::default()
                        };
                        let mut found = t.search(&Search { service: Some(n.clone()), ..base.clone() });
                        let upstream = (super::map::UPSTREAM_ATTR.to_string(), n.clone());
                        for s in t.search(&Search { tags: vec![upstream], ..base }) {
                            if !found.iter().any(|f| f.trace_id == s.trace_id) {
                                found.push(s);
                            }
                        }
                        found.sort_by_key(|s| std::cmp::Reverse(s.start_unix_nanos));
                        found.truncate(limit);
                        found
                    };
                    let mut slow = search(false, 500);
                    slow.sort_by_key(|s| std::cmp::Reverse(s.duration_nanos));
                    slow.truncate(TRACES_LISTED);
                    (slow, search(true, TRACES_LISTED))
                })
                .await?,
            )
        }
        None => {
            problems.push("traces are not enabled on this node".into());
            None
        }
    };

    let instances = s.control.registry.instances(&name, false);
    let hosts_json = host_data.map(|mut d| {
        d.alerts = hosts::host_alerts(&s);
        let placements = hosts::placements(&name, &instances, &d);
        hosts::section_json(&name, &placements, &d, w)
    });
    let red_json = red_now.as_ref().map(|r: &Red| {
        json!({ "rate_rps": num(Some(r.rate)), "error_ratio": num(r.error_ratio()), "p99_ms": num(r.p99_ms) })
    });
    let q = red::queries(Some(&name), "1m");
    Ok(Json(json!({
        "name": name,
        "window": w.json(),
        "thresholds": super::thresholds_json(),
        "red": red_json,
        "queries": { "rate": q.rate, "errors": q.errors, "p99_ms": q.p99 },
        "instances": instances,
        "gateway": gateway_service,
        "circuit_history": history.map(|h| h.iter().map(|t| json!({
            "t_ms": t.t_ms, "kind": t.kind, "scope": t.scope, "endpoint": t.endpoint, "from": t.from, "to": t.to,
        })).collect::<Vec<_>>()),
        "routes": routes,
        "config": config,
        "alerts": alerts,
        "hosts": hosts_json,
        "slowest_traces": traces.as_ref().map(|(slow, _)| slow.iter().map(trace_json).collect::<Vec<_>>()),
        "failing_traces": traces.as_ref().map(|(_, failing)| failing.iter().map(trace_json).collect::<Vec<_>>()),
        "problems": problems,
    })))
}
