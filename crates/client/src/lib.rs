//! A Rust client for a Signalbox node's native API.
//!
//! - [`Client::register`] registers an instance and returns a [`Registration`] that refreshes
//!   its TTL check in the background and deregisters when dropped or
//!   [`Registration::deregister`]ed.
//! - [`Client::discover`] returns a [`Discovery`]: a cache of a service's endpoints kept
//!   current by a blocking-query loop; it keeps the last known endpoints while the node is
//!   unreachable and reconnects with backoff.
//! - [`Client::config_get`], [`Client::config_put`] and [`Client::config_watch`] read, write
//!   and follow central configuration.
//! - [`RemoteEndpoints`] is an [`EndpointSource`] over a remote registry, for a gateway run
//!   apart from its control plane.
//!
//! # Layout
//! Everything is in this file: the HTTP plumbing ([`Client::request`]), then registration,
//! discovery, configuration and the endpoint source.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};
use signalbox_core::discovery::{EndpointInfo, EndpointSet, EndpointSource};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the node: {0}")]
    Transport(String),
    /// The node answered with an error: status, `code` and message from its JSON body.
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A connection to one node, or to several nodes that share their control state (etcd),
/// of which it follows one and moves to the next when that one fails.
///
/// Clones share the node they follow: when one request finds the node gone, every clone
/// moves with it.
#[derive(Clone)]
pub struct Client {
    bases: Arc<Vec<String>>,
    /// Index into `bases` of the node followed now.
    current: Arc<AtomicUsize>,
    token: Option<String>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    /// Longest a blocking query waits on the node before it returns unchanged.
    block_wait: Duration,
}

/// Blocking query wait with one node: as long as the node allows.
const BLOCK_WAIT: Duration = Duration::from_secs(30);
/// Blocking query wait with several nodes: a node that hangs (rather than closing the
/// connection) is given up after this plus [`BLOCK_GRACE`].
const FAILOVER_BLOCK_WAIT: Duration = Duration::from_secs(10);
/// How much longer than its wait a blocking query may take before the node counts as gone.
const BLOCK_GRACE: Duration = Duration::from_secs(5);

