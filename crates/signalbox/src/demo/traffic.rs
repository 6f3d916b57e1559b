//! The load: requests to web-frontend through the gateway at a steady rate with Poisson
//! arrivals and a fixed mix of pages, drawn from a seeded generator so a seed gives the same
//! sequence. Requests run concurrently up to a bound; one that finds no slot is skipped and
//! counted, so a slow system cannot pile up unbounded work.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use signalbox_core::shutdown::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The pages the visitors load, with their weights.
const MIX: &[(&str, &str, u32)] =
    &[("GET", "/web-frontend/", 30), ("GET", "/web-frontend/products", 45), ("POST", "/web-frontend/checkout", 25)];

/// Requests in flight at most.
const MAX_IN_FLIGHT: usize = 128;

/// Counts since the start.
#[derive(Default)]
pub struct TrafficStats {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    /// Answered with a 5xx.
    pub failed: AtomicU64,
    /// No answer (connection error or timeout).
    pub unanswered: AtomicU64,
    /// Not sent because `MAX_IN_FLIGHT` requests were already running.
    pub skipped: AtomicU64,
    /// Sum of the answered requests' durations, in microseconds.
    pub latency_us: AtomicU64,
}

/// A snapshot of [`TrafficStats`], for the summaries.
#[derive(Clone, Copy, Default)]
pub struct Counts {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub unanswered: u64,
    pub latency_us: u64,
}

impl TrafficStats {
    pub fn counts(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            unanswered: self.unanswered.load(Ordering::Relaxed),
            latency_us: self.latency_us.load(Ordering::Relaxed),
        }
    }
}

/// Sends `rate` requests per second to `gateway` until `stop`, then waits (up to 5 s) for
/// the requests in flight.
pub async fn run(gateway: String, rate: f64, seed: u64, stats: Arc<TrafficStats>, mut stop: Shutdown) {
    let http: HttpClient<_, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(10)).build_http();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut rng = fastrand::Rng::with_seed(seed);
    let total: u32 = MIX.iter().map(|m| m.2).sum();
    let mut next = Instant::now();
    loop {
        // Exponential gaps: a Poisson process of `rate` arrivals per second.
        let gap = -(1.0 - rng.f64()).ln() / rate;
        next += Duration::from_secs_f64(gap.min(10.0));
        tokio::select! {
            _ = stop.wait() => break,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let mut pick = rng.u32(0..total);
        let (method, path, _) = *MIX
            .iter()
            .find(|m| {
                if pick < m.2 {
                    return true;
                }
                pick -= m.2;
                false
            })
            .unwrap_or(&MIX[0]);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        stats.sent.fetch_add(1, Ordering::Relaxed);
        let (http, stats, url) = (http.clone(), stats.clone(), format!("{gateway}{path}"));
        tokio::spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let Ok(req) = http::Request::builder().method(method).uri(url).body(Full::new(Bytes::new())) else {
                return;
            };
            let answer = tokio::time::timeout(Duration::from_secs(15), async {
                let resp = http.request(req).await.ok()?;
                let status = resp.status();
                resp.into_body().collect().await.ok()?;
                Some(status)
            })
            .await;
            match answer {
                Ok(Some(status)) => {
                    stats.latency_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    let counter = if status.is_server_error() { &stats.failed } else { &stats.ok };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    stats.unanswered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Let the requests in flight finish (bounded), so no service is stopped under them.
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(MAX_IN_FLIGHT as u32)).await;
}

/// The request rate at `speed`: a few requests per second, more when the demo runs fast
/// so that short windows still hold enough requests.
pub fn rate(speed: f64) -> f64 {
    8.0 * speed.clamp(1.0, 3.0)
}
