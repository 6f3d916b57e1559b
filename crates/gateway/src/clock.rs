//! A cheap monotonic clock in nanoseconds since the process started, so timestamps fit in
//! atomics.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since the first call in this process.
pub fn now() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `d` in nanoseconds, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The clock reading of `t` (an `Instant` the caller already has, saving a clock read).
pub fn at(t: Instant) -> u64 {
    t.saturating_duration_since(*START.get_or_init(Instant::now)).as_nanos() as u64
}
