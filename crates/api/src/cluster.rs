//! Queries over several storage nodes (etcd deployments): a query on any node asks every
//! storage node in parallel, merges what they hold with what this node holds, and says in
//! the answer which nodes did not answer.
//!
//! Each node answers its peers from its own data only, through internal endpoints under
//! `/internal/cluster/v1/` ([`internal`]); the asking node evaluates the query over the
//! merged raw data, so results are exact even when one series, stream or trace is split
//! over two nodes (after its partition moved):
//!
//! - PromQL reads a [`merged::ClusterQueryable`]: every selector the engine evaluates
//!   fetches the selected raw series of the range from every node and merges them by
//!   labels and time before the engine sees them.
//! - LogQL reads the matching raw records of every node, merged by time; metric queries
//!   (`count_over_time`, `rate`, ...) run on the merged records.
//! - Traces: spans of an id from every node; a search asks every node for matching ids,
//!   then fetches those traces whole and summarises them here.
//!
//! A node that fails or does not answer within [`Cluster::timeout`] makes the answer
//! partial, never silently: the protocol's own warning field names it and the partitions
//! it last owned, and the header `X-Signalbox-Partial` lists the missing nodes.
//!
//! A single node (no etcd) has no [`Cluster`] and never fans out.
//!
//! # Layout
//! - this module: [`Cluster`] (the peers and the HTTP client), [`Partial`] (who did not
//!   answer), and `GET /api/cluster` (members, storage nodes, who owns which partition).
//! - [`config`]: the `[cluster]` section.
//! - [`internal`]: the internal endpoints and their authentication.
//! - [`wire`]: what the internal endpoints carry (series, records, spans).
//! - [`merged`]: merging: the cluster-wide PromQL queryable, spans, records.

pub mod config;
pub mod internal;
pub mod merged;
pub mod wire;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use signalbox_control::partitions::{Partitions, StorageNode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The header that lists the nodes missing from a partial answer.
pub const PARTIAL_HEADER: &str = "x-signalbox-partial";
/// Largest answer read from one peer.
pub const MAX_PEER_ANSWER: usize = 256 * 1024 * 1024;

/// This node's view of the storage nodes and how it reaches them.
pub struct Cluster {
    partitions: Arc<Partitions>,
    /// Sent to peers as a bearer token, and accepted from them.
    token: Option<String>,
    /// Longest wait for one peer's answer.
    pub timeout: Duration,
    client: Client<HttpConnector, Body>,
}

/// A storage node that did not answer, and why.
#[derive(Clone, Debug)]
pub struct Failure {
    pub node: String,
    pub address: String,
    pub partitions: Vec<u32>,
    pub error: String,
}

/// The nodes that did not answer one query (shared by the parts of one query).
#[derive(Clone, Default)]
pub struct Partial(Arc<Mutex<Vec<Failure>>>);

impl Partial {
    pub fn add(&self, f: Failure) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !v.iter().any(|x| x.node == f.node) {
            v.push(f);
        }
    }

    pub fn failures(&self) -> Vec<Failure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_partial(&self) -> bool {
        !self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// One sentence per missing node, for the protocol's warning field.
    pub fn warnings(&self) -> Vec<String> {
        self.failures()
            .iter()
            .map(|f| {
                let parts = if f.partitions.is_empty() {
                    "none recorded".to_owned()
                } else {
                    f.partitions.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                };
                format!(
                    "partial result: storage node {} ({}) did not answer: {}; data it holds is missing (partitions it last owned: {parts})",
                    f.node, f.address, f.error
                )
            })
            .collect()
    }

    /// Adds the partial-result header to `r` when a node was missing.
    pub fn mark(&self, mut r: Response) -> Response {
        let nodes: Vec<String> = self.failures().into_iter().map(|f| f.node).collect();
        if !nodes.is_empty()
            && let Ok(v) = HeaderValue::from_str(&nodes.join(","))
        {
            r.headers_mut().insert(PARTIAL_HEADER, v);
        }
        r
    }

    /// `body` as JSON with `warnings` added (when partial) and the header set.
    pub fn json(&self, mut body: serde_json::Value) -> Response {
        if self.is_partial()
            && let Some(o) = body.as_object_mut()
        {
            let mut w: Vec<serde_json::Value> =
                o.get("warnings").and_then(|w| w.as_array()).cloned().unwrap_or_default();
            w.extend(self.warnings().into_iter().map(serde_json::Value::String));
            o.insert("warnings".into(), serde_json::Value::Array(w));
        }
        self.mark(axum::Json(body).into_response())
    }
}

/// `GET /api/cluster` (read role).
pub fn reads() -> axum::Router<crate::AppState> {
    axum::Router::new().route("/api/cluster", axum::routing::get(status))
}

async fn status(axum::extract::State(s): axum::extract::State<crate::AppState>) -> Response {
    let Some(c) = &s.cluster else {
        return axum::Json(serde_json::json!({ "clustered": false })).into_response();
    };
    let p = c.partitions();
    let owned: Vec<u32> = p.owned().borrow().iter().copied().collect();
    let assignment: serde_json::Map<String, serde_json::Value> =
        p.assignment().into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect();
    axum::Json(serde_json::json!({
        "clustered": true,
        "node": p.node(),
        "partitions": p.count(),
        "owned": owned,
        "members": p.members(),
        "assignment": assignment,
        "storage_nodes": p.storage_nodes().iter().map(|n| serde_json::json!({
            "node": n.node, "address": n.address, "partitions": n.partitions, "updated_unix_ms": n.updated_unix_ms,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

impl Cluster {
    pub fn new(partitions: Arc<Partitions>, token: Option<String>, timeout: Duration) -> Arc<Cluster> {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(conn);
        Arc::new(Cluster { partitions, token, timeout, client })
    }

    pub fn partitions(&self) -> &Arc<Partitions> {
        &self.partitions
    }

    /// The token peers must present, when one is configured.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Every storage node but this one. A record under another name with this node's
    /// address is this node too (a node restarted without a fixed `node_name` gets a new
    /// one): asking it would count this node's data twice.
    pub fn peers(&self) -> Vec<StorageNode> {
        let (me, here) = (self.partitions.node(), self.partitions.address());
        self.partitions.storage_nodes().into_iter().filter(|n| n.node != me && n.address != here).collect()
    }

    /// Posts `body` (JSON) to `path` on every peer at once; returns the answers of those
    /// that answered 200 in time and records the others in `partial`.
    pub async fn ask_all(&self, path: &str, body: Bytes, partial: &Partial) -> Vec<(String, Bytes)> {
        let peers = self.peers();
        let calls = peers.into_iter().map(|peer| {
            let body = body.clone();
            async move {
                let r = tokio::time::timeout(self.timeout, self.ask(&peer.address, path, body)).await;
                let r = match r {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {:?}", self.timeout)),
                };
                (peer, r)
            }
        });
        let mut out = Vec::new();
        for (peer, r) in futures_util::future::join_all(calls).await {
            match r {
                Ok(b) => out.push((peer.node, b)),
                Err(error) => {
                    tracing::warn!(node = %peer.node, address = %peer.address, %error, "a storage node did not answer a query");
                    partial.add(Failure { node: peer.node, address: peer.address, partitions: peer.partitions, error });
                }
            }
        }
        out
    }

    async fn ask(&self, address: &str, path: &str, body: Bytes) -> Result<Bytes, String> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", address.trim_end_matches('/')))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Body::from(body)).map_err(|e| format!("bad request to {address}: {e}"))?;
        let resp = self.client.request(req).await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_PEER_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        if status != http::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("answered {status}: {text}"));
        }
        Ok(body)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
