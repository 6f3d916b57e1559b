//! Request rate, error ratio and p99 per upstream service, from the gateway's RED metrics
//! (`signalbox_gateway_requests_total`, `signalbox_gateway_request_duration_seconds`) that
//! the node stores in its own TSDB, evaluated with the node's PromQL engine.

use super::{Window, promql_string};
use signalbox_metrics::promql::{Engine, Value as PromValue};
use signalbox_metrics::service::MetricsService;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Classes counted as failures: server errors and requests that got no response.
const ERROR_CLASSES: &str = "5xx|error";
/// Points in a sparkline.
pub const SPARK_POINTS: i64 = 30;

/// RED figures of one service over a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Red {
    /// Requests per second.
    pub rate: f64,
    /// Failed requests per second.
    pub errors: f64,
    /// 99th percentile latency in milliseconds (`None` without requests).
    pub p99_ms: Option<f64>,
}

impl Red {
    /// Failed share of requests, `None` without requests.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.rate > 0.0).then(|| (self.errors / self.rate).clamp(0.0, 1.0))
    }
}

/// Sparklines of one service on a fixed grid (`None` where no data).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spark {
    pub rate: Vec<Option<f64>>,
    pub errors: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

/// The PromQL behind each figure, for one service or (with `None`) by service.
pub struct Queries {
    pub rate: String,
    pub errors: String,
    pub p99: String,
}

/// The queries over a `range` like `5m`, for one service or summed `by (service)`.
pub fn queries(service: Option<&str>, range: &str) -> Queries {
    let (sel, errsel) = match service {
        Some(s) => {
            let s = promql_string(s);
            (format!("{{service={s}}}"), format!("{{service={s},class=~\"{ERROR_CLASSES}\"}}"))
        }
        None => (String::new(), format!("{{class=~\"{ERROR_CLASSES}\"}}")),
    };
    Queries {
        rate: format!("sum by (service) (rate(signalbox_gateway_requests_total{sel}[{range}]))"),
        errors: format!("sum by (service) (rate(signalbox_gateway_requests_total{errsel}[{range}]))"),
        p99: format!(
            "histogram_quantile(0.99, sum by (service, le) (rate(signalbox_gateway_request_duration_seconds_bucket{sel}[{range}]))) * 1000"
        ),
    }
}

/// A PromQL range (`90s`) covering `seconds`, at least 30 s so a rate sees two samples.
pub fn range_text(seconds: f64) -> String {
    format!("{}s", seconds.ceil().max(30.0) as i64)
}

fn service_of(labels: &[(String, String)]) -> Option<&str> {
    labels.iter().find(|(k, _)| k == "service").map(|(_, v)| v.as_str())
}

fn instant(svc: &MetricsService, engine: &Engine, q: &str, t: i64) -> Result<BTreeMap<String, f64>, String> {
    let db = svc.db_arc();
    match engine.instant(&*db, q, t).map_err(|e| e.to_string())? {
        PromValue::Vector(v) => Ok(v
            .into_iter()
            .filter_map(|s| service_of(&s.labels).map(|n| (n.to_string(), s.v)))
            .filter(|(_, v)| v.is_finite())
            .collect()),
        _ => Ok(BTreeMap::new()),
    }
}

/// RED per service over the window (`service`: only that one).
pub fn by_service(
    svc: &Arc<MetricsService>,
    w: Window,
    service: Option<&str>,
) -> Result<BTreeMap<String, Red>, String> {
    let q = queries(service, &range_text(w.seconds()));
    let engine = svc.engine.clone();
    let rate = instant(svc, &engine, &q.rate, w.end_ms)?;
    let errors = instant(svc, &engine, &q.errors, w.end_ms)?;
    let p99 = instant(svc, &engine, &q.p99, w.end_ms)?;
    Ok(rate
        .into_iter()
        .map(|(name, rate)| {
            let red = Red {
                rate,
                errors: errors.get(&name).copied().unwrap_or(0.0),
                p99_ms: p99.get(&name).copied().filter(|_| rate > 0.0),
            };
            (name, red)
        })
        .collect())
}

/// The sparkline grid's step (ms) for a window.
pub fn spark_step_ms(w: Window) -> i64 {
    ((w.end_ms - w.start_ms) / SPARK_POINTS).max(1000)
}

fn range(
    svc: &MetricsService,
    engine: &Engine,
    q: &str,
    w: Window,
    step: i64,
) -> Result<BTreeMap<String, Vec<Option<f64>>>, String> {
    let db = svc.db_arc();
    let start = w.end_ms - step * (SPARK_POINTS - 1);
    let mut out = BTreeMap::new();
    if let PromValue::Matrix(m) = engine.range(&*db, q, start, w.end_ms, step).map_err(|e| e.to_string())? {
        for s in m {
            let Some(name) = service_of(&s.labels) else { continue };
            let mut points = vec![None; SPARK_POINTS as usize];
            for (t, v) in s.samples {
                let i = (t - start) / step;
                if (0..SPARK_POINTS).contains(&i) && v.is_finite() {
                    points[i as usize] = Some(v);
                }
            }
            out.insert(name.to_string(), points);
        }
    }
    Ok(out)
}

/// Sparklines per service: `SPARK_POINTS` points ending at the window's end.
pub fn sparks(svc: &Arc<MetricsService>, w: Window) -> Result<BTreeMap<String, Spark>, String> {
    let step = spark_step_ms(w);
    let q = queries(None, &range_text((2 * step) as f64 / 1000.0));
    let engine = svc.engine.clone();
    let rate = range(svc, &engine, &q.rate, w, step)?;
    let mut errors = range(svc, &engine, &q.errors, w, step)?;
    let mut p99 = range(svc, &engine, &q.p99, w, step)?;
    Ok(rate
        .into_iter()
        .map(|(name, rate)| {
            let none = || vec![None; SPARK_POINTS as usize];
            let spark = Spark {
                errors: errors.remove(&name).unwrap_or_else(none),
                p99_ms: p99.remove(&name).unwrap_or_else(none),
                rate,
            };
            (name, spark)
        })
        .collect())
}
