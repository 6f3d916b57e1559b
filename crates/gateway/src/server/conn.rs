//! What the server knows about a client connection, and the guard that tells its watchdog
//! whether a request is in progress on it.

use crate::body::ClientBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

/// What the server knows about the client connection.
pub struct ConnInfo {
    pub client: SocketAddr,
    pub tls: bool,
    /// Requests in progress on this connection (their response bodies not yet finished).
    pub active: AtomicU32,
    /// `clock::now()` when the connection last became idle.
    pub idle_since: AtomicU64,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, tls: bool) -> Self {
        ConnInfo { client, tls, active: Default::default(), idle_since: crate::clock::now().into() }
    }
}

/// Counts a request as active on its connection until its response body is dropped (sent
/// or abandoned), so the connection watchdog knows when the connection is idle.
pub struct ActiveGuard(Arc<ConnInfo>);

impl ActiveGuard {
    pub fn new(conn: Arc<ConnInfo>) -> Self {
        conn.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(conn)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(crate::clock::now(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The body handed to hyper: the response body plus the guard that marks the request
/// finished on its connection when hyper drops it.
pub struct Counted {
    pub body: ClientBody,
    pub _guard: ActiveGuard,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The listeners' cap on open connections, shared by every worker: one counter, taken right
/// after `accept` and before the connection is served, so admission is exact however many
/// workers accept (the per-address share is [`signalbox_core::conn_limit::ConnLimits`]'s).
#[derive(Clone)]
pub struct ConnCap {
    open: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

/// One admitted connection's place under the cap, given back when dropped.
pub struct CapSlot(Arc<std::sync::atomic::AtomicUsize>);

impl ConnCap {
    pub fn new(max: usize) -> Self {
        ConnCap { open: Arc::default(), max: max.max(1) }
    }

    /// A place for one more connection, or `None` when `max` are open.
    pub fn try_take(&self) -> Option<CapSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| CapSlot(self.open.clone()))
    }
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
