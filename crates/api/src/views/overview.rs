//! `GET /api/overview`: every service with its traffic, health, circuits and alerts, the
//! ones that need attention first.

use super::hosts::{self, MachineTrouble};
use super::red::{self, Red, Spark};
use super::{AlertBrief, GatewayState, Window, blocking, num, params, traffic_health, window};
use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One service's row.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub name: String,
    pub instances: usize,
    pub passing: usize,
    pub warning: usize,
    pub critical: usize,
    pub red: Option<Red>,
    pub spark: Option<Spark>,
    pub gateway: Option<GatewayState>,
    pub alerts: Vec<AlertBrief>,
    /// Machines under its instances that are in trouble.
    pub machine_trouble: Vec<MachineTrouble>,
}

impl Row {
    fn firing(&self) -> usize {
        self.alerts.iter().filter(|a| a.state == "firing").count()
    }

    /// Why this service needs a look, most serious first; with a score to sort by.
    pub fn attention(&self) -> (u32, Vec<String>) {
        let mut score = 0;
        let mut why = Vec::new();
        let firing = self.firing();
        if firing > 0 {
            score += 1000 + firing as u32;
            why.push(format!("{firing} alert{} firing", if firing == 1 { "" } else { "s" }));
        }
        if let Some(g) = &self.gateway
            && g.circuits_open > 0
        {
            score += 500;
            why.push(format!("{} circuit{} open", g.circuits_open, if g.circuits_open == 1 { "" } else { "s" }));
        }
        if self.critical > 0 {
            score += 300;
            why.push(format!("{} of {} instances critical", self.critical, self.instances));
        }
        if let Some(e) = self.red.as_ref().and_then(Red::error_ratio)
            && e >= super::ERROR_WARN
        {
            score += if e >= super::ERROR_FAIL { 200 } else { 100 };
            why.push(format!("{:.1}% errors", e * 100.0));
        }
        if let Some(p) = self.red.as_ref().and_then(|r| r.p99_ms)
            && p >= super::P99_WARN_MS
        {
            score += if p >= super::P99_FAIL_MS { 80 } else { 40 };
            why.push(format!("p99 {:.0} ms", p));
        }
        if let Some(t) = self.machine_trouble.first() {
            score += 60;
            let more = self.machine_trouble.len() - 1;
            let first = t.reasons.first().map(String::as_str).unwrap_or("in trouble");
            why.push(if more == 0 {
                format!("machine {}: {first}", t.host)
            } else {
                format!("machine {}: {first} (and {more} more machine{})", t.host, if more == 1 { "" } else { "s" })
            });
        }
        if let Some(g) = &self.gateway
            && g.ejected > 0
        {
            score += 30;
            why.push(format!("{} endpoint{} ejected", g.ejected, if g.ejected == 1 { "" } else { "s" }));
        }
        if self.warning > 0 {
            score += 20;
            why.push(format!("{} instance{} warning", self.warning, if self.warning == 1 { "" } else { "s" }));
        }
        if let Some(g) = &self.gateway
            && g.circuits_half_open > 0
        {
            score += 10;
            why.push(format!(
                "{} circuit{} half-open",
                g.circuits_half_open,
                if g.circuits_half_open == 1 { "" } else { "s" }
            ));
        }
        if self.instances == 0 && self.gateway.as_ref().is_some_and(|g| g.endpoints == 0) {
            score += 50;
            why.push("no instances".to_string());
        }
        (score, why)
    }

