//! OTLP metrics: an `ExportMetricsServiceRequest` as Prometheus samples, with the standard
//! OpenTelemetry-to-Prometheus translation the Collector's Prometheus exporters use:
//!
//! - names: characters outside `[a-zA-Z0-9_:]` become `_`; the unit becomes a suffix
//!   (`s` → `_seconds`, `By` → `_bytes`, `m/s` → `_meters_per_second`, `{requests}` dropped)
//!   unless the name already carries it; monotonic sums end in `_total`; gauges in unit `1`
//!   end in `_ratio`;
//! - label names: invalid characters become `_`, a leading digit gets `key_`, a single
//!   leading `_` gets `key`; two attributes that collide join their values with `;`;
//! - resources: `job` is `service.namespace/service.name` (or `service.name`), `instance`
//!   is `service.instance.id`; the other resource attributes go on one `target_info`
//!   sample per resource;
//! - sums and gauges are one series; histograms `_bucket{le=...}` (cumulative, `+Inf`
//!   = count), `_sum`, `_count`; exponential histograms the same at their bucket bounds;
//!   summaries `{quantile=...}`, `_sum`, `_count`;
//! - delta temporality is accumulated into cumulative series ([`Cumulative`]) as
//!   Prometheus counters need; a point flagged "no recorded value" is a staleness marker.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, metric,
    number_data_point,
};
use std::collections::{BTreeMap, HashMap};

/// Labels as name/value pairs (sorted by the caller's store).
pub type Labels = Vec<(String, String)>;

/// Prometheus's staleness marker.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// `FLAG_NO_RECORDED_VALUE` of a data point.
const NO_RECORDED_VALUE: u32 = 1;

/// The samples, metadata and refusals of one request.
#[derive(Debug, Default)]
pub struct Converted {
    /// Labels (with `__name__`), time in milliseconds, value.
    pub samples: Vec<(Labels, i64, f64)>,
    /// Family name, Prometheus type (`counter`, `gauge`, `histogram`, `summary`, `info`),
    /// help, unit.
    pub metadata: Vec<(String, &'static str, String, String)>,
    /// Data points refused (their index in the request, why).
    pub rejected: Vec<(usize, String)>,
    /// Data points read.
    pub points: usize,
    max_samples: usize,
}

/// Running totals that turn delta points into cumulative series, bounded in size.
pub struct Cumulative {
    totals: HashMap<Labels, f64>,
    max_series: usize,
}

impl Cumulative {
    pub fn new(max_series: usize) -> Self {
        Cumulative { totals: HashMap::new(), max_series }
    }

    fn add(&mut self, labels: &Labels, delta: f64) -> Option<f64> {
        if let Some(t) = self.totals.get_mut(labels) {
            *t += delta;
            return Some(*t);
        }
        if self.totals.len() >= self.max_series {
            return None;
        }
        self.totals.insert(labels.clone(), delta);
        Some(delta)
    }
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => signalbox_core::ids::encode_hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            format!("[{}]", a.values.iter().map(|v| format!("{:?}", text(v))).collect::<Vec<_>>().join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => format!(
            "{{{}}}",
            kv.values
                .iter()
                .map(|p| format!("{:?}:{:?}", p.key, p.value.as_ref().map(text).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        ),
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

/// A label name Prometheus accepts, from an attribute key.
pub fn label_name(key: &str) -> String {
    let mut s: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s = format!("key_{s}");
    } else if s.starts_with('_') && !s.starts_with("__") {
        s = format!("key{s}");
    }
    if s.is_empty() { "key_".into() } else { s }
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric() && c != ':').filter(|t| !t.is_empty()).map(String::from).collect()
}

/// The Prometheus metric name of an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: &str) -> String {
    let mut parts = tokens(name);
    // Annotations in braces (`{requests}`) carry no unit.
    let unit: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in unit.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out.trim().to_string()
    };
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), p.trim()),
        None => (unit.as_str(), ""),
    };
    let has = |parts: &[String], t: &str| parts.iter().any(|p| p.eq_ignore_ascii_case(t));
    if !main.is_empty() && main != "1" {
        let word = unit_word(main).map(String::from).unwrap_or_else(|| tokens(main).join("_"));
        for t in tokens(&word) {
            if !has(&parts, &t) {
                parts.push(t);
            }
        }
    }
    if !per.is_empty() {
        let word = per_unit_word(per).map(String::from).unwrap_or_else(|| tokens(per).join("_"));
        if !word.is_empty() && !has(&parts, &word) {
            parts.push("per".into());
            parts.push(word);
        }
    }
    if kind == "counter" {
        parts.retain(|p| p != "total");
        parts.push("total".into());
    }
    if kind == "gauge" && main == "1" && !has(&parts, "ratio") {
        parts.push("ratio".into());
    }
    let mut out = parts.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out = format!("_{out}");
    }
    out
}

fn attributes_into(labels: &mut BTreeMap<String, String>, attrs: &[KeyValue]) {
    for kv in attrs {
        let name = label_name(&kv.key);
        let value = kv.value.as_ref().map(text).unwrap_or_default();
        match labels.get_mut(&name) {
            Some(v) if !v.is_empty() => {
                v.push(';');
                v.push_str(&value);
            }
            _ => {
                labels.insert(name, value);
            }
        }
    }
}

