//! The control plane's index: one number that grows with every change to registrations,
//! health, key/value entries and configuration, as Consul's raft index does. Blocking
//! queries wait for it to pass the index a client saw; watchers follow its channel.
//!
//! Health changes bump it without touching the disk. To keep it monotonic across restarts
//! anyway, a high-water mark is persisted in steps of [`STEP`] ahead of the live value; a
//! restarted node starts from the mark, above anything a client could have seen.

use crate::error::Result;
use crate::store::{Op, Store};
use std::sync::Mutex;
use tokio::sync::watch;

const STEP: u64 = 10_000;
const KEY: &str = "index_high_water";

/// The global change index.
pub struct Index {
    state: Mutex<(u64, u64)>,
    tx: watch::Sender<u64>,
    store: Store,
}

impl Index {
    /// Loads the high-water mark and starts there.
    pub fn load(store: Store) -> Result<Self> {
        let hw = store.meta(KEY)?.unwrap_or(0);
        let start = hw.max(1);
        Ok(Index { state: Mutex::new((start, hw)), tx: watch::channel(start).0, store })
    }

    pub fn current(&self) -> u64 {
        *self.tx.borrow()
    }

    /// A receiver that sees every new index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Allocates the next index. When it passes the persisted mark, returns the op that
    /// moves the mark, to be committed with the caller's change (or on its own).
    pub fn next(&self) -> (u64, Option<Op>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        let op = if s.0 >= s.1 {
            s.1 = s.0 + STEP;
            Some(Op::Meta(KEY, s.1))
        } else {
            None
        };
        (s.0, op)
    }

    /// Publishes `index` to watchers (after the change it names is visible).
    pub fn publish(&self, index: u64) {
        self.tx.send_if_modified(|cur| {
            if index > *cur {
                *cur = index;
                true
            } else {
                false
            }
        });
    }

    /// Allocates and publishes an index for a change that needs no other persistence
    /// (a health transition), persisting the mark when needed.
    pub async fn bump(&self) -> u64 {
        let (i, op) = self.next();
        if let Some(op) = op
            && let Err(e) = self.store.commit(vec![op]).await
        {
            tracing::error!(error = %e, "cannot persist the index high-water mark");
        }
        self.publish(i);
        i
    }

    /// Waits until the index passes `after` or `wait` elapses; returns the current index.
    pub async fn wait_past(&self, after: u64, wait: std::time::Duration) -> u64 {
        let mut rx = self.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i > after)).await;
        self.current()
    }
}
