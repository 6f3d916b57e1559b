//! The reader thread's stop signal: a flag whose waiters wake as soon as it is set, so the
//! reader sleeps through idle periods without checking the flag in short polls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set once, when the agent stops; [`StopSignal::wait`] returns at that moment.
#[derive(Default)]
pub struct StopSignal {
    set: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Whether the agent is stopping.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.set.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    /// Sleeps up to `d`, returning early once the flag is set; true if it is set.
    pub fn wait(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // The flag is read under the lock `set` takes, so a wake-up cannot slip between the
        // check and the wait.
        while !self.is_set() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = self.wake.wait_timeout(guard, left).map(|r| r.0).unwrap_or_else(|e| e.into_inner().0);
        }
        self.is_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_returns_at_the_deadline_when_not_set() {
        let s = StopSignal::new();
        let t = Instant::now();
        assert!(!s.wait(Duration::from_millis(50)));
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn set_wakes_a_waiter_at_once() {
        let s = Arc::new(StopSignal::new());
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                (s.wait(Duration::from_secs(30)), t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        s.set();
        let (set, waited) = waiter.join().unwrap();
        assert!(set);
        assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
        assert!(s.is_set());
        assert!(s.wait(Duration::from_secs(30)));
    }
}
