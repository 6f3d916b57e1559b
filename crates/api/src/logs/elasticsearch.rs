//! The subset of the Elasticsearch API that log shippers use to write: `_bulk` (and
//! `{index}/_bulk`) with `index` and `create` actions and Elasticsearch's per-item answers,
//! plus the handshake the shippers and official clients make first (`GET /` with a version
//! and the `X-Elastic-Product` header the clients check, and the template, ILM and index
//! calls some send at start-up). Served under `/elasticsearch/` on the console port.
//!
//! Each document becomes a record through [`super::record_from_json`]; its index name is
//! kept as the `es.index` attribute, and when the document names no service the index name
//! does (Fluent Bit, Logstash and rsyslog are commonly set to one index per service).

use super::{BadRequest, Decoded, MAX_LINE, MAX_RECORDS, record_from_json};
use serde_json::{Value, json};
use signalbox_core::span::KeyValue;

/// The version this node reports: shippers pick their request format from it (8.x: no
/// mapping types).
pub const VERSION: &str = "8.11.0";

/// What one `_bulk` item was and how it ended, for the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub action: &'static str,
    pub index: String,
    pub id: Option<String>,
    /// `None`: accepted; `Some((status, type, reason))`: refused.
    pub error: Option<(u16, &'static str, String)>,
}

/// A decoded bulk body: the records to store and one item per action, in order (the
/// records belong to the accepted items, in the same order).
#[derive(Debug, Default)]
pub struct Bulk {
    pub decoded: Decoded,
    pub items: Vec<Item>,
}

/// Decodes an NDJSON `_bulk` body; `default_index` comes from the URL (`{index}/_bulk`).
pub fn decode_bulk(body: &[u8], default_index: Option<&str>, now: u64) -> Result<Bulk, BadRequest> {
    let mut out = Bulk::default();
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(action_line) = lines.next() {
        if out.items.len() >= MAX_RECORDS {
            return Err(BadRequest(format!("more than {MAX_RECORDS} actions in one request; send smaller batches")));
        }
        let action: Value = serde_json::from_slice(action_line)
            .map_err(|e| BadRequest(format!("action line {} is not valid JSON: {e}", out.items.len() + 1)))?;
        let Some((name, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return Err(BadRequest(format!(
                "action line {} must be an object like {{\"index\":{{}}}}",
                out.items.len() + 1
            )));
        };
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| default_index.map(str::to_owned))
            .unwrap_or_default();
        let id = meta.get("_id").and_then(Value::as_str).map(str::to_owned);
        let (action, has_source): (&'static str, bool) = match name.as_str() {
            "index" => ("index", true),
            "create" => ("create", true),
            "update" => ("update", true),
            "delete" => ("delete", false),
            other => return Err(BadRequest(format!("unknown bulk action `{other}`: expected index or create"))),
        };
        let source = if has_source {
            Some(lines.next().ok_or_else(|| {
                BadRequest(format!("the `{action}` action on line {} has no document", out.items.len() + 1))
            })?)
        } else {
            None
        };
        let mut item = Item { action, index: index.clone(), id, error: None };
        if action == "update" || action == "delete" {
            item.error = Some((
                400,
                "action_request_validation_exception",
                format!("`{action}` is not supported: logs are append-only"),
            ));
            out.items.push(item);
            continue;
        }
        if index.is_empty() {
            item.error = Some((400, "action_request_validation_exception", "index is missing".into()));
            out.items.push(item);
            continue;
        }
        let source = source.unwrap_or_default();
        if source.len() > MAX_LINE + 64 * 1024 {
            item.error = Some((
                413,
                "document_too_large",
                format!("the document is {} bytes; the limit is {MAX_LINE}", source.len()),
            ));
            out.items.push(item);
            continue;
        }
        match serde_json::from_slice::<Value>(source) {
            Ok(Value::Object(doc)) => match record_from_json(&doc, now) {
                Ok(mut r) => {
                    if r.service.is_empty() {
                        r.service = index.clone();
                    }
                    r.attributes.push(KeyValue::str("es.index", index));
                    out.decoded.records.push(r);
                }
                Err(m) => item.error = Some((400, "mapper_parsing_exception", m)),
            },
            Ok(_) => item.error = Some((400, "mapper_parsing_exception", "the document must be a JSON object".into())),
            Err(e) => {
                item.error = Some((400, "mapper_parsing_exception", format!("failed to parse the document: {e}")))
            }
        }
        out.items.push(item);
    }
    Ok(out)
}

/// The `_bulk` answer Elasticsearch gives, items in request order.
pub fn bulk_answer(items: &[Item], took_ms: u64, first_seq_no: u64) -> Value {
    let mut seq = first_seq_no;
    let list: Vec<Value> = items
        .iter()
        .map(|it| {
            let id = it.id.clone().unwrap_or_else(|| {
                seq += 1;
                format!("sbx{seq:016x}")
            });
            let body = match &it.error {
                None => {
                    seq += 1;
                    json!({
                        "_index": it.index, "_id": id, "_version": 1, "result": "created",
                        "_shards": { "total": 1, "successful": 1, "failed": 0 },
                        "_seq_no": seq, "_primary_term": 1, "status": 201,
                    })
                }
                Some((status, kind, reason)) => json!({
                    "_index": it.index, "_id": id, "status": status,
                    "error": { "type": kind, "reason": reason },
                }),
            };
            json!({ it.action: body })
        })
        .collect();
    json!({ "took": took_ms, "errors": items.iter().any(|i| i.error.is_some()), "items": list })
}

