//! JSON bodies for the requests hyper refuses before the gateway sees them.
//!
//! When an HTTP/1 request cannot be parsed (not HTTP at all, a bad method or header, a
//! request target or header block past the parser's limits), hyper answers by itself with a
//! bare `400`, `414` or `431` and closes the connection: the request never reaches
//! [`crate::proxy::handle`]. Every other gateway answer carries a JSON body
//! `{error, code, trace_id}`, so [`JsonParseErrors`] sits between hyper and the socket and
//! replaces that canned response with the gateway's own.
//!
//! A canned response is told apart from anything the gateway sends: its head has no header
//! but `content-length`, `connection` and `date`, and it is written while no request is in progress on
//! the connection. Every response of the gateway carries `x-request-id`, and bodies are
//! only written while their request is in progress. After a `101 Switching Protocols` the
//! connection carries another protocol and is passed through untouched.
//!
//! The read side follows the connection with [`crate::h1::framing::Tracker`]: a request whose
//! framing is ambiguous (see [`crate::h1`]) never reaches hyper. The bytes before it are
//! handed over; in its place hyper reads a line it cannot parse, answers its canned `400`,
//! and that answer is replaced with the gateway's JSON naming the framing problem. When hyper
//! already has the request's whole head (it arrived in an earlier read) and the problem is in
//! its chunked body, the same line breaks the body off: the gateway answers `400` itself and
//! an upstream that was already sent the head sees a body that never ends, never a second
//! request.

use super::conn::ConnInfo;
use crate::error::GatewayError;
use crate::h1::Refusal;
use crate::h1::framing::{Tracker, Verdict};
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

/// An HTTP/1 server connection's IO, with hyper's canned parse-error responses rewritten.
pub struct JsonParseErrors<I> {
    inner: I,
    conn: Arc<ConnInfo>,
    /// False once the connection was upgraded (or rewrote its one error).
    watch: bool,
    pending: Option<Replacement>,
    read: ReadSide,
}

/// What hyper reads in place of a refused request: not a valid request line.
const POISON: &[u8] = b"\0\r\n\r\n";

/// The read side: bytes read and checked but not yet handed to hyper.
struct ReadSide {
    tracker: Tracker,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Set once a request is refused: after `buf`, hyper reads [`POISON`], then the end.
    refused: Option<Refusal>,
    poisoned: bool,
}

/// The gateway's response in place of hyper's, being written.
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// How many bytes of hyper's response it stands for: reported written when done.
    replaces: usize,
}

impl<I> JsonParseErrors<I> {
    /// `max_head`: hyper's own limit on a request head, past which framing is left to it.
    pub fn new(inner: I, conn: Arc<ConnInfo>, max_head: usize) -> Self {
        let read = ReadSide {
            tracker: Tracker::new(max_head),
            buf: Vec::new(),
            pos: 0,
            len: 0,
            refused: None,
            poisoned: false,
        };
        JsonParseErrors { inner, conn, watch: true, pending: None, read }
    }
}

impl<I: Write + Unpin> JsonParseErrors<I> {
    /// Looks at the start of a write: a canned error is replaced, an upgrade ends watching.
    fn inspect(&mut self, head: &[u8]) {
        if !self.watch {
            return;
        }
        if head.starts_with(b"HTTP/1.1 101 ") {
            self.watch = false;
            self.read.tracker.stop();
            return;
        }
        if self.conn.active.load(Ordering::Relaxed) != 0 {
            return;
        }
        if let Some(mut err) = canned_error(head) {
            // A head hyper could not parse either keeps hyper's wording; an ambiguous framing
            // that hyper would have let through is named.
            if let Some(why) = self.read.refused.filter(|w| *w != Refusal::MalformedHead) {
                err = GatewayError::bad_framing(why.message());
            }
            tracing::debug!(client = %self.conn.client, status = err.status.as_u16(), "unparsable request");
            let trace_id = signalbox_core::ids::TraceId::random().to_hex();
            self.pending = Some(Replacement { bytes: raw_response(&err, &trace_id), written: 0, replaces: head.len() });
            self.watch = false;
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(p) = self.pending.as_mut() else { return Poll::Ready(Ok(0)) };
        while p.written < p.bytes.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &p.bytes[p.written..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => p.written += n,
            }
        }
        let replaces = p.replaces;
        self.pending = None;
        Poll::Ready(Ok(replaces))
    }
}

