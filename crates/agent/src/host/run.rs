//! The collection loop: every `host_metrics.interval`, one pass over the collectors on a
//! blocking thread (with the reader's followed files, to find the processes writing them); the result replaces what `/metrics` serves and, when pushing, is
//! encoded as a remote_write body and written to the metrics buffer.

use super::push::HostStats;
use super::{Collectors, Snapshot};
use crate::compile::Compiled;
use crate::spool::{Header, Spool};
use signalbox_core::shutdown::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The newest collection, shared with the `/metrics` listener.
pub type Latest = Arc<Mutex<Option<Snapshot>>>;

/// Collects until shutdown.
pub async fn run(
    cfg: Arc<Compiled>,
    spool: Option<Arc<Spool>>,
    stats: HostStats,
    latest: Latest,
    tailed: Option<super::logproc::TailedFiles>,
    mut shutdown: Shutdown,
) {
    let Some(hm) = cfg.host_metrics.as_ref() else { return };
    let mut c = Collectors::new(hm.settings.clone());
    if let Some(t) = tailed {
        c.follow_logs(t);
    }
    let mut collectors = Some(c);
    let extra: Arc<[(String, String)]> =
        Arc::new([("job".to_owned(), hm.job.clone()), ("instance".to_owned(), hm.settings.host.clone())]);
    let mut tick = tokio::time::interval(hm.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let Some(mut c) = collectors.take() else { return };
        let spool = spool.clone();
        let stats2 = stats.clone();
        let extra = extra.clone();
        let done = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let snap = c.collect();
            stats2.collect_seconds.observe(start.elapsed().as_secs_f64());
            if let Some(spool) = spool {
                let labels: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let body = snap.remote_write(&labels);
                let header = Header {
                    records: snap.len() as u32,
                    sealed_ns: signalbox_core::time::unix_nanos(),
                    positions: Vec::new(),
                };
                match spool.try_push(&header, &body) {
                    Ok(true) => {}
                    Ok(false) => {
                        stats2.dropped.inc();
                        tracing::warn!("the host-metrics buffer is full; this collection is not kept");
                    }
                    Err(e) => {
                        stats2.dropped.inc();
                        tracing::error!(error = %e, "cannot write to the host-metrics buffer");
                    }
                }
                stats2.buffered.set(spool.usage().0 as i64);
            }
            (c, snap)
        })
        .await;
        match done {
            Ok((c, snap)) => {
                collectors = Some(c);
                *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(snap);
            }
            Err(e) => {
                tracing::error!(error = %e, "host metrics collection failed; collection stops");
                return;
            }
        }
    }
}
