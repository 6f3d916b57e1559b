//! Retry policy: which failures may be retried, backoff with full jitter, and the retry budget
//! that keeps retries from amplifying an outage.
//!
//! The budget follows Finagle's and Linkerd's design: over a sliding 10-second window, each
//! request deposits `ratio` of a retry and each retry withdraws one; a floor of
//! `min_per_second` retries keeps quiet services retryable. With the default ratio of 0.2,
//! retries add at most 20% load however many tries a route allows.

use crate::clock;
use crate::config::RetryConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const WINDOW_SECS: u64 = 10;

/// Conditions that allow a retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    pub connect_failure: bool,
    pub timeout: bool,
    pub reset: bool,
    pub status_502: bool,
    pub status_503: bool,
    pub status_504: bool,
    pub grpc_unavailable: bool,
}

impl RetryOn {
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut r = RetryOn::default();
        for i in items {
            match i.as_str() {
                "connect-failure" => r.connect_failure = true,
                "timeout" => r.timeout = true,
                "reset" => r.reset = true,
                "502" => r.status_502 = true,
                "503" => r.status_503 = true,
                "504" => r.status_504 = true,
                "5xx" => (r.status_502, r.status_503, r.status_504) = (true, true, true),
                "grpc-unavailable" => r.grpc_unavailable = true,
                other => {
                    return Err(format!(
                        "unknown retry condition `{other}`: expected connect-failure, timeout, reset, 502, 503, 504, 5xx or grpc-unavailable"
                    ));
                }
            }
        }
        Ok(r)
    }

    pub fn status(&self, status: u16) -> bool {
        match status {
            502 => self.status_502,
            503 => self.status_503,
            504 => self.status_504,
            _ => false,
        }
    }
}

/// A validated retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub on: RetryOn,
    pub non_idempotent: bool,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub budget_ratio: f64,
    pub budget_min_per_second: u32,
    pub buffer_body_bytes: u64,
}

impl RetryPolicy {
    pub fn from_config(c: &RetryConfig) -> Result<Self, Vec<(&'static str, String)>> {
        let mut p = Vec::new();
        let on = RetryOn::parse(&c.retry_on).unwrap_or_else(|e| {
            p.push(("retry_on", e));
            RetryOn::default()
        });
        if c.attempts == 0 || c.attempts > 10 {
            p.push(("attempts", format!("must be between 1 and 10, got {}", c.attempts)));
        }
        if !(0.0..=1.0).contains(&c.budget_ratio) {
            p.push(("budget_ratio", format!("must be between 0.0 and 1.0, got {}", c.budget_ratio)));
        }
        if c.backoff_max < c.backoff_base {
            p.push(("backoff_max", "must not be shorter than backoff_base".into()));
        }
        if !p.is_empty() {
            return Err(p);
        }
        Ok(RetryPolicy {
            attempts: c.attempts,
            on,
            non_idempotent: c.non_idempotent,
            backoff_base: c.backoff_base.0,
            backoff_max: c.backoff_max.0,
            budget_ratio: c.budget_ratio,
            budget_min_per_second: c.budget_min_per_second,
            buffer_body_bytes: c.buffer_body_bytes.0,
        })
    }

    /// Backoff before retry number `retry` (1-based): uniform in `[0, min(max, base × 2^(retry-1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.backoff_base.saturating_mul(1u32 << (retry.saturating_sub(1)).min(16));
        let cap = exp.min(self.backoff_max);
        cap.mul_f64(fastrand::f64())
    }
}

struct Bucket {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A per-service retry budget over a sliding 10-second window.
pub struct RetryBudget {
    buckets: [Bucket; WINDOW_SECS as usize],
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            buckets: std::array::from_fn(|_| Bucket {
                second: AtomicU64::new(u64::MAX),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            }),
        }
    }
}

impl RetryBudget {
    fn bucket(&self, sec: u64) -> &Bucket {
        let b = &self.buckets[(sec % WINDOW_SECS) as usize];
        let seen = b.second.load(Ordering::Acquire);
        if seen != sec && b.second.compare_exchange(seen, sec, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // This thread moved the bucket to a new second. A concurrent add may land in the
            // old count and be lost; the budget tolerates that imprecision.
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts one original request.
    pub fn deposit(&self) {
        let sec = clock::now() / 1_000_000_000;
        self.bucket(sec).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&self, ratio: f64, min_per_second: u32) -> bool {
        let sec = clock::now() / 1_000_000_000;
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let s = b.second.load(Ordering::Acquire);
            if s != u64::MAX && sec.saturating_sub(s) < WINDOW_SECS {
                requests += b.requests.load(Ordering::Relaxed);
                retries += b.retries.load(Ordering::Relaxed);
            }
        }
        let allowed = requests as f64 * ratio + (min_per_second as u64 * WINDOW_SECS) as f64;
        if (retries as f64) < allowed {
            self.bucket(sec).retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_retries_at_ratio() {
        let b = RetryBudget::default();
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..100).filter(|_| b.try_withdraw(0.2, 0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn backoff_is_capped() {
        let p = RetryPolicy::from_config(&RetryConfig::default()).unwrap();
        for n in 1..10 {
            assert!(p.backoff(n) <= p.backoff_max);
        }
        assert!(RetryOn::parse(&["teapot".into()]).is_err());
    }
}
