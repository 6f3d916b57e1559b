//! Batches in their receivers' wire formats. A batch is encoded once, when it is sealed,
//! and queued as the request body, so a retry sends the same bytes.
//!
//! - remote_write 1.0: a `prometheus.WriteRequest` protobuf, snappy block format; series
//!   with labels sorted by name and samples in time order, as the spec requires.
//! - OTLP: `ExportTraceServiceRequest` / `ExportLogsServiceRequest` protobuf (the same
//!   bytes for gRPC and HTTP).
//! - Loki: the JSON push body (`{"streams":[...]}`), uncompressed. JSON rather than the
//!   snappy protobuf because it carries structured metadata without a second copy of
//!   Loki's schema, and every Loki version and Loki-compatible store takes it.

use crate::config::Signal;
use prost::Message;
use signalbox_core::export::Sample;
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::{AttrValue, Span};
use std::collections::BTreeMap;

/// What the stores hand over, one signal per batch.
#[derive(Debug)]
pub enum Batch {
    Spans(Vec<Span>),
    Logs(Vec<LogRecord>),
    Samples(Vec<Sample>),
}

impl Batch {
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Spans(_) => Signal::Traces,
            Batch::Logs(_) => Signal::Logs,
            Batch::Samples(_) => Signal::Metrics,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Batch::Spans(v) => v.len(),
            Batch::Logs(v) => v.len(),
            Batch::Samples(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// The remote_write 1.0 messages this side writes (the metrics crate keeps the decoding side).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RwSample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct RwSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Samples as a snappy-compressed `WriteRequest`.
pub fn remote_write(samples: Vec<Sample>) -> Vec<u8> {
    let mut series: BTreeMap<Vec<(String, String)>, Vec<RwSample>> = BTreeMap::new();
    for (mut labels, t, v) in samples {
        labels.sort();
        series.entry(labels).or_default().push(RwSample { value: v, timestamp: t });
    }
    let timeseries = series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.timestamp);
            TimeSeries { labels: labels.into_iter().map(|(name, value)| Label { name, value }).collect(), samples }
        })
        .collect();
    let raw = WriteRequest { timeseries }.encode_to_vec();
    // Compressing a buffer of this size cannot fail (the block format's limit is 4 GiB; a
    // batch is bounded by `batch_size`).
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

/// The OTLP protobuf body of a batch (traces or logs).
pub fn otlp(batch: Batch) -> Vec<u8> {
    match batch {
        Batch::Spans(s) => signalbox_otlp::traces::to_request(s).encode_to_vec(),
        Batch::Logs(r) => signalbox_otlp::logs::to_request(r).encode_to_vec(),
        Batch::Samples(_) => Vec::new(),
    }
}

/// A Loki label name: letters, digits and `_`, not starting with a digit.
fn label_name(k: &str) -> String {
    let mut s: String = k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn text(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.clone(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Float(f) => f.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    }
}

/// Log records as a Loki JSON push body. Stream labels name the source: `service_name`,
/// `instance`, `level` (the severity's short name, lower case) and the resource
/// attributes; the record's attributes and its trace and span ids go in structured
/// metadata. Loki's receiver here reads them back into the same fields.
pub fn loki(records: Vec<LogRecord>) -> Vec<u8> {
    let mut streams: BTreeMap<BTreeMap<String, String>, Vec<serde_json::Value>> = BTreeMap::new();
    for r in records {
        let mut labels = BTreeMap::new();
        for kv in &r.resource {
            labels.insert(label_name(&kv.key), text(&kv.value));
        }
        if !r.service.is_empty() {
            labels.insert("service_name".to_owned(), r.service.clone());
        }
        if !r.instance.is_empty() {
            labels.insert("instance".to_owned(), r.instance.clone());
        }
        if r.severity != Severity::UNSPECIFIED {
            labels.insert("level".to_owned(), r.severity.name().to_ascii_lowercase());
        }
        if labels.is_empty() {
            // Loki refuses a stream without labels.
            labels.insert("service_name".to_owned(), "unknown_service".to_owned());
        }
        let mut meta = serde_json::Map::new();
        for kv in &r.attributes {
            meta.insert(kv.key.to_string(), serde_json::Value::String(text(&kv.value)));
        }
        if let Some(t) = r.trace_id {
            meta.insert("trace_id".into(), signalbox_core::ids::encode_hex(&t.0).into());
        }
        if let Some(s) = r.span_id {
            meta.insert("span_id".into(), signalbox_core::ids::encode_hex(&s.0).into());
        }
        let mut entry = vec![serde_json::Value::String(r.unix_nanos.to_string()), serde_json::Value::String(r.body)];
        if !meta.is_empty() {
            entry.push(serde_json::Value::Object(meta));
        }
        streams.entry(labels).or_default().push(serde_json::Value::Array(entry));
    }
    let streams: Vec<serde_json::Value> =
        streams.into_iter().map(|(labels, values)| serde_json::json!({ "stream": labels, "values": values })).collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
}

#[cfg(test)]
mod tests;
