//! Per-worker pools of idle HTTP/1.1 connections to upstream endpoints. Each gateway worker
//! thread runs one event loop, so its pool is a plain thread-local map: a connection is
//! taken and given back on the thread that uses it, with no lock and no cross-thread wake-up.

use super::buf::ReadBuf;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A connection to an upstream endpoint with its read buffer.
pub(crate) struct UpConn {
    pub stream: TcpStream,
    pub rb: ReadBuf,
    /// It came from the pool (so it may have been closed by the endpoint meanwhile).
    pub reused: bool,
}

struct Idle {
    conn: UpConn,
    since: Instant,
}

thread_local! {
    static POOL: RefCell<HashMap<String, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// An idle connection to `address`, if one is still open and was idle less than `max_idle`.
pub(crate) fn take(address: &str, max_idle: Duration) -> Option<UpConn> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(address)?;
        while let Some(mut idle) = list.pop() {
            if idle.since.elapsed() >= max_idle || !still_open(&idle.conn.stream) {
                continue;
            }
            idle.conn.reused = true;
            return Some(idle.conn);
        }
        None
    })
}

/// Gives a connection back (dropped when `address` already has `max` idle ones, or
/// `max` is 0).
pub(crate) fn put(address: &str, mut conn: UpConn, max: usize) {
    if max == 0 || !conn.rb.is_empty() {
        return;
    }
    // An idle connection keeps no read buffer; the next response takes one.
    conn.rb.release();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = match p.get_mut(address) {
            Some(l) => l,
            None => p.entry(address.to_owned()).or_default(),
        };
        if list.len() < max {
            list.push(Idle { conn, since: Instant::now() });
        }
    });
}

/// Whether an idle connection is still usable: nothing to read (an endpoint that closed it
/// left an end-of-file; one that sent bytes unasked broke the protocol).
fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Connects to `address` within `timeout`.
pub(crate) async fn connect(address: &str, timeout: Duration) -> std::io::Result<UpConn> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    let _ = stream.set_nodelay(true);
    Ok(UpConn { stream, rb: ReadBuf::new(), reused: false })
}
