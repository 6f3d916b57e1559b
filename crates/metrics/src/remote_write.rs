//! Prometheus remote_write 1.0: a `prometheus.WriteRequest` protobuf, snappy-compressed in
//! the block format, as Prometheus, Grafana Agent/Alloy, vmagent and the OTel Collector's
//! `prometheusremotewrite` exporter send it to `/api/v1/write`.
//!
//! Decoding checks sizes before allocating (the announced decompressed length against a
//! limit), refuses malformed label sets naming the series and the label, drops empty label
//! values as Prometheus does, and turns metric metadata into [`crate::metadata`] entries.

use crate::exposition::MetricType;
use crate::storage::Labels;
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// UNKNOWN 0, COUNTER 1, GAUGE 2, HISTOGRAM 3, GAUGEHISTOGRAM 4, SUMMARY 5, INFO 6, STATESET 7.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Largest decompressed write request accepted.
pub const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;
/// Most labels on one series.
pub const MAX_LABELS: usize = 64;

/// What a write request holds, ready to append.
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<(Labels, i64, f64)>,
    /// Family name, type, help, unit.
    pub metadata: Vec<(String, MetricType, String, String)>,
}

/// Why a request was refused (the message names what is wrong; the answer is a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Decodes a snappy-compressed (block format) write request.
pub fn decode(body: &[u8]) -> Result<Decoded, BadRequest> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| BadRequest(format!("the body is not snappy block-compressed protobuf: {e}")))?;
    if len > MAX_DECOMPRESSED {
        return Err(BadRequest(format!("the body inflates to {len} bytes; the limit is {MAX_DECOMPRESSED}")));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| BadRequest(format!("the body is not valid snappy: {e}")))?;
    let req = WriteRequest::decode(raw.as_slice())
        .map_err(|e| BadRequest(format!("invalid remote_write protobuf (prometheus.WriteRequest): {e}")))?;
    let mut out = Decoded::default();
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        if ts.samples.is_empty() {
            continue;
        }
        let labels = checked_labels(ts.labels.into_iter().map(|l| (l.name, l.value)).collect())
            .map_err(|m| BadRequest(format!("timeseries[{i}]: {m}")))?;
        for s in ts.samples {
            out.samples.push((labels.clone(), s.timestamp, s.value));
        }
    }
    for m in req.metadata {
        let kind = match m.r#type {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Untyped,
        };
        out.metadata.push((m.metric_family_name, kind, m.help, m.unit));
    }
    Ok(out)
}

/// Encodes a request (for tests, the load generator and the benchmark's replay).
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap_or_default()
}

/// Whether `name` is a valid Prometheus label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Whether `name` is a valid metric name (label name characters and `:`).
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c == ':' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == ':' || c.is_ascii_alphanumeric())
}

/// Sorts a label set, drops empty values, and refuses what Prometheus refuses: no metric
/// name, an invalid name, a repeated label, too many labels.
pub fn checked_labels(mut labels: Labels) -> Result<Labels, String> {
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels; the limit is {MAX_LABELS}", labels.len()));
    }
    match labels.iter().find(|(k, _)| k == "__name__") {
        None => return Err("the series has no metric name (label `__name__`)".into()),
        Some((_, n)) if !valid_metric_name(n) => return Err(format!("invalid metric name `{n}`")),
        _ => {}
    }
    for w in labels.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(format!("label `{}` appears twice", w[0].0));
        }
    }
    if let Some((k, _)) = labels.iter().find(|(k, _)| !valid_label_name(k)) {
        return Err(format!("invalid label name `{k}`"));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(k, v)| Label { name: k.to_string(), value: v.to_string() }).collect(),
            samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
            exemplars: vec![],
        }
    }

    #[test]
    fn decodes_series_samples_and_metadata() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[("job", "api"), ("__name__", "http_requests_total"), ("empty", "")],
                    &[(1000, 1.0), (2000, 3.0)],
                ),
                series(&[("__name__", "nothing")], &[]),
            ],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "http_requests_total".into(),
                help: "Requests.".into(),
                unit: String::new(),
            }],
        };
        let d = decode(&encode(&req)).unwrap();
        let l: Labels = vec![("__name__".into(), "http_requests_total".into()), ("job".into(), "api".into())];
        assert_eq!(d.samples, vec![(l.clone(), 1000, 1.0), (l, 2000, 3.0)]);
        assert_eq!(d.metadata[0].1, MetricType::Counter);
    }

    #[test]
    fn refuses_bad_label_sets_and_bodies_naming_the_problem() {
        let bad = |labels: &[(&str, &str)]| {
            let req = WriteRequest { timeseries: vec![series(labels, &[(1, 1.0)])], metadata: vec![] };
            decode(&encode(&req)).unwrap_err().0
        };
        assert!(bad(&[("job", "x")]).contains("no metric name"));
        assert!(bad(&[("__name__", "a-b")]).contains("invalid metric name `a-b`"));
        assert!(bad(&[("__name__", "a"), ("1x", "y")]).contains("invalid label name `1x`"));
        assert!(bad(&[("__name__", "a"), ("x", "1"), ("x", "2")]).contains("`x` appears twice"));
        assert!(decode(b"not snappy at all").unwrap_err().0.contains("snappy"));
        let mut huge = Vec::new();
        // A snappy header announcing 1 GiB: refused before allocating.
        let mut n = 1u64 << 30;
        while n >= 0x80 {
            huge.push((n as u8) | 0x80);
            n >>= 7;
        }
        huge.push(n as u8);
        assert!(decode(&huge).unwrap_err().0.contains("limit"));
    }
}