    /// `fail`, `warn`, `ok` or `idle`.
    pub fn status(&self) -> &'static str {
        let traffic =
            self.red.as_ref().map(|r| traffic_health(Some(r.rate), r.error_ratio(), r.p99_ms)).unwrap_or("idle");
        let open = self.gateway.as_ref().is_some_and(|g| g.circuits_open > 0);
        if self.firing() > 0 || open || traffic == "fail" || (self.instances > 0 && self.critical == self.instances) {
            "fail"
        } else if traffic == "warn"
            || self.critical > 0
            || self.warning > 0
            || self.alerts.iter().any(|a| a.state == "pending")
            || !self.machine_trouble.is_empty()
        {
            "warn"
        } else if traffic == "idle" && self.instances == 0 {
            "idle"
        } else {
            "ok"
        }
    }

    pub fn json(&self) -> Value {
        let (score, reasons) = self.attention();
        let red = self.red.clone().unwrap_or_default();
        let has_red = self.red.is_some();
        json!({
            "name": self.name,
            "status": self.status(),
            "attention": score,
            "reasons": reasons,
            "instances": { "total": self.instances, "passing": self.passing, "warning": self.warning, "critical": self.critical },
            "rate_rps": num(has_red.then_some(red.rate)),
            "error_ratio": num(red.error_ratio()),
            "p99_ms": num(red.p99_ms),
            "circuits_open": self.gateway.as_ref().map(|g| g.circuits_open),
            "circuits_half_open": self.gateway.as_ref().map(|g| g.circuits_half_open),
            "ejected": self.gateway.as_ref().map(|g| g.ejected),
            "alerts": self.alerts.iter().map(AlertBrief::json).collect::<Vec<_>>(),
            "machine_trouble": self.machine_trouble.iter().map(MachineTrouble::json).collect::<Vec<_>>(),
            "spark": self.spark.as_ref().map(|s| json!({
                "rate": s.rate.iter().map(|v| num(*v)).collect::<Vec<_>>(),
                "errors": s.errors.iter().map(|v| num(*v)).collect::<Vec<_>>(),
                "p99_ms": s.p99_ms.iter().map(|v| num(*v)).collect::<Vec<_>>(),
            })),
        })
    }
}

/// Rows sorted with what needs attention first (failing, then degraded, then by how much
/// is wrong), then by traffic, then by name.
pub fn sort_rows(rows: &mut [Row]) {
    let rank = |r: &Row| match r.status() {
        "fail" => 3,
        "warn" => 2,
        "ok" => 1,
        _ => 0,
    };
    rows.sort_by(|a, b| {
        let (sa, sb) = ((rank(a), a.attention().0), (rank(b), b.attention().0));
        let (ra, rb) = (a.red.as_ref().map(|r| r.rate).unwrap_or(0.0), b.red.as_ref().map(|r| r.rate).unwrap_or(0.0));
        sb.cmp(&sa).then(rb.total_cmp(&ra)).then(a.name.cmp(&b.name))
    });
}

pub async fn overview(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = params(q, &["since", "start", "end"])?;
    let w = window(&q, super::now_ms())?;
    Ok(Json(build(&s, w).await?))
}

/// What the overview and the map share: a row per service, and what went wrong reading.
pub struct Collected {
    pub rows: Vec<Row>,
    pub reds: Option<BTreeMap<String, Red>>,
    pub alerts: Vec<AlertBrief>,
    pub gateway: BTreeMap<String, GatewayState>,
    pub dependencies: Vec<signalbox_events::spans::deps::Edge>,
    pub problems: Vec<String>,
}

