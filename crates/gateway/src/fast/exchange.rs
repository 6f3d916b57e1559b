//! The fast path's side of a request ([`crate::proxy::Exchange`]): the body comes from the
//! client connection's buffer and socket, copied upstream as it was framed (a fixed length,
//! or chunked bytes checked on their way through), and a try goes out on a connection from
//! this worker's pool.

use super::buf::{ReadBuf, ReadFailure};
use super::pool::{self, UpConn};
use super::wire::{self, BadResponse, ResponseHead};
use crate::body::Fault;
use crate::error::GatewayError;
use crate::h1::chunked::Chunked;
use crate::h1::head::BodyFraming;
use crate::proxy::context::RequestCtx;
use crate::proxy::exchange::TryFailure;
use crate::proxy::{Admitted, Exchange, Prepared, UpstreamHead, should_buffer};
use crate::router::Route;
use crate::upstream::Endpoint;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection: its socket and what was read from it but not yet used.
pub(crate) struct ClientSide {
    pub stream: TcpStream,
    pub rb: ReadBuf,
}

enum Body {
    /// Not prepared yet.
    Unread,
    /// Buffered (or empty): every try sends it again.
    Replay(Option<Bytes>),
    /// Streamed from the client by the first try; `sent` once it was.
    Stream { sent: bool },
}

pub(crate) struct FastExchange<'a> {
    client: &'a mut ClientSide,
    framing: BodyFraming,
    expect_continue: bool,
    body: Body,
    fault: Option<Fault>,
    /// The request body has been read from the client to its end.
    pub body_done: bool,
    /// The client closed its connection while the request was in flight.
    pub abandoned: bool,
    /// The upstream answered (or stopped reading) before the whole body was sent to it.
    cut_short: bool,
    idle: Duration,
    limit: u64,
}

impl<'a> FastExchange<'a> {
    pub fn new(client: &'a mut ClientSide, framing: BodyFraming, expect_continue: bool) -> Self {
        let body_done = matches!(framing, BodyFraming::None | BodyFraming::Length(0));
        FastExchange {
            client,
            framing,
            expect_continue,
            body: Body::Unread,
            fault: None,
            body_done,
            abandoned: false,
            cut_short: false,
            idle: Duration::from_secs(60),
            limit: u64::MAX,
        }
    }

    /// Answers `100 Continue` when the client waits for it and its body is not here yet.
    async fn continue_if_asked(&mut self) -> Result<(), Fault> {
        if std::mem::take(&mut self.expect_continue) && self.client.rb.is_empty() {
            let w = self.client.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            if !matches!(tokio::time::timeout(self.idle, w).await, Ok(Ok(()))) {
                return Err(Fault::Broken);
            }
        }
        Ok(())
    }

    /// Reads more of the client's body.
    async fn fill_client(&mut self) -> Result<(), Fault> {
        match self.client.rb.fill(&mut self.client.stream, self.idle).await {
            Ok(_) => Ok(()),
            Err(ReadFailure::TimedOut) => Err(Fault::Stalled),
            Err(_) => Err(Fault::Broken),
        }
    }

    /// Reads a fixed-length body whole (it is small: the route buffers it for retries).
    async fn read_whole(&mut self, n: u64) -> Result<Bytes, Fault> {
        self.continue_if_asked().await?;
        let n = usize::try_from(n).map_err(|_| Fault::TooLarge)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.client.rb.is_empty() {
                self.fill_client().await?;
            }
            let take = (n - out.len()).min(self.client.rb.len());
            out.extend_from_slice(&self.client.rb.data()[..take]);
            self.client.rb.consume(take);
        }
        self.body_done = true;
        Ok(Bytes::from(out))
    }

    /// Copies the client's body to `up` as it is framed. `Err(Ok(fault))`: the client failed
    /// it; `Err(Err(()))`: the upstream connection did.
    async fn stream_body<W: AsyncWrite + Unpin>(&mut self, up: &mut W) -> Result<(), Result<Fault, ()>> {
        self.continue_if_asked().await.map_err(Ok)?;
        match self.framing {
            BodyFraming::None => {}
            BodyFraming::Length(n) => {
                let mut left = n;
                while left > 0 {
                    if self.client.rb.is_empty() {
                        self.fill_client().await.map_err(Ok)?;
                    }
                    let take = (self.client.rb.len() as u64).min(left) as usize;
                    write_up(up, &self.client.rb.data()[..take], self.idle).await?;
                    self.client.rb.consume(take);
                    left -= take as u64;
                }
            }
            BodyFraming::Chunked => {
                let mut checker = Chunked::default();
                let mut normal = Vec::new();
                loop {
                    if self.client.rb.is_empty() {
                        self.fill_client().await.map_err(Ok)?;
                    }
                    normal.clear();
                    let (used, done) =
                        checker.feed_normalised(self.client.rb.data(), &mut normal).map_err(|_| Ok(Fault::Broken))?;
                    if checker.data_len() > self.limit {
                        return Err(Ok(Fault::TooLarge));
                    }
                    write_up(up, &normal, self.idle).await?;
                    self.client.rb.consume(used);
                    if done {
                        break;
                    }
                }
            }
        }
        self.body_done = true;
        Ok(())
    }
}

