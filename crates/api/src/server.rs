//! The HTTP server under every API port (console and APIs, Consul, OTLP/HTTP and gRPC,
//! Zipkin), with the limits that keep one client from exhausting the node:
//!
//! - a cap on open connections per listener and per client address ([`ConnLimits`]), so a
//!   flood on one port cannot use up the process's file descriptors or lock out others;
//! - a header-read deadline that starts at accept, and an idle timeout between requests
//!   (a connection with a request in progress is never idle: long polls and SSE streams stay
//!   open for their own documented wait);
//! - an idle timeout on request bodies (a client that stops sending mid-body is cut off);
//! - a cap on requests per keep-alive connection (`Connection: close` on the last one).
//!
//! Every listener is served by [`serve`]; handlers see the client's address as axum's
//! `ConnectInfo<SocketAddr>`.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use signalbox_core::conn_limit::ConnLimits;
use signalbox_core::shutdown::Shutdown;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower_service::Service;

/// The limits of one API listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most open connections on this listener.
    pub max_connections: usize,
    /// Most open connections from one client address (0: unlimited).
    pub max_connections_per_ip: usize,
    /// Time from accept (or from the end of the previous request) to a complete request head.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection with no request in progress stays open.
    pub idle_timeout: Duration,
    /// Time a request body may go without data before the request fails.
    pub body_idle_timeout: Duration,
    /// Requests served on one HTTP/1 connection before it is closed (0: unlimited).
    pub max_requests_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_connections_per_ip: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(30),
            max_requests_per_connection: 10_000,
        }
    }
}

/// Largest request head the API ports parse.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` under `limits` until `shutdown`, then lets in-flight requests
/// finish for a few seconds.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, mut shutdown: Shutdown) -> std::io::Result<()> {
    // Preparing the routes once: a `Router` that is not prepared rebuilds every route for
    // each connection (~90 KB each for the console's router).
    let app: Router = app.with_state(());
    let conns = ConnLimits::new(limits.max_connections, limits.max_connections_per_ip);
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&limits));
    let limits = Arc::new(limits);
    loop {
        let slot = tokio::select! {
            _ = shutdown.wait() => break,
            s = conns.slot() => match s { Some(s) => s, None => break },
        };
        let (stream, client) = tokio::select! {
            _ = shutdown.wait() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = conns.admit(slot, client.ip()) else {
            tracing::debug!(%client, "closing a connection over the per-address limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn::new());
        let svc = ConnService { app: app.clone(), client, conn: conn.clone(), limits: limits.clone() };
        let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
        let served = graceful.watch(served);
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            watch_idle(served, &conn, &limits).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
    Ok(())
}

fn builder(l: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(l.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    b
}

/// What the idle watchdog reads about one connection.
struct Conn {
    active: AtomicU32,
    /// Milliseconds since `born` when the connection last became idle.
    idle_since_ms: AtomicU64,
    served: AtomicU32,
    born: Instant,
}

impl Conn {
    fn new() -> Self {
        Conn {
            active: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicU32::new(0),
            born: Instant::now(),
        }
    }
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }
}

/// Closes the connection once it has had no request in progress for the header-read
/// timeout (before its first request) or the idle timeout (between requests). hyper's own
/// header timeout covers HTTP/1 heads; this covers HTTP/2 and idle keep-alives too.
async fn watch_idle<F>(served: F, conn: &Conn, limits: &Limits)
where
    F: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    tokio::pin!(served);
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut check = tokio::time::interval(tick);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = &mut served => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "API connection ended with an error");
                }
                return;
            }
            _ = check.tick() => {
                if conn.active.load(Ordering::Acquire) > 0 {
                    continue;
                }
                let limit = if conn.served.load(Ordering::Relaxed) == 0 { limits.header_read_timeout } else { limits.idle_timeout };
                let idle_for = conn.now_ms().saturating_sub(conn.idle_since_ms.load(Ordering::Relaxed));
                if idle_for >= limit.as_millis() as u64 {
                    tracing::debug!("closing an idle API connection");
                    return;
                }
            }
        }
    }
}

/// The per-connection service: counts the request as active until its response body is
/// done, puts the client address in the request, and watches the request body.
#[derive(Clone)]
struct ConnService {
    app: Router,
    client: SocketAddr,
    conn: Arc<Conn>,
    limits: Arc<Limits>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let active = Active::new(self.conn.clone());
        let n = self.conn.served.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.limits.max_requests_per_connection > 0 && n >= self.limits.max_requests_per_connection;
        let idle = self.limits.body_idle_timeout;
        let mut app = self.app.clone();
        let client = self.client;
        Box::pin(async move {
            let mut req = req.map(|b| Body::new(IdleBody::new(b, idle)));
            req.extensions_mut().insert(ConnectInfo(client));
            let resp = match app.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (mut parts, body) = resp.into_parts();
            if last && parts.version < http::Version::HTTP_2 {
                parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(Response::from_parts(parts, Body::new(Tracked { inner: body, _active: active })))
        })
    }
}

/// Marks a request in progress on its connection until dropped.
struct Active(Arc<Conn>);

impl Active {
    fn new(c: Arc<Conn>) -> Self {
        c.active.fetch_add(1, Ordering::AcqRel);
        Active(c)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as active.
struct Tracked {
    inner: Body,
    _active: Active,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when no data arrives for `idle`.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        IdleBody { inner, idle, timer: None }
    }
}

/// The error a stalled request body ends with.
#[derive(Debug)]
pub struct BodyStalled(pub Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request body data for {:?}", self.0)
    }
}

impl std::error::Error for BodyStalled {}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let t = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match t.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }
    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}
