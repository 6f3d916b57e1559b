//! Pull collection, as Prometheus does it: jobs ([`job`]) turn discovered label sets (static
//! targets, the registry's instances) into targets through relabeling ([`relabel`]); the
//! [`Manager`] runs one loop per target ([`scraper`]) and keeps each target's health for the
//! targets API. Targets that appear start scraping; targets that go are marked stale. In a
//! cluster each target is scraped by one live node ([`Manager::share_by`]).
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
use signalbox_core::ownership::{Members, Owners};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

struct Running {
    health: Arc<Mutex<Health>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A target and its health, for the targets API and page.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub target: Target,
    pub health: Health,
    /// The member that scrapes it when work is shared out in a cluster (`None` on a single
    /// node).
    pub owner: Option<String>,
    /// Whether this node scrapes it.
    pub scraped_here: bool,
}

/// Runs the scrape loops.
///
/// In a cluster every node computes the same targets from the same config and registry,
/// and scrapes only those it owns ([`Target::owner_key`] over the live members, see
/// [`signalbox_core::ownership`]); when the members change (or this node loses its lease)
/// the loops are started and stopped at once.
pub struct Manager {
    appender: Arc<dyn Appender>,
    metadata: Arc<Metadata>,
    client: HttpClient,
    /// Every target the jobs yield, scraped here or not.
    wanted: Mutex<Vec<(Arc<Job>, Arc<Target>)>>,
    /// The loops of the targets this node scrapes, by [`Target::key`].
    running: Mutex<HashMap<String, Running>>,
    dropped: Mutex<Vec<(String, Dropped)>>,
    owners: Mutex<Owners>,
    /// The members as the last reconcile saw them: who owned what before a change.
    seen: Mutex<Arc<Members>>,
    follow: Mutex<Option<tokio::task::AbortHandle>>,
}