/// How streaming a body upstream ended: its own result, or the upstream answered first.
enum Sending {
    Done(Result<(), Result<Fault, ()>>),
    Answered(Result<ResponseHead, ()>),
}

/// Reads from the upstream until a final response head (informational ones are skipped) while
/// the body is still being sent. `Err`: the response is not valid, or the upstream closed (or
/// reset) the connection without a head; the try is then a reset.
async fn early_answer<R: AsyncRead + Unpin>(rb: &mut ReadBuf, up: &mut R, is_head: bool) -> Result<ResponseHead, ()> {
    loop {
        match wire::parse_response(rb.data(), is_head) {
            Ok(Some(h)) if h.status == StatusCode::SWITCHING_PROTOCOLS => return Err(()),
            Ok(Some(h)) if h.status.is_informational() => rb.consume(h.len),
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {}
            Err(BadResponse) => return Err(()),
        }
        if rb.fill_unbounded(up).await.is_err() {
            // Whatever came before the close is parsed again after the body's result: a
            // write that failed on the same close reads the same bytes.
            return std::future::pending().await;
        }
    }
}

/// Most bytes buffered from a client while its request is in flight (pipelined requests);
/// past it, the client is not read until the response is written.
const MAX_PIPELINED: usize = 64 * 1024;

/// Completes when the client closes its connection (or it fails); what it sends meanwhile is
/// buffered.
async fn client_closes(client: &mut ClientSide) {
    loop {
        if client.rb.len() >= MAX_PIPELINED {
            return std::future::pending().await;
        }
        if client.rb.fill_unbounded(&mut client.stream).await.is_err() {
            return;
        }
    }
}

async fn write_up<W: AsyncWrite + Unpin>(up: &mut W, bytes: &[u8], idle: Duration) -> Result<(), Result<Fault, ()>> {
    match tokio::time::timeout(idle, up.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Err(())),
    }
}

/// An upstream response head, with the connection its body follows on.
pub(crate) struct FastResponse {
    pub head: ResponseHead,
    pub conn: UpConn,
    /// The endpoint whose pool the connection goes back to, and how many idle ones it keeps.
    pub endpoint: Arc<Endpoint>,
    pub max_idle: usize,
}

impl UpstreamHead for FastResponse {
    fn status(&self) -> StatusCode {
        self.head.status
    }
    fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }
    fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.head.headers
    }
}

/// How sending on one connection failed.
enum SendFailure {
    /// Nothing came back on a pooled connection the endpoint may have closed meanwhile:
    /// safe to send again on a new one when the body can be sent again.
    Stale,
    Try(TryFailure),
}

