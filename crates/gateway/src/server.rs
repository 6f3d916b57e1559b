//! Downstream listeners and the worker threads that serve them.
//!
//! The gateway runs one single-threaded tokio runtime per worker thread (one per CPU by
//! default), the model nginx and Envoy use: each worker has its own listening socket on the
//! shared address (`SO_REUSEPORT`, so the kernel spreads connections), its own upstream
//! connection pools and its own telemetry buffers. A request never crosses threads, which
//! removes the futex wake-ups that dominated a work-stealing runtime's profile (see
//! docs/benchmarks.md). Plain listeners speak HTTP/1.1 and h2c prior knowledge, detected
//! per connection; TLS listeners negotiate by ALPN.
//!
//! [`conn`] holds what the server knows about a connection (the client address, whether a
//! request is in progress) and [`parse_error`] the JSON answers for requests hyper cannot
//! parse. The request path ([`crate::proxy`]) sees a connection only as a
//! [`crate::proxy::Downstream`] (client address, TLS), so it never depends on the server.

pub mod conn;
pub mod parse_error;

use crate::proxy::{self, Shared};
use conn::{ActiveGuard, CapSlot, ConnCap, ConnInfo, Counted};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use parse_error::JsonParseErrors;
use signalbox_core::conn_limit::ConnLimits;
use signalbox_core::shutdown::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const TELEMETRY_FLUSH: Duration = Duration::from_millis(50);

/// Bound listening sockets: one per worker for each listener, all on the same address.
pub struct Listeners {
    pub plain_addr: SocketAddr,
    plain: Vec<std::net::TcpListener>,
    tls: Option<(SocketAddr, Vec<std::net::TcpListener>, TlsAcceptor)>,
}

impl Listeners {
    pub fn plain_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.plain_addr)
    }
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|(a, _, _)| *a)
    }
}

/// Settings fixed for the life of the listeners.
#[derive(Clone)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub h2_keepalive_interval: Duration,
    pub h2_max_concurrent_streams: u32,
    pub max_connections: usize,
    /// Most connections from one client address (0: unlimited).
    pub max_connections_per_ip: usize,
    pub drain_timeout: Duration,
    /// hyper's own limit on header bytes; set above the gateway's limit so the gateway
    /// answers oversize headers itself with a JSON 431.
    pub parser_max_buf: usize,
    pub parser_max_headers: usize,
    /// Plain-text HTTP/1.1 goes through [`crate::fast`] (else through hyper).
    pub http1_fast: bool,
}

/// Binds `workers` sockets on `addr` (port 0 picks one free port for all of them).
pub async fn bind_many(addr: &str, workers: usize) -> std::io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let mut addr: SocketAddr = addr
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr}")))?;
    // SO_REUSEPORT would let this process share the port with another that already listens
    // there (requests would then alternate between the two). A probe bound without it fails
    // when anyone listens on the address, and also picks the port when asked for port 0.
    {
        let probe = bind_socket(addr, false)?;
        addr = probe.local_addr()?;
    }
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let l = bind_one(addr, true)?;
        addr = l.local_addr()?;
        out.push(l.into_std()?);
    }
    Ok((addr, out))
}

fn bind_one(addr: SocketAddr, reuseport: bool) -> std::io::Result<TcpListener> {
    bind_socket(addr, reuseport)?.listen(4096)
}

fn bind_socket(addr: SocketAddr, reuseport: bool) -> std::io::Result<tokio::net::TcpSocket> {
    let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    if reuseport {
        sock.set_reuseport(true)?;
    }
    sock.set_nodelay(true)?;
    sock.bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(e.kind(), format!("{addr} is already in use by another process"))
        } else {
            e
        }
    })?;
    Ok(sock)
}

/// Binds a single listener (for the console and APIs, which run on the main runtime).
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr}")))?;
    bind_one(addr, false)
}

impl Listeners {
    pub fn new(
        plain: (SocketAddr, Vec<std::net::TcpListener>),
        tls: Option<(SocketAddr, Vec<std::net::TcpListener>, TlsAcceptor)>,
    ) -> Self {
        Listeners { plain_addr: plain.0, plain: plain.1, tls }
    }
}

