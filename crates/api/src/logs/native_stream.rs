//! `GET /api/logs/stream`: a search whose matches are sent as they are found, one JSON
//! object per line (`application/x-ndjson`), for clients that want the first lines of a wide
//! search before the whole window is read. Matches come in scan order: the in-memory head
//! first, then sealed blocks newest first (so roughly newest first; late-arriving records are
//! not re-sorted, which `GET /api/logs` does). Each line is a record as `GET /api/logs`
//! gives it (with `highlights`); the last line is `{"done": true, "stats": {...}}`, or
//! `{"error": {...}}` when the search stopped on a limit, so a client always knows whether it
//! saw everything. A slow reader slows the scan (the channel is bounded), never the node.

use super::native_query::{highlights, parse_query, record_json, search_error, store, window};
use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// Most records one stream sends.
const MAX_STREAM: usize = 100_000;
/// Lines that may wait for a slow reader before the scan pauses.
const CHANNEL: usize = 256;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct StreamParams {
    query: String,
    start: Option<String>,
    end: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn stream(State(s): State<AppState>, Query(p): Query<StreamParams>) -> Result<Response, ApiError> {
    let logs = store(&s)?.clone();
    let q = parse_query(&p.query)?;
    if q.aggregation.is_some() {
        return Err(ApiError::field("query", "an aggregation (`| ...`) goes to /api/logs/aggregate"));
    }
    let (start, end) = window(p.start.as_deref(), p.end.as_deref(), p.since.as_deref())?;
    let limit = p.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_STREAM {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_STREAM}")));
    }
    let (max_bytes, timeout) = logs.query_limits();
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(CHANNEL);
    tokio::task::spawn_blocking(move || {
        let mut sent = 0usize;
        let filter = q.filter;
        let result = logs.scan(&filter, start, end, max_bytes, timeout, |r| {
            let mut v = record_json(r);
            v["highlights"] = json!(highlights(&filter, &r.body));
            if tx.blocking_send(v.to_string() + "\n").is_err() {
                return false; // the client went away
            }
            sent += 1;
            sent < limit
        });
        let last = match result {
            Ok(stats) => json!({
                "done": true,
                "sent": sent,
                "stats": { "blocks": stats.blocks_total, "blocks_skipped": stats.blocks_skipped, "blocks_read": stats.blocks_read, "bytes_scanned": stats.bytes_scanned },
            }),
            Err(e) => {
                let err = search_error(e);
                json!({ "done": false, "sent": sent, "error": { "code": err.code, "message": err.message } })
            }
        };
        let _ = tx.blocking_send(last.to_string() + "\n");
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(line)), rx))
    });
    Ok((
        [(http::header::CONTENT_TYPE, "application/x-ndjson"), (http::header::CACHE_CONTROL, "no-store")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}
