//! The numbers an analysis judges: each version's requests, errors and p99 over the window,
//! from the gateway's RED metrics in the node's TSDB (`signalbox_gateway_requests_total`
//! and `signalbox_gateway_request_duration_seconds_bucket`, labelled by `service` and
//! `version`), evaluated in-process with the node's PromQL engine; and the optional extra
//! PromQL check.
//!
//! Failures are requests of class `5xx` or `error` (no response), as on the console's RED
//! views. The queries are public ([`Queries`]) so the console draws the same figures.

use crate::spec::Spec;
use crate::state::{Measurements, VersionStats};
use signalbox_metrics::promql::Value;
use signalbox_metrics::service::MetricsService;
use std::sync::Arc;

/// Classes counted as failures.
pub const ERROR_CLASSES: &str = "5xx|error";

/// `"a\"b"` as a PromQL string literal.
pub fn promql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A window in whole seconds as a PromQL range (`60s`).
pub fn range_text(window_ms: i64) -> String {
    format!("{}s", (window_ms.max(1000) + 999) / 1000)
}

/// Replaces `$service`, `$canary`, `$stable` and `$interval` in an extra check.
pub fn expand(expr: &str, service: &str, stable: &str, canary: &str, window_ms: i64) -> String {
    expr.replace("$service", service)
        .replace("$canary", canary)
        .replace("$stable", stable)
        .replace("$interval", &range_text(window_ms))
}

/// The PromQL of one version's figures over a range.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Queries {
    pub requests: String,
    pub errors: String,
    pub p99_ms: String,
    /// Errors per request, for charts (`rate` form).
    pub error_ratio: String,
}

/// The queries for `version` of `service` over `range` (like `60s`).
pub fn queries(service: &str, version: &str, range: &str) -> Queries {
    let sel = format!("service={},version={}", promql_string(service), promql_string(version));
    let requests = format!("sum(increase(signalbox_gateway_requests_total{{{sel}}}[{range}]))");
    let errors =
        format!("sum(increase(signalbox_gateway_requests_total{{{sel},class=~\"{ERROR_CLASSES}\"}}[{range}]))");
    let p99_ms = format!(
        "histogram_quantile(0.99, sum by (le) (rate(signalbox_gateway_request_duration_seconds_bucket{{{sel}}}[{range}]))) * 1000"
    );
    let error_ratio = format!(
        "sum(rate(signalbox_gateway_requests_total{{{sel},class=~\"{ERROR_CLASSES}\"}}[{range}])) / sum(rate(signalbox_gateway_requests_total{{{sel}}}[{range}]))"
    );
    Queries { requests, errors, p99_ms, error_ratio }
}

/// The first value of a query's answer, `None` when it is empty or not a number.
fn first_value(v: Value) -> Option<f64> {
    match v {
        Value::Scalar { v, .. } => Some(v),
        Value::Vector(s) => s.first().map(|s| s.v),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

fn one(svc: &MetricsService, q: &str, t_ms: i64) -> Result<Option<f64>, String> {
    let db = svc.db_arc();
    svc.engine.instant(&*db, q, t_ms).map(first_value).map_err(|e| e.to_string())
}

fn version_stats(svc: &MetricsService, q: &Queries, t_ms: i64) -> Result<VersionStats, String> {
    let requests = one(svc, &q.requests, t_ms)?.unwrap_or(0.0).max(0.0);
    let errors = one(svc, &q.errors, t_ms)?.unwrap_or(0.0).clamp(0.0, requests);
    let p99_ms = if requests > 0.0 { one(svc, &q.p99_ms, t_ms)? } else { None };
    Ok(VersionStats { requests, errors, error_rate: (requests > 0.0).then(|| errors / requests), p99_ms })
}

/// Measures both versions over the `window_ms` ending at `t_ms`.
pub fn measure(svc: &MetricsService, spec: &Spec, t_ms: i64, window_ms: i64) -> Result<Measurements, String> {
    let range = range_text(window_ms);
    let stable = version_stats(svc, &queries(&spec.service, &spec.stable, &range), t_ms)?;
    let canary = version_stats(svc, &queries(&spec.service, &spec.canary, &range), t_ms)?;
    let (query_value, query_error) = match &spec.thresholds.query {
        None => (None, None),
        Some(c) => {
            let q = expand(&c.expr, &spec.service, &spec.stable, &spec.canary, window_ms);
            match one(svc, &q, t_ms) {
                Ok(v) => (v, None),
                Err(e) => (None, Some(e)),
            }
        }
    };
    Ok(Measurements { window_s: ((window_ms.max(1000) + 999) / 1000) as f64, stable, canary, query_value, query_error })
}

/// [`measure`] on a blocking thread (queries read the TSDB).
pub async fn measure_async(
    svc: Arc<MetricsService>,
    spec: Spec,
    t_ms: i64,
    window_ms: i64,
) -> Result<Measurements, String> {
    tokio::task::spawn_blocking(move || measure(&svc, &spec, t_ms, window_ms))
        .await
        .map_err(|e| format!("the analysis task failed: {e}"))?
}
