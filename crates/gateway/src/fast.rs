//! The HTTP/1.1 fast path: the gateway's own server loop and upstream client for plain-text
//! HTTP/1.1, in place of hyper's (`[gateway] http1 = "fast"`, the default).
//!
//! Per client connection, one loop on the worker's event loop: read into a buffer from the
//! worker's free list (given back while the connection is idle), parse the head in place with `httparse` and the strict framing
//! checks of [`crate::h1`] (an ambiguous framing gets the gateway's JSON 400 and nothing is
//! forwarded), run the request through the same phases as hyper's path ([`crate::proxy::run`])
//! and write the response head in one call, with the start of the body when it is already
//! here. Bodies are copied as they are framed (a fixed length, or chunked bytes checked on
//! their way through) without being re-framed, under the route's body limit and idle
//! timeout. Pipelined requests are answered in order from the same buffer. An upstream that
//! answers before it has taken the whole body gets its answer relayed (then both connections
//! close, the client's after a lingering close), as nginx does.
//!
//! Upstream connections come from per-worker pools ([`pool`]): taken and given back on the
//! worker's own thread, no lock, no cross-thread wake-up. A connection goes back only when
//! its response ended exactly where its framing said and the upstream did not ask to close;
//! a pooled connection the upstream had closed is replaced transparently.
//!
//! What the fast path does not do, it hands to hyper with the bytes it read put back in
//! front ([`buf::Rewind`]), for the rest of the connection: HTTP/2 prior knowledge (the
//! preface), upgrades (WebSocket, `CONNECT`), HTTP/1.0 clients, heads with more header lines
//! than it parses, and requests whose route leads to an upstream spoken to over TLS or
//! HTTP/2 (checked only when the config has such a service). TLS listeners always use hyper.
//!
//! # Layout
//! - [`buf`]: the read buffer and the hand-off IO.
//! - [`wire`]: request and response heads on the wire.
//! - [`exchange`]: the request body and the tries ([`crate::proxy::Exchange`]).
//! - [`pool`]: per-worker upstream connection pools.

mod buf;
mod exchange;
mod pool;
pub mod wire;

pub use buf::Rewind;

use crate::error::GatewayError;
use crate::h1::Refusal;
use crate::h1::chunked::Chunked;
use crate::h1::head::{BodyFraming, Parsed, RequestHead};
use crate::proxy::context::RequestCtx;
use crate::proxy::{Downstream, Shared};
use buf::{ReadBuf, ReadFailure};
use bytes::Bytes;
use exchange::{ClientSide, FastExchange, FastResponse};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use signalbox_core::shutdown::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wire::RespFraming;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a fast-path connection needs besides its socket.
pub struct ConnSettings {
    /// Time a client has to send a complete head, from when the connection became idle.
    pub header_timeout: Duration,
    /// Longest head parsed; a longer one gets 431.
    pub max_head: usize,
}

/// How a fast-path connection ended.
pub enum Ended {
    Closed,
    /// Hyper takes over: the socket, and the bytes read from it but not used yet (they start
    /// at a request head or the HTTP/2 preface).
    Handoff(TcpStream, Vec<u8>),
}