fn millis(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

/// How a point's value is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// As it is (cumulative or gauge).
    Plain,
    /// Added to the series' running total.
    Delta,
    /// A staleness marker (the point has no recorded value).
    Stale,
}

fn how(delta: bool, stale: bool) -> How {
    if stale {
        How::Stale
    } else if delta {
        How::Delta
    } else {
        How::Plain
    }
}

struct Emitter<'a> {
    out: &'a mut Converted,
    cumulative: &'a mut Cumulative,
    point: usize,
}

impl Emitter<'_> {
    /// One sample; `delta` values are added to the series' running total first.
    fn emit(
        &mut self,
        base: &BTreeMap<String, String>,
        name: &str,
        extra: Option<(&str, String)>,
        t: i64,
        v: f64,
        how: How,
    ) {
        if self.out.samples.len() >= self.out.max_samples {
            if self.out.rejected.last().map(|r| r.0) != Some(self.point) {
                let m =
                    format!("{name}: more than {} samples in one request; send smaller batches", self.out.max_samples);
                self.out.rejected.push((self.point, m));
            }
            return;
        }
        let mut labels: Labels =
            base.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some((k, val)) = extra {
            labels.retain(|(n, _)| n != k);
            labels.push((k.to_string(), val));
        }
        labels.retain(|(n, _)| n != "__name__");
        labels.push(("__name__".into(), name.to_string()));
        labels.sort();
        let v = if how == How::Stale {
            f64::from_bits(STALE_NAN)
        } else if how == How::Delta {
            match self.cumulative.add(&labels, v) {
                Some(total) => total,
                None => {
                    self.out.rejected.push((self.point, format!("{name}: too many delta series to accumulate")));
                    return;
                }
            }
        } else {
            v
        };
        self.out.samples.push((labels, t, v));
    }
}

/// Converts a request into at most `max_samples` samples (a histogram point yields one per
/// bucket; points past the limit are refused). `cumulative` keeps delta totals between
/// requests.
pub fn convert(req: &ExportMetricsServiceRequest, cumulative: &mut Cumulative, max_samples: usize) -> Converted {
    let mut out = Converted { max_samples, ..Converted::default() };
    let mut point = 0usize;
    for rm in &req.resource_metrics {
        let rattrs = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let get = |k: &str| rattrs.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.as_ref()).map(text);
        let mut base = BTreeMap::new();
        match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(n)) if !ns.is_empty() => base.insert("job".to_string(), format!("{ns}/{n}")),
            (_, Some(n)) => base.insert("job".to_string(), n),
            _ => None,
        };
        if let Some(i) = get("service.instance.id") {
            base.insert("instance".to_string(), i);
        }
        // target_info: the resource's other attributes, once per resource, at the newest time seen.
        let mut newest = 0u64;
        let mut em = Emitter { out: &mut out, cumulative, point };
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let Some(data) = &m.data else { continue };
                let kind = match data {
                    metric::Data::Sum(s) if s.is_monotonic => "counter",
                    metric::Data::Sum(_) | metric::Data::Gauge(_) => "gauge",
                    metric::Data::Histogram(_) | metric::Data::ExponentialHistogram(_) => "histogram",
                    metric::Data::Summary(_) => "summary",
                };
                let name = metric_name(&m.name, &m.unit, kind);
                if name.is_empty() {
                    em.out.rejected.push((em.point, "a metric without a name".into()));
                    continue;
                }
                let family = name.strip_suffix("_total").filter(|_| kind == "counter").unwrap_or(&name).to_string();
                em.out.metadata.push((family.clone(), kind, m.description.clone(), m.unit.clone()));
                let labels_of = |attrs: &[KeyValue]| {
                    let mut l = base.clone();
                    attributes_into(&mut l, attrs);
                    l
                };
                match data {
                    metric::Data::Gauge(g) => {
                        for p in &g.data_points {
                            newest = newest.max(p.time_unix_nano);
                            number(&mut em, &labels_of(&p.attributes), &name, p, false);
                        }
                    }
                    metric::Data::Sum(s) => {
                        let delta = s.aggregation_temporality == AggregationTemporality::Delta as i32;
                        for p in &s.data_points {
                            newest = newest.max(p.time_unix_nano);
                            number(&mut em, &labels_of(&p.attributes), &name, p, delta);
                        }
                    }
                    metric::Data::Histogram(h) => {
                        let delta = h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        for p in &h.data_points {
                            newest = newest.max(p.time_unix_nano);
                            histogram(&mut em, &labels_of(&p.attributes), &family, p, delta);
                        }
                    }
                    metric::Data::ExponentialHistogram(h) => {
                        let delta = h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        for p in &h.data_points {
                            newest = newest.max(p.time_unix_nano);
                            exponential(&mut em, &labels_of(&p.attributes), &family, p, delta);
                        }
                    }
                    metric::Data::Summary(s) => {
                        for p in &s.data_points {
                            em.out.points += 1;
                            em.point += 1;
                            newest = newest.max(p.time_unix_nano);
                            let l = labels_of(&p.attributes);
                            let t = millis(p.time_unix_nano);
                            let stale = p.flags & NO_RECORDED_VALUE != 0;
                            for q in &p.quantile_values {
                                em.emit(
                                    &l,
                                    &family,
                                    Some(("quantile", fmt_float(q.quantile))),
                                    t,
                                    q.value,
                                    how(false, stale),
                                );
                            }
                            em.emit(&l, &format!("{family}_sum"), None, t, p.sum, how(false, stale));
                            em.emit(&l, &format!("{family}_count"), None, t, p.count as f64, how(false, stale));
                        }
                    }
                }
            }
        }
        point = em.point;
        let info: Vec<&KeyValue> = rattrs
            .iter()
            .filter(|kv| !matches!(kv.key.as_str(), "service.name" | "service.namespace" | "service.instance.id"))
            .collect();
        if !info.is_empty() && newest > 0 && base.contains_key("job") {
            let mut l = base.clone();
            attributes_into(&mut l, &info.into_iter().cloned().collect::<Vec<_>>());
            let mut em = Emitter { out: &mut out, cumulative, point };
            em.emit(&l, "target_info", None, millis(newest), 1.0, How::Plain);
            if !out.metadata.iter().any(|m| m.0 == "target_info") {
                out.metadata.push(("target_info".into(), "info", "Target metadata".into(), String::new()));
            }
        }
    }
    out
}

