//! The log record the agent ships, its labels, and its native NDJSON encoding.

use serde::Serialize;
use serde::ser::SerializeMap;
use std::sync::Arc;

/// Labels shared by every record of one source.
#[derive(Debug, PartialEq, Eq)]
pub struct Labels {
    pub service: String,
    pub instance: String,
    pub host: String,
    /// Static labels, added to the attributes.
    pub static_labels: Vec<(String, String)>,
}

/// One log record: a line, or a group of lines (a stack trace), parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Event time in Unix nanoseconds (the parsed timestamp, or when it was read).
    pub timestamp_ns: u64,
    /// When the agent read it, in Unix nanoseconds.
    pub observed_ns: u64,
    /// Normalised severity: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`, or the
    /// upper-cased original.
    pub severity: String,
    pub body: String,
    pub labels: Arc<Labels>,
    /// The file the record was read from.
    pub path: Arc<str>,
    /// Parsed fields, minus those that became the timestamp, severity, body or ids.
    pub attributes: Vec<(String, String)>,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
}

/// The attribute naming the source file (OpenTelemetry's semantic convention).
pub const FILE_PATH_ATTR: &str = "log.file.path";

impl Record {
    /// Rough in-memory size, used for the batch byte limit.
    pub fn approx_bytes(&self) -> usize {
        let attrs: usize = self.attributes.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
        160 + self.body.len() + self.path.len() + attrs + self.severity.len()
    }

    /// Appends the record as one line of the native NDJSON format.
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        let line = NativeLine {
            timestamp: rfc3339_nanos(self.timestamp_ns),
            severity: &self.severity,
            body: &self.body,
            service: &self.labels.service,
            instance: &self.labels.instance,
            host: &self.labels.host,
            attributes: Attrs(self),
            trace_id: self.trace_id.map(hex::encode),
            span_id: self.span_id.map(hex::encode),
        };
        // Serialising plain strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &line);
        out.push(b'\n');
    }

    /// Every attribute as exported: static labels, parsed fields, then the file path.
    pub fn all_attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels
            .static_labels
            .iter()
            .chain(self.attributes.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(std::iter::once((FILE_PATH_ATTR, &*self.path)))
    }
}

#[derive(Serialize)]
struct NativeLine<'a> {
    timestamp: String,
    severity: &'a str,
    body: &'a str,
    service: &'a str,
    instance: &'a str,
    host: &'a str,
    attributes: Attrs<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<String>,
}

struct Attrs<'a>(&'a Record);

impl Serialize for Attrs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Later keys win, as in a JSON object read by most parsers; emit each key once.
        let all: Vec<(&str, &str)> = self.0.all_attributes().collect();
        let mut m = s.serialize_map(None)?;
        for (i, (k, v)) in all.iter().enumerate() {
            if all[i + 1..].iter().any(|(k2, _)| k2 == k) {
                continue;
            }
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Normalises a severity name: `warning` is `WARN`, `err` is `ERROR`, `critical` is `FATAL`;
/// unknown names are upper-cased.
pub fn normalize_severity(s: &str) -> String {
    let t = s.trim();
    let known = [
        ("TRACE", &["trace", "trc", "finest", "finer"][..]),
        ("DEBUG", &["debug", "dbg", "fine", "config"][..]),
        ("INFO", &["info", "information", "informational", "notice", "inf"][..]),
        ("WARN", &["warn", "warning", "wrn"][..]),
        ("ERROR", &["error", "err", "severe", "eror"][..]),
        ("FATAL", &["fatal", "critical", "crit", "panic", "emerg", "emergency", "alert", "dpanic"][..]),
    ];
    for (name, aliases) in known {
        if aliases.iter().any(|a| a.eq_ignore_ascii_case(t)) {
            return name.to_owned();
        }
    }
    t.to_ascii_uppercase()
}

/// The OTLP severity number of a normalised severity (0: unspecified).
pub fn severity_number(s: &str) -> i32 {
    match s {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => 0,
    }
}

/// Formats Unix nanoseconds as RFC 3339 UTC with nine fractional digits.
pub fn rfc3339_nanos(nanos: u64) -> String {
    signalbox_core::time::rfc3339_nanos(nanos)
}

#[cfg(test)]
mod tests;
