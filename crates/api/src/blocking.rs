//! Blocking queries (long-poll) on the control plane's index, Consul style: `?index=N`
//! returns once the watched state has changed past N, or after `wait` (default 5 min, at
//! most 10 min) with the state unchanged. The response carries the index to pass next time.

use serde::Deserialize;
use signalbox_control::index::Index;
use std::time::Duration;

pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// `?index=&wait=`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BlockParams {
    pub index: Option<u64>,
    pub wait: Option<String>,
}

impl BlockParams {
    /// The wait to use; an unparsable value is reported by field.
    pub fn wait(&self) -> Result<Duration, crate::error::ApiError> {
        match &self.wait {
            None => Ok(DEFAULT_WAIT),
            Some(w) => signalbox_core::config::parse_duration(w)
                .map(|d| d.min(MAX_WAIT))
                .map_err(|m| crate::error::ApiError::field("wait", m)),
        }
    }
}

/// Waits until `current()` passes `after` (checked on every index change) or the wait ends.
/// Returns the value of `current()` then.
pub async fn wait_for(index: &Index, after: u64, wait: Duration, current: impl Fn() -> u64) -> u64 {
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = index.subscribe();
    loop {
        let cur = current();
        if cur > after {
            return cur;
        }
        // A spread of up to wait/16, as Consul adds, keeps clients from waking together.
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return current(),
        }
    }
}