fn builder(s: &ServeSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // No `header_read_timeout`: hyper arms a boxed timer for every request with it,
        // which cost ~20% of throughput; the per-connection watchdog in `serve_io` enforces
        // the same bound with one timer per connection.
        .header_read_timeout(None::<Duration>)
        .max_buf_size(s.parser_max_buf)
        .max_headers(s.parser_max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(s.h2_keepalive_interval)
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .max_header_list_size((s.parser_max_buf as u32).max(16 * 1024));
    b
}

/// Runs one worker thread per listening socket until `shutdown`, then drains in-flight
/// requests for up to the drain timeout.
pub async fn serve(shared: Arc<Shared>, listeners: Listeners, settings: ServeSettings, shutdown: Shutdown) {
    // The total cap is `ConnCap`'s (exact across workers); `ConnLimits` keeps the per-address
    // share, with a total it never reaches.
    let cap = ConnCap::new(settings.max_connections);
    let limit = ConnLimits::new(settings.max_connections.saturating_add(1), settings.max_connections_per_ip);
    let mut tls_sockets = listeners
        .tls
        .map(|(_, socks, acceptor)| socks.into_iter().map(move |s| (s, acceptor.clone())).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut done = Vec::new();
    for (i, plain) in listeners.plain.into_iter().enumerate() {
        let tls = if tls_sockets.is_empty() { None } else { Some(tls_sockets.remove(0)) };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (shared, settings, shutdown, limit, cap) =
            (shared.clone(), settings.clone(), shutdown.clone(), limit.clone(), cap.clone());
        let spawned = std::thread::Builder::new().name(format!("gateway-{i}")).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(worker(shared, plain, tls, settings, (limit, cap), shutdown)),
                Err(e) => tracing::error!(error = %e, "cannot start a gateway worker runtime"),
            }
            let _ = tx.send(());
        });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => tracing::error!(error = %e, "cannot start a gateway worker thread"),
        }
    }
    for d in done {
        let _ = d.await;
    }
    shared.telemetry.flush_all();
}

async fn worker(
    shared: Arc<Shared>,
    plain: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, TlsAcceptor)>,
    settings: ServeSettings,
    (limit, cap): (ConnLimits, ConnCap),
    shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&settings));
    let to_tokio = |l: std::net::TcpListener| l.set_nonblocking(true).and_then(|_| TcpListener::from_std(l));
    let plain = match to_tokio(plain) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "cannot adopt a listening socket"),
    };
    let tls = match tls.map(|(l, a)| to_tokio(l).map(|l| (l, a))).transpose() {
        Ok(t) => t,
        Err(e) => return tracing::error!(error = %e, "cannot adopt a TLS listening socket"),
    };
    let tel = shared.telemetry.clone();
    let flusher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TELEMETRY_FLUSH);
        loop {
            tick.tick().await;
            tel.flush_local();
        }
    });
    let cx = WorkerCtx {
        shared: &shared,
        builder: &builder,
        limit: &limit,
        cap: &cap,
        graceful: &graceful,
        header_timeout: settings.header_read_timeout,
        max_head: settings.parser_max_buf,
        fast: settings.http1_fast.then(|| {
            Arc::new(crate::fast::ConnSettings {
                header_timeout: settings.header_read_timeout,
                max_head: settings.parser_max_buf,
            })
        }),
    };
    let a = accept_loop(&cx, plain, None, shutdown.clone());
    let b = async {
        if let Some((l, acceptor)) = tls {
            accept_loop(&cx, l, Some(acceptor), shutdown.clone()).await;
        }
    };
    tokio::join!(a, b);
    match tokio::time::timeout(settings.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::debug!("gateway worker drained"),
        Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
    flusher.abort();
    shared.telemetry.flush_local();
}

/// What every accept loop of a worker shares.
struct WorkerCtx<'a> {
    shared: &'a Arc<Shared>,
    builder: &'a Arc<auto::Builder<TokioExecutor>>,
    limit: &'a ConnLimits,
    cap: &'a ConnCap,
    graceful: &'a GracefulShutdown,
    header_timeout: Duration,
    max_head: usize,
    /// Set when plain-text connections start on the HTTP/1 fast path.
    fast: Option<Arc<crate::fast::ConnSettings>>,
}

