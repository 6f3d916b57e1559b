//! Pull collection, as Prometheus does it: jobs ([`job`]) turn discovered label sets (static
//! targets, the registry's instances) into targets through relabeling ([`relabel`]); the
//! [`Manager`] runs one loop per target ([`scraper`]) and keeps each target's health for the
//! targets API. Targets that appear start scraping; targets that go are marked stale.
//!
//! # Layout
//! - [`job`]: job config (Prometheus's `scrape_config` keys), checks, targets.
//! - [`relabel`]: `relabel_configs` / `metric_relabel_configs`.
//! - [`scraper`]: one target's loop: fetch, parse, label, limits, synthetic series, staleness.

pub mod job;
pub mod relabel;
pub mod scraper;

use crate::metadata::Metadata;
use crate::storage::Appender;
use job::{Dropped, Job, Target};
use scraper::{Health, HttpClient, Scraper};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

struct Running {
    target: Arc<Target>,
    health: Arc<Mutex<Health>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A target and its health, for the targets API and page.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub target: Target,
    pub health: Health,
}

/// Runs the scrape loops.
pub struct Manager {
    appender: Arc<dyn Appender>,
    metadata: Arc<Metadata>,
    client: HttpClient,
    running: Mutex<HashMap<String, Running>>,
    dropped: Mutex<Vec<(String, Dropped)>>,
}

impl Manager {
    /// A manager appending to `appender`. Loops are spawned on the current Tokio runtime.
    pub fn new(appender: Arc<dyn Appender>, metadata: Arc<Metadata>) -> Arc<Manager> {
        Arc::new(Manager {
            appender,
            metadata,
            client: scraper::http_client(),
            running: Mutex::new(HashMap::new()),
            dropped: Mutex::new(Vec::new()),
        })
    }

    /// Makes the running loops exactly `jobs`' targets from `discovered` (per job name):
    /// new targets start, vanished ones stop and mark their series stale, unchanged ones
    /// keep running undisturbed.
    pub fn sync(&self, jobs: &[Arc<Job>], mut discovered: HashMap<String, Vec<job::Discovered>>) {
        let mut wanted: Vec<(Arc<Job>, Target)> = Vec::new();
        let mut dropped = Vec::new();
        for j in jobs {
            let mut d = j.static_discovered();
            d.extend(discovered.remove(&j.name).unwrap_or_default());
            let (targets, gone) = j.targets(d);
            wanted.extend(targets.into_iter().map(|t| (j.clone(), t)));
            dropped.extend(gone.into_iter().map(|g| (j.name.clone(), g)));
        }
        *self.dropped.lock().unwrap_or_else(|e| e.into_inner()) = dropped;
        let keys: HashSet<String> = wanted.iter().map(|(_, t)| t.key()).collect();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|k, r| {
            let keep = keys.contains(k);
            if !keep && let Some(stop) = r.stop.take() {
                let _ = stop.send(());
            }
            keep
        });
        for (job, target) in wanted {
            let key = target.key();
            if running.contains_key(&key) {
                continue;
            }
            let target = Arc::new(target);
            let health = Arc::new(Mutex::new(Health { health: "unknown", ..Health::default() }));
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let scraper = Scraper {
                target: target.clone(),
                job,
                appender: self.appender.clone(),
                client: self.client.clone(),
                health: health.clone(),
                metadata: self.metadata.clone(),
                previous: HashSet::new(),
            };
            tokio::spawn(scraper.run(stopped));
            running.insert(key, Running { target, health, stop: Some(stop) });
        }
    }

    /// Every active target with its health, sorted by job and URL.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TargetStatus> = running
            .values()
            .map(|r| TargetStatus {
                target: (*r.target).clone(),
                health: r.health.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.target.job, &a.target.url).cmp(&(&b.target.job, &b.target.url)));
        out
    }

    /// Targets relabeling dropped, with their job.
    pub fn dropped(&self) -> Vec<(String, Dropped)> {
        self.dropped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops every loop (their series are marked stale).
    pub fn stop_all(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for (_, mut r) in running.drain() {
            if let Some(stop) = r.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
