//! Downstream listeners: plain TCP (HTTP/1.1 and h2c prior knowledge, detected per
//! connection) and TLS (ALPN), with a connection limit and graceful drain.

use crate::proxy::{self, ConnInfo, Shared};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use signalbox_core::shutdown::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound listeners, ready to serve.
pub struct Listeners {
    pub plain: TcpListener,
    pub tls: Option<(TcpListener, TlsAcceptor)>,
}

impl Listeners {
    pub fn plain_addr(&self) -> std::io::Result<SocketAddr> {
        self.plain.local_addr()
    }
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }
}

/// Settings fixed for the life of a listener.
#[derive(Clone)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub h2_keepalive_interval: Duration,
    pub h2_max_concurrent_streams: u32,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// hyper's own limit on header bytes; set above the gateway's limit so the gateway
    /// answers oversize headers itself with a JSON 431.
    pub parser_max_buf: usize,
    pub parser_max_headers: usize,
}

fn builder(s: &ServeSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
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

/// Serves both listeners until `shutdown`, then drains in-flight requests for up to the
/// drain timeout.
pub async fn serve(
    shared: Arc<Shared>,
    listeners: Listeners,
    settings: ServeSettings,
    shutdown: Shutdown,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let builder = Arc::new(builder(&settings));
    let limit = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let mut tasks = Vec::new();
    let plain = accept_loop(
        shared.clone(),
        listeners.plain,
        None,
        builder.clone(),
        limit.clone(),
        graceful.clone(),
        shutdown.clone(),
    );
    tasks.push(tokio::spawn(plain));
    if let Some((l, acceptor)) = listeners.tls {
        tasks.push(tokio::spawn(accept_loop(
            shared,
            l,
            Some(acceptor),
            builder,
            limit,
            graceful.clone(),
            shutdown,
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Every accept loop has returned its clone, so this is the only reference left.
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    tracing::info!(timeout = ?settings.drain_timeout, "gateway draining connections");
    match tokio::time::timeout(settings.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("gateway drained"),
        Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limit: Arc<Semaphore>,
    graceful: Arc<GracefulShutdown>,
    mut shutdown: Shutdown,
) {
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
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
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo {
            client,
            tls: tls.is_some(),
        });
        let shared = shared.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| proxy::handle(shared.clone(), conn.clone(), req));
            match tls {
                None => serve_io(&builder, TokioIo::new(stream), svc, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_io(&builder, TokioIo::new(s), svc, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_io<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::body::ClientBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(io, svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Binds a plain listener; `SO_REUSEADDR` lets a restarted node take its port back at once.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad address {addr}"),
        )
    })?;
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.set_nodelay(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}
