//! Upstream HTTP/1 connections (hyper's client) that keep reading after the upstream stopped
//! taking the request body. An upstream may answer before it has read a whole body (a 413 or
//! a 401 to a large upload) and close; hyper's client would turn the failed body write into
//! an error and lose the answer waiting in the socket. Here a write that fails because the
//! peer closed is taken as written (the rest of the body is dropped), so hyper goes on to read
//! the answer and relays it, as nginx does. The pool does not reuse such a connection: the
//! peer closed it, and hyper reads that end right after the answer. An upstream that closed without answering still fails the try when hyper reads
//! the end of the connection. The fast path does the same in its own loop
//! (`crate::fast::exchange`).

use hyper::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Wraps a connector so its connections are [`KeepReading`].
#[derive(Clone)]
pub struct AnswerFirst<C>(pub C);

impl<C> tower_service::Service<Uri> for AnswerFirst<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
{
    type Response = KeepReading<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.0.call(dst);
        Box::pin(async move { connecting.await.map(|io| KeepReading { io, cut: false }) })
    }
}

/// A connection whose writes, once the peer closed, are dropped instead of failing.
pub struct KeepReading<T> {
    io: T,
    /// The peer stopped taking bytes: writes are dropped from here on.
    cut: bool,
}

/// Errors that mean the peer closed its side, not that the connection cannot be read.
fn peer_closed(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}

impl<T> KeepReading<T> {
    fn cut(&mut self) {
        tracing::debug!("upstream stopped reading the request; its answer is read on");
        self.cut = true;
    }
}

impl<T: Read + Unpin> Read for KeepReading<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for KeepReading<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                this.cut();
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let all = bufs.iter().map(|b| b.len()).sum();
        if this.cut {
            return Poll::Ready(Ok(all));
        }
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                this.cut();
                Poll::Ready(Ok(all))
            }
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                this.cut();
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for KeepReading<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