/// Serves one plain-text connection until it closes or is handed to hyper.
pub async fn serve(
    stream: TcpStream,
    peer: Downstream,
    shared: &Arc<Shared>,
    settings: &ConnSettings,
    mut shutdown: Shutdown,
) -> Ended {
    let mut client = ClientSide { stream, rb: ReadBuf::new() };
    let mut head = RequestHead::default();
    let mut first = true;
    loop {
        // A request head, within the header timeout of the connection becoming idle.
        let waiting_since = Instant::now();
        let parsed = loop {
            if !client.rb.is_empty() {
                let data = client.rb.data();
                if first && H2_PREFACE.starts_with(&data[..data.len().min(H2_PREFACE.len())]) {
                    if data.len() >= H2_PREFACE.len() {
                        let prefix = client.rb.take_all();
                        return Ended::Handoff(client.stream, prefix);
                    }
                } else {
                    match head.parse(data) {
                        Ok(Parsed::Head(h)) => break h,
                        Ok(Parsed::TooManyHeaders) => {
                            let prefix = client.rb.take_all();
                            return Ended::Handoff(client.stream, prefix);
                        }
                        Ok(Parsed::Partial) if data.len() >= settings.max_head => {
                            let e =
                                GatewayError::headers_too_large("request headers exceed the gateway's parser limits");
                            return Box::pin(refuse(client, &e)).await;
                        }
                        Ok(Parsed::Partial) => {}
                        Err(why) => return Box::pin(refuse(client, &refusal_error(why))).await,
                    }
                }
            }
            let Some(left) = settings.header_timeout.checked_sub(waiting_since.elapsed()) else {
                return Ended::Closed;
            };
            if client.rb.is_empty() {
                // Idle: the connection holds no buffer while it waits (they go back to the
                // worker's free list), so idle keep-alive connections cost little memory.
                client.rb.release();
                head.headers = Vec::new();
                let ready = tokio::select! {
                    biased;
                    _ = shutdown.wait() => return Ended::Closed,
                    r = tokio::time::timeout(left, client.stream.readable()) => r,
                };
                if !matches!(ready, Ok(Ok(()))) {
                    return Ended::Closed;
                }
            }
            if client.rb.fill(&mut client.stream, left).await.is_err() {
                return Ended::Closed;
            }
        };
        first = false;
        let data = client.rb.data();
        if head.minor_version == 0 || parsed.upgrade {
            let prefix = client.rb.take_all();
            return Ended::Handoff(client.stream, prefix);
        }
        if parsed.framing == BodyFraming::Chunked
            && let Err(why) = Chunked::default().feed(&data[parsed.len..])
        {
            // What is already here of the body is refused before anything is forwarded.
            return Box::pin(refuse(client, &refusal_error(why))).await;
        }
        let Some(req) = build_request(&head, data) else {
            return Box::pin(refuse(client, &GatewayError::bad_request("the request is not valid HTTP"))).await;
        };
        let snap = shared.snapshot.load_full();
        if crate::proxy::needs_hyper(&snap, &req) {
            let prefix = client.rb.take_all();
            return Ended::Handoff(client.stream, prefix);
        }
        client.rb.consume(parsed.len);
        let close = wire::wants_close(req.headers()) || shutdown.is_triggered();

        // The request's own state (the phases, the tries, the relay) lives in one boxed
        // future: the connection's task stays small while it waits for the next request.
        let step = Box::pin(one_request(&mut client, shared, &snap, &peer, req, parsed.framing, close)).await;
        let Step { keep, body_done } = match step {
            Some(s) => s,
            None => return Ended::Closed,
        };
        if !keep {
            // Bytes the client may still send (a body not read to its end) are drained
            // first; otherwise the connection just ends.
            if body_done && client.rb.is_empty() {
                let _ = client.stream.shutdown().await;
            } else {
                Box::pin(linger(client.stream)).await;
            }
            return Ended::Closed;
        }
    }
}

/// What one request left behind: whether the connection stays open, and whether the
/// request's body was read to its end (else the client may still be sending it).
struct Step {
    keep: bool,
    body_done: bool,
}

/// Runs one request through the phases and answers it. `None`: the client went away.
async fn one_request(
    client: &mut ClientSide,
    shared: &Arc<Shared>,
    snap: &crate::compile::Snapshot,
    peer: &Downstream,
    req: Request<()>,
    framing: BodyFraming,
    close: bool,
) -> Option<Step> {
    let mut out = buf::take();
    out.clear();
    let is_head = req.method() == Method::HEAD;
    let expect_continue = wire::expects_continue(req.headers());
    let mut ctx = RequestCtx::new(req.headers());
    let mut x = FastExchange::new(client, framing, expect_continue);
    let result = crate::proxy::run(&mut ctx, shared, snap, peer, req, &mut x).await;
    let mut body_done = x.body_done;
    if x.abandoned {
        // Nobody to answer, and nothing recorded (hyper's path drops such a request).
        return None;
    }
    let keep = match result {
        // An upstream that answered before the whole body was read from the client: the
        // rest of it cannot be told from a next request, so the connection closes.
        Ok((route, resp)) => relay(client, &mut out, resp, &mut ctx, route.timeouts.idle, close || !body_done).await,
        Err(e) => {
            let mut resp = ctx.fail(e);
            // An unread body that is already here is skipped; one still on its way
            // cannot be, so the connection closes after the answer.
            let skipped = body_done
                || match framing {
                    BodyFraming::Length(n) if n <= client.rb.len() as u64 => {
                        client.rb.consume(n as usize);
                        true
                    }
                    _ => false,
                };
            body_done = skipped;
            let close = close || !skipped;
            let body = match std::mem::replace(resp.body_mut(), crate::body::ClientBody::Full(None)) {
                crate::body::ClientBody::Full(b) => b.unwrap_or_default(),
                _ => Bytes::new(),
            };
            out.clear();
            wire::response_head(&mut out, resp.status(), resp.headers(), RespFraming::Length(body.len() as u64), close);
            if !is_head {
                out.extend_from_slice(&body);
            }
            let written = tokio::time::timeout(Duration::from_secs(10), client.stream.write_all(&out)).await;
            matches!(written, Ok(Ok(()))) && !close
        }
    };
    buf::give_back(out);
    Some(Step { keep, body_done })
}

/// Answers a request the fast path cannot take with the gateway's JSON error and closes.
async fn refuse(mut client: ClientSide, e: &GatewayError) -> Ended {
    tracing::debug!(status = e.status.as_u16(), problem = %e.message, "unparsable request");
    let trace_id = signalbox_core::ids::TraceId::random().to_hex();
    let bytes = crate::server::parse_error::raw_response(e, &trace_id);
    let _ = tokio::time::timeout(Duration::from_secs(10), client.stream.write_all(&bytes)).await;
    linger(client.stream).await;
    Ended::Closed
}