/// Reads every source once for the window; `sparks`: also the sparklines.
pub async fn collect(s: &AppState, w: Window, with_sparks: bool) -> Result<Collected, ApiError> {
    let mut problems: Vec<String> = Vec::new();
    let (reds, sparks, host_data) = match &s.metric_store {
        Some(m) => {
            let svc = m.service.clone();
            let (reds, sparks, host_data) = blocking(move || {
                let sparks = if with_sparks { red::sparks(&svc, w) } else { Ok(BTreeMap::new()) };
                (red::by_service(&svc, w, None), sparks, hosts::read(&svc, w))
            })
            .await?;
            let host_data = host_data.map_err(|e| problems.push(format!("host metrics could not be read: {e}"))).ok();
            let reds =
                reds.map_err(|e| problems.push(format!("request rates could not be read from the metrics store: {e}")));
            let sparks =
                sparks.map_err(|e| problems.push(format!("sparklines could not be read from the metrics store: {e}")));
            (reds.ok(), sparks.ok().unwrap_or_default(), host_data)
        }
        None => {
            problems
                .push("metrics are not enabled on this node, so request rates, errors and latency are unknown".into());
            (None, BTreeMap::new(), None)
        }
    };
    let host_data = host_data.filter(hosts::HostData::reporting).map(|mut d| {
        d.alerts = hosts::host_alerts(s);
        d
    });
    let gateway = super::gateway_states(s);
    let alerts = super::alerts(s);
    let gateway_self = super::gateway_span_service(s);

    let mut names: BTreeSet<String> = BTreeSet::new();
    let registry = s.control.registry.services();
    names.extend(registry.iter().map(|v| v.name.clone()));
    names.extend(gateway.keys().cloned());
    if let Some(r) = &reds {
        names.extend(r.keys().cloned());
    }
    let mut dependencies = Vec::new();
    if let Some(t) = s.traces.clone() {
        let (a, b) = (w.start_nanos(), w.end_nanos());
        dependencies = blocking(move || t.dependencies(a, b)).await?;
        for e in &dependencies {
            names.insert(e.caller.clone());
            names.insert(e.callee.clone());
        }
    }
    names.extend(alerts.iter().filter_map(|a| a.service.clone()));
    if let Some(g) = &gateway_self {
        names.remove(g);
    }

    let mut rows: Vec<Row> = names
        .into_iter()
        .map(|name| {
            let reg = registry.iter().find(|v| v.name == name);
            Row {
                instances: reg.map(|v| v.instances).unwrap_or(0),
                passing: reg.map(|v| v.passing).unwrap_or(0),
                warning: reg.map(|v| v.warning).unwrap_or(0),
                critical: reg.map(|v| v.critical).unwrap_or(0),
                red: reds.as_ref().and_then(|r| r.get(&name).cloned()),
                spark: sparks.get(&name).cloned(),
                gateway: gateway.get(&name).cloned(),
                alerts: alerts.iter().filter(|a| a.service.as_deref() == Some(name.as_str())).cloned().collect(),
                machine_trouble: host_data
                    .as_ref()
                    .map(|d| {
                        let instances =
                            if reg.is_some() { s.control.registry.instances(&name, false) } else { Vec::new() };
                        hosts::machine_trouble(&hosts::placements(&name, &instances, d))
                    })
                    .unwrap_or_default(),
                name,
            }
        })
        .collect();
    // A service the gateway does not front: its traffic is what its callers' traces show.
    for row in rows.iter_mut().filter(|r| r.red.as_ref().is_none_or(|r| r.rate <= 0.0)) {
        if let Some(red) = traced_inbound(&dependencies, &row.name, gateway_self.as_deref(), w.seconds()) {
            row.red = Some(red);
        }
    }
    sort_rows(&mut rows);
    Ok(Collected { rows, reds, alerts, gateway, dependencies, problems })
}

/// RED of a service from the dependency graph's calls into it (not through the gateway,
/// whose hop the gateway's own metrics count).
pub fn traced_inbound(
    deps: &[signalbox_events::spans::deps::Edge],
    service: &str,
    gateway: Option<&str>,
    seconds: f64,
) -> Option<Red> {
    let into: Vec<_> =
        deps.iter().filter(|d| d.callee == service && d.calls > 0 && Some(d.caller.as_str()) != gateway).collect();
    if into.is_empty() {
        return None;
    }
    let seconds = seconds.max(1.0);
    let calls: u64 = into.iter().map(|d| d.calls).sum();
    let errors: u64 = into.iter().map(|d| d.errors).sum();
    let p99_ms = into.iter().map(|d| d.p99_ms).reduce(f64::max);
    Some(Red { rate: calls as f64 / seconds, errors: errors as f64 / seconds, p99_ms })
}

async fn build(s: &AppState, w: Window) -> Result<Value, ApiError> {
    let Collected { rows, reds, alerts, gateway, problems, .. } = collect(s, w, true).await?;
    let firing = alerts.iter().filter(|a| a.state == "firing").count();
    Ok(json!({
        "window": w.json(),
        "spark_step_ms": red::spark_step_ms(w),
        "thresholds": super::thresholds_json(),
        "services": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "totals": {
            "services": rows.len(),
            "needing_attention": rows.iter().filter(|r| r.attention().0 > 0).count(),
            "alerts_firing": firing,
            "circuits_open": gateway.values().map(|g| g.circuits_open).sum::<usize>(),
            "rate_rps": num(reds.as_ref().map(|r| r.values().map(|x| x.rate).sum())),
        },
        "alerts": alerts.iter().map(AlertBrief::json).collect::<Vec<_>>(),
        "sources": {
            "metrics": s.metric_store.is_some(),
            "rules": s.metric_store.as_ref().is_some_and(|m| m.rules.is_some()),
            "traces": s.traces.is_some(),
            "gateway": s.gateway.is_some(),
        },
        "problems": problems,
    }))
}
