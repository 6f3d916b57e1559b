//! Loki's push API (`POST /loki/api/v1/push`), as Promtail, Grafana Alloy, Fluent Bit's
//! `loki` output, Vector's `loki` sink and python-logging-loki send it:
//!
//! - `Content-Type: application/x-protobuf`: a `logproto.PushRequest`, snappy-compressed in
//!   the block format (never the framed one);
//! - `Content-Type: application/json` (optionally gzip): `{"streams":[{"stream":{"job":"x"},
//!   "values":[["<unix ns>","<line>", {"structured":"metadata"}]]}]}`.
//!
//! Stream labels are the record's resource (they name its source); `service_name`,
//! `service`, `app` or `job` give the service, `instance`, `pod` or `host` the instance, and
//! `level` / `detected_level` the severity. Structured metadata become attributes.

use super::{BadRequest, Decoded, MAX_LINE, MAX_RECORDS};
use prost::Message;
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::KeyValue;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Prometheus label-set text: `{job="x", level="error"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Largest snappy-decompressed push body.
pub const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// Decodes a protobuf push body (snappy block format).
pub fn decode_protobuf(body: &[u8], now: u64) -> Result<Decoded, BadRequest> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| BadRequest(format!("the body is not snappy block-compressed protobuf: {e}")))?;
    if len > MAX_DECOMPRESSED {
        return Err(BadRequest(format!("the body inflates to {len} bytes; the limit is {MAX_DECOMPRESSED}")));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| BadRequest(format!("the body is not valid snappy: {e}")))?;
    let req = PushRequest::decode(raw.as_slice()).map_err(|e| BadRequest(format!("invalid Loki protobuf: {e}")))?;
    let mut out = Decoded::default();
    let mut index = 0;
    for s in req.streams {
        let labels = match parse_labels(&s.labels) {
            Ok(l) => l,
            Err(m) => {
                for _ in &s.entries {
                    out.rejected.push((index, format!("stream labels `{}`: {m}", s.labels)));
                    index += 1;
                }
                continue;
            }
        };
        for e in s.entries {
            let ts = e.timestamp.map(|t| {
                if t.seconds < 0 || t.nanos < 0 {
                    0
                } else {
                    (t.seconds as u64).saturating_mul(1_000_000_000) + t.nanos as u64
                }
            });
            let meta = e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect();
            push_entry(&mut out, index, &labels, ts, e.line, meta, now)?;
            index += 1;
        }
    }
    Ok(out)
}

/// Decodes a JSON push body.
pub fn decode_json(body: &[u8], now: u64) -> Result<Decoded, BadRequest> {
    #[derive(serde::Deserialize)]
    struct Body {
        streams: Vec<Stream>,
    }
    #[derive(serde::Deserialize)]
    struct Stream {
        #[serde(default)]
        stream: std::collections::BTreeMap<String, String>,
        values: Vec<Vec<serde_json::Value>>,
    }
    let b: Body = crate::json::parse(body).map_err(|e| BadRequest(e.message))?;
    let mut out = Decoded::default();
    let mut index = 0;
    for s in b.streams {
        let labels: Vec<(String, String)> = s.stream.into_iter().collect();
        for v in s.values {
            let (ts, line, meta) = match v.as_slice() {
                [serde_json::Value::String(ts), serde_json::Value::String(line), rest @ ..] if rest.len() <= 1 => {
                    let meta = match rest.first() {
                        None | Some(serde_json::Value::Null) => Vec::new(),
                        Some(serde_json::Value::Object(m)) => {
                            m.iter().map(|(k, v)| (k.clone(), super::text(v.clone()))).collect()
                        }
                        Some(_) => {
                            out.rejected.push((index, "structured metadata must be an object".into()));
                            index += 1;
                            continue;
                        }
                    };
                    (ts.parse::<u64>().ok(), line.clone(), meta)
                }
                _ => {
                    out.rejected.push((index, "each value must be [\"<unix nanoseconds>\", \"<line>\"]".into()));
                    index += 1;
                    continue;
                }
            };
            let Some(ts) = ts.filter(|t| *t <= crate::traces::MAX_NANOS) else {
                out.rejected.push((index, "the timestamp must be a string of Unix nanoseconds".into()));
                index += 1;
                continue;
            };
            push_entry(&mut out, index, &labels, Some(ts), line, meta, now)?;
            index += 1;
        }
    }
    Ok(out)
}

fn push_entry(
    out: &mut Decoded,
    index: usize,
    labels: &[(String, String)],
    ts: Option<u64>,
    line: String,
    meta: Vec<(String, String)>,
    now: u64,
) -> Result<(), BadRequest> {
    if out.records.len() >= MAX_RECORDS {
        return Err(BadRequest(format!("more than {MAX_RECORDS} entries in one request; send smaller batches")));
    }
    if line.len() > MAX_LINE {
        out.rejected.push((index, format!("the line is {} bytes; the limit is {MAX_LINE}", line.len())));
        return Ok(());
    }
    out.records.push(record(labels, ts.filter(|t| *t > 0).unwrap_or(now), line, meta, now));
    Ok(())
}

fn record(labels: &[(String, String)], ts: u64, line: String, meta: Vec<(String, String)>, now: u64) -> LogRecord {
    let find = |keys: &[&str]| labels.iter().find(|(k, _)| keys.contains(&k.as_str())).map(|(_, v)| v.clone());
    let meta_find = |keys: &[&str]| meta.iter().find(|(k, _)| keys.contains(&k.as_str())).map(|(_, v)| v.clone());
    let severity_text =
        find(&["level", "detected_level", "severity"]).or_else(|| meta_find(&["level"])).unwrap_or_default();
    let trace_id = meta_find(&["trace_id", "traceID", "traceId"]).and_then(|t| super::trace_id(&t));
    let span_id = meta_find(&["span_id", "spanID", "spanId"]).and_then(|t| super::span_id(&t));
    LogRecord {
        unix_nanos: ts,
        observed_unix_nanos: now,
        severity: Severity::parse(&severity_text),
        severity_text,
        body: line,
        service: find(&["service_name", "service", "app", "job"]).unwrap_or_default(),
        instance: find(&["instance", "pod", "host"]).unwrap_or_default(),
        resource: labels.iter().map(|(k, v)| KeyValue::str(k.clone(), v.clone())).collect(),
        attributes: meta.into_iter().map(|(k, v)| KeyValue::str(k, v)).collect(),
        trace_id,
        span_id,
    }
}

/// Parses a Prometheus label set: `{a="x", b="y\"z"}`.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let s = s.trim();
    let inner = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).ok_or("must be {name=\"value\", ...}")?;
    let mut out = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("expected name=\"value\"")?;
        let name = rest[..eq].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{name}` is not a label name"));
        }
        rest = rest[eq + 1..].trim_start();
        rest = rest.strip_prefix('"').ok_or("label values must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

/// `POST /loki/api/v1/push`: 204 once stored, as Loki answers; 400 naming the refused
/// entries (the others are stored).
pub(crate) async fn push(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let sink = match super::sink(&s, &headers) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/x-protobuf");
    let json = ct.starts_with("application/json");
    if !json && !ct.starts_with("application/x-protobuf") {
        return crate::error::ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/x-protobuf (snappy) or application/json",
        )
        .into_response();
    }
    let raw = match super::body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let now = signalbox_core::time::unix_nanos();
    let decoded = if json {
        let _budget = match super::reserve_json(&raw) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        decode_json(&raw, now)
    } else {
        decode_protobuf(&raw, now)
    };
    let d = match decoded {
        Ok(d) => d,
        Err(BadRequest(m)) => return crate::error::ApiError::bad_request("invalid_push", m).into_response(),
    };
    if let Err(r) = super::store(&s, &sink, d.records).await {
        return r;
    }
    match d.rejected.first() {
        None => StatusCode::NO_CONTENT.into_response(),
        Some((i, m)) => crate::error::ApiError::field(
            format!("entries[{i}]"),
            format!("{m} ({} entries refused, the others stored)", d.rejected.len()),
        )
        .into_response(),
    }
}