/// How long a node waits before scraping a target handed over by a member that is still
/// live (a member joined): that member stops on the same watch event, usually within
/// milliseconds, so the two never scrape the target in the same moment. A target whose
/// owner died starts at once (its lease has ended: it stopped long before).
const HANDOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Manager {
    /// A manager appending to `appender`. Loops are spawned on the current Tokio runtime.
    pub fn new(appender: Arc<dyn Appender>, metadata: Arc<Metadata>) -> Arc<Manager> {
        Arc::new(Manager {
            appender,
            metadata,
            client: scraper::http_client(),
            wanted: Mutex::new(Vec::new()),
            running: Mutex::new(HashMap::new()),
            dropped: Mutex::new(Vec::new()),
            owners: Mutex::new(signalbox_core::ownership::single_node()),
            seen: Mutex::new(Arc::new(Members::single())),
            follow: Mutex::new(None),
        })
    }

    /// Shares the targets out over the members `owners` reports: from now on this node
    /// scrapes only the targets it owns, and re-checks whenever the members change. Must be
    /// called inside a Tokio runtime.
    pub fn share_by(self: &Arc<Self>, owners: Owners) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = owners.borrow().clone();
        *self.owners.lock().unwrap_or_else(|e| e.into_inner()) = owners.clone();
        self.reconcile();
        let me = Arc::downgrade(self);
        let mut rx = owners;
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(m) = me.upgrade() else { return };
                m.reconcile();
            }
        });
        if let Some(old) = self.follow.lock().unwrap_or_else(|e| e.into_inner()).replace(task.abort_handle()) {
            old.abort();
        }
    }

    /// Makes the targets exactly `jobs`' targets from `discovered` (per job name): new
    /// targets this node owns start, vanished ones stop and mark their series stale,
    /// unchanged ones keep running undisturbed.
    pub fn sync(&self, jobs: &[Arc<Job>], mut discovered: HashMap<String, Vec<job::Discovered>>) {
        let mut wanted: Vec<(Arc<Job>, Arc<Target>)> = Vec::new();
        let mut dropped = Vec::new();
        for j in jobs {
            let mut d = j.static_discovered();
            d.extend(discovered.remove(&j.name).unwrap_or_default());
            let (targets, gone) = j.targets(d);
            wanted.extend(targets.into_iter().map(|t| (j.clone(), Arc::new(t))));
            dropped.extend(gone.into_iter().map(|g| (j.name.clone(), g)));
        }
        *self.dropped.lock().unwrap_or_else(|e| e.into_inner()) = dropped;
        *self.wanted.lock().unwrap_or_else(|e| e.into_inner()) = wanted;
        self.reconcile();
    }

    /// Runs the loops of the wanted targets this node owns, and only those.
    fn reconcile(&self) {
        let members = self.owners.lock().unwrap_or_else(|e| e.into_inner()).borrow().clone();
        let before = std::mem::replace(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()), members.clone());
        let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<&(Arc<Job>, Arc<Target>)> = wanted.iter().filter(|(_, t)| members.owns(&t.owner_key())).collect();
        let keys: HashSet<String> = mine.iter().map(|(_, t)| t.key()).collect();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let was_running = running.len();
        running.retain(|k, r| {
            let keep = keys.contains(k);
            if !keep && let Some(stop) = r.stop.take() {
                let _ = stop.send(());
            }
            keep
        });
        let (kept, mut started) = (running.len(), 0usize);
        for (job, target) in mine {
            let key = target.key();
            if running.contains_key(&key) {
                continue;
            }
            let health = Arc::new(Mutex::new(Health { health: "unknown", ..Health::default() }));
            let (stop, mut stopped) = tokio::sync::oneshot::channel();
            // Handed over by a member that is still live, or owned by this node in name
            // while it had no lease yet (a member may have run it until it saw this node's
            // key): let the other stop first. A dead owner's targets start at once.
            let handover = match before.owner(&target.owner_key()) {
                None => false,
                Some(prev) if Some(prev) == members.me.as_deref() => true,
                Some(prev) => members.members.contains(prev),
            };
            let delay = if handover { HANDOVER_GRACE } else { std::time::Duration::ZERO };
            let scraper = Scraper {
                target: target.clone(),
                job: job.clone(),
                appender: self.appender.clone(),
                client: self.client.clone(),
                health: health.clone(),
                metadata: self.metadata.clone(),
                previous: HashSet::new(),
            };
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut stopped => return,
                    }
                }
                scraper.run(stopped).await
            });
            running.insert(key, Running { health, stop: Some(stop) });
            started += 1;
        }
        if members.clustered() && (started > 0 || kept < was_running) {
            tracing::info!(
                started,
                stopped = was_running - kept,
                scraping = running.len(),
                of = wanted.len(),
                live = members.live,
                "scrape targets moved"
            );
        }
    }

    /// Every target with its health (targets another node scrapes show `unknown`), sorted
    /// by job and URL.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let members = self.owners.lock().unwrap_or_else(|e| e.into_inner()).borrow().clone();
        let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TargetStatus> = wanted
            .iter()
            .map(|(_, t)| {
                let here = running.get(&t.key());
                TargetStatus {
                    target: (**t).clone(),
                    health: match here {
                        Some(r) => r.health.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                        None => Health { health: "unknown", ..Health::default() },
                    },
                    owner: members.owner(&t.owner_key()).map(str::to_owned),
                    scraped_here: here.is_some(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.target.job, &a.target.url).cmp(&(&b.target.job, &b.target.url)));
        out
    }

    /// How many targets the jobs yield, and how many of them this node scrapes.
    pub fn counts(&self) -> (usize, usize) {
        let total = self.wanted.lock().unwrap_or_else(|e| e.into_inner()).len();
        (total, self.running.lock().unwrap_or_else(|e| e.into_inner()).len())
    }

    /// Targets relabeling dropped, with their job.
    pub fn dropped(&self) -> Vec<(String, Dropped)> {
        self.dropped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops every loop (their series are marked stale).
    pub fn stop_all(&self) {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
