//! `/v1/kv/*`: key/value entries, and `/v1/txn`: atomic batches of KV operations.

use super::*;
use base64::Engine;
use signalbox_control::kv::txn::{MAX_OPS, TxnOp, TxnOutcome};

pub(super) fn kv_json(e: &signalbox_control::kv::KvEntry) -> Value {
    json!({
        "LockIndex": 0,
        "Key": e.key,
        "Flags": e.flags,
        "Value": if e.value_b64.is_empty() { Value::Null } else { Value::String(e.value_b64.clone()) },
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    })
}

pub(super) async fn kv_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    key: Option<Path<String>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Read)?;
    let key = key.map(|Path(k)| k).unwrap_or_default();
    let q = Q::parse(q);
    let kv = s.control.kv.clone();
    let recurse = q.flag("recurse");
    let keys = q.0.contains_key("keys");
    let current = || {
        if recurse || keys {
            kv.list(&key).iter().map(|e| e.modify_index).max().unwrap_or(0).max(1)
        } else {
            kv.get(&key).map(|e| e.modify_index).unwrap_or(1)
        }
    };
    let idx = match q.num("index")? {
        Some(after) if after > 0 => {
            // KV blocking queries wake on any index change but only return once the watched
            // keys changed (or the wait ends), as Consul's do.
            wait_for(&s.control.index, after, q.wait()?, current).await;
            s.control.index.current()
        }
        _ => s.control.index.current(),
    };
    if keys {
        let list = kv.keys(&key, q.get("separator"));
        if list.is_empty() {
            return Ok(indexed(idx, StatusCode::NOT_FOUND, Value::Null).into_response_empty());
        }
        return Ok(indexed(idx, StatusCode::OK, json!(list)));
    }
    if recurse {
        let list: Vec<Value> = kv.list(&key).iter().map(kv_json).collect();
        if list.is_empty() {
            return Ok(indexed(idx, StatusCode::NOT_FOUND, Value::Null).into_response_empty());
        }
        return Ok(indexed(idx, StatusCode::OK, Value::Array(list)));
    }
    match kv.get(&key) {
        None => Ok(indexed(idx, StatusCode::NOT_FOUND, Value::Null).into_response_empty()),
        Some(e) if q.0.contains_key("raw") => {
            let mut r = (StatusCode::OK, e.value()).into_response();
            for (k, v) in headers_for(idx) {
                r.headers_mut().insert(k, v);
            }
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            Ok(r)
        }
        Some(e) => Ok(indexed(idx, StatusCode::OK, json!([kv_json(&e)]))),
    }
}

pub(super) async fn kv_put(
    State(s): State<AppState>,
    headers: HeaderMap,
    key: Option<Path<String>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let key = key.map(|Path(k)| k).unwrap_or_default();
    if key.is_empty() {
        return Err(ApiError::field("key", "missing key name"));
    }
    let q = Q::parse(q);
    if q.0.contains_key("acquire") || q.0.contains_key("release") {
        return Err(ApiError::field("acquire", "sessions and locks are not supported"));
    }
    let ok = s.control.kv.put(&key, &body, q.num("flags")?.unwrap_or(0), q.num("cas")?).await?;
    Ok(Json(json!(ok)).into_response())
}

pub(super) async fn kv_delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    key: Option<Path<String>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    need(&s, &headers, Role::Edit)?;
    let key = key.map(|Path(k)| k).unwrap_or_default();
    let q = Q::parse(q);
    let ok = s.control.kv.delete(&key, q.flag("recurse"), q.num("cas")?).await?;
    Ok(Json(json!(ok)).into_response())
}

/// One operation of a `/v1/txn` body: only `KV` operations are supported.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TxnItem {
    #[serde(rename = "KV")]
    kv: Option<TxnKv>,
    node: Option<Value>,
    service: Option<Value>,
    check: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TxnKv {
    verb: String,
    key: String,
    /// Base64, as in Consul.
    value: Option<String>,
    flags: Option<u64>,
    index: Option<u64>,
    session: Option<String>,
}

