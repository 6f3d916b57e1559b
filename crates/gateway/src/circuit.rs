//! Circuit breakers with Resilience4j's semantics.
//!
//! Closed: calls pass and their outcomes fill a sliding window (the last N calls, or the calls
//! of the last N seconds). Once the window holds `minimum_calls`, a failure rate or slow-call
//! rate at or above its threshold opens the circuit. Open: calls fail fast until
//! `wait_in_open` has passed, then the circuit is half-open. Half-open: `half_open_calls` trial
//! calls pass (others fail fast); when all have finished, their rates decide: re-open or close.
//!
//! The state is read lock-free on every call; the window is updated under a short mutex.
//!
//! A call holds a [`Permit`] from [`CircuitBreaker::try_acquire`] until it records its
//! outcome. A permit dropped without an outcome (the request's future was cancelled, or the
//! try was never sent) gives its half-open trial slot back, so a cancelled call never holds
//! the circuit half-open.

use crate::clock;
use crate::config::CircuitBreakerConfig;
use serde::Serialize;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Circuit state, as shown in the admin API and the `signalbox_gateway_circuit_state` gauge
/// (0 closed, 1 open, 2 half-open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// How a call ended, as far as the breaker cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub failure: bool,
    pub slow: bool,
}

/// Validated breaker settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub time_window: bool,
    pub window_size: u32,
    pub minimum_calls: u32,
    pub failure_rate: f64,
    pub slow_rate: f64,
    pub slow_call: Duration,
    pub wait_in_open: Duration,
    pub half_open_calls: u32,
}

impl Settings {
    /// Validates `c`; problems are `(field, message)`.
    pub fn from_config(c: &CircuitBreakerConfig) -> Result<Self, Vec<(&'static str, String)>> {
        let mut p = Vec::new();
        let time_window = match c.window.as_str() {
            "count" => false,
            "time" => true,
            other => {
                p.push(("window", format!("unknown window `{other}`: expected `count` or `time`")));
                false
            }
        };
        if c.window_size == 0 {
            p.push(("window_size", "must be at least 1".into()));
        }
        if time_window && c.window_size > 3600 {
            p.push(("window_size", "a time window is at most 3600 seconds".into()));
        }
        if !time_window && c.window_size > 100_000 {
            p.push(("window_size", "a count window holds at most 100000 calls".into()));
        }
        if c.minimum_calls == 0 {
            p.push(("minimum_calls", "must be at least 1".into()));
        }
        for (field, v) in [
            ("failure_rate_threshold", c.failure_rate_threshold),
            ("slow_call_rate_threshold", c.slow_call_rate_threshold),
        ] {
            if !(v > 0.0 && v <= 100.0) {
                p.push((field, format!("must be a percentage in (0, 100], got {v}")));
            }
        }
        if c.half_open_calls == 0 {
            p.push(("half_open_calls", "must be at least 1".into()));
        }
        if !p.is_empty() {
            return Err(p);
        }
        Ok(Settings {
            time_window,
            window_size: c.window_size,
            minimum_calls: c.minimum_calls,
            failure_rate: c.failure_rate_threshold,
            slow_rate: c.slow_call_rate_threshold,
            slow_call: c.slow_call_duration.0,
            wait_in_open: c.wait_in_open.0,
            half_open_calls: c.half_open_calls,
        })
    }
}

#[derive(Clone, Copy, Default)]
struct Tally {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.calls += 1;
        self.failures += o.failure as u32;
        self.slow += o.slow as u32;
    }
    fn sub(&mut self, o: Outcome) {
        self.calls -= 1;
        self.failures -= o.failure as u32;
        self.slow -= o.slow as u32;
    }
    fn trips(&self, s: &Settings) -> bool {
        let calls = self.calls as f64;
        self.failures as f64 * 100.0 / calls >= s.failure_rate || self.slow as f64 * 100.0 / calls >= s.slow_rate
    }
}

