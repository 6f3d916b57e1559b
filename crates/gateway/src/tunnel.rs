//! Upgraded connections (WebSocket and other `Upgrade:` protocols): after the upstream
//! answers 101, bytes are copied both ways until either side closes or both stay silent for
//! the route's idle timeout.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Joins the client's and the upstream's upgraded connections.
pub async fn run(down: OnUpgrade, up: OnUpgrade, idle: Duration) {
    let upgrade_wait = Duration::from_secs(10);
    let (down, up) = match tokio::time::timeout(upgrade_wait, async { tokio::try_join!(down, up) }).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!("upgrade did not complete in time");
            return;
        }
    };
    let (dr, dw) = tokio::io::split(TokioIo::new(down));
    let (ur, uw) = tokio::io::split(TokioIo::new(up));
    let last = Arc::new(AtomicU64::new(crate::clock::now()));
    let a = pump(dr, uw, idle, last.clone());
    let b = pump(ur, dw, idle, last);
    // A direction that ends passes the close on (half-close); the other runs until its own
    // end or the shared idle timeout.
    tokio::join!(a, b);
}

async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(mut r: R, mut w: W, idle: Duration, last: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(idle, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                let _ = w.shutdown().await;
                return;
            }
            Ok(Ok(n)) => {
                last.store(crate::clock::now(), Ordering::Relaxed);
                let write = tokio::time::timeout(idle, w.write_all(&buf[..n]));
                if !matches!(write.await, Ok(Ok(()))) {
                    return;
                }
            }
            Err(_) => {
                // This direction was silent for `idle`; end only if the other was too.
                let quiet = crate::clock::now().saturating_sub(last.load(Ordering::Relaxed));
                if quiet >= crate::clock::nanos(idle) {
                    return;
                }
            }
        }
    }
}
