//! A connection's read buffer and [`Rewind`], which hands a connection to hyper with the
//! bytes already read put back in front.
//!
//! Buffers come from a per-worker free list ([`take`], [`give_back`]) and go back to it
//! whenever a connection is idle with nothing buffered, so an idle keep-alive connection
//! (client or pooled upstream) holds no buffer at all: memory follows requests in flight,
//! not open connections.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf as TokioReadBuf};
use tokio::net::TcpStream;

/// Smallest read a buffer offers the socket.
const READ_CHUNK: usize = 16 * 1024;
/// Buffers kept on a worker's free list; more are freed.
const FREE_MAX: usize = 512;
/// Buffers that grew past this are freed rather than kept.
const KEEP_MAX: usize = 4 * READ_CHUNK;

thread_local! {
    static FREE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer from this worker's free list (or a new one) with room for a read. Its length
/// may be above 0 (bytes of earlier use, initialised): a read buffer reuses them without
/// zeroing; a write buffer clears it.
pub(crate) fn take() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
}

/// Returns a buffer to this worker's free list.
pub(crate) fn give_back(v: Vec<u8>) {
    if v.capacity() < READ_CHUNK || v.capacity() > KEEP_MAX {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < FREE_MAX {
            f.push(v);
        }
    });
}

/// Bytes read from a socket and not yet consumed: `buf[start..end]`.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Why a read gave nothing.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The peer closed its side.
    Eof,
    TimedOut,
    /// The connection failed (reset and the like).
    Io,
}

impl ReadBuf {
    pub fn new() -> Self {
        ReadBuf { buf: Vec::new(), start: 0, end: 0 }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives the buffer back to the worker's free list when nothing is buffered (an idle
    /// connection); the next read takes one again.
    pub fn release(&mut self) {
        if self.is_empty() && self.buf.capacity() > 0 {
            give_back(std::mem::take(&mut self.buf));
        }
    }

    /// Takes everything buffered (for a hand-off).
    pub fn take_all(&mut self) -> Vec<u8> {
        let out = self.data().to_vec();
        self.consume(self.len());
        out
    }

    /// Reads once more from `s` (at least [`READ_CHUNK`] bytes of room), within `timeout`.
    pub async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S, timeout: Duration) -> Result<usize, ReadFailure> {
        match tokio::time::timeout(timeout, self.fill_unbounded(s)).await {
            Err(_) => Err(ReadFailure::TimedOut),
            Ok(r) => r,
        }
    }

    /// Reads once more from `s`, for a wait the caller bounds (no timer of its own).
    pub async fn fill_unbounded<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<usize, ReadFailure> {
        if self.start > 0 && self.buf.len() - self.end < READ_CHUNK {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.capacity() == 0 {
            self.buf = take();
        }
        if self.buf.len() - self.end < READ_CHUNK {
            // Zeroes only bytes never used before: a recycled buffer keeps its length.
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        match s.read(&mut self.buf[self.end..]).await {
            Ok(0) => Err(ReadFailure::Eof),
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
            Err(_) => Err(ReadFailure::Io),
        }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

/// A connection handed to hyper: `prefix` (bytes the fast path read but did not use) is read
/// first, then the socket.
pub struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Rewind {
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Rewind { prefix, pos: 0, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut TokioReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(out.remaining());
            out.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
