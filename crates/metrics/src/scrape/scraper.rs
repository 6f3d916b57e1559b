//! One target's scrape loop: fetch (with the scrape timeout and the body limit, gzip
//! inflated under the same limit), parse the text or OpenMetrics format, attach the target's
//! labels (`honor_labels` decides conflicts; otherwise a scraped label that collides is kept
//! as `exported_<name>`), `metric_relabel_configs`, the sample limit, then append with the
//! synthetic series (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling`, `scrape_series_added`) and staleness markers for
//! the series the previous scrape had and this one has not (all of them when the scrape
//! failed or the target went away).

use super::job::{Job, Target};
use super::relabel;
use crate::exposition::{self, Limits};
use crate::storage::{Appender, Labels, stale_nan};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// The outbound client of scrapes and alert notifications: HTTP and HTTPS (web PKI roots),
/// a 5 s connect timeout, idle connections kept 90 s; `B` is the request body type.
pub fn http_client<B>() -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    B,
>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .expect("ring supports the default protocol versions");
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let conn = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(conn)
}

/// A target's state as the targets API shows it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: &'static str,
    pub last_error: String,
    pub last_scrape_ms: i64,
    pub last_duration: Duration,
    pub last_samples: usize,
}

pub(super) struct Scraper {
    pub target: Arc<Target>,
    pub job: Arc<Job>,
    pub appender: Arc<dyn Appender>,
    pub client: HttpClient,
    pub health: Arc<Mutex<Health>>,
    pub metadata: Arc<crate::metadata::Metadata>,
    /// Series of the previous scrape (scraped and synthetic).
    pub previous: HashSet<Labels>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn with_name(base: &Labels, name: &str) -> Labels {
    let mut l = base.clone();
    l.push(("__name__".into(), name.into()));
    l.sort();
    l
}

impl Scraper {
    /// Scrapes every interval until `stop` fires, then marks every series stale.
    pub async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        // Spread targets over the interval by a stable offset, as Prometheus does.
        let interval = self.target.interval;
        let offset = {
            let h = self
                .target
                .key()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
            Duration::from_millis(h % interval.as_millis().max(1) as u64)
        };
        tokio::select! {
            _ = tokio::time::sleep(offset) => {}
            _ = &mut stop => { return; }
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A stop also cancels a scrape in flight: a node that lost its lease (or the
        // target) must not finish one after the next owner may have started.
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = &mut stop => break,
            }
            tokio::select! {
                _ = self.scrape_once() => {}
                _ = &mut stop => break,
            }
        }
        let t = now_ms();
        let stale: Vec<(Labels, i64, f64)> = self.previous.drain().map(|l| (l, t, stale_nan())).collect();
        self.append(stale).await;
    }

    async fn append(&self, samples: Vec<(Labels, i64, f64)>) -> Option<crate::storage::Appended> {
        if samples.is_empty() {
            return Some(Default::default());
        }
        let appender = self.appender.clone();
        match tokio::task::spawn_blocking(move || appender.append(&samples)).await {
            Ok(Ok(a)) => Some(a),
            Ok(Err(e)) => {
                tracing::warn!(target = %self.target.url, error = %e, "scraped samples could not be stored");
                None
            }
            Err(_) => None,
        }
    }

