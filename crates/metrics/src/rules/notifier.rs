//! Sends alerts to Alertmanagers (`POST {url}/api/v2/alerts`) and to webhooks (the
//! Alertmanager webhook payload, version 4), from a bounded queue: when it is full the
//! oldest alerts are dropped and counted, as Prometheus's notifier does. Each request has a
//! timeout and is retried with a growing delay.

use super::alert::{Alert, rfc3339};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Alerts the queue holds at most.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Alerts sent in one request at most.
pub const MAX_BATCH: usize = 64;
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per request (the first and the retries).
pub const ATTEMPTS: u32 = 3;

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An alert as it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
}

impl Notification {
    /// The notification of `a`, produced by the rule with `expr`.
    pub fn of(a: &Alert, expr: &str, external_url: &str) -> Notification {
        Notification {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at_ms: a.fired_at.unwrap_or(a.active_at),
            ends_at_ms: a.resolved_at.unwrap_or(a.valid_until),
            generator_url: generator_url(external_url, expr),
        }
    }

    fn resolved(&self, now_ms: i64) -> bool {
        self.ends_at_ms <= now_ms
    }

    fn fingerprint(&self) -> String {
        // FNV-1a over the sorted labels: stable across restarts and builds.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in &self.labels {
            for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }
}

/// The link back to the expression in the console.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let q: String = form_urlencoded(expr);
    format!("{}/graph?g0.expr={q}&g0.tab=1", external_url.trim_end_matches('/'))
}

fn form_urlencoded(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Notifier counters, for the node's own metrics.
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// Alerts delivered (per target).
    pub sent: AtomicU64,
    /// Requests that failed after every retry.
    pub errors: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// The notification queue and its targets.
pub struct Notifier {
    queue: Mutex<VecDeque<Notification>>,
    capacity: usize,
    wake: tokio::sync::Notify,
    alertmanagers: Vec<String>,
    webhooks: Vec<String>,
    external_url: String,
    pub stats: NotifierStats,
    client: Client,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Notifier {
    /// A notifier; inside a Tokio runtime, its sender task starts at once.
    pub fn new(
        alertmanagers: Vec<String>,
        webhooks: Vec<String>,
        external_url: String,
        capacity: usize,
    ) -> Arc<Notifier> {
        let n = Arc::new(Notifier {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: tokio::sync::Notify::new(),
            alertmanagers,
            webhooks,
            external_url,
            stats: NotifierStats::default(),
            client: client(),
            task: Mutex::new(None),
        });
        if n.has_targets()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            *n.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(rt.spawn(n.clone().run()));
        }
        n
    }

    /// Stops the sender task (what is still queued is not sent).
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }

    /// Whether there is anywhere to send to.
    pub fn has_targets(&self) -> bool {
        !self.alertmanagers.is_empty() || !self.webhooks.is_empty()
    }

    /// Queues `alerts`, dropping the oldest queued ones past the capacity.
    pub fn send(&self, alerts: Vec<Notification>) {
        if alerts.is_empty() || !self.has_targets() {
            return;
        }
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.extend(alerts);
            while q.len() > self.capacity {
                q.pop_front();
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.wake.notify_one();
    }

    /// Alerts waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn run(self: Arc<Self>) {
        loop {
            let batch: Vec<Notification> = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                // Woken by `send`; the timeout only guards against a lost wake-up.
                let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
                continue;
            }
            let now = now_ms();
            let am_body = Bytes::from(alertmanager_payload(&batch).to_string());
            let hook_body = Bytes::from(webhook_payload(&batch, &self.external_url, now).to_string());
            let mut sends = Vec::new();
            for base in &self.alertmanagers {
                let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
                sends.push((url, am_body.clone()));
            }
            for url in &self.webhooks {
                sends.push((url.clone(), hook_body.clone()));
            }
            let results = futures_join(sends.into_iter().map(|(url, body)| {
                let this = self.clone();
                tokio::spawn(async move { this.post_with_retries(&url, body).await })
            }))
            .await;
            for ok in results {
                if ok {
                    self.stats.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                } else {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn post_with_retries(&self, url: &str, body: Bytes) -> bool {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            match self.post(url, body.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(url, attempt, error = %e, "sending alerts failed");
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        false
    }

    async fn post(&self, url: &str, body: Bytes) -> Result<(), String> {
        let req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("signalbox/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| format!("bad URL {url:?}: {e}"))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).chars().take(200).collect::<String>())
            .unwrap_or_default();
        Err(format!("{status}: {body}"))
    }
}

async fn futures_join(handles: impl Iterator<Item = tokio::task::JoinHandle<bool>>) -> Vec<bool> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap_or(false));
    }
    out
}

fn client() -> Client {
    crate::scrape::scraper::http_client()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The body of `POST /api/v2/alerts`.
pub fn alertmanager_payload(alerts: &[Notification]) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at_ms),
                    "endsAt": rfc3339(a.ends_at_ms),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

/// The Alertmanager webhook payload (version 4) for `alerts`, grouped by nothing: the
/// common labels and annotations are those all alerts share.
pub fn webhook_payload(alerts: &[Notification], external_url: &str, now_ms: i64) -> Value {
    let common = |get: fn(&Notification) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let mut it = alerts.iter();
        let Some(first) = it.next() else { return BTreeMap::new() };
        let mut c = get(first).clone();
        for a in it {
            c.retain(|k, v| get(a).get(k) == Some(v));
        }
        c
    };
    let firing = alerts.iter().any(|a| !a.resolved(now_ms));
    let list: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let resolved = a.resolved(now_ms);
            json!({
                "status": if resolved { "resolved" } else { "firing" },
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms),
                "endsAt": if resolved { rfc3339(a.ends_at_ms) } else { "0001-01-01T00:00:00Z".into() },
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint(),
            })
        })
        .collect();
    let common_labels = common(|a| &a.labels);
    let group_labels: BTreeMap<String, String> =
        common_labels.iter().filter(|(k, _)| *k == "alertname").map(|(k, v)| (k.clone(), v.clone())).collect();
    let group_key =
        format!("{{}}:{{{}}}", group_labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(","));
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "signalbox",
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common(|a| &a.annotations),
        "externalURL": external_url,
        "alerts": list,
    })
}