fn number(em: &mut Emitter, labels: &BTreeMap<String, String>, name: &str, p: &NumberDataPoint, delta: bool) {
    em.out.points += 1;
    em.point += 1;
    let v = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => {
            em.out.rejected.push((em.point - 1, format!("{name}: a data point without a value")));
            return;
        }
    };
    em.emit(labels, name, None, millis(p.time_unix_nano), v, how(delta, p.flags & NO_RECORDED_VALUE != 0));
}

/// `le` and `quantile` values as Prometheus writes them (`+Inf`, `0.5`, `1`).
fn fmt_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn histogram(em: &mut Emitter, labels: &BTreeMap<String, String>, family: &str, p: &HistogramDataPoint, delta: bool) {
    em.out.points += 1;
    em.point += 1;
    let t = millis(p.time_unix_nano);
    let stale = p.flags & NO_RECORDED_VALUE != 0;
    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        em.out.rejected.push((
            em.point - 1,
            format!(
                "{family}: {} bucket counts for {} explicit bounds (expected one more)",
                p.bucket_counts.len(),
                p.explicit_bounds.len()
            ),
        ));
        return;
    }
    let bucket = format!("{family}_bucket");
    let mut running = 0u64;
    for (i, bound) in p.explicit_bounds.iter().enumerate() {
        running += p.bucket_counts.get(i).copied().unwrap_or(0);
        em.emit(labels, &bucket, Some(("le", fmt_float(*bound))), t, running as f64, how(delta, stale));
    }
    em.emit(labels, &bucket, Some(("le", "+Inf".into())), t, p.count as f64, how(delta, stale));
    if let Some(sum) = p.sum {
        em.emit(labels, &format!("{family}_sum"), None, t, sum, how(delta, stale));
    }
    em.emit(labels, &format!("{family}_count"), None, t, p.count as f64, how(delta, stale));
}

fn exponential(
    em: &mut Emitter,
    labels: &BTreeMap<String, String>,
    family: &str,
    p: &ExponentialHistogramDataPoint,
    delta: bool,
) {
    em.out.points += 1;
    em.point += 1;
    let t = millis(p.time_unix_nano);
    let stale = p.flags & NO_RECORDED_VALUE != 0;
    if !(-10..=20).contains(&p.scale) {
        em.out.rejected.push((em.point - 1, format!("{family}: scale {} is outside -10..20", p.scale)));
        return;
    }
    let base = 2f64.powf(2f64.powi(-p.scale));
    let bucket = format!("{family}_bucket");
    // Negative buckets and the zero bucket all lie at or below the zero threshold.
    let negative: u64 = p.negative.as_ref().map(|b| b.bucket_counts.iter().sum()).unwrap_or(0);
    let mut running = negative + p.zero_count;
    em.emit(labels, &bucket, Some(("le", fmt_float(p.zero_threshold))), t, running as f64, how(delta, stale));
    if let Some(pos) = &p.positive {
        for (i, c) in pos.bucket_counts.iter().enumerate().take(320) {
            running += c;
            let upper = base.powi(pos.offset + i as i32 + 1);
            em.emit(labels, &bucket, Some(("le", fmt_float(upper))), t, running as f64, how(delta, stale));
        }
    }
    em.emit(labels, &bucket, Some(("le", "+Inf".into())), t, p.count as f64, how(delta, stale));
    if let Some(sum) = p.sum {
        em.emit(labels, &format!("{family}_sum"), None, t, sum, how(delta, stale));
    }
    em.emit(labels, &format!("{family}_count"), None, t, p.count as f64, how(delta, stale));
}

#[cfg(test)]
mod tests;