async fn accept_loop(cx: &WorkerCtx<'_>, listener: TcpListener, tls: Option<TlsAcceptor>, mut shutdown: Shutdown) {
    let WorkerCtx { shared, builder, limit, cap, graceful, header_timeout, max_head, ref fast } = *cx;
    loop {
        // Accept first, then take a slot under the shared cap: exact however many workers
        // share it, and a connection over it is refused at once instead of waiting unseen
        // in a backlog.
        let (stream, client) = tokio::select! {
            _ = shutdown.wait() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(place) = cap.try_take() else {
            tracing::debug!(%client, "refusing a connection over the connection cap");
            refuse_over_cap(stream, tls.is_none());
            continue;
        };
        // Never waits: the total under `ConnLimits` is above the cap.
        let Some(slot) = limit.slot().await else { return };
        let Some(permit) = limit.admit(slot, client.ip()) else {
            tracing::debug!(%client, "closing a connection over the per-address limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo::new(client, tls.is_some()));
        let shared = shared.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let idle = header_timeout;
        let fast = if tls.is_none() { fast.clone() } else { None };
        let conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit: (_, CapSlot) = (permit, place);
            let info = conn.clone();
            // The fast path serves the connection first; what it hands over, hyper serves.
            let stream = match fast {
                None => stream,
                Some(settings) => {
                    let peer = proxy::Downstream { addr: conn.client, tls: false };
                    match crate::fast::serve(stream, peer, &shared, &settings, conn_shutdown).await {
                        crate::fast::Ended::Closed => return,
                        crate::fast::Ended::Handoff(stream, prefix) => {
                            // The watchdog's idle clock starts now, not at accept.
                            info.idle_since.store(crate::clock::now(), std::sync::atomic::Ordering::Relaxed);
                            let svc = hyper_service(shared, conn);
                            let io = crate::fast::Rewind::new(prefix, stream);
                            let io = JsonParseErrors::new(TokioIo::new(io), info.clone(), max_head);
                            Box::pin(serve_io(&builder, io, svc, watcher, &info, idle)).await;
                            return;
                        }
                    }
                }
            };
            let svc = hyper_service(shared, conn);
            // Boxed, as the hand-off above: hyper's connection future is large, and the
            // fast path's idle connections should not carry its size in their task.
            Box::pin(async move {
                match tls {
                    None => {
                        serve_io(
                            &builder,
                            JsonParseErrors::new(TokioIo::new(stream), info.clone(), max_head),
                            svc,
                            watcher,
                            &info,
                            idle,
                        )
                        .await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => {
                                serve_io(
                                    &builder,
                                    JsonParseErrors::new(TokioIo::new(s), info.clone(), max_head),
                                    svc,
                                    watcher,
                                    &info,
                                    idle,
                                )
                                .await
                            }
                            Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                        }
                    }
                }
            })
            .await;
        });
    }
}

/// Most connections being refused at once (each is answered and drained for a moment);
/// past it, a refused connection is closed without an answer.
const MAX_REFUSING: usize = 256;
static REFUSING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// How long a refused connection is drained so that the answer is not lost to a reset.
const REFUSE_LINGER: Duration = Duration::from_millis(500);

/// Refuses a connection over the cap: a plain-text one gets the gateway's JSON 503 (written
/// before its request is read, with `connection: close`), then its side is closed; a TLS one
/// is closed (nothing can be said before the handshake).
fn refuse_over_cap(stream: tokio::net::TcpStream, plain: bool) {
    use std::sync::atomic::Ordering;
    if !plain || REFUSING.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        if plain {
            REFUSING.fetch_sub(1, Ordering::Relaxed);
        }
        return;
    }
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let e = crate::error::GatewayError::too_many_connections();
        let bytes = parse_error::raw_response(&e, &signalbox_core::ids::TraceId::random().to_hex());
        let _ = tokio::time::timeout(REFUSE_LINGER, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
            // What the client sent meanwhile is read and dropped until it closes too.
            let mut sink = vec![0u8; 2048];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
        REFUSING.fetch_sub(1, Ordering::Relaxed);
    });
}

/// The service hyper calls for each request of a connection.
fn hyper_service(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Counted>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<http::Response<Counted>, std::convert::Infallible>> + Send,
> + Send
+ 'static {
    service_fn(move |req| {
        let (shared, conn) = (shared.clone(), conn.clone());
        async move {
            let guard = ActiveGuard::new(conn.clone());
            let peer = proxy::Downstream { addr: conn.client, tls: conn.tls };
            let resp = proxy::handle(shared, peer, req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|body| Counted { body, _guard: guard }))
        }
    })
}

/// Serves one connection, closing it when it has been idle (no request in progress) for
/// `idle`: that bounds both idle keep-alive connections and clients that dribble headers.
async fn serve_io<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
    info: &ConnInfo,
    idle: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Counted>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = watcher.watch(builder.serve_connection_with_upgrades(io, svc).into_owned());
    tokio::pin!(conn);
    let mut check = tokio::time::interval((idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = crate::clock::nanos(idle);
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = check.tick() => {
                let idle_for = crate::clock::now().saturating_sub(info.idle_since.load(std::sync::atomic::Ordering::Relaxed));
                if info.active.load(std::sync::atomic::Ordering::Relaxed) == 0 && idle_for >= limit {
                    tracing::debug!(client = %info.client, "closing idle connection");
                    return;
                }
            }
        }
    }
}