enum Window {
    /// The last N outcomes in a ring.
    Count { ring: Vec<Outcome>, next: usize, total: Tally },
    /// One tally per second for the last N seconds, tagged with its second.
    Time { buckets: Vec<(u64, Tally)> },
}

impl Window {
    fn new(s: &Settings) -> Self {
        if s.time_window {
            Window::Time { buckets: vec![(u64::MAX, Tally::default()); s.window_size as usize] }
        } else {
            Window::Count { ring: Vec::with_capacity(s.window_size as usize), next: 0, total: Tally::default() }
        }
    }

    fn record(&mut self, o: Outcome, size: u32, now_ns: u64) -> Tally {
        match self {
            Window::Count { ring, next, total } => {
                if ring.len() < size as usize {
                    ring.push(o);
                } else {
                    total.sub(ring[*next]);
                    ring[*next] = o;
                    *next = (*next + 1) % ring.len();
                }
                total.add(o);
                *total
            }
            Window::Time { buckets } => {
                let sec = now_ns / 1_000_000_000;
                let n = buckets.len() as u64;
                let b = &mut buckets[(sec % n) as usize];
                if b.0 != sec {
                    *b = (sec, Tally::default());
                }
                b.1.add(o);
                let mut sum = Tally::default();
                for (s, t) in buckets.iter() {
                    if *s != u64::MAX && sec.saturating_sub(*s) < n {
                        sum.calls += t.calls;
                        sum.failures += t.failures;
                        sum.slow += t.slow;
                    }
                }
                sum
            }
        }
    }
}

struct Inner {
    window: Window,
    opened_at: u64,
    half_open_started: u64,
    half_open_admitted: u32,
    half_open: Tally,
    /// Counts half-open periods, so a permit from an earlier one does not return a slot to
    /// the current one.
    half_open_epoch: u64,
    opened_count: u64,
}

/// One circuit breaker.
pub struct CircuitBreaker {
    settings: Settings,
    state: AtomicU8,
    /// Permits handed out and not yet recorded or dropped.
    outstanding: AtomicU32,
    inner: Mutex<Inner>,
}

/// Permission for one call, from [`CircuitBreaker::try_acquire`]. Consume it with
/// [`record`](Permit::record); dropping it unrecorded releases it without an outcome.
#[must_use = "a permit records the call's outcome or is released when dropped"]
pub struct Permit {
    breaker: Option<Arc<CircuitBreaker>>,
    /// The half-open period the permit was admitted in, if any.
    half_open_epoch: Option<u64>,
}

impl Permit {
    /// Records the call's outcome. Returns the circuit's new state when this changed it.
    pub fn record(mut self, o: Outcome) -> Option<State> {
        let b = self.breaker.take()?;
        b.outstanding.fetch_sub(1, Ordering::Relaxed);
        b.record(o)
    }

    /// The breaker this permit belongs to.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_deref()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            b.outstanding.fetch_sub(1, Ordering::Relaxed);
            if let Some(epoch) = self.half_open_epoch {
                b.release_half_open(epoch);
            }
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy)]
pub struct Rejected {
    /// Time until the circuit half-opens (zero while half-open trials are running).
    pub retry_after: Duration,
}

