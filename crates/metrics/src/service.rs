//! The metrics service as the node runs it: the database, the metadata, the scrape manager
//! and the push path's backpressure, in one handle the API and the node share.

use crate::metadata::Metadata;
use crate::scrape::Manager;
use crate::storage::{Appended, Appender, Labels, Queryable};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the service stores into and reads from.
pub trait Db: Queryable + Appender {}
impl<T: Queryable + Appender> Db for T {}

/// Why a push was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Too many pushes are being written; the sender should retry after the delay.
    #[error("the metrics store is busy; retry later")]
    Busy { retry_after: Duration },
    /// The batch was refused whole; the message names the sample.
    #[error("{0}")]
    Invalid(String),
    #[error("storing the samples failed: {0}")]
    Failed(String),
}

/// Samples the store refused, by reason, from every path (scrapes, pushes, rules, the
/// node's own metrics): what the cardinality and ordering limits cost.
#[derive(Default)]
pub struct Refusals {
    pub too_old: AtomicU64,
    pub duplicate: AtomicU64,
    pub over_limit: AtomicU64,
}

/// The database with its refusals counted.
struct Counted {
    db: Arc<dyn Db>,
    refusals: Arc<Refusals>,
    tee: signalbox_core::export::TeeSlot,
}

impl Queryable for Counted {
    fn select(
        &self,
        matchers: &[crate::storage::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<crate::storage::Series>, crate::storage::StorageError> {
        self.db.select(matchers, mint, maxt)
    }
    fn label_names(
        &self,
        matchers: &[crate::storage::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, crate::storage::StorageError> {
        self.db.label_names(matchers, mint, maxt)
    }
    fn label_values(
        &self,
        name: &str,
        matchers: &[crate::storage::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, crate::storage::StorageError> {
        self.db.label_values(name, matchers, mint, maxt)
    }
}

impl Appender for Counted {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<Appended, crate::storage::StorageError> {
        let a = self.db.append(samples)?;
        self.refusals.too_old.fetch_add(a.too_old as u64, Ordering::Relaxed);
        self.refusals.duplicate.fetch_add(a.duplicate as u64, Ordering::Relaxed);
        self.refusals.over_limit.fetch_add(a.over_limit as u64, Ordering::Relaxed);
        // Every path (scrape, push, rules, the node's own metrics) appends here. Samples the
        // store refused in part are copied too: the appender does not say which ones, and
        // a receiver refuses the same duplicates itself.
        if a.accepted > 0
            && let Some(tee) = self.tee.get()
        {
            tee.samples(samples);
        }
        Ok(a)
    }
}

/// Push counters, for the node's own `/metrics`.
#[derive(Default)]
pub struct PushStats {
    pub samples_accepted: AtomicU64,
    pub samples_refused: AtomicU64,
    pub requests_busy: AtomicU64,
}

/// The metrics service.
pub struct MetricsService {
    db: Arc<dyn Db>,
    /// The query engine and its limits.
    pub engine: crate::promql::Engine,
    pub metadata: Arc<Metadata>,
    pub scrape: Arc<Manager>,
    pushes: Arc<tokio::sync::Semaphore>,
    pub stats: PushStats,
    /// The retention setting, for the status APIs.
    pub retention: String,
    /// Refused samples by reason, from every path.
    pub refusals: Arc<Refusals>,
    /// Where exporters get a copy of every append (set before ingest starts).
    pub tee: signalbox_core::export::TeeSlot,
}

impl MetricsService {
    /// A service over `db`; at most `max_pushes` pushes are written at once, more are told
    /// to retry. Must be called inside a Tokio runtime (the scrape manager spawns there).
    pub fn new(db: Arc<dyn Db>, max_pushes: usize) -> Self {
        let refusals = Arc::new(Refusals::default());
        let tee = signalbox_core::export::TeeSlot::default();
        let db: Arc<dyn Db> = Arc::new(Counted { db, refusals: refusals.clone(), tee: tee.clone() });
        let metadata = Arc::new(Metadata::default());
        let appender: Arc<dyn Appender> = db.clone();
        MetricsService {
            scrape: Manager::new(appender, metadata.clone()),
            engine: crate::promql::Engine::default(),
            db,
            metadata,
            pushes: Arc::new(tokio::sync::Semaphore::new(max_pushes.max(1))),
            stats: PushStats::default(),
            retention: "15d".into(),
            refusals,
            tee,
        }
    }

    pub fn db(&self) -> &dyn Db {
        &*self.db
    }

    /// The retention as the status APIs show it (`15d`, `0s` when unlimited).
    pub fn retention_text(&self) -> String {
        self.retention.clone()
    }

    /// The database, shared (for work moved to blocking threads).
    pub fn db_arc(&self) -> Arc<dyn Db> {
        self.db.clone()
    }

    /// Stores pushed samples, or refuses at once when `max_pushes` are being written.
    pub async fn push(&self, samples: Vec<(Labels, i64, f64)>) -> Result<Appended, PushError> {
        let Ok(permit) = self.pushes.clone().try_acquire_owned() else {
            self.stats.requests_busy.fetch_add(1, Ordering::Relaxed);
            return Err(PushError::Busy { retry_after: Duration::from_secs(1) });
        };
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            db.append(&samples)
        })
        .await
        .map_err(|e| PushError::Failed(e.to_string()))?
        .map_err(|e| match e {
            crate::storage::StorageError::Invalid(m) => PushError::Invalid(m),
            e => PushError::Failed(e.to_string()),
        })?;
        self.stats.samples_accepted.fetch_add(result.accepted as u64, Ordering::Relaxed);
        self.stats.samples_refused.fetch_add(result.refused() as u64, Ordering::Relaxed);
        Ok(result)
    }
}