    /// One scrape; public to the module for tests.
    pub async fn scrape_once(&mut self) {
        let start = Instant::now();
        let t = now_ms();
        let result = match tokio::time::timeout(self.target.timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Get \"{}\": context deadline exceeded (scrape timeout {:?})",
                self.target.url, self.target.timeout
            )),
        };
        let parsed = result.and_then(|(body, openmetrics)| self.samples(&body, openmetrics, t));
        let duration = start.elapsed();
        let base = &self.target.labels;
        let (mut samples, scraped, error) = match parsed {
            Ok((s, scraped)) => (s, scraped, None),
            Err(e) => (Vec::new(), 0, Some(e)),
        };
        let post_relabel = samples.len();
        let current: HashSet<Labels> = samples.iter().map(|(l, _, _)| l.clone()).collect();
        let added = current.iter().filter(|l| !self.previous.contains(*l)).count();
        let synthetic = [
            ("up", if error.is_none() { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", duration.as_secs_f64()),
            ("scrape_samples_scraped", scraped as f64),
            ("scrape_samples_post_metric_relabeling", post_relabel as f64),
            ("scrape_series_added", added as f64),
        ];
        let mut now_series = current;
        for (name, v) in synthetic {
            let l = with_name(base, name);
            now_series.insert(l.clone());
            samples.push((l, t, v));
        }
        for gone in self.previous.iter().filter(|l| !now_series.contains(*l)) {
            samples.push((gone.clone(), t, stale_nan()));
        }
        self.previous = now_series;
        // Health first: a reader that sees this scrape's samples sees its health too.
        {
            let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
            h.last_scrape_ms = t;
            h.last_duration = duration;
            h.last_samples = post_relabel;
            match &error {
                None => {
                    h.health = "up";
                    h.last_error.clear();
                }
                Some(e) => {
                    h.health = "down";
                    h.last_error = e.clone();
                }
            }
        }
        let appended = self.append(samples).await;
        if error.is_none()
            && let Some(a) = appended
            && a.over_limit > 0
        {
            let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
            h.last_error = format!("{} samples refused: the series limit is reached", a.over_limit);
        }
    }

    async fn fetch(&self) -> Result<(Vec<u8>, bool), String> {
        let url = &self.target.url;
        let mut req = http::Request::get(url);
        if let Some(a) = &self.job.authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        let req = req
            .header(
                http::header::ACCEPT,
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            )
            .header(http::header::ACCEPT_ENCODING, "gzip")
            .header(http::header::USER_AGENT, concat!("Signalbox/", env!("CARGO_PKG_VERSION")))
            .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", self.target.timeout.as_secs_f64()))
            .body(Empty::new())
            .map_err(|e| format!("invalid scrape URL {url}: {e}"))?;
        let resp = self.client.request(req).await.map_err(|e| format!("Get \"{url}\": {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("server returned HTTP status {}", resp.status()));
        }
        let openmetrics = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/openmetrics-text"));
        let gzip = resp
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let limit = self.job.body_limit;
        let mut body = resp.into_body();
        let mut raw: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Some(d) = frame.data_ref() {
                if raw.len() as u64 + d.len() as u64 > limit {
                    return Err(format!("body size limit exceeded ({limit} bytes)"));
                }
                raw.extend_from_slice(d);
            }
        }
        if gzip {
            let mut out = Vec::new();
            let mut dec = flate2::read::GzDecoder::new(raw.as_slice()).take(limit + 1);
            dec.read_to_end(&mut out).map_err(|e| format!("the gzip body is corrupt: {e}"))?;
            if out.len() as u64 > limit {
                return Err(format!("body size limit exceeded ({limit} bytes, after decompression)"));
            }
            raw = out;
        }
        Ok((raw, openmetrics))
    }

    /// Parsed samples with the target's labels, relabeled, under the limits, and the
    /// number scraped before relabeling.
    #[allow(clippy::type_complexity)]
    fn samples(&self, body: &[u8], openmetrics: bool, t: i64) -> Result<(Vec<(Labels, i64, f64)>, usize), String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
        let limits = Limits {
            max_samples: self.job.sample_limit.saturating_mul(2).max(1),
            max_labels: self.job.label_limit,
            ..Limits::default()
        };
        let exp = exposition::parse(text, openmetrics, limits).map_err(|e| format!("parsing the scrape: {e}"))?;
        let scraped = exp.samples.len();
        for (family, kind) in &exp.types {
            let entry = crate::metadata::Entry {
                kind: crate::metadata::kind_name(*kind),
                help: exp.help.get(family).cloned().unwrap_or_default(),
                unit: exp.units.get(family).cloned().unwrap_or_default(),
            };
            self.metadata.record(family, entry);
        }
        let mut out = Vec::with_capacity(scraped);
        let mut seen: HashSet<Labels> = HashSet::with_capacity(scraped);
        for s in exp.samples {
            let mut labels: Labels = s.labels;
            labels.push(("__name__".into(), s.name));
            for (k, v) in &self.target.labels {
                match labels.iter().position(|(n, _)| n == k) {
                    Some(i) if self.job.honor_labels => {
                        let _ = i;
                    }
                    Some(i) => {
                        let old = std::mem::replace(&mut labels[i].1, v.clone());
                        if !old.is_empty() {
                            labels.push((format!("exported_{k}"), old));
                        }
                    }
                    None => labels.push((k.clone(), v.clone())),
                }
            }
            labels.retain(|(_, v)| !v.is_empty());
            let Some(labels) = relabel::apply(&self.job.metric_relabel, labels) else { continue };
            if labels.len() > self.job.label_limit {
                return Err(format!("label_limit exceeded (metric: {}, labels: {})", name_of(&labels), labels.len()));
            }
            if !seen.insert(labels.clone()) {
                // A repeated series in one exposition: Prometheus keeps the first.
                continue;
            }
            let ts = if self.job.honor_timestamps { s.timestamp_ms.unwrap_or(t) } else { t };
            out.push((labels, ts, s.value));
            if out.len() > self.job.sample_limit {
                return Err(format!("sample limit exceeded (limit {})", self.job.sample_limit));
            }
        }
        Ok((out, scraped))
    }
}

fn name_of(l: &Labels) -> &str {
    l.iter().find(|(k, _)| k == "__name__").map(|(_, v)| v.as_str()).unwrap_or("")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