/// Longest a closing connection is read (and what arrives discarded) after its last answer.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// Longest quiet gap while lingering.
const LINGER_GAP: Duration = Duration::from_secs(1);

/// Closes a client connection the way nginx's lingering close does: the write side first,
/// then what the client still sends (the rest of a body nobody read) is read and dropped
/// until it stops, for a bounded time. Closing with unread bytes at once would make the
/// kernel reset the connection, and a reset can destroy the answer before the client reads it.
async fn linger(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    if stream.shutdown().await.is_err() {
        return;
    }
    let until = Instant::now() + LINGER_TIME;
    // On the heap: this future is part of every connection's task.
    let mut sink = vec![0u8; 4096];
    loop {
        let Some(left) = until.checked_duration_since(Instant::now()) else { return };
        match tokio::time::timeout(left.min(LINGER_GAP), stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// The answer to a refused framing: hyper's wording for a head it cannot parse either, the
/// problem named for an ambiguous framing.
fn refusal_error(why: Refusal) -> GatewayError {
    match why {
        Refusal::MalformedHead => GatewayError::bad_request("the request is not valid HTTP"),
        other => GatewayError::bad_framing(other.message()),
    }
}

/// The request as the phases see it. `None` when a part is not valid (`httparse` is more
/// lenient than `http` about a few bytes).
fn build_request(head: &RequestHead, buf: &[u8]) -> Option<Request<()>> {
    let method = Method::from_bytes(RequestHead::slice(buf, &head.method)).ok()?;
    let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(RequestHead::slice(buf, &head.target))).ok()?;
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        let name = HeaderName::from_bytes(RequestHead::slice(buf, name)).ok()?;
        let value = HeaderValue::from_bytes(RequestHead::slice(buf, value)).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

/// Writes the response (head and body) to the client, then gives the upstream connection
/// back to its pool if it can take another request. Returns whether the client connection
/// stays open. The request's telemetry record completes here.
async fn relay(
    client: &mut ClientSide,
    out: &mut Vec<u8>,
    resp: FastResponse,
    ctx: &mut RequestCtx,
    idle: Duration,
    close: bool,
) -> bool {
    let FastResponse { head, mut conn, endpoint, max_idle } = resp;
    let framing = head.framing;
    out.clear();
    wire::response_head(out, head.status, &head.headers, framing, close);
    conn.rb.consume(head.len);
    let mut sent: u64 = 0;
    let result = copy_body(client, out, &mut conn.rb, &mut conn.stream, framing, idle, &mut sent).await;
    let error = match result {
        Ok(()) => None,
        Err(Side::Upstream) => Some("upstream body error"),
        Err(Side::UpstreamIdle) => Some("body idle timeout"),
        Err(Side::Client) => Some("client went away before the body ended"),
    };
    if let Some(f) = ctx.finish.take() {
        f.complete(sent, None, error);
    }
    if result.is_ok() && head.keep_alive {
        pool::put(&endpoint.info.address, conn, max_idle);
    }
    result.is_ok() && !close && framing != RespFraming::Close
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Upstream,
    UpstreamIdle,
    Client,
}

/// Copies the response body after `out` (the head), adding what is already buffered to the
/// head's write. `sent` counts body bytes written.
async fn copy_body(
    client: &mut ClientSide,
    out: &mut Vec<u8>,
    rb: &mut ReadBuf,
    up: &mut TcpStream,
    framing: RespFraming,
    idle: Duration,
    sent: &mut u64,
) -> Result<(), Side> {
    let mut chunked = Chunked::default();
    let mut left = match framing {
        RespFraming::Length(n) => n,
        _ => u64::MAX,
    };
    // The head, with the body's first bytes when they are here.
    let mut first = true;
    loop {
        let (take, done) = match framing {
            RespFraming::None => (0, true),
            RespFraming::Length(_) => {
                let take = (rb.len() as u64).min(left) as usize;
                left -= take as u64;
                (take, left == 0)
            }
            RespFraming::Chunked => chunked.feed(rb.data()).map_err(|_| Side::Upstream)?,
            RespFraming::Close => (rb.len(), false),
        };
        if first {
            out.extend_from_slice(&rb.data()[..take]);
            write_client(client, out, idle).await?;
            first = false;
        } else if take > 0 {
            write_client(client, &rb.data()[..take], idle).await?;
        }
        *sent += take as u64;
        rb.consume(take);
        if done {
            return Ok(());
        }
        match rb.fill(up, idle).await {
            Ok(_) => {}
            Err(ReadFailure::Eof) if framing == RespFraming::Close => return Ok(()),
            Err(ReadFailure::TimedOut) => return Err(Side::UpstreamIdle),
            Err(_) => return Err(Side::Upstream),
        }
    }
}

async fn write_client(client: &mut ClientSide, bytes: &[u8], idle: Duration) -> Result<(), Side> {
    match tokio::time::timeout(idle, client.stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Side::Client),
    }
}