impl Client {
    /// `base` like `http://127.0.0.1:9900`; `token` is sent as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self::with_failover(&[base.to_owned()], token)
    }

    /// A client of several nodes sharing one control state (etcd), in order of
    /// preference: requests go to one; a connection error, a timeout, a broken answer or a
    /// 502/503/504 moves it (and its clones) to the next, and the request is tried there
    /// at once. Writes are tried elsewhere only when the connection could not be made (so
    /// a write is never applied twice). Blocking queries resume on the new node from the
    /// same index: with etcd the index is the revision, the same on every node.
    pub fn with_failover(bases: &[String], token: Option<String>) -> Self {
        let bases: Vec<String> = bases.iter().map(|b| b.trim_end_matches('/').to_owned()).collect();
        let block_wait = if bases.len() > 1 { FAILOVER_BLOCK_WAIT } else { BLOCK_WAIT };
        Client {
            bases: Arc::new(bases),
            current: Arc::new(AtomicUsize::new(0)),
            token,
            http: HttpClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http(),
            timeout: Duration::from_secs(10),
            block_wait,
        }
    }

    /// The node followed now.
    pub fn base(&self) -> &str {
        let n = self.bases.len().max(1);
        self.bases.get(self.current.load(Ordering::Relaxed) % n).map(String::as_str).unwrap_or("")
    }

    /// Every node this client may follow.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Sets how long a plain request may take (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `?index=N&wait=..s` and the client-side timeout of a blocking query.
    fn blocking(&self, index: u64) -> (String, Duration) {
        (format!("index={index}&wait={}s", self.block_wait.as_secs()), self.block_wait + BLOCK_GRACE)
    }

    /// Sends a request and decodes a JSON answer (`Value::Null` for an empty body).
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        self.request_with(method, path, body, self.timeout).await.map(|(_, v)| v)
    }

    /// Sends to the node followed now; on a failure that means the node is gone, moves to
    /// the next node and tries there, once per node.
    async fn request_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(http::HeaderMap, Value)> {
        let n = self.bases.len();
        let mut attempt = 0;
        loop {
            let at = self.current.load(Ordering::Relaxed) % n.max(1);
            let base = self.bases.get(at).map(String::as_str).unwrap_or("");
            let (result, connect_failed) = self.send_to(base, method.clone(), path, body.as_ref(), timeout).await;
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let idempotent = matches!(method, Method::GET | Method::HEAD);
            let node_gone = match &err {
                Error::Transport(_) => connect_failed || idempotent,
                Error::Api { status, .. } => idempotent && matches!(status, 502..=504),
                Error::Decode(_) => false,
            };
            attempt += 1;
            if n < 2 || !node_gone || attempt >= n {
                return Err(err);
            }
            let next = (at + 1) % n;
            // Only the first request to see the node fail moves the clones; the others
            // find them moved and simply retry on the new node.
            if self.current.compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                tracing::warn!(from = base, to = %self.bases[next], error = %err, "control plane node failed; following the next one");
            }
        }
    }

    /// One request to one node; also says whether the connection could not be made.
    async fn send_to(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> (Result<(http::HeaderMap, Value)>, bool) {
        let mut connect_failed = false;
        let r = self.send_once(base, method, path, body, timeout, &mut connect_failed).await;
        (r, connect_failed)
    }

    async fn send_once(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
        connect_failed: &mut bool,
    ) -> Result<(http::HeaderMap, Value)> {
        let mut b = Request::builder().method(method).uri(format!("{base}{path}"));
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = b.body(Full::new(bytes)).map_err(|e| Error::Transport(e.to_string()))?;
        let fut = async {
            let resp = self.http.request(req).await.map_err(|e| {
                *connect_failed = e.is_connect();
                Error::Transport(format!("{e:?}"))
            })?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
            Ok::<_, Error>((parts.status, parts.headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::Transport(format!("no answer within {timeout:?}")))??;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        if status.is_success() {
            Ok((headers, value))
        } else {
            Err(Error::Api {
                status: status.as_u16(),
                code: value["code"].as_str().unwrap_or("error").to_owned(),
                message: value["error"].as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()),
            })
        }
    }

    /// Registers an instance described as the native API expects (`service`, `address`,
    /// `port`, optional `id`, `tags`, `meta`, `checks`). A TTL check, if any, is refreshed at
    /// a third of its TTL for as long as the [`Registration`] lives.
    pub async fn register(&self, instance: Value) -> Result<Registration> {
        let ttl = instance["checks"]
            .as_array()
            .and_then(|c| c.iter().find_map(|c| c["ttl"].as_str()))
            .and_then(|t| signalbox_core::config::parse_duration(t).ok());
        let v = self.request(Method::POST, "/api/registry/instances", Some(instance)).await?;
        let id = v["id"].as_str().ok_or_else(|| Error::Decode("no id in the registration".into()))?.to_owned();
        let refresher = ttl.map(|ttl| {
            let (c, id) = (self.clone(), id.clone());
            tokio::spawn(async move {
                let every = (ttl / 3).max(Duration::from_millis(50));
                loop {
                    if let Err(e) = c.ttl_pass(&id).await {
                        tracing::warn!(instance = %id, error = %e, "TTL refresh failed");
                    }
                    tokio::time::sleep(every).await;
                }
            })
        });
        Ok(Registration { client: self.clone(), id, refresher, done: false })
    }

    /// Reports the instance's TTL check as passing.
    pub async fn ttl_pass(&self, id: &str) -> Result<()> {
        self.request(Method::PUT, &format!("/api/registry/instances/{id}/ttl"), Some(json!({ "status": "passing" })))
            .await
            .map(|_| ())
    }

    pub async fn deregister(&self, id: &str) -> Result<()> {
        self.request(Method::DELETE, &format!("/api/registry/instances/{id}"), None).await.map(|_| ())
    }

    /// Every service with instance counts by health.
    pub async fn services(&self) -> Result<Value> {
        self.request(Method::GET, "/api/registry/services", None).await
    }

    /// Instances of a service.
    pub async fn instances(&self, service: &str, passing_only: bool) -> Result<Value> {
        let q = if passing_only { "?passing=true" } else { "" };
        self.request(Method::GET, &format!("/api/registry/services/{service}{q}"), None).await
    }

    /// A service's usable endpoints after `index` changes (blocking query).
    pub async fn endpoints_after(&self, service: &str, index: u64) -> Result<(u64, Vec<EndpointInfo>)> {
        let (q, timeout) = self.blocking(index);
        let path = format!("/api/registry/services/{service}/endpoints?{q}");
        let (_, v) = self.request_with(Method::GET, &path, None, timeout).await?;
        #[derive(Deserialize)]
        struct Eps {
            index: u64,
            endpoints: Vec<EndpointInfo>,
        }
        let e: Eps = serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))?;
        Ok((e.index, e.endpoints))
    }

    /// Follows a service's endpoints; see [`Discovery`].
    pub fn discover(&self, service: &str) -> Discovery {
        let (tx, rx) = watch::channel(Arc::new(Vec::new()));
        let task = tokio::spawn(follow(self.clone(), service.to_owned(), tx));
        Discovery { rx, task }
    }

    /// The latest value of a config key.
    pub async fn config_get(&self, app: &str, profile: &str, key: &str) -> Result<Value> {
        self.request(Method::GET, &format!("/api/config/{app}/{profile}/{key}"), None).await
    }

    /// Writes a config value; `expected_version` makes it a compare-and-set.
    pub async fn config_put(
        &self,
        app: &str,
        profile: &str,
        key: &str,
        value: &str,
        comment: &str,
        expected_version: Option<u64>,
    ) -> Result<Value> {
        let mut body = json!({ "value": value, "comment": comment });
        if let Some(v) = expected_version {
            body["expected_version"] = json!(v);
        }
        self.request(Method::PUT, &format!("/api/config/{app}/{profile}/{key}"), Some(body)).await
    }

    pub async fn config_history(&self, app: &str, profile: &str, key: &str) -> Result<Value> {
        self.request(Method::GET, &format!("/api/config/{app}/{profile}/{key}/history"), None).await
    }

    pub async fn config_diff(&self, app: &str, profile: &str, key: &str, from: u64, to: u64) -> Result<Value> {
        self.request(Method::GET, &format!("/api/config/{app}/{profile}/{key}/diff?from={from}&to={to}"), None).await
    }

    pub async fn config_rollback(&self, app: &str, profile: &str, key: &str, to: u64, comment: &str) -> Result<Value> {
        self.request(
            Method::POST,
            &format!("/api/config/{app}/{profile}/{key}/rollback"),
            Some(json!({ "to_version": to, "comment": comment })),
        )
        .await
    }

    /// Waits for config changes after `index` (optionally for one application and profile).
    /// Returns the new index and the changes (empty when the wait ended without any).
    pub async fn config_changes(
        &self,
        index: u64,
        app: Option<&str>,
        profile: Option<&str>,
    ) -> Result<(u64, Vec<Value>)> {
        let (q, timeout) = self.blocking(index);
        let mut path = format!("/api/config/watch?{q}");
        if let Some(a) = app {
            path.push_str(&format!("&application={a}"));
        }
        if let Some(p) = profile {
            path.push_str(&format!("&profile={p}"));
        }
        let (_, v) = self.request_with(Method::GET, &path, None, timeout).await?;
        let idx = v["index"].as_u64().unwrap_or(index);
        Ok((idx, v["changes"].as_array().cloned().unwrap_or_default()))
    }

    /// Follows config changes: each change (with the new value) arrives on the channel.
    pub fn config_watch(&self, app: Option<String>, profile: Option<String>) -> tokio::sync::mpsc::Receiver<Value> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let c = self.clone();
        tokio::spawn(async move {
            let mut index = match c.request(Method::GET, "/api/config", None).await {
                Ok(v) => v["index"].as_u64().unwrap_or(0),
                Err(_) => 0,
            };
            let mut backoff = Backoff::new();
            loop {
                match c.config_changes(index, app.as_deref(), profile.as_deref()).await {
                    Ok((i, changes)) => {
                        backoff.reset();
                        index = i;
                        for ch in changes {
                            let (a, p, k) = (
                                ch["application"].as_str().unwrap_or(""),
                                ch["profile"].as_str().unwrap_or(""),
                                ch["key"].as_str().unwrap_or(""),
                            );
                            let value =
                                c.config_get(a, p, k).await.ok().map(|v| v["value"].clone()).unwrap_or(Value::Null);
                            let mut ch = ch.clone();
                            ch["value"] = value;
                            if tx.send(ch).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(_) => backoff.wait().await,
                }
            }
        });
        rx
    }
}

