//! The whole database: the head, its write-ahead log and the persisted blocks behind one
//! [`Tsdb`] that appends durably and answers [`Queryable`] over all of them.
//!
//! Directory layout: `<dir>/wal/` (segments and checkpoints, see [`super::wal`]),
//! `<dir>/blocks/<id>/` (see [`super::block`]) and `<dir>/lock` (held while open, so two
//! processes never share a directory).
//!
//! - [`Tsdb::append`] applies a batch to the head and writes the series it created and the
//!   samples it stored to the WAL under one lock, then waits for a group commit: it returns
//!   only once the batch is `fdatasync`ed. Samples are visible to queries from the moment
//!   they are in the head (a few microseconds before they are acknowledged).
//! - [`Tsdb::maintain`] (called periodically by the node) cuts the head into a block when it
//!   spans more than 1.5 × the block range (the newest range stays in memory), compacts
//!   blocks, and applies retention; see [`maintain`].
//! - Queries merge the head and every block overlapping the range; a series present in
//!   several is merged by time, the newest write winning a timestamp held twice (the head
//!   does not look into blocks, so a sample re-sent for a persisted timestamp within the
//!   out-of-order window replaces it, as with Prometheus's out-of-order blocks).

mod maintain;

pub use maintain::MaintainReport;

use super::block::{Block, META_FILE};
use super::head::{Head, HeadAppend};
use super::wal::{self, CommitError, GroupCommit, WalWriter};
use crate::storage::{Labels, Matcher, Queryable, Series, StorageError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Tuning of a [`Tsdb`].
#[derive(Debug, Clone, PartialEq)]
pub struct TsdbOptions {
    /// Time range of a block cut from the head (ms); 2 h as in Prometheus.
    pub block_range_ms: i64,
    /// Largest range compaction builds (ms); ranges grow by 3× from `block_range_ms`.
    pub max_block_range_ms: i64,
    /// How far behind a series' newest sample an older sample is still accepted (ms).
    pub ooo_window_ms: i64,
    /// Most series the head holds; new series beyond it are refused.
    pub max_series: usize,
    /// Blocks whose newest sample is older than this (relative to `maintain`'s `now`) are
    /// deleted; 0 keeps everything.
    pub retention_ms: i64,
    /// Oldest blocks are deleted while blocks and WAL together exceed this; 0: no limit.
    pub retention_bytes: u64,
    /// A WAL segment is closed after this many bytes.
    pub wal_segment_bytes: u64,
    /// How long an append waits for its fsync before failing.
    pub commit_timeout: Duration,
}

const HOUR_MS: i64 = 3_600_000;

impl Default for TsdbOptions {
    fn default() -> Self {
        TsdbOptions {
            block_range_ms: 2 * HOUR_MS,
            max_block_range_ms: 54 * HOUR_MS,
            ooo_window_ms: 10 * 60_000,
            max_series: 2_000_000,
            retention_ms: 15 * 24 * HOUR_MS,
            retention_bytes: 0,
            wal_segment_bytes: 32 << 20,
            commit_timeout: Duration::from_secs(30),
        }
    }
}

impl TsdbOptions {
    fn validate(&self) -> Result<(), TsdbError> {
        let bad = |field: &'static str, message: &str| Err(TsdbError::InvalidOption { field, message: message.into() });
        if self.block_range_ms <= 0 {
            return bad("block_range_ms", "must be positive");
        }
        if self.max_block_range_ms < self.block_range_ms {
            return bad("max_block_range_ms", "must be at least block_range_ms");
        }
        if self.ooo_window_ms < 0 {
            return bad("ooo_window_ms", "must not be negative");
        }
        if self.retention_ms < 0 {
            return bad("retention_ms", "must not be negative (0 keeps everything)");
        }
        if self.wal_segment_bytes < 1024 {
            return bad("wal_segment_bytes", "must be at least 1024");
        }
        if self.commit_timeout.is_zero() {
            return bad("commit_timeout", "must be positive");
        }
        Ok(())
    }
}

/// What became of an appended batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Stored (or already present with the same value).
    pub accepted: usize,
    /// Older than the series' newest sample minus the out-of-order window.
    pub too_old: usize,
    /// Another value is stored at that timestamp.
    pub duplicate: usize,
    /// A new series the series limit did not allow.
    pub series_limit: usize,
}

impl AppendOutcome {
    pub fn rejected(&self) -> usize {
        self.too_old + self.duplicate + self.series_limit
    }
}