fn txn_op(i: usize, item: TxnItem) -> Result<TxnOp, ApiError> {
    for (name, given) in
        [("Node", item.node.is_some()), ("Service", item.service.is_some()), ("Check", item.check.is_some())]
    {
        if given {
            return Err(ApiError::field(format!("[{i}].{name}"), "only KV operations are supported in transactions"));
        }
    }
    let Some(kv) = item.kv else { return Err(ApiError::field(format!("[{i}].KV"), "missing KV operation")) };
    let at = |f: &str| format!("[{i}].KV.{f}");
    let value = match kv.value.as_deref() {
        None | Some("") => Vec::new(),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| ApiError::field(at("Value"), "must be base64"))?,
    };
    let index = || kv.index.ok_or_else(|| ApiError::field(at("Index"), format!("required by verb {:?}", kv.verb)));
    let (key, flags) = (kv.key.clone(), kv.flags.unwrap_or(0));
    Ok(match kv.verb.as_str() {
        "set" => TxnOp::Set { key, value, flags },
        "cas" => TxnOp::Cas { key, value, flags, index: index()? },
        "get" => TxnOp::Get { key },
        "get-or-empty" => TxnOp::GetOrEmpty { key },
        "get-tree" => TxnOp::GetTree { prefix: key },
        "check-index" => TxnOp::CheckIndex { key, index: index()? },
        "check-not-exists" => TxnOp::CheckNotExists { key },
        "delete" => TxnOp::Delete { key },
        "delete-tree" => TxnOp::DeleteTree { prefix: key },
        "delete-cas" => TxnOp::DeleteCas { key, index: index()? },
        "lock" | "unlock" | "check-session" => {
            return Err(ApiError::field(at("Verb"), "sessions and locks are not supported"));
        }
        other => return Err(ApiError::field(at("Verb"), format!("unknown verb {other:?}"))),
    })
}

/// A transaction body as its operations.
pub(super) fn txn_ops(body: &[u8]) -> Result<Vec<TxnOp>, ApiError> {
    let items: Vec<TxnItem> = super::body(body)?;
    items.into_iter().enumerate().map(|(i, it)| txn_op(i, it)).collect()
}

/// `PUT /v1/txn`: KV operations applied atomically. 200 with `Results` when applied, 409
/// with `Errors` (by `OpIndex`) when rolled back.
pub(super) async fn txn(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let ops = txn_ops(&body)?;
    let writes = ops.iter().any(|o| {
        !matches!(
            o,
            TxnOp::Get { .. }
                | TxnOp::GetOrEmpty { .. }
                | TxnOp::GetTree { .. }
                | TxnOp::CheckIndex { .. }
                | TxnOp::CheckNotExists { .. }
        )
    });
    need(&s, &headers, if writes { Role::Edit } else { Role::Read })?;
    if ops.len() > MAX_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit_exceeded",
            format!("Transaction contains too many operations ({} > {MAX_OPS})", ops.len()),
        ));
    }
    match s.control.kv.txn(ops).await? {
        TxnOutcome::Applied { index, results } => {
            let results: Vec<Value> = results
                .iter()
                .map(|r| {
                    let mut e = kv_json(&r.entry);
                    if !r.with_value {
                        e["Value"] = Value::Null;
                    }
                    json!({ "KV": e })
                })
                .collect();
            let results = if results.is_empty() { Value::Null } else { Value::Array(results) };
            Ok(indexed(index, StatusCode::OK, json!({ "Results": results, "Errors": null })))
        }
        TxnOutcome::RolledBack(errors) => {
            let errors: Vec<Value> = errors.iter().map(|(i, what)| json!({ "OpIndex": i, "What": what })).collect();
            Ok(indexed(s.control.index.current(), StatusCode::CONFLICT, json!({ "Results": null, "Errors": errors })))
        }
    }
}
