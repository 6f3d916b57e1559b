//! One collection pass as families of samples, rendered as the Prometheus text exposition
//! (for the agent's `/metrics`) or encoded as a remote_write 1.0 `WriteRequest` (protobuf,
//! snappy block format) for the node.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A family's type, as the exposition names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// node_exporter's netstat and vmstat fields are untyped.
    Untyped,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
        }
    }
}

/// Label pairs of one sample, in the order given.
pub type LabelSet = Vec<(String, String)>;

/// One metric family.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<(LabelSet, f64)>,
}

/// The result of one pass over the collectors.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub families: Vec<Family>,
    index: HashMap<String, usize>,
    /// When the pass started, Unix milliseconds.
    pub timestamp_ms: i64,
}

impl Snapshot {
    pub fn new(timestamp_ms: i64) -> Snapshot {
        Snapshot { timestamp_ms, ..Snapshot::default() }
    }

    /// Adds one sample to family `name` (created with `help` and `kind` on first use).
    pub fn add(&mut self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.add_owned(name, help, kind, labels, value);
    }

    /// Like [`Snapshot::add`] with owned labels.
    pub fn add_owned(&mut self, name: &str, help: &str, kind: Kind, labels: LabelSet, value: f64) {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.families.push(Family { name: name.to_owned(), help: help.to_owned(), kind, samples: Vec::new() });
                self.index.insert(name.to_owned(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        self.families[i].samples.push((labels, value));
    }

    /// Shorthand for a gauge.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, Kind::Gauge, labels, value);
    }

    /// Shorthand for a counter.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, Kind::Counter, labels, value);
    }

    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.index.get(name).map(|i| &self.families[*i])
    }

    /// The value of `name` with exactly these labels (any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = self.family(name)?;
        f.samples
            .iter()
            .find(|(l, _)| {
                l.len() == labels.len() && labels.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|(_, v)| *v)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Prometheus text exposition (version 0.0.4), families sorted by name.
    pub fn render(&self, out: &mut String) {
        let mut order: Vec<&Family> = self.families.iter().collect();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        for f in order {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.text());
            for (labels, v) in &f.samples {
                out.push_str(&f.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(k);
                        out.push_str("=\"");
                        escape_value(out, val);
                        out.push('"');
                    }
                    out.push('}');
                }
                out.push(' ');
                write_float(out, *v);
                out.push('\n');
            }
        }
    }

    /// A remote_write 1.0 body: the `WriteRequest` protobuf, snappy-compressed (block format).
    /// `extra` labels are added to every series that does not already carry them; label
    /// names are sorted as receivers expect.
    ///
    /// The protobuf is written straight from the snapshot's strings (the bytes prost would
    /// write for the same [`WriteRequest`], which a test checks), so no copy of a label is
    /// allocated per collection.
    pub fn remote_write(&self, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.len() * 128);
        let mut ls: Vec<(&str, &str)> = Vec::new();
        for f in &self.families {
            for (labels, v) in &f.samples {
                ls.clear();
                ls.push(("__name__", f.name.as_str()));
                ls.extend(labels.iter().filter(|(_, val)| !val.is_empty()).map(|(k, val)| (k.as_str(), val.as_str())));
                for (k, val) in extra {
                    if !labels.iter().any(|(n, _)| n == k) && !val.is_empty() {
                        ls.push((k, val));
                    }
                }
                ls.sort_by(|a, b| a.0.cmp(b.0));
                let sample_len = pb::double_len(1, *v) + pb::int64_len(2, self.timestamp_ms);
                let labels_len: usize = ls.iter().map(|(k, val)| pb::message_len(1, pb::label_len(k, val))).sum();
                pb::message_head(&mut raw, 1, labels_len + pb::message_len(2, sample_len));
                for (k, val) in &ls {
                    pb::message_head(&mut raw, 1, pb::label_len(k, val));
                    pb::string(&mut raw, 1, k);
                    pb::string(&mut raw, 2, val);
                }
                pb::message_head(&mut raw, 2, sample_len);
                pb::double(&mut raw, 1, *v);
                pb::int64(&mut raw, 2, self.timestamp_ms);
            }
        }
        for f in &self.families {
            let kind = match f.kind {
                Kind::Counter => 1,
                Kind::Gauge => 2,
                Kind::Untyped => 0,
            };
            let len = pb::int64_len(1, kind) + pb::string_len(2, &f.name) + pb::string_len(4, &f.help);
            pb::message_head(&mut raw, 3, len);
            pb::int64(&mut raw, 1, kind);
            pb::string(&mut raw, 2, &f.name);
            pb::string(&mut raw, 4, &f.help);
        }
        // Compressing an in-memory buffer cannot fail short of a length over 4 GiB.
        snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
    }
}

/// Protobuf fields as proto3 writes them: a field holding its type's default (0, empty) is
/// left out.
mod pb {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

    pub fn message_len(tag: u32, len: usize) -> usize {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    pub fn message_head(out: &mut Vec<u8>, tag: u32, len: usize) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
    }

    pub fn string_len(tag: u32, s: &str) -> usize {
        if s.is_empty() { 0 } else { message_len(tag, s.len()) }
    }

    pub fn string(out: &mut Vec<u8>, tag: u32, s: &str) {
        if !s.is_empty() {
            message_head(out, tag, s.len());
            out.extend_from_slice(s.as_bytes());
        }
    }

    pub fn label_len(name: &str, value: &str) -> usize {
        string_len(1, name) + string_len(2, value)
    }

    pub fn double_len(tag: u32, v: f64) -> usize {
        if v == 0.0 { 0 } else { key_len(tag) + 8 }
    }

    pub fn double(out: &mut Vec<u8>, tag: u32, v: f64) {
        if v != 0.0 {
            encode_key(tag, WireType::SixtyFourBit, out);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub fn int64_len(tag: u32, v: i64) -> usize {
        if v == 0 { 0 } else { key_len(tag) + encoded_len_varint(v as u64) }
    }

    pub fn int64(out: &mut Vec<u8>, tag: u32, v: i64) {
        if v != 0 {
            encode_key(tag, WireType::Varint, out);
            encode_varint(v as u64, out);
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_float(out: &mut String, v: f64) {
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.is_nan() {
        out.push_str("NaN");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// remote_write 1.0 messages (prometheus/prompb/types.proto, remote.proto), the fields the
/// agent sends.
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
pub struct MetricMetadata {
    /// UNKNOWN 0, COUNTER 1, GAUGE 2.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}
