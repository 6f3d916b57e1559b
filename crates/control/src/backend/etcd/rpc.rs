//! The part of etcd's v3 gRPC API the backend uses (KV range and txn, watch, leases,
//! authentication), as prost messages written from etcd's `rpc.proto` and `kv.proto`
//! (package `etcdserverpb`, field numbers as there), and a client over a tonic channel.
//!
//! Written by hand rather than taken from the `etcd-client` crate: its build script compiles
//! etcd's `.proto` files with `tonic-prost-build`, which needs a `protoc` binary on every
//! machine that builds the workspace and adds prost-build's dependency tree, for eleven
//! messages. The gRPC health check in [`crate::registry::health`] is done the same way.

use http::uri::PathAndQuery;
use std::sync::RwLock;
use std::time::Duration;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// 0 put, 1 delete.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    pub revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "request_op::Request", tags = "2, 3")]
    pub request: Option<request_op::Request>,
}

pub mod request_op {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Request {
        #[prost(message, tag = "2")]
        Put(super::PutRequest),
        #[prost(message, tag = "3")]
        DeleteRange(super::DeleteRangeRequest),
    }
}

/// `Compare.CompareTarget`: CREATE.
pub const TARGET_CREATE: i32 = 1;
/// `Compare.CompareTarget`: MOD.
pub const TARGET_MOD: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    /// 0 is EQUAL.
    #[prost(int32, tag = "1")]
    pub result: i32,
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "compare::Target", tags = "5, 6")]
    pub target_union: Option<compare::Target>,
}

pub mod compare {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Target {
        #[prost(int64, tag = "5")]
        CreateRevision(i64),
        #[prost(int64, tag = "6")]
        ModRevision(i64),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub start_revision: i64,
    #[prost(bool, tag = "4")]
    pub progress_notify: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchProgressRequest {}

/// A watch stream request: create a watch, or ask for a progress notification (etcd 3.4+),
/// which etcd answers with the revision up to which every event has been sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchRequest {
    #[prost(message, optional, tag = "1")]
    pub create_request: Option<WatchCreateRequest>,
    #[prost(message, optional, tag = "3")]
    pub progress_request: Option<WatchProgressRequest>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "3")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantResponse {
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    #[prost(string, tag = "4")]
    pub error: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRevokeRequest {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRevokeResponse {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseKeepAliveRequest {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseKeepAliveResponse {
    #[prost(int64, tag = "2")]
    pub id: i64,
    /// 0 once the lease is gone.
    #[prost(int64, tag = "3")]
    pub ttl: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub password: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthenticateResponse {
    #[prost(string, tag = "2")]
    pub token: String,
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// A client of one etcd cluster: unary calls time out after `timeout`; with credentials,
/// every call carries the token from `Authenticate`, renewed when etcd refuses it.
pub struct Client {
    channel: Channel,
    credentials: Option<(String, String)>,
    token: RwLock<Option<String>>,
    pub timeout: Duration,
}

/// A failed call, worded for the operator.
pub type RpcError = String;

impl Client {
    pub fn new(channel: Channel, credentials: Option<(String, String)>, timeout: Duration) -> Self {
        Client { channel, credentials, token: RwLock::new(None), timeout }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(t) = self.token.read().unwrap_or_else(|e| e.into_inner()).as_ref()
            && let Ok(v) = t.parse()
        {
            req.metadata_mut().insert("token", v);
        }
        req
    }

    async fn authenticate(&self) -> Result<(), RpcError> {
        let Some((name, password)) = self.credentials.clone() else { return Ok(()) };
        let resp: AuthenticateResponse = self
            .raw_unary("/etcdserverpb.Auth/Authenticate", tonic::Request::new(AuthenticateRequest { name, password }))
            .await
            .map_err(|s| format!("authentication failed: {}", s.message()))?;
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = Some(resp.token);
        Ok(())
    }

    async fn raw_unary<Q, R>(&self, path: &'static str, req: tonic::Request<Q>) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Clone + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        // The balanced channel can hand a call to a member that is down (its connection is
        // re-dialled lazily); a failed connect sent nothing, so the call is tried again (on
        // another member once the balancer has seen this one fail) within the same timeout.
        // Found by scripts/cluster-test.sh: with an etcd member killed, writes failed with
        // "tcp connect error" although the other two members had a quorum.
        let (meta, _, msg) = req.into_parts();
        let call = async {
            let mut backoff = Duration::from_millis(20);
            loop {
                let mut grpc = tonic::client::Grpc::new(self.channel.clone());
                let attempt = async {
                    grpc.ready().await.map_err(|e| tonic::Status::unavailable(error_chain(&e)))?;
                    let req = tonic::Request::from_parts(meta.clone(), tonic::Extensions::default(), msg.clone());
                    grpc.unary(req, PathAndQuery::from_static(path), ProstCodec::<Q, R>::default()).await
                };
                match attempt.await {
                    Err(s) if s.code() == tonic::Code::Unavailable && never_sent(&s) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                    r => return r,
                }
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map(|r| r.into_inner()),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// A unary call; with credentials, authenticates first and again once if the token
    /// expired.
    pub async fn unary<Q, R>(&self, path: &'static str, msg: Q) -> Result<R, RpcError>
    where
        Q: prost::Message + Clone + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        if self.credentials.is_some() && self.token.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            self.authenticate().await?;
        }
        match self.raw_unary(path, self.request(msg.clone())).await {
            Err(s) if s.code() == tonic::Code::Unauthenticated && self.credentials.is_some() => {
                self.authenticate().await?;
                self.raw_unary(path, self.request(msg)).await.map_err(|s| status_text(&s))
            }
            r => r.map_err(|s| status_text(&s)),
        }
    }

    /// A bidirectional stream (watch, lease keep-alive): `outbound` feeds the requests.
    pub async fn stream<Q, R>(
        &self,
        path: &'static str,
        outbound: tokio::sync::mpsc::Receiver<Q>,
    ) -> Result<tonic::Streaming<R>, RpcError>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        if self.credentials.is_some() {
            self.authenticate().await?;
        }
        let req = self.request(ReceiverStream(outbound));
        let call = async {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(error_chain(&e)))?;
            grpc.streaming(req, PathAndQuery::from_static(path), ProstCodec::<Q, R>::default()).await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map(|r| r.into_inner()).map_err(|s| status_text(&s)),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    pub async fn range(
        &self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: i64,
        revision: i64,
    ) -> Result<RangeResponse, RpcError> {
        self.unary("/etcdserverpb.KV/Range", RangeRequest { key, range_end, limit, revision }).await
    }

    pub async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, RpcError> {
        self.unary("/etcdserverpb.KV/Txn", txn).await
    }

    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> Result<TxnResponse, RpcError> {
        let op = RequestOp { request: Some(request_op::Request::Put(PutRequest { key, value, lease })) };
        self.txn(TxnRequest { compare: vec![], success: vec![op], failure: vec![] }).await
    }

    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, RpcError> {
        let r: LeaseGrantResponse = self.unary("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest { ttl }).await?;
        if !r.error.is_empty() {
            return Err(r.error);
        }
        Ok(r)
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<(), RpcError> {
        let _: LeaseRevokeResponse = self.unary("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest { id }).await?;
        Ok(())
    }
}

/// An mpsc receiver as a stream of requests.
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_util::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// An `Unavailable` from failing to connect: the request never left this node.
fn never_sent(s: &tonic::Status) -> bool {
    let text = format!("{} {:?}", s.message(), std::error::Error::source(s).map(error_chain));
    text.contains("connect error") || text.contains("Connection refused")
}

fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
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
