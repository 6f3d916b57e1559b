//! A gRPC echo service written against tonic's server and client APIs by hand (no protoc):
//! `test.Echo/Unary` answers one message, `test.Echo/Chat` echoes a bidirectional stream, and
//! a message with `fail_code` set makes `Unary` answer that status instead.

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic_prost::ProstCodec;

/// The message both methods use.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoMsg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub seq: u32,
    /// When non-zero, `Unary` fails with this gRPC status code.
    #[prost(int32, tag = "3")]
    pub fail_code: i32,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type MsgStream = Pin<Box<dyn Stream<Item = Result<EchoMsg, tonic::Status>> + Send>>;

/// The echo service. It also answers the gRPC health-checking protocol
/// (`grpc.health.v1.Health/Check`) with `SERVING` while `serving` is true.
#[derive(Clone)]
pub struct Echo {
    pub calls: Arc<AtomicUsize>,
    pub serving: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Echo {
    fn default() -> Self {
        Echo { calls: Arc::default(), serving: Arc::new(std::sync::atomic::AtomicBool::new(true)) }
    }
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse` (1 = SERVING, 2 = NOT_SERVING).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

struct Health(bool);
impl tower::Service<tonic::Request<HealthCheckRequest>> for Health {
    type Response = tonic::Response<HealthCheckResponse>;
    type Error = tonic::Status;
    type Future = BoxFut<Result<Self::Response, tonic::Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let status = if self.0 { 1 } else { 2 };
        Box::pin(async move { Ok(tonic::Response::new(HealthCheckResponse { status })) })
    }
}

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

struct Unary;
impl tower::Service<tonic::Request<EchoMsg>> for Unary {
    type Response = tonic::Response<EchoMsg>;
    type Error = tonic::Status;
    type Future = BoxFut<Result<Self::Response, tonic::Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: tonic::Request<EchoMsg>) -> Self::Future {
        let msg = req.into_inner();
        Box::pin(async move {
            if msg.fail_code != 0 {
                return Err(tonic::Status::new(tonic::Code::from(msg.fail_code), "asked to fail"));
            }
            Ok(tonic::Response::new(EchoMsg { text: format!("echo: {}", msg.text), seq: msg.seq, fail_code: 0 }))
        })
    }
}

struct Chat;
impl tower::Service<tonic::Request<tonic::Streaming<EchoMsg>>> for Chat {
    type Response = tonic::Response<MsgStream>;
    type Error = tonic::Status;
    type Future = BoxFut<Result<Self::Response, tonic::Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: tonic::Request<tonic::Streaming<EchoMsg>>) -> Self::Future {
        let inbound = req.into_inner();
        Box::pin(async move {
            let out: MsgStream = Box::pin(
                inbound.map(|m| m.map(|m| EchoMsg { text: format!("re: {}", m.text), seq: m.seq, fail_code: 0 })),
            );
            Ok(tonic::Response::new(out))
        })
    }
}

impl<B> tower::Service<http::Request<B>> for Echo
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match req.uri().path() {
            "/test.Echo/Unary" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoMsg, EchoMsg>::default());
                Ok(grpc.unary(Unary, req).await)
            }),
            "/grpc.health.v1.Health/Check" => {
                let serving = self.serving.load(Ordering::SeqCst);
                Box::pin(async move {
                    let mut grpc =
                        tonic::server::Grpc::new(ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default());
                    Ok(grpc.unary(Health(serving), req).await)
                })
            }
            "/test.Echo/Chat" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoMsg, EchoMsg>::default());
                Ok(grpc.streaming(Chat, req).await)
            }),
            _ => Box::pin(async { Ok(tonic::Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// The same service under the health service's name, so tonic's router sends
/// `grpc.health.v1.Health/*` to it.
#[derive(Clone)]
struct HealthRoute(Echo);

impl NamedService for HealthRoute {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl<B> tower::Service<http::Request<B>> for HealthRoute
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<http::Request<B>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.0.call(req)
    }
}

/// A running gRPC server.
pub struct Server {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    /// What its health service answers.
    pub serving: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the echo service on a free loopback port.
pub async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = Echo::default();
    let calls = echo.calls.clone();
    let serving = echo.serving.clone();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let task = tokio::spawn(async move {
        let health = HealthRoute(echo.clone());
        let _ = tonic::transport::Server::builder()
            .add_service(echo)
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
    });
    Server { addr, calls, serving, task }
}

/// A client of the echo service at `url` (e.g. the gateway's address).
pub struct Client {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let channel =
            tonic::transport::Endpoint::from_shared(url.to_owned()).expect("url").connect().await.expect("connect");
        Client { grpc: tonic::client::Grpc::new(channel) }
    }

    pub async fn unary(&mut self, msg: EchoMsg) -> Result<EchoMsg, tonic::Status> {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/test.Echo/Unary");
        Ok(self.grpc.unary(tonic::Request::new(msg), path, ProstCodec::default()).await?.into_inner())
    }

    /// Opens the bidirectional stream fed by `input`.
    pub async fn chat(
        &mut self,
        input: impl Stream<Item = EchoMsg> + Send + 'static,
    ) -> Result<tonic::Streaming<EchoMsg>, tonic::Status> {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/test.Echo/Chat");
        Ok(self.grpc.streaming(tonic::Request::new(input), path, ProstCodec::default()).await?.into_inner())
    }
}
