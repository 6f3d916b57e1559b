//! `GET /api/service-map`: the directed graph of who calls whom over a window, each edge with
//! its rate, error ratio and p99, each node with its health and alerts; and
//! `GET /api/service-map/edge`: recent and failing traces across one edge.
//!
//! The trace dependency graph counts every parent → child service pair, so a call that
//! crosses the gateway reads `caller → gateway → callee`. The map sees through that hop: a
//! sample of the window's newest gateway traces tells which callers reach which callee
//! through the gateway, and the gateway's own traffic into the callee (its RED metrics, or
//! the dependency graph's count when metrics are off) is shared among those callers. A call
//! from outside (no instrumented caller) stays an edge from the gateway node.

use super::overview::{Collected, Row, collect};
use super::red::Red;
use super::{Window, blocking, num, params, traffic_health, window};
use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{AttrValue, Span, SpanKind, StatusCode};
use signalbox_events::spans::deps::Edge as DepEdge;
use signalbox_events::spans::pipeline::Traces;
use signalbox_events::spans::query::Search;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Gateway traces read to share its traffic among callers.
const SAMPLE_TRACES: usize = 300;
/// Traces listed per kind in an edge's detail.
const EDGE_TRACES: usize = 10;
/// The gateway server span's attribute naming the upstream service.
pub const UPSTREAM_ATTR: &str = "signalbox.upstream.service";

/// One call from a service to another, found in a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    pub caller: String,
    pub callee: String,
    pub error: bool,
    pub duration_nanos: u64,
    /// Through the gateway (counted at the gateway's server span).
    pub via_gateway: bool,
}

fn str_attr<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    match s.attribute(key) {
        Some(AttrValue::Str(v)) if !v.is_empty() => Some(v),
        _ => None,
    }
}

/// Every service-to-service call in one trace. `gateway`: the gateway's span service, whose
/// hop is seen through.
pub fn crossings(spans: &[Span], gateway: Option<&str>) -> Vec<Crossing> {
    let by_id: HashMap<SpanId, &Span> = spans.iter().map(|s| (s.span_id, s)).collect();
    let mut has_foreign_child: BTreeSet<SpanId> = BTreeSet::new();
    for s in spans {
        if let Some(p) = s.parent_span_id.and_then(|p| by_id.get(&p))
            && p.service != s.service
        {
            has_foreign_child.insert(p.span_id);
        }
    }
    let is_gw = |svc: &str| gateway == Some(svc);
    let mut out = Vec::new();
    for s in spans {
        let parent = s.parent_span_id.and_then(|p| by_id.get(&p)).copied();
        let error = s.status == StatusCode::Error;
        if is_gw(&s.service) {
            if s.kind == SpanKind::Server
                && let Some(callee) = str_attr(s, UPSTREAM_ATTR)
            {
                // A parent that has not arrived (a caller's SDK exports in batches, seconds
                // later) is a caller not known yet, not the outside world: skip the crossing
                // rather than draw it from the gateway.
                if s.parent_span_id.is_some() && parent.is_none() {
                    continue;
                }
                let caller = parent.filter(|p| !is_gw(&p.service)).map(|p| p.service.clone());
                out.push(Crossing {
                    caller: caller.unwrap_or_else(|| s.service.clone()),
                    callee: callee.to_string(),
                    error,
                    duration_nanos: s.duration_nanos(),
                    via_gateway: true,
                });
            }
            continue;
        }
        if let Some(p) = parent
            && p.service != s.service
            && !is_gw(&p.service)
        {
            out.push(Crossing {
                caller: p.service.clone(),
                callee: s.service.clone(),
                error,
                duration_nanos: s.duration_nanos(),
                via_gateway: false,
            });
        }
        // A client span to an uninstrumented peer: nothing answers it in the trace.
        if s.kind == SpanKind::Client
            && !has_foreign_child.contains(&s.span_id)
            && let Some(peer) = str_attr(s, "peer.service")
            && peer != s.service
            && !is_gw(peer)
        {
            out.push(Crossing {
                caller: s.service.clone(),
                callee: peer.to_string(),
                error,
                duration_nanos: s.duration_nanos(),
                via_gateway: false,
            });
        }
    }
    out
}

/// Calls through the gateway seen in a sample, per (caller, callee).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairSample {
    pub calls: u64,
    pub errors: u64,
    pub durations_ms: Vec<f64>,
}