/// Figures for the node's own metrics and the memory test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TsdbStats {
    pub active_series: usize,
    /// Encoded chunk bytes in the head.
    pub head_chunk_bytes: usize,
    /// Estimated heap bytes of the whole head (series, chunks, postings, symbols).
    pub head_heap_bytes: usize,
    /// Oldest and newest sample time in the head.
    pub head_time_range: Option<(i64, i64)>,
    pub blocks: usize,
    pub block_bytes: u64,
    /// Samples stored since open.
    pub samples_appended: u64,
    pub wal_bytes: u64,
    /// WAL `fdatasync` calls since open (fewer than appends under concurrency).
    pub wal_syncs: u64,
}

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("invalid TSDB option {field}: {message}")]
    InvalidOption { field: &'static str, message: String },
    #[error("sample {index}: {message}")]
    InvalidSample { index: usize, message: String },
    #[error("the TSDB directory {0} is in use by another process")]
    Locked(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TsdbError {
    let context = context.into();
    move |source| TsdbError::Io { context, source }
}

/// Timestamps are kept within ±2^61 ms (some 73 million years) so chunk deltas never
/// overflow.
pub const MAX_ABS_TIME_MS: i64 = 1 << 61;

/// One sample to append: (labels, time ms, value).
pub type Sample = (Labels, i64, f64);

/// Samples per WAL samples record (bounds a record's size).
const SAMPLES_PER_RECORD: usize = 8192;
/// A WAL series record is closed once it holds about this many bytes of labels.
const SERIES_RECORD_BYTES: usize = 1 << 20;
/// Most bytes of label names and values one series may carry.
pub const MAX_LABEL_BYTES: usize = 64 * 1024;

/// The time-series database. `Send + Sync`: share it through an `Arc`.
pub struct Tsdb {
    dir: PathBuf,
    opts: TsdbOptions,
    head: Head,
    /// The append lock: head changes and WAL writes happen under it, in the same order.
    wal: Mutex<WalWriter>,
    commit: GroupCommit,
    /// Sorted by min time, then id.
    blocks: RwLock<Vec<Arc<Block>>>,
    maintaining: Mutex<()>,
    /// Set while a cut is between copying the head and removing what it copied.
    cutting: Mutex<Option<maintain::LateSamples>>,
    samples_appended: AtomicU64,
    _lock: File,
}

/// What [`Tsdb::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub blocks: usize,
    pub wal: wal::Replayed,
    /// Replayed samples that referred to unknown series (a damaged segment lost their
    /// series record).
    pub skipped_samples: u64,
}

impl Tsdb {
    /// Opens (or creates) the database in `dir`: loads the blocks and replays the newest
    /// checkpoint and the WAL after it into the head.
    pub fn open(dir: impl AsRef<Path>, opts: TsdbOptions) -> Result<Tsdb, TsdbError> {
        Self::open_with_report(dir, opts).map(|(db, _)| db)
    }

    /// [`Tsdb::open`], also saying what was recovered.
    pub fn open_with_report(dir: impl AsRef<Path>, opts: TsdbOptions) -> Result<(Tsdb, OpenReport), TsdbError> {
        let dir = dir.as_ref();
        opts.validate()?;
        std::fs::create_dir_all(dir.join("blocks")).map_err(io(format!("creating {}", dir.display())))?;
        let lock = File::create(dir.join("lock")).map_err(io("creating the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(TsdbError::Locked(dir.display().to_string())),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking the TSDB directory")(e)),
        }
        let blocks = load_blocks(&dir.join("blocks"))?;
        let head = Head::new(opts.ooo_window_ms, opts.max_series);
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(io("creating the WAL directory"))?;
        let mut refs = HashMap::new();
        let mut skipped = 0;
        let replayed = wal::replay(&wal_dir, |rec| skipped += head.replay(rec, &mut refs))
            .map_err(io(format!("replaying {}", wal_dir.display())))?;
        drop(refs);
        let writer = WalWriter::open(&wal_dir, opts.wal_segment_bytes).map_err(io("opening the WAL"))?;
        let report = OpenReport { blocks: blocks.len(), wal: replayed, skipped_samples: skipped };
        let db = Tsdb {
            dir: dir.to_owned(),
            opts,
            head,
            wal: Mutex::new(writer),
            commit: GroupCommit::default(),
            blocks: RwLock::new(blocks),
            maintaining: Mutex::new(()),
            cutting: Mutex::new(None),
            samples_appended: AtomicU64::new(0),
            _lock: lock,
        };
        Ok((db, report))
    }

    fn wal_lock(&self) -> std::sync::MutexGuard<'_, WalWriter> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cutting_lock(&self) -> std::sync::MutexGuard<'_, Option<maintain::LateSamples>> {
        self.cutting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blocks_snapshot(&self) -> Vec<Arc<Block>> {
        self.blocks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Appends samples `(labels, time ms, value)`; returns once every stored sample is
    /// durable. Labels may come in any order; labels with an empty value are dropped (as
    /// Prometheus does). A series without labels, with a repeated or empty label name or
    /// more than [`MAX_LABEL_BYTES`] of labels, or a time beyond [`MAX_ABS_TIME_MS`], fails the whole batch before anything is stored.
    pub fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<AppendOutcome, TsdbError> {
        let normalized = normalize(samples)?;
        let samples = normalized.as_deref().unwrap_or(samples);
        let mut out = HeadAppend::default();
        let seq = {
            let mut wal = self.wal_lock();
            self.head.append_batch(samples, &mut out);
            if let Some(late) = self.cutting_lock().as_mut() {
                for (&(ref_id, t, v), &i) in out.stored.iter().zip(&out.stored_at) {
                    if t < late.before {
                        late.samples.push((ref_id, samples[i].0.clone(), t, v));
                    }
                }
            }
            if out.new_series.is_empty() && out.stored.is_empty() {
                None
            } else {
                let mut payloads: Vec<Vec<u8>> = Vec::new();
                // Series records of about a megabyte at most (a series' labels are bounded).
                let mut from = 0;
                while from < out.new_series.len() {
                    let (mut to, mut bytes) = (from, 0);
                    while to < out.new_series.len() && (to == from || bytes < SERIES_RECORD_BYTES) {
                        bytes += out.new_series[to].1.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 8;
                        to += 1;
                    }
                    let mut rec = Vec::new();
                    wal::encode_series(&mut rec, out.new_series[from..to].iter().map(|(r, l)| (*r, l)));
                    payloads.push(rec);
                    from = to;
                }
                for part in out.stored.chunks(SAMPLES_PER_RECORD) {
                    let mut rec = Vec::new();
                    wal::encode_samples(&mut rec, part);
                    payloads.push(rec);
                }
                let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                Some(wal.write(&refs).map_err(io("writing the WAL"))?)
            }
        };
        if let Some(seq) = seq {
            self.commit.wait(seq, || self.wal_lock().sync_target(), self.opts.commit_timeout)?;
        }
        self.samples_appended.fetch_add(out.stored.len() as u64, Ordering::Relaxed);
        Ok(AppendOutcome {
            accepted: out.accepted,
            too_old: out.too_old,
            duplicate: out.duplicate,
            series_limit: out.series_limit,
        })
    }

    /// Current figures.
    pub fn stats(&self) -> TsdbStats {
        let blocks = self.blocks_snapshot();
        TsdbStats {
            active_series: self.head.series_count(),
            head_chunk_bytes: self.head.chunk_bytes(),
            head_heap_bytes: self.head.heap_bytes(),
            head_time_range: self.head.time_range(),
            blocks: blocks.len(),
            block_bytes: blocks.iter().map(|b| b.disk_bytes()).sum(),
            samples_appended: self.samples_appended.load(Ordering::Relaxed),
            wal_bytes: wal::disk_bytes(&self.dir.join("wal")),
            wal_syncs: self.commit.syncs(),
        }
    }

    /// The persisted blocks' metadata, oldest first.
    pub fn blocks(&self) -> Vec<super::block::BlockMeta> {
        self.blocks_snapshot().iter().map(|b| b.meta().clone()).collect()
    }

    /// The options the database runs with.
    pub fn options(&self) -> &TsdbOptions {
        &self.opts
    }
}

/// Labels with empty values dropped and sorted, or `None` when the batch is fine as it is.
fn normalize(samples: &[Sample]) -> Result<Option<Vec<Sample>>, TsdbError> {
    let needs = samples.iter().any(|(l, _, _)| !l.is_sorted() || l.iter().any(|(_, v)| v.is_empty()));
    let mut owned = None;
    if needs {
        owned = Some(
            samples
                .iter()
                .map(|(l, t, v)| {
                    let mut l: Labels = l.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
                    l.sort();
                    (l, *t, *v)
                })
                .collect::<Vec<_>>(),
        );
    }
    for (index, (labels, t, _)) in owned.as_deref().unwrap_or(samples).iter().enumerate() {
        let bad = |message: &str| Err(TsdbError::InvalidSample { index, message: message.into() });
        if !(-MAX_ABS_TIME_MS..=MAX_ABS_TIME_MS).contains(t) {
            return bad("the timestamp is out of range (more than 2^61 ms from 1970)");
        }
        if labels.is_empty() {
            return bad("a series needs at least one label with a value");
        }
        if labels.iter().any(|(k, _)| k.is_empty()) {
            return bad("a label name is empty");
        }
        if labels.windows(2).any(|w| w[0].0 == w[1].0) {
            return bad("a label name is repeated");
        }
        if labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_LABEL_BYTES {
            return bad("the labels exceed 64 KiB");
        }
    }
    Ok(owned)
}

/// Opens every block under `dir`, removing what a crash left: temporary directories,
/// directories without `meta.json` (a deletion cut short), and blocks whose data a
/// compacted block already holds.
fn load_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, TsdbError> {
    let mut blocks = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let path = e.map_err(io("listing blocks"))?.path();
        if !path.is_dir() {
            continue;
        }
        let tmp = path.extension().is_some_and(|x| x == "tmp");
        if tmp || !path.join(META_FILE).exists() {
            std::fs::remove_dir_all(&path).map_err(io(format!("removing {}", path.display())))?;
            continue;
        }
        blocks.push(Arc::new(Block::open(&path)?));
    }
    let redundant: Vec<usize> = (0..blocks.len())
        .filter(|&i| {
            let b = blocks[i].meta();
            blocks.iter().any(|c| {
                let c = c.meta();
                c.id != b.id && c.level > b.level && b.sources.iter().all(|s| c.sources.contains(s))
            })
        })
        .collect();
    for i in redundant.into_iter().rev() {
        let b = blocks.remove(i);
        delete_block_dir(b.dir()).map_err(io(format!("removing {}", b.dir().display())))?;
    }
    blocks.sort_by(|a, b| (a.meta().min_time, &a.meta().id).cmp(&(b.meta().min_time, &b.meta().id)));
    Ok(blocks)
}

/// Deletes a block directory, `meta.json` first so a cut-short deletion is recognised.
fn delete_block_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(META_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_dir_all(dir)
}

/// Merges per-source results (oldest source first): a series in several is merged by time,
/// the last source winning a timestamp held twice.
fn merge_sources(parts: Vec<Vec<Series>>) -> Vec<Series> {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut by_labels: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut merged_any = Vec::new();
    for part in parts {
        for s in part {
            match by_labels.get_mut(&s.labels) {
                Some(samples) => {
                    samples.extend(s.samples);
                    merged_any.push(s.labels);
                }
                None => {
                    by_labels.insert(s.labels, s.samples);
                }
            }
        }
    }
    for labels in merged_any {
        if let Some(samples) = by_labels.get_mut(&labels) {
            dedup_by_time(samples);
        }
    }
    by_labels.into_iter().map(|(labels, samples)| Series { labels, samples }).collect()
}

/// Sorts by time (stable) and keeps the last sample of each timestamp.
pub(crate) fn dedup_by_time(samples: &mut Vec<(i64, f64)>) {
    samples.sort_by_key(|s| s.0);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(samples.len());
    for s in samples.drain(..) {
        match out.last_mut() {
            Some(last) if last.0 == s.0 => *last = s,
            _ => out.push(s),
        }
    }
    *samples = out;
}

impl crate::storage::Appender for Tsdb {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<crate::storage::Appended, StorageError> {
        match Tsdb::append(self, samples) {
            Ok(o) => Ok(crate::storage::Appended {
                accepted: o.accepted,
                too_old: o.too_old,
                duplicate: o.duplicate,
                over_limit: o.series_limit,
                new_series: 0,
            }),
            Err(TsdbError::InvalidSample { index, message }) => {
                Err(StorageError::Invalid(format!("sample {index}: {message}")))
            }
            Err(TsdbError::Storage(e)) => Err(e),
            Err(e) => Err(StorageError::Write(e.to_string())),
        }
    }
}

impl Queryable for Tsdb {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, StorageError> {
        let mut parts = Vec::new();
        for b in self.blocks_snapshot() {
            if b.overlaps(mint, maxt) {
                parts.push(b.select(matchers, mint, maxt)?);
            }
        }
        parts.push(self.head.select(matchers, mint, maxt));
        Ok(merge_sources(parts))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        self.for_each_series_labels(matchers, mint, maxt, |labels| names.extend(labels.into_iter().map(|(k, _)| k)));
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = BTreeSet::new();
        self.for_each_series_labels(matchers, mint, maxt, |labels| {
            values.extend(labels.into_iter().filter(|(k, _)| k == name).map(|(_, v)| v))
        });
        Ok(values.into_iter().collect())
    }
}

impl Tsdb {
    /// Calls `f` with the labels of every matching series with data in the range, from each
    /// source (a series in several sources comes several times); reads no samples.
    fn for_each_series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64, mut f: impl FnMut(Labels)) {
        for b in self.blocks_snapshot() {
            b.series_labels(matchers, mint, maxt).into_iter().for_each(&mut f);
        }
        self.head.series_labels(matchers, mint, maxt).into_iter().for_each(f);
    }
}

#[cfg(test)]
mod tests;
