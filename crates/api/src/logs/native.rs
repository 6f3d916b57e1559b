//! `POST /api/logs`: newline-delimited JSON, one record per line, as `signalbox agent` and
//! any shipper with a JSON-lines output send it:
//!
//! ```json
//! {"timestamp":"2026-12-02T10:00:00.123456789Z","severity":"ERROR","body":"payment declined",
//!  "service":"payments","instance":"payments-1","host":"node-7",
//!  "attributes":{"order_id":"o-42"},"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"}
//! ```
//!
//! Keys are matched under their common spellings (`@timestamp`, `msg`, `level`...; see
//! [`super::record_from_map`]); an `attributes` object is flattened into attributes and a
//! `resource` object into resource attributes. A line that is not a JSON object is refused on
//! its own (the answer names its line number); the others are kept.

use super::{Decoded, MAX_LINE, MAX_RECORDS, record_from_map};
use serde_json::Value;
use signalbox_core::span::KeyValue;

/// Decodes an NDJSON body. Empty lines are skipped.
pub fn decode(body: &[u8], now: u64) -> Result<Decoded, super::BadRequest> {
    let mut out = Decoded::default();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.records.len() >= MAX_RECORDS {
            return Err(super::BadRequest(format!(
                "more than {MAX_RECORDS} lines in one request; send smaller batches"
            )));
        }
        if line.len() > MAX_LINE + 4096 {
            out.rejected.push((i + 1, format!("the line is {} bytes; the limit is {MAX_LINE}", line.len())));
            continue;
        }
        let obj = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                out.rejected.push((i + 1, "not a JSON object".into()));
                continue;
            }
            Err(e) => {
                out.rejected.push((i + 1, format!("not valid JSON: {e}")));
                continue;
            }
        };
        match one(obj, now) {
            Ok(r) => out.records.push(r),
            Err(m) => out.rejected.push((i + 1, m)),
        }
    }
    Ok(out)
}

fn one(mut obj: serde_json::Map<String, Value>, now: u64) -> Result<signalbox_core::log::LogRecord, String> {
    // `attributes` and `resource` objects are the agent's explicit shape.
    let attrs = match obj.remove("attributes") {
        Some(Value::Object(m)) => Some(m),
        Some(Value::Null) | None => None,
        Some(_) => return Err("`attributes` must be an object".into()),
    };
    let resource = match obj.remove("resource") {
        Some(Value::Object(m)) => Some(m),
        Some(Value::Null) | None => None,
        Some(_) => return Err("`resource` must be an object".into()),
    };
    let mut r = record_from_map(obj, now)?;
    if let Some(a) = attrs {
        // Everything in `attributes` is an attribute, whatever its name.
        r.attributes.extend(flat_attributes(a));
    }
    if let Some(res) = resource {
        for kv in flat_attributes(res) {
            match (kv.key.as_ref(), &kv.value) {
                ("service.name", signalbox_core::span::AttrValue::Str(s)) if r.service.is_empty() => {
                    r.service = s.clone()
                }
                ("service.instance.id", signalbox_core::span::AttrValue::Str(s)) if r.instance.is_empty() => {
                    r.instance = s.clone()
                }
                _ => r.resource.push(kv),
            }
        }
    }
    Ok(r)
}

fn flat_attributes(m: serde_json::Map<String, Value>) -> Vec<KeyValue> {
    let mut flat = Vec::new();
    super::flatten_owned(String::new(), m, 0, &mut flat);
    flat.into_iter().map(|(k, v)| KeyValue { key: k.into(), value: super::attr(v) }).collect()
}

/// `POST /api/logs`: 200 `{"accepted": N, "rejected": [{"line": L, "error": "..."}]}` once the
/// accepted lines are durable; 400 naming the first bad line when none is acceptable.
pub(crate) async fn post(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let sink = match super::sink(&s, &headers) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let raw = match super::body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let _budget = match super::reserve_json(&raw) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let d = match decode(&raw, signalbox_core::time::unix_nanos()) {
        Ok(d) => d,
        Err(super::BadRequest(m)) => return crate::error::ApiError::bad_request("too_many_lines", m).into_response(),
    };
    drop(_budget);
    if d.records.is_empty()
        && let Some((line, m)) = d.rejected.first()
    {
        return crate::error::ApiError::field(format!("line {line}"), m.clone()).into_response();
    }
    let accepted = d.records.len();
    if let Err(r) = super::store(&s, &sink, d.records).await {
        return r;
    }
    let rejected: Vec<serde_json::Value> =
        d.rejected.iter().map(|(l, m)| serde_json::json!({ "line": l, "error": m })).collect();
    axum::Json(serde_json::json!({ "accepted": accepted, "rejected": rejected })).into_response()
}
