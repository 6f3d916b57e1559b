//! Rate limiting with the generic cell rate algorithm (GCRA), the token bucket stated as one
//! timestamp per key: the theoretical arrival time (TAT) of the next request.
//!
//! A request at `now` is allowed when `max(TAT, now) - now <= tolerance`, and then moves TAT
//! forward by one emission interval. `tolerance = (burst - 1) × interval`, so `burst` requests
//! pass at once and then one per interval. Per-key state is a hash of the key mapped to its
//! TAT in sharded maps of bounded size: keys whose TAT is in the past carry no information
//! and are evicted first.

use crate::clock;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most keys tracked per limiter, over all shards.
const MAX_KEYS: usize = 100_000;
const SHARDS: usize = 16;

/// The verdict for one request, with what the RateLimit headers report.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    /// Requests that could still pass right now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
    /// When refused: time until one request would pass.
    pub retry_after: Duration,
}

/// GCRA parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    interval: u64,
    tolerance: u64,
    burst: u32,
    pub rate_per_second: f64,
}

impl Gcra {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        let interval = (1e9 / rate_per_second).max(1.0) as u64;
        let burst = burst.max(1);
        Gcra { interval, tolerance: interval * (burst as u64 - 1), burst, rate_per_second }
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Applies one request at `now` to `tat`; returns the decision and the new TAT.
    fn check(&self, tat: u64, now: u64) -> (Decision, u64) {
        let start = tat.max(now);
        if start - now > self.tolerance {
            let wait = start - now - self.tolerance;
            let d = Decision {
                allowed: false,
                remaining: 0,
                reset: Duration::from_nanos(start - now),
                retry_after: Duration::from_nanos(wait),
            };
            return (d, tat);
        }
        let new_tat = start + self.interval;
        let used = new_tat - now;
        let capacity = self.tolerance + self.interval;
        let d = Decision {
            allowed: true,
            remaining: (capacity.saturating_sub(used)) / self.interval,
            reset: Duration::from_nanos(used),
            retry_after: Duration::ZERO,
        };
        (d, new_tat)
    }
}

/// One limit shared by every request of a route.
pub struct GlobalLimiter {
    gcra: Gcra,
    tat: AtomicU64,
}

impl GlobalLimiter {
    pub fn new(gcra: Gcra) -> Self {
        GlobalLimiter { gcra, tat: AtomicU64::new(0) }
    }

    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    pub fn check(&self) -> Decision {
        let now = clock::now();
        let mut cur = self.tat.load(Ordering::Relaxed);
        loop {
            let (d, next) = self.gcra.check(cur, now);
            if !d.allowed {
                return d;
            }
            match self.tat.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return d,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// One limit per client key.
pub struct KeyedLimiter {
    gcra: Gcra,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<u64, u64>>]>,
}

impl KeyedLimiter {
    pub fn new(gcra: Gcra) -> Self {
        KeyedLimiter {
            gcra,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    pub fn check<K: Hash + ?Sized>(&self, key: &K) -> Decision {
        let k = self.hasher.hash_one(key);
        let now = clock::now();
        let mut shard = self.shards[(k as usize) % SHARDS].lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= MAX_KEYS / SHARDS && !shard.contains_key(&k) {
            shard.retain(|_, tat| *tat > now);
            if shard.len() >= MAX_KEYS / SHARDS {
                // Every tracked key is still limited; forgetting one of them is the least
                // harmful choice for a bounded table: that client gets a fresh bucket.
                if let Some(victim) = shard.keys().next().copied() {
                    shard.remove(&victim);
                }
            }
        }
        let tat = shard.get(&k).copied().unwrap_or(0);
        let (d, next) = self.gcra.check(tat, now);
        if d.allowed {
            shard.insert(k, next);
        }
        d
    }

    /// Keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let g = Gcra::new(10.0, 3);
        let mut tat = 0;
        let now = 1_000_000_000;
        let mut allowed = 0;
        for _ in 0..5 {
            let (d, next) = g.check(tat, now);
            if d.allowed {
                allowed += 1;
                tat = next;
            }
        }
        assert_eq!(allowed, 3);
        let (d, _) = g.check(tat, now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(100));
        let (d, _) = g.check(tat, now + 100_000_000);
        assert!(d.allowed, "one interval later a request passes");
    }

    #[test]
    fn keyed_limits_are_independent() {
        let l = KeyedLimiter::new(Gcra::new(1.0, 1));
        assert!(l.check("a").allowed);
        assert!(!l.check("a").allowed);
        assert!(l.check("b").allowed);
        assert_eq!(l.tracked_keys(), 2);
    }
}