impl CircuitBreaker {
    pub fn new(settings: Settings) -> Self {
        let window = Window::new(&settings);
        CircuitBreaker {
            settings,
            state: AtomicU8::new(State::Closed as u8),
            outstanding: AtomicU32::new(0),
            inner: Mutex::new(Inner {
                window,
                opened_at: 0,
                half_open_started: 0,
                half_open_admitted: 0,
                half_open: Tally::default(),
                half_open_epoch: 0,
                opened_count: 0,
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The current state (an open circuit whose wait has passed still reads open until a
    /// call asks for permission).
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        }
    }

    /// Whether a call could pass now, without taking a half-open permit. Balancers use this
    /// to skip endpoints cheaply.
    pub fn looks_available(&self) -> bool {
        match self.state() {
            State::Closed => true,
            _ => {
                let inner = self.lock();
                match self.state() {
                    State::Closed => true,
                    State::Open => clock::now() >= inner.opened_at + clock::nanos(self.settings.wait_in_open),
                    State::HalfOpen => {
                        inner.half_open_admitted < self.settings.half_open_calls || self.half_open_stale(&inner)
                    }
                }
            }
        }
    }

    /// Asks to make a call. On `Ok` the returned permit records the call's outcome, or is
    /// released when dropped.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let half_open_epoch = self.admit()?;
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Ok(Permit { breaker: Some(self.clone()), half_open_epoch })
    }

    /// Permits handed out and neither recorded nor dropped yet.
    pub fn outstanding_permits(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Admits a call; `Some(epoch)` when it is a half-open trial.
    fn admit(&self) -> Result<Option<u64>, Rejected> {
        if self.state() == State::Closed {
            return Ok(None);
        }
        let mut inner = self.lock();
        let now = clock::now();
        match self.state() {
            State::Closed => Ok(None),
            State::Open => {
                let until = inner.opened_at + clock::nanos(self.settings.wait_in_open);
                if now < until {
                    return Err(Rejected { retry_after: std::time::Duration::from_nanos(until - now) });
                }
                self.enter_half_open(&mut inner, now);
                inner.half_open_admitted = 1;
                Ok(Some(inner.half_open_epoch))
            }
            State::HalfOpen => {
                if self.half_open_stale(&inner) {
                    // Trial calls that never reported must not hold the circuit half-open
                    // forever: start a fresh trial.
                    self.enter_half_open(&mut inner, now);
                }
                if inner.half_open_admitted < self.settings.half_open_calls {
                    inner.half_open_admitted += 1;
                    Ok(Some(inner.half_open_epoch))
                } else {
                    Err(Rejected { retry_after: Duration::ZERO })
                }
            }
        }
    }

    /// Gives back a half-open trial slot whose call ended without an outcome.
    fn release_half_open(&self, epoch: u64) {
        let mut inner = self.lock();
        if self.state() == State::HalfOpen && inner.half_open_epoch == epoch && inner.half_open_admitted > 0 {
            inner.half_open_admitted -= 1;
        }
    }

    /// Records the outcome of a call admitted by [`try_acquire`](Self::try_acquire) (through
    /// its [`Permit`]). Returns the new state when this outcome changed it.
    fn record(&self, o: Outcome) -> Option<State> {
        let mut inner = self.lock();
        let now = clock::now();
        match self.state() {
            State::Closed => {
                let t = inner.window.record(o, self.settings.window_size, now);
                if t.calls >= self.settings.minimum_calls && t.trips(&self.settings) {
                    self.open(&mut inner, now);
                    return Some(State::Open);
                }
                None
            }
            State::Open => None,
            State::HalfOpen => {
                inner.half_open.add(o);
                if inner.half_open.calls >= self.settings.half_open_calls {
                    if inner.half_open.trips(&self.settings) {
                        self.open(&mut inner, now);
                        Some(State::Open)
                    } else {
                        inner.window = Window::new(&self.settings);
                        self.state.store(State::Closed as u8, Ordering::Release);
                        Some(State::Closed)
                    }
                } else {
                    None
                }
            }
        }
    }

    /// How many times this circuit has opened.
    pub fn opened_count(&self) -> u64 {
        self.lock().opened_count
    }

    fn open(&self, inner: &mut Inner, now: u64) {
        inner.opened_at = now;
        inner.opened_count += 1;
        self.state.store(State::Open as u8, Ordering::Release);
    }

    fn enter_half_open(&self, inner: &mut Inner, now: u64) {
        inner.half_open_started = now;
        inner.half_open_epoch += 1;
        inner.half_open_admitted = 0;
        inner.half_open = Tally::default();
        self.state.store(State::HalfOpen as u8, Ordering::Release);
    }

    fn half_open_stale(&self, inner: &Inner) -> bool {
        clock::now() > inner.half_open_started + clock::nanos(self.settings.wait_in_open.max(Duration::from_secs(1)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The guarded data stays consistent across a panic in another holder; keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