impl PairSample {
    fn p(&self, q: f64) -> Option<f64> {
        if self.durations_ms.is_empty() {
            return None;
        }
        let mut d = self.durations_ms.clone();
        d.sort_by(f64::total_cmp);
        let i = ((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1;
        Some(d[i])
    }
}

/// An edge of the map.
#[derive(Clone, Debug, PartialEq)]
pub struct MapEdge {
    pub from: String,
    pub to: String,
    pub via_gateway: bool,
    pub calls: f64,
    pub rate: f64,
    pub error_ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `traces`, `gateway` (its metrics alone) or `traces+gateway`.
    pub source: &'static str,
}

impl MapEdge {
    pub fn json(&self) -> Value {
        json!({
            "id": format!("{}>{}", self.from, self.to),
            "from": self.from,
            "to": self.to,
            "via": if self.via_gateway { "gateway" } else { "direct" },
            "calls": self.calls.round(),
            "rate_rps": num(Some(self.rate)),
            "error_ratio": num(self.error_ratio),
            "p50_ms": num(self.p50_ms),
            "p99_ms": num(self.p99_ms),
            "health": traffic_health(Some(self.rate), self.error_ratio, self.p99_ms),
            "source": self.source,
        })
    }
}

/// Joins the dependency graph, the sampled gateway hops and the gateway's RED metrics into
/// the map's edges.
pub fn edges(
    deps: &[DepEdge],
    gateway: Option<&str>,
    sample: &BTreeMap<(String, String), PairSample>,
    reds: Option<&BTreeMap<String, Red>>,
    seconds: f64,
) -> Vec<MapEdge> {
    let seconds = seconds.max(1.0);
    let is_gw = |s: &str| gateway == Some(s);
    let mut out: BTreeMap<(String, String), MapEdge> = BTreeMap::new();
    for d in deps.iter().filter(|d| !is_gw(&d.caller) && !is_gw(&d.callee)) {
        out.insert(
            (d.caller.clone(), d.callee.clone()),
            MapEdge {
                from: d.caller.clone(),
                to: d.callee.clone(),
                via_gateway: false,
                calls: d.calls as f64,
                rate: d.calls as f64 / seconds,
                error_ratio: (d.calls > 0).then(|| d.errors as f64 / d.calls as f64),
                p50_ms: Some(d.p50_ms),
                p99_ms: Some(d.p99_ms),
                source: "traces",
            },
        );
    }
    let Some(gw) = gateway else {
        return out.into_values().collect();
    };
    // Callees reached through the gateway: from the graph, the sample and its metrics.
    let mut callees: BTreeSet<String> = deps.iter().filter(|d| is_gw(&d.caller)).map(|d| d.callee.clone()).collect();
    callees.extend(sample.keys().map(|(_, callee)| callee.clone()));
    if let Some(r) = reds {
        callees.extend(r.iter().filter(|(_, r)| r.rate > 0.0).map(|(n, _)| n.clone()));
    }
    let mut attributed_callers: BTreeSet<String> = BTreeSet::new();
    for callee in callees {
        let dep = deps.iter().find(|d| is_gw(&d.caller) && d.callee == callee);
        let red = reds.and_then(|r| r.get(&callee)).filter(|r| r.rate > 0.0);
        let total_calls = match (red, dep) {
            (Some(r), _) => r.rate * seconds,
            (None, Some(d)) => d.calls as f64,
            (None, None) => sample.iter().filter(|((_, c), _)| *c == callee).map(|(_, p)| p.calls as f64).sum(),
        };
        let callers: Vec<(&String, &PairSample)> =
            sample.iter().filter(|((_, c), _)| *c == callee).map(|((caller, _), p)| (caller, p)).collect();
        let sampled: u64 = callers.iter().map(|(_, p)| p.calls).sum();
        if sampled == 0 {
            // No trace says who called: the gateway's traffic as an edge from the gateway.
            out.insert(
                (gw.to_string(), callee.clone()),
                MapEdge {
                    from: gw.to_string(),
                    to: callee.clone(),
                    via_gateway: true,
                    calls: total_calls,
                    rate: total_calls / seconds,
                    error_ratio: red
                        .and_then(Red::error_ratio)
                        .or(dep.map(|d| d.errors as f64 / d.calls.max(1) as f64)),
                    p50_ms: dep.map(|d| d.p50_ms),
                    p99_ms: red.and_then(|r| r.p99_ms).or(dep.map(|d| d.p99_ms)),
                    source: if red.is_some() { "gateway" } else { "traces" },
                },
            );
            continue;
        }
        let only_caller = callers.len() == 1;
        for (caller, p) in callers {
            attributed_callers.insert(caller.clone());
            let share = p.calls as f64 / sampled as f64;
            let calls = total_calls * share;
            // One caller: the gateway's own figures are exact for it.
            let (error_ratio, p99) = match red {
                Some(r) if only_caller => (r.error_ratio(), r.p99_ms.or(p.p(0.99))),
                _ => (Some(p.errors as f64 / p.calls as f64), p.p(0.99)),
            };
            let key = (caller.clone(), callee.clone());
            let edge = MapEdge {
                from: caller.clone(),
                to: callee.clone(),
                via_gateway: true,
                calls,
                rate: calls / seconds,
                error_ratio,
                p50_ms: p.p(0.5),
                p99_ms: p99,
                source: if red.is_some() { "traces+gateway" } else { "traces" },
            };
            // A caller that also calls directly: keep the busier reading.
            match out.get(&key) {
                Some(e) if e.calls >= edge.calls => {}
                _ => {
                    out.insert(key, edge);
                }
            }
        }
    }
    // Calls into the gateway that no sampled trace followed through: keep them as they are.
    for d in deps.iter().filter(|d| is_gw(&d.callee) && !is_gw(&d.caller) && !attributed_callers.contains(&d.caller)) {
        out.insert(
            (d.caller.clone(), gw.to_string()),
            MapEdge {
                from: d.caller.clone(),
                to: gw.to_string(),
                via_gateway: false,
                calls: d.calls as f64,
                rate: d.calls as f64 / seconds,
                error_ratio: (d.calls > 0).then(|| d.errors as f64 / d.calls as f64),
                p50_ms: Some(d.p50_ms),
                p99_ms: Some(d.p99_ms),
                source: "traces",
            },
        );
    }
    out.into_values().collect()
}

/// RED of a service from the edges into it (`None` without any).
pub fn inbound(edges: &[MapEdge], service: &str) -> Option<Red> {
    let into: Vec<&MapEdge> = edges.iter().filter(|e| e.to == service && e.rate > 0.0).collect();
    if into.is_empty() {
        return None;
    }
    let rate: f64 = into.iter().map(|e| e.rate).sum();
    let errors: f64 = into.iter().map(|e| e.rate * e.error_ratio.unwrap_or(0.0)).sum();
    let p99_ms = into.iter().filter_map(|e| e.p99_ms).reduce(f64::max);
    Some(Red { rate, errors, p99_ms })
}

/// The newest traces of `service` in the window (errors only when `errors`), with spans.
fn traces_of(t: &Traces, service: &str, w: Window, errors: bool, limit: usize) -> Vec<Vec<Span>> {
    let q = Search {
        service: Some(service.to_string()),
        errors_only: errors,
        start_nanos: w.start_nanos(),
        end_nanos: w.end_nanos(),
        limit,
        ..Search::default()
    };
    t.search(&q)
        .iter()
        .filter_map(|s| TraceId::from_hex(&s.trace_id))
        .map(|id| t.trace(&id))
        .filter(|spans| !spans.is_empty())
        .collect()
}

/// Calls through the gateway in a sample of the window's newest gateway traces.
pub fn sample_gateway(t: &Traces, gw: &str, w: Window) -> BTreeMap<(String, String), PairSample> {
    let mut out: BTreeMap<(String, String), PairSample> = BTreeMap::new();
    for spans in traces_of(t, gw, w, false, SAMPLE_TRACES) {
        for c in crossings(&spans, Some(gw)).into_iter().filter(|c| c.via_gateway) {
            let p = out.entry((c.caller, c.callee)).or_default();
            p.calls += 1;
            p.errors += c.error as u64;
            p.durations_ms.push(c.duration_nanos as f64 / 1e6);
        }
    }
    out
}

fn node_json(row: Option<&Row>, id: &str, kind: &str) -> Value {
    let row = row.cloned().unwrap_or_else(|| Row { name: id.to_string(), ..Row::default() });
    let mut v = row.json();
    let obj = v.as_object_mut().expect("a row renders as an object");
    obj.remove("spark");
    obj.insert("id".into(), json!(id));
    obj.insert("kind".into(), json!(kind));
    if kind == "gateway" {
        obj.insert("status".into(), json!("ok"));
    }
    v
}

pub async fn service_map(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = params(q, &["since", "start", "end"])?;
    let w = window(&q, super::now_ms())?;
    let Collected { rows, reds, alerts, dependencies, mut problems, .. } = collect(&s, w, false).await?;
    let gw = super::gateway_span_service(&s);
    let sample = match (&s.traces, &gw) {
        (Some(t), Some(g)) => {
            let (t, g) = (t.clone(), g.clone());
            blocking(move || sample_gateway(&t, &g, w)).await?
        }
        _ => BTreeMap::new(),
    };
    if s.traces.is_none() {
        problems.push("traces are not enabled on this node: edges come from the gateway's metrics alone".into());
    }
    let edges = edges(&dependencies, gw.as_deref(), &sample, reds.as_ref(), w.seconds());
    // A service the gateway does not front: its traffic is what its callers' traces show.
    let mut rows = rows;
    for row in rows.iter_mut().filter(|r| r.red.as_ref().is_none_or(|r| r.rate <= 0.0)) {
        if let Some(red) = inbound(&edges, &row.name) {
            row.red = Some(red);
        }
    }
    let mut ids: BTreeSet<String> = rows.iter().map(|r| r.name.clone()).collect();
    for e in &edges {
        ids.insert(e.from.clone());
        ids.insert(e.to.clone());
    }
    let nodes: Vec<Value> = ids
        .iter()
        .map(|id| {
            let kind = if gw.as_deref() == Some(id.as_str()) { "gateway" } else { "service" };
            node_json(rows.iter().find(|r| &r.name == id), id, kind)
        })
        .collect();
    Ok(Json(json!({
        "window": w.json(),
        "thresholds": super::thresholds_json(),
        "gateway": gw,
        "nodes": nodes,
        "edges": edges.iter().map(MapEdge::json).collect::<Vec<_>>(),
        "alerts_firing": alerts.iter().filter(|a| a.state == "firing").count(),
        "problems": problems,
    })))
}

/// A trace that crossed the edge, as the side panel lists it.
fn crossing_trace_json(spans: &[Span], c: &Crossing) -> Option<Value> {
    let s = signalbox_events::spans::query::summarize(spans)?;
    Some(json!({
        "trace_id": s.trace_id,
        "root_service": s.root_service,
        "root_operation": s.root_operation,
        "start_unix_nanos": s.start_unix_nanos.to_string(),
        "duration_nanos": s.duration_nanos.to_string(),
        "duration_ms": s.duration_nanos as f64 / 1e6,
        "span_count": s.span_count,
        "error": s.error,
        "error_spans": s.error_spans,
        "call_error": c.error,
        "call_duration_ms": c.duration_nanos as f64 / 1e6,
    }))
}

pub async fn edge(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = params(q, &["from", "to", "since", "start", "end"])?;
    let w = window(&q, super::now_ms())?;
    let name = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::field(k, "is required: the service name at that end of the edge"))
    };
    let (from, to) = (name("from")?, name("to")?);
    let t = crate::traces::traces(&s)?.clone();
    let gw = super::gateway_span_service(&s);
    let (f2, t2) = (from.clone(), to.clone());
    let (failing, recent) = blocking(move || {
        let gw = gw.as_deref();
        let pick = |errors: bool| {
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for svc in [&t2, &f2] {
                for spans in traces_of(&t, svc, w, errors, 100) {
                    let Some(c) = crossings(&spans, gw)
                        .into_iter()
                        .find(|c| c.caller == f2 && c.callee == t2 && (!errors || c.error))
                    else {
                        continue;
                    };
                    if out.len() < EDGE_TRACES && seen.insert(spans[0].trace_id) {
                        out.extend(crossing_trace_json(&spans, &c));
                    }
                }
            }
            out.sort_by_key(|v| std::cmp::Reverse(v["start_unix_nanos"].as_str().and_then(|x| x.parse::<u64>().ok())));
            out
        };
        (pick(true), pick(false))
    })
    .await?;
    let queries = super::red::queries(Some(&to), "1m");
    Ok(Json(json!({
        "window": w.json(),
        "from": from,
        "to": to,
        "failing_traces": failing,
        "recent_traces": recent,
        "queries": { "rate": queries.rate, "errors": queries.errors, "p99_ms": queries.p99 },
    })))
}