/// The error a canned hyper response stands for, if `head` is one.
fn canned_error(head: &[u8]) -> Option<GatewayError> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let err = match rest.get(..4)? {
        b"400 " => GatewayError::bad_request("the request is not valid HTTP"),
        b"414 " => GatewayError::uri_too_long(),
        b"431 " => GatewayError::headers_too_large("request headers exceed the gateway's parser limits"),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let only_length_and_date = text.split("\r\n").skip(1).filter(|l| !l.is_empty()).all(|line| {
        let name = line.split(':').next().unwrap_or("");
        ["date", "content-length", "connection"].iter().any(|n| name.eq_ignore_ascii_case(n))
    });
    only_length_and_date.then_some(err)
}

/// The whole HTTP/1.1 response for `err`; the connection closes after it.
pub(crate) fn raw_response(err: &GatewayError, trace_id: &str) -> Vec<u8> {
    let body = err.json_body(trace_id);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nx-signalbox-error: {}\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n",
        err.status.as_u16(),
        err.status.canonical_reason().unwrap_or(""),
        err.code,
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

impl<I: Read + Unpin> Read for JsonParseErrors<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut out: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = &mut this.read;
        if r.pos < r.len {
            let n = (r.len - r.pos).min(out.remaining());
            out.put_slice(&r.buf[r.pos..r.pos + n]);
            r.pos += n;
            return Poll::Ready(Ok(()));
        }
        if r.refused.is_some() {
            if !r.poisoned && out.remaining() >= POISON.len() {
                r.poisoned = true;
                out.put_slice(POISON);
            }
            return Poll::Ready(Ok(()));
        }
        if r.tracker.is_off() {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let want = out.remaining().min(64 * 1024);
        if r.buf.len() < want {
            r.buf.resize(want, 0);
        }
        let filled = {
            let mut rb = ReadBuf::new(&mut r.buf[..want]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, rb.unfilled()))?;
            rb.filled().len()
        };
        (r.pos, r.len) = (0, filled);
        match r.tracker.feed(&r.buf[..filled]) {
            Verdict::Pass => {}
            Verdict::Refuse { at, why, head_passed } => {
                tracing::debug!(client = %this.conn.client, problem = why.message(), head_passed, "refused a request's framing");
                r.len = at;
                r.refused = Some(why);
            }
        }
        if r.len == 0 && r.refused.is_some() {
            r.poisoned = true;
            out.put_slice(POISON);
            return Poll::Ready(Ok(()));
        }
        let n = r.len.min(out.remaining());
        out.put_slice(&r.buf[..n]);
        r.pos = n;
        Poll::Ready(Ok(()))
    }
}

impl<I: Write + Unpin> Write for JsonParseErrors<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            this.inspect(buf);
        }
        if this.pending.is_some() {
            return this.drain(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
            if let Some(first) = nonempty.next() {
                if nonempty.next().is_none() {
                    this.inspect(first);
                } else if first.starts_with(b"HTTP/1.1 101 ") {
                    this.watch = false;
                    this.read.tracker.stop();
                }
            }
        }
        if this.pending.is_some() {
            return this.drain(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            ready!(this.drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            ready!(this.drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_bare_parser_responses() {
        let date = "date: Sun, 22 Nov 2026 09:00:00 GMT\r\n";
        let bare = format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n");
        assert_eq!(canned_error(bare.as_bytes()).map(|e| e.code), Some("bad_request"));
        let big = format!("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{date}\r\n");
        assert_eq!(canned_error(big.as_bytes()).map(|e| e.code), Some("headers_too_large"));
        let long = format!("HTTP/1.1 414 URI Too Long\r\n{date}\r\n");
        assert_eq!(canned_error(long.as_bytes()).map(|e| e.code), Some("uri_too_long"));
        // The gateway's own answers and proxied responses carry more headers.
        let proxied = format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: 1\r\n{date}\r\n");
        assert!(canned_error(proxied.as_bytes()).is_none());
        assert!(canned_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(canned_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none(), "incomplete head");
    }

    #[test]
    fn the_replacement_is_a_complete_json_response() {
        let raw = raw_response(&GatewayError::bad_request("nope"), "0af7651916cd43dd8448eb211c80319c");
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "bad_request");
        assert_eq!(v["error"], "nope");
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    }
}
