//! The control plane's index: one number that grows with every change to registrations,
//! health, key/value entries and configuration, as Consul's raft index does. Blocking
//! queries wait for it to pass the index a client saw; watchers follow its channel.
//!
//! A change is one ordered [`Step`]: allocating its index, committing it, applying it in
//! memory and publishing the index happen while the step holds the index's order lock. So
//! indexes are applied and published in allocation order, with no gaps: a watcher woken by
//! index N reads a state holding every change up to N. (Allocating before the commit and
//! publishing after it without that lock let two writers publish out of order; the lower
//! index was dropped and a watcher could read a state without it and then wait past it.)
//! Writes already serialise on the store's single writer, so the lock costs no parallelism.
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
    /// (last allocated, persisted high-water mark).
    state: Mutex<(u64, u64)>,
    /// Held by the one [`Step`] in progress.
    order: tokio::sync::Mutex<()>,
    tx: watch::Sender<u64>,
    store: Store,
}

/// One change in progress: its index is allocated, and no other change can be allocated,
/// applied or published until this one is published or dropped.
///
/// [`Step::publish`] makes the change visible to watchers. A step dropped unpublished (its
/// commit failed, or the request that made it went away mid-commit) publishes its index
/// anyway: the index is never handed out twice, and a watcher it wakes finds nothing new
/// and waits on.
pub struct Step<'a> {
    index: &'a Index,
    value: u64,
    mark: Option<Op>,
    _order: tokio::sync::MutexGuard<'a, ()>,
    done: bool,
}

impl Step<'_> {
    /// The index of this change.
    pub fn index(&self) -> u64 {
        self.value
    }

    /// The op that moves the persisted high-water mark, when this index passes it: commit
    /// it with the change.
    pub fn take_mark(&mut self) -> Option<Op> {
        self.mark.take()
    }

    /// Publishes the index to watchers; call once the change is applied in memory.
    pub fn publish(mut self) {
        self.done = true;
        self.index.tx.send_replace(self.value);
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.index.tx.send_replace(self.value);
        }
    }
}

impl Index {
    /// Loads the high-water mark and starts there.
    pub fn load(store: Store) -> Result<Self> {
        let hw = store.meta(KEY)?.unwrap_or(0);
        let start = hw.max(1);
        Ok(Index {
            state: Mutex::new((start, hw)),
            order: tokio::sync::Mutex::new(()),
            tx: watch::channel(start).0,
            store,
        })
    }

    /// The index of a replicated backend: etcd's revision, starting at the one loaded;
    /// [`Index::advance`] moves it as the watch applies changes. [`Index::begin`] is not
    /// used with it.
    pub fn replicated(store: Store, start: u64) -> Self {
        let start = start.max(1);
        Index {
            state: Mutex::new((start, u64::MAX)),
            order: tokio::sync::Mutex::new(()),
            tx: watch::channel(start).0,
            store,
        }
    }

    /// Publishes `to` if it is past the current index (a replicated backend applied the
    /// changes up to it).
    pub fn advance(&self, to: u64) {
        {
            let mut s = self.lock();
            s.0 = s.0.max(to);
        }
        self.tx.send_if_modified(|cur| {
            if to > *cur {
                *cur = to;
                true
            } else {
                false
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current(&self) -> u64 {
        *self.tx.borrow()
    }

    /// A receiver that sees every new index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Starts a change: waits for the one in progress to finish, then allocates the next
    /// index. Never call it while holding a step.
    pub async fn begin(&self) -> Step<'_> {
        let order = self.order.lock().await;
        let mut s = self.lock();
        s.0 += 1;
        let mark = if s.0 >= s.1 {
            s.1 = s.0 + STEP;
            Some(Op::Meta(KEY, s.1))
        } else {
            None
        };
        Step { index: self, value: s.0, mark, _order: order, done: false }
    }

    /// Commits `step`'s high-water mark if it carries one, for a change that needs no other
    /// persistence (a health transition). A failure is logged: the change itself stands.
    pub async fn commit_mark(&self, step: &mut Step<'_>) {
        if let Some(op) = step.take_mark()
            && let Err(e) = self.store.commit(vec![op]).await
        {
            tracing::error!(error = %e, "cannot persist the index high-water mark");
        }
    }

    /// Allocates and publishes an index for a change with nothing else to apply.
    pub async fn bump(&self) -> u64 {
        let mut step = self.begin().await;
        self.commit_mark(&mut step).await;
        let i = step.index();
        step.publish();
        i
    }

    /// Waits until the index passes `after` or `wait` elapses; returns the current index.
    pub async fn wait_past(&self, after: u64, wait: std::time::Duration) -> u64 {
        let mut rx = self.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i > after)).await;
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steps_publish_in_allocation_order_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::load(Store::open(dir.path()).unwrap()).unwrap());
        let start = index.current();
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let index = index.clone();
                tokio::spawn(async move {
                    let step = index.begin().await;
                    assert_eq!(index.current() + 1, step.index(), "every lower index is published first");
                    tokio::time::sleep(std::time::Duration::from_micros(i % 5 * 100)).await;
                    if i % 7 == 0 {
                        drop(step); // a failed commit still publishes its index
                    } else {
                        step.publish();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(index.current(), start + 64);
        let mut step = index.begin().await;
        assert_eq!(step.index(), start + 65, "no index is handed out twice");
        assert!(step.take_mark().is_none(), "the high-water mark is far ahead");
        step.publish();
    }
}
