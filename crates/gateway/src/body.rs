//! Body types of the proxy path. Bodies stream frame by frame; only a request that may be
//! retried is buffered, and only up to the route's retry buffer size.
//!
//! [`Watched`] wraps a streaming body with the route's size limit and idle timeout and, for
//! responses, carries the request's telemetry record so it is finished exactly once: when the
//! body ends, fails, or is dropped by a client that went away.

use crate::telemetry::Finish;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// Errors raised while streaming a body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("no body data for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// Size limit and idle timeout of a stream, and, for a client's request body, the record of
/// how the client failed it, so the proxy blames the right side: a body that breaks because
/// the client hung up, sent a bad chunk or stalled is the client's fault (413/400/408), never
/// the upstream's (no 502, nothing counted by breakers or outlier ejection).
pub struct Guard {
    pub limit: u64,
    pub idle: Duration,
    pub fault: Option<Arc<ClientFault>>,
}

/// How a client's request body failed, if it did.
#[derive(Default)]
pub struct ClientFault(AtomicU8);

/// What [`ClientFault`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    TooLarge,
    /// The client's stream broke: a reset, a disconnect, invalid chunked framing.
    Broken,
    /// No body data for the idle timeout.
    Stalled,
}

impl ClientFault {
    fn set(&self, f: Fault) {
        let v = match f {
            Fault::TooLarge => 1,
            Fault::Broken => 2,
            Fault::Stalled => 3,
        };
        let _ = self.0.compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn get(&self) -> Option<Fault> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Fault::TooLarge),
            2 => Some(Fault::Broken),
            3 => Some(Fault::Stalled),
            _ => None,
        }
    }
}

pin_project_lite::pin_project! {
    /// A streaming body under a [`Guard`].
    pub struct Watched {
        #[pin]
        inner: Incoming,
        guard: Guard,
        seen: u64,
        idle_timer: Option<Pin<Box<Sleep>>>,
        finish: Option<Box<Finish>>,
    }

    impl PinnedDrop for Watched {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.finish.take() {
                f.complete(*this.seen, None, Some("client went away before the body ended"));
            }
        }
    }
}

impl Watched {
    pub fn new(inner: Incoming, guard: Guard, finish: Option<Box<Finish>>) -> Self {
        Watched { inner, guard, seen: 0, idle_timer: None, finish }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match polled {
            Poll::Pending => {
                let idle = this.guard.idle;
                let timer = this.idle_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    if let Some(flag) = &this.guard.fault {
                        flag.set(Fault::Stalled);
                    }
                    if let Some(f) = this.finish.take() {
                        f.complete(*this.seen, None, Some("body idle timeout"));
                    }
                    return Poll::Ready(Some(Err(BodyError::Idle(idle))));
                }
                Poll::Pending
            }
            Poll::Ready(r) => {
                if let Some(t) = this.idle_timer.as_mut() {
                    t.as_mut().reset(tokio::time::Instant::now() + this.guard.idle);
                }
                match r {
                    None => {
                        if let Some(f) = this.finish.take() {
                            f.complete(*this.seen, None, None);
                        }
                        Poll::Ready(None)
                    }
                    Some(Err(e)) => {
                        if let Some(flag) = &this.guard.fault {
                            flag.set(Fault::Broken);
                        }
                        if let Some(f) = this.finish.take() {
                            f.complete(*this.seen, None, Some("upstream body error"));
                        }
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Some(Ok(frame)) => {
                        if let Some(d) = frame.data_ref() {
                            *this.seen += d.len() as u64;
                            if *this.seen > this.guard.limit {
                                if let Some(flag) = &this.guard.fault {
                                    flag.set(Fault::TooLarge);
                                }
                                return Poll::Ready(Some(Err(BodyError::TooLarge(this.guard.limit))));
                            }
                            // hyper stops polling a body whose length is reached, so the end
                            // must be noticed here rather than from a final `None`.
                            if this.inner.is_end_stream()
                                && let Some(f) = this.finish.take()
                            {
                                f.complete(*this.seen, None, None);
                            }
                        } else if let Some(trailers) = frame.trailers_ref()
                            && let Some(f) = this.finish.take()
                        {
                            f.complete(*this.seen, Some(trailers), None);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body sent upstream.
pub enum UpstreamBody {
    /// A buffered body (possibly empty), replayable across tries.
    Full(Option<Bytes>),
    /// The client's body, streamed once.
    Stream(Box<Watched>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            UpstreamBody::Stream(s) => Pin::new(s.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Full(b) => b.is_none(),
            UpstreamBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpstreamBody::Full(None) => SizeHint::with_exact(0),
            UpstreamBody::Stream(s) => s.size_hint(),
        }
    }
}

/// The body sent to the client.
pub enum ClientBody {
    Full(Option<Bytes>),
    Stream(Watched),
    /// The upstream body without a guard or telemetry (telemetry off, no idle timeout).
    Direct(Incoming),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ClientBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ClientBody::Stream(s) => Pin::new(s).poll_frame(cx),
            ClientBody::Direct(i) => {
                Poll::Ready(ready!(Pin::new(i).poll_frame(cx)).map(|r| r.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Full(b) => b.is_none(),
            ClientBody::Stream(s) => s.is_end_stream(),
            ClientBody::Direct(i) => i.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ClientBody::Full(None) => SizeHint::with_exact(0),
            ClientBody::Stream(s) => s.size_hint(),
            ClientBody::Direct(i) => i.size_hint(),
        }
    }
}