impl Exchange for FastExchange<'_> {
    type Response = FastResponse;

    async fn prepare_body(
        &mut self,
        _ctx: &mut RequestCtx,
        route: &Route,
        admitted: &Admitted,
        prepared: &Prepared,
    ) -> Result<(), GatewayError> {
        self.idle = route.timeouts.idle;
        self.limit = route.max_body;
        self.body = match self.framing {
            BodyFraming::None | BodyFraming::Length(0) => Body::Replay(None),
            BodyFraming::Length(n) if should_buffer(route, admitted, prepared) => {
                match tokio::time::timeout(route.timeouts.request, self.read_whole(n)).await {
                    Ok(Ok(b)) => Body::Replay(Some(b)),
                    Ok(Err(Fault::TooLarge)) => return Err(GatewayError::body_too_large(route.max_body)),
                    Ok(Err(Fault::Broken)) => return Err(GatewayError::request_body_broken()),
                    _ => return Err(GatewayError::request_body_timeout()),
                }
            }
            _ => Body::Stream { sent: false },
        };
        Ok(())
    }

    fn replayable(&self) -> bool {
        matches!(self.body, Body::Replay(_))
    }

    fn buffered_body(&self) -> Option<Option<Bytes>> {
        match &self.body {
            Body::Replay(b) => Some(b.clone()),
            Body::Unread | Body::Stream { .. } => None,
        }
    }

    async fn send(&mut self, route: &Route, ep: &Arc<Endpoint>, req: Request<()>) -> Result<FastResponse, TryFailure> {
        let (framing, replay) = match &mut self.body {
            Body::Replay(None) | Body::Unread => (BodyFraming::None, None),
            Body::Replay(Some(b)) => (BodyFraming::Length(b.len() as u64), Some(b.clone())),
            Body::Stream { sent: true } => return Err(TryFailure::Reset),
            Body::Stream { sent } => {
                *sent = true;
                (self.framing, None)
            }
        };
        let streamed = matches!(self.body, Body::Stream { .. });
        let mut head = Vec::with_capacity(1024);
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        wire::request_head(&mut head, req.method(), target, req.headers(), framing);
        if let Some(b) = &replay {
            head.extend_from_slice(b);
        }
        let is_head = req.method() == http::Method::HEAD;
        let address = ep.info.address.as_str();
        let cfg = &route.upstream.config;
        let mut fresh_only = false;
        loop {
            let pooled = if fresh_only { None } else { pool::take(address, cfg.pool_idle_timeout.0) };
            let mut conn = match pooled {
                Some(c) => c,
                None => pool::connect(address, route.timeouts.connect).await.map_err(|_| TryFailure::ConnectFailed)?,
            };
            match self.send_on(&mut conn, &head, streamed, is_head).await {
                Ok(resp_head) => {
                    return Ok(FastResponse {
                        head: resp_head,
                        conn,
                        endpoint: ep.clone(),
                        max_idle: cfg.pool_max_idle_per_endpoint,
                    });
                }
                // A pooled connection the endpoint had closed: nothing of the request was
                // taken by it (nor of a streamed body from the client), so send it again on
                // a new connection.
                Err(SendFailure::Stale) => fresh_only = true,
                Err(SendFailure::Try(f)) => return Err(f),
            }
        }
    }

    fn client_fault(&self) -> Option<Fault> {
        self.fault
    }

    fn abandoned(&self) -> bool {
        self.abandoned
    }
}

impl FastExchange<'_> {
    /// Writes the head (and a buffered body), streams a client body, reads the response head.
    async fn send_on(
        &mut self,
        conn: &mut UpConn,
        head: &[u8],
        streamed: bool,
        is_head: bool,
    ) -> Result<ResponseHead, SendFailure> {
        let reset = SendFailure::Try(TryFailure::Reset);
        if conn.stream.write_all(head).await.is_err() {
            return Err(if conn.reused { SendFailure::Stale } else { reset });
        }
        if streamed {
            // The body goes up while the connection is watched for an answer: an upstream
            // may answer before it has read the whole body (a 413, a 401) and then close. Its
            // answer is relayed, as nginx does, instead of the write failure becoming a 502.
            let (mut rd, mut wr) = conn.stream.split();
            let sending = tokio::select! {
                r = self.stream_body(&mut wr) => Sending::Done(r),
                h = early_answer(&mut conn.rb, &mut rd, is_head) => Sending::Answered(h),
            };
            match sending {
                Sending::Done(Ok(())) => {}
                Sending::Done(Err(Ok(fault))) => {
                    self.fault = Some(fault);
                    return Err(reset);
                }
                // The upstream stopped taking the body: it may still have answered, so the
                // head is read below; the connection cannot carry another request.
                Sending::Done(Err(Err(()))) => self.cut_short = true,
                Sending::Answered(Ok(mut h)) => {
                    // The rest of the body is not sent: the connection is out of step.
                    h.keep_alive = false;
                    self.cut_short = true;
                    return Ok(h);
                }
                Sending::Answered(Err(())) => return Err(reset),
            }
        }
        loop {
            match wire::parse_response(conn.rb.data(), is_head) {
                Ok(Some(h)) if h.status == StatusCode::SWITCHING_PROTOCOLS => return Err(reset),
                Ok(Some(h)) if h.status.is_informational() => conn.rb.consume(h.len),
                Ok(Some(mut h)) => {
                    h.keep_alive &= !self.cut_short;
                    return Ok(h);
                }
                Ok(None) => {}
                Err(BadResponse) => return Err(reset),
            }
            let had = conn.rb.len();
            // The per-try timeout bounds the wait (no timer here). Meanwhile
            // the client is watched: one that hangs up abandons the request, as hyper drops
            // a request whose connection closed (pipelined requests are kept for later).
            let client = &mut *self.client;
            let read = tokio::select! {
                r = conn.rb.fill_unbounded(&mut conn.stream) => r,
                () = client_closes(client) => {
                    self.abandoned = true;
                    return Err(reset);
                }
            };
            match read {
                Ok(_) => {}
                Err(ReadFailure::Eof | ReadFailure::Io) if conn.reused && !streamed && had == 0 => {
                    return Err(SendFailure::Stale);
                }
                Err(_) => return Err(reset),
            }
        }
    }
}