/// `GET /` (under the prefix): who this is, in the shape the clients check.
pub fn info(node_name: &str) -> Value {
    json!({
        "name": node_name,
        "cluster_name": "signalbox",
        "cluster_uuid": "c2lnbmFsYm94LWxvZ3M",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "signalbox",
            "build_hash": "0000000",
            "build_date": "2026-01-01T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "9.8.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0"
        },
        "tagline": "You Know, for Search"
    })
}

/// The routes under `/elasticsearch`: the handshake, `_bulk`, and the start-up calls
/// shippers make (templates, ILM policies, index creation), acknowledged since the log
/// store needs no mappings. Every answer carries `X-Elastic-Product: Elasticsearch`, which
/// the official clients check.
pub(crate) fn router() -> axum::Router<crate::AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(root).head(root))
        .route("/_bulk", post(bulk).put(bulk))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route("/_license", get(license))
        .route("/_cluster/health", get(health))
        .route("/_xpack", get(xpack))
        .route("/_index_template/{name}", get(acknowledged).put(acknowledged).head(exists).post(acknowledged))
        .route("/_template/{name}", get(acknowledged).put(acknowledged).head(exists).post(acknowledged))
        .route("/_component_template/{name}", get(acknowledged).put(acknowledged).head(exists))
        .route("/_ilm/policy/{name}", get(acknowledged).put(acknowledged))
        .route("/_data_stream/{name}", get(acknowledged).put(acknowledged))
        .route("/{index}", axum::routing::put(acknowledged).head(exists).get(index_info))
        .layer(axum::middleware::map_response(product_header))
}

pub(crate) async fn product_header(mut r: axum::response::Response) -> axum::response::Response {
    r.headers_mut().insert("x-elastic-product", axum::http::HeaderValue::from_static("Elasticsearch"));
    r
}

pub(crate) async fn root(axum::extract::State(s): axum::extract::State<crate::AppState>) -> axum::Json<Value> {
    axum::Json(info(&s.node_name))
}

async fn license() -> axum::Json<Value> {
    axum::Json(json!({ "license": { "status": "active", "type": "basic", "uid": "signalbox" } }))
}

async fn health() -> axum::Json<Value> {
    axum::Json(
        json!({ "cluster_name": "signalbox", "status": "green", "number_of_nodes": 1, "number_of_data_nodes": 1, "timed_out": false }),
    )
}

async fn xpack() -> axum::Json<Value> {
    axum::Json(
        json!({ "build": { "hash": "0000000" }, "license": { "status": "active", "type": "basic" }, "features": {} }),
    )
}

async fn acknowledged() -> axum::Json<Value> {
    axum::Json(json!({ "acknowledged": true }))
}

async fn exists() -> axum::http::StatusCode {
    axum::http::StatusCode::OK
}

async fn index_info(axum::extract::Path(index): axum::extract::Path<String>) -> axum::Json<Value> {
    axum::Json(
        json!({ index: { "aliases": {}, "mappings": {}, "settings": { "index": { "number_of_shards": "1" } } } }),
    )
}

async fn bulk(
    state: axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    bulk_into(state, None, headers, body).await
}

async fn bulk_index(
    state: axum::extract::State<crate::AppState>,
    axum::extract::Path(index): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    bulk_into(state, Some(index), headers, body).await
}

/// Elasticsearch's error shape, which shippers log and some parse.
fn es_error(status: axum::http::StatusCode, kind: &str, reason: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(json!({ "error": { "root_cause": [{ "type": kind, "reason": reason }], "type": kind, "reason": reason }, "status": status.as_u16() })))
        .into_response()
}

async fn bulk_into(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
    index: Option<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let started = std::time::Instant::now();
    let sink = match super::sink(&s, &headers) {
        Ok(x) => x,
        Err(e) => {
            let kind =
                if e.status == StatusCode::UNAUTHORIZED { "security_exception" } else { "illegal_state_exception" };
            return es_error(e.status, kind, &e.message);
        }
    };
    let raw = match super::body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return es_error(e.status, "parse_exception", &e.message),
    };
    let _budget = match super::reserve_json(&raw) {
        Ok(p) => p,
        Err(e) => return es_error(e.status, "es_rejected_execution_exception", &e.message),
    };
    let b = match decode_bulk(&raw, index.as_deref(), signalbox_core::time::unix_nanos()) {
        Ok(b) => b,
        Err(BadRequest(m)) => return es_error(StatusCode::BAD_REQUEST, "illegal_argument_exception", &m),
    };
    drop(_budget);
    if let Err(r) = super::store(&s, &sink, b.decoded.records).await {
        // The whole request failed: shippers retry it (429 is Elasticsearch's own answer).
        let status = r.status();
        return es_error(status, "es_rejected_execution_exception", "the log store is busy; retry later");
    }
    let took = started.elapsed().as_millis() as u64;
    axum::Json(bulk_answer(&b.items, took, signalbox_core::time::unix_nanos() / 1000)).into_response()
}