/// Exponential backoff with jitter, 100 ms to 10 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
    async fn wait(&mut self) {
        let jitter = self.0.mul_f64(0.5 + (signalbox_core::time::unix_nanos() % 1000) as f64 / 2000.0);
        tokio::time::sleep(jitter).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
    }
}

/// A registered instance. Dropping it deregisters in the background; call
/// [`deregister`](Self::deregister) to wait for it.
pub struct Registration {
    client: Client,
    pub id: String,
    refresher: Option<tokio::task::JoinHandle<()>>,
    done: bool,
}

impl Registration {
    pub async fn deregister(mut self) -> Result<()> {
        self.done = true;
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        self.client.deregister(&self.id).await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        if !self.done {
            let (c, id) = (self.client.clone(), self.id.clone());
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ = c.deregister(&id).await;
                });
            }
        }
    }
}

/// A live view of a service's endpoints.
pub struct Discovery {
    rx: watch::Receiver<EndpointSet>,
    task: tokio::task::JoinHandle<()>,
}

impl Discovery {
    /// The current endpoints (empty until the first answer).
    pub fn endpoints(&self) -> EndpointSet {
        self.rx.borrow().clone()
    }
    /// Waits for the next change.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
    pub fn receiver(&self) -> watch::Receiver<EndpointSet> {
        self.rx.clone()
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps `tx` equal to the service's endpoints. Errors keep the last known set (never an
/// empty table because the node is briefly unreachable) and retry with backoff.
async fn follow(c: Client, service: String, tx: watch::Sender<EndpointSet>) {
    let mut index = 0;
    let mut backoff = Backoff::new();
    loop {
        match c.endpoints_after(&service, index).await {
            Ok((i, eps)) => {
                backoff.reset();
                // An index that went backwards means the node restarted: start over.
                index = if i < index { 0 } else { i };
                tx.send_if_modified(|cur| {
                    if **cur != eps {
                        *cur = Arc::new(eps);
                        true
                    } else {
                        false
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(service, error = %e, "control plane unreachable; keeping the last known endpoints");
                backoff.wait().await;
            }
        }
    }
}

/// An [`EndpointSource`] that follows services on a remote Signalbox node.
pub struct RemoteEndpoints {
    client: Client,
    follows: Mutex<HashMap<String, Discovery>>,
}

impl RemoteEndpoints {
    pub fn new(client: Client) -> Self {
        RemoteEndpoints { client, follows: Mutex::new(HashMap::new()) }
    }
}

impl EndpointSource for RemoteEndpoints {
    fn subscribe(&self, service: &str) -> Option<watch::Receiver<EndpointSet>> {
        let mut f = self.follows.lock().unwrap_or_else(|e| e.into_inner());
        let d = f.entry(service.to_owned()).or_insert_with(|| self.client.discover(service));
        Some(d.receiver())
    }
}

/// Whether an error means "try again later" rather than "you asked for something wrong".
pub fn retryable(e: &Error) -> bool {
    match e {
        Error::Transport(_) => true,
        Error::Api { status, .. } => *status >= 500 || *status == StatusCode::TOO_MANY_REQUESTS.as_u16(),
        Error::Decode(_) => false,
    }
}
