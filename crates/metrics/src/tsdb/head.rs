//! The head: the in-memory part of the TSDB where every series' recent samples live in
//! compressed chunks, with an inverted index (postings) from each `name=value` label pair to
//! the series that carry it.
//!
//! In-order samples append to the series' open chunk (cut at [`MAX_SAMPLES`]). A sample older
//! than the series' newest but within the out-of-order window goes to a small sorted buffer
//! of its own and is merged into reads, as Prometheus's out-of-order head does; older ones
//! are refused (the caller counts them). A sample at an existing timestamp with the same
//! value is a no-op; with another value it is refused as a duplicate.
//!
//! Memory: label strings are interned once ([`Symbols`]); a series holds its labels as
//! pairs of 4-byte symbol ids, and is found by a hash of its labels rather than a second copy
//! of them. Series have a stable `ref` (the WAL's series id) and a dense slot (what postings
//! hold); slots are renumbered when [`Head::truncate`] drops series that have no samples left.

use super::chunk::{AppendError, Chunk, MAX_SAMPLES};
use super::postings::{PostingsIndex, select_ids};
use super::wal::Record;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::mem::size_of;
use std::sync::{Arc, RwLock};

use crate::storage::{Appended, Appender, Queryable, Series as SelectedSeries, StorageError};
pub use crate::storage::{Labels, Matcher};

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the sample is older than the out-of-order window")]
    TooOld,
    #[error("another value was already stored at this timestamp")]
    Duplicate,
    #[error("the series limit is reached")]
    TooManySeries,
}

/// Interned label strings.
#[derive(Default)]
struct Symbols {
    strings: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Symbols {
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.strings.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    fn str(&self, id: u32) -> &str {
        self.strings.get(id as usize).map(|s| &**s).unwrap_or("")
    }

    fn heap_bytes(&self) -> usize {
        let strings: usize = self.strings.iter().map(|s| 16 + s.len().next_multiple_of(8)).sum();
        strings + self.strings.capacity() * 16 + hash_map_bytes(self.ids.capacity(), size_of::<(Arc<str>, u32)>())
    }
}

/// Approximate heap bytes of a hash table with `capacity` usable entries of `entry` bytes
/// (hashbrown keeps 1/8 of its buckets free and one control byte per bucket).
fn hash_map_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 { 0 } else { (capacity * 8 / 7).next_power_of_two() * (entry + 1) }
}

struct HeadSeries {
    ref_id: u64,
    labels: Box<[(u32, u32)]>,
    sealed: Vec<Chunk>,
    open: Chunk,
    /// Out-of-order samples, sorted by time.
    ooo: Vec<(i64, f64)>,
    max_t: i64,
}

impl HeadSeries {
    fn new(ref_id: u64, labels: Box<[(u32, u32)]>) -> Self {
        HeadSeries { ref_id, labels, sealed: Vec::new(), open: Chunk::new(), ooo: Vec::new(), max_t: i64::MIN }
    }

    fn value_at(&self, t: i64) -> Option<f64> {
        self.samples(t, t).into_iter().next().map(|(_, v)| v)
    }

    /// Samples in `[mint, maxt]`, in time order (folded out-of-order chunks included).
    fn samples(&self, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let mut out: Vec<(i64, f64)> = Vec::new();
        for c in self.sealed.iter().chain(std::iter::once(&self.open)) {
            match c.time_range() {
                Some((a, b)) if b >= mint && a <= maxt => {
                    out.extend(c.iter().filter(|(t, _)| *t >= mint && *t <= maxt))
                }
                _ => {}
            }
        }
        out.extend(self.ooo.iter().copied().filter(|(t, _)| *t >= mint && *t <= maxt));
        if !out.is_sorted_by_key(|(t, _)| *t) {
            out.sort_by_key(|(t, _)| *t);
        }
        out
    }

    /// Appends; `Ok(false)` when the same sample was already there.
    fn append(&mut self, t: i64, v: f64, window: i64) -> Result<bool, Rejected> {
        if t > self.max_t {
            match self.open.append(t, v) {
                Ok(()) => {}
                Err(AppendError::Full) => {
                    let mut full = std::mem::replace(&mut self.open, Chunk::new());
                    full.shrink_to_fit();
                    self.sealed.push(full);
                    self.open.append(t, v).map_err(|_| Rejected::TooOld)?;
                }
                Err(AppendError::OutOfOrder) => return Err(Rejected::TooOld),
            }
            self.max_t = t;
            return Ok(true);
        }
        if let Some(existing) = self.value_at(t) {
            return if existing.to_bits() == v.to_bits() { Ok(false) } else { Err(Rejected::Duplicate) };
        }
        if t < self.max_t.saturating_sub(window) {
            return Err(Rejected::TooOld);
        }
        let at = self.ooo.partition_point(|(x, _)| *x < t);
        self.ooo.insert(at, (t, v));
        // Keep the out-of-order buffer small: fold it into a chunk of its own once it grows.
        if self.ooo.len() >= MAX_SAMPLES {
            let mut c = Chunk::new();
            for (t, v) in self.ooo.drain(..) {
                let _ = c.append(t, v);
            }
            c.shrink_to_fit();
            self.sealed.push(c);
        }
        Ok(true)
    }

    /// Whether any sample falls in `[mint, maxt]`, judged by chunk ranges.
    fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        let chunks = self.sealed.iter().chain(std::iter::once(&self.open)).filter_map(Chunk::time_range);
        chunks.chain(self.ooo.iter().map(|s| (s.0, s.0))).any(|(a, b)| a <= maxt && b >= mint)
    }

    fn is_empty(&self) -> bool {
        self.open.is_empty() && self.ooo.is_empty() && self.sealed.iter().all(Chunk::is_empty)
    }

    /// Drops samples before `before`; returns the oldest sample time left.
    fn truncate(&mut self, before: i64) -> Option<i64> {
        let newer = |c: &Chunk| -> Vec<(i64, f64)> { c.iter().filter(|s| s.0 >= before).collect() };
        let mut kept = Vec::with_capacity(self.sealed.len());
        for c in self.sealed.drain(..) {
            match c.time_range() {
                Some((first, _)) if first >= before => kept.push(c),
                Some((_, last)) if last >= before => kept.extend(encode_chunks(&newer(&c))),
                _ => {}
            }
        }
        match self.open.time_range() {
            Some((first, _)) if first >= before => {}
            Some((_, last)) if last >= before => {
                // At most MAX_SAMPLES samples: one chunk, which stays open for appends.
                let mut chunks = encode_chunks(&newer(&self.open));
                self.open = match chunks.pop() {
                    Some(c) => c,
                    None => Chunk::new(),
                };
                kept.extend(chunks);
            }
            _ => self.open = Chunk::new(),
        }
        self.sealed = kept;
        self.ooo.retain(|s| s.0 >= before);
        let chunks = self.sealed.iter().chain(std::iter::once(&self.open)).filter_map(Chunk::time_range);
        chunks.map(|r| r.0).chain(self.ooo.first().map(|s| s.0)).min()
    }

    fn heap_bytes(&self) -> usize {
        self.labels.len() * 8
            + self.sealed.capacity() * size_of::<Chunk>()
            + self.sealed.iter().map(Chunk::heap_bytes).sum::<usize>()
            + self.open.heap_bytes()
            + self.ooo.capacity() * 16
    }
}

/// Compact chunks holding `samples` (sorted, unique times).
pub fn encode_chunks(samples: &[(i64, f64)]) -> Vec<Chunk> {
    let mut out = Vec::new();
    for part in samples.chunks(MAX_SAMPLES) {
        let mut c = Chunk::new();
        for (t, v) in part {
            // Sorted and unique by construction; a failure would drop the sample only.
            let _ = c.append(*t, *v);
        }
        c.shrink_to_fit();
        out.push(c);
    }
    out
}

/// Slots sharing one label hash (almost always one).
enum Slots {
    One(u32),
    Many(Vec<u32>),
}

/// The in-memory head of the TSDB.
pub struct Head {
    inner: RwLock<Inner>,
    ooo_window_ms: i64,
    max_series: usize,
}

#[derive(Default)]
struct Inner {
    symbols: Symbols,
    series: Vec<HeadSeries>,
    by_hash: HashMap<u64, Slots>,
    /// Label name symbol → value symbol → slots, ascending.
    postings: HashMap<u32, HashMap<u32, Vec<u32>>>,
    next_ref: u64,
    min_t: i64,
    max_t: i64,
}

fn labels_from(symbols: &Symbols, s: &HeadSeries) -> Labels {
    s.labels.iter().map(|(k, v)| (symbols.str(*k).to_owned(), symbols.str(*v).to_owned())).collect()
}

fn labels_hash<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = DefaultHasher::new();
    for (k, v) in pairs {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

impl Inner {
    fn new() -> Self {
        Inner { next_ref: 1, min_t: i64::MAX, max_t: i64::MIN, ..Default::default() }
    }

    fn labels_of(&self, s: &HeadSeries) -> Labels {
        labels_from(&self.symbols, s)
    }

    /// The slot of the series with these (sorted) labels.
    fn find(&self, labels: &Labels) -> Option<u32> {
        let h = labels_hash(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let same = |slot: &u32| {
            let s = &self.series[*slot as usize];
            s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((k, v), (lk, lv))| self.symbols.str(*k) == lk && self.symbols.str(*v) == lv)
        };
        match self.by_hash.get(&h)? {
            Slots::One(s) => Some(*s).filter(same),
            Slots::Many(v) => v.iter().copied().find(same),
        }
    }

    /// Adds a series (labels sorted, not present yet); returns its slot.
    fn create(&mut self, ref_id: u64, labels: &Labels) -> u32 {
        let slot = self.series.len() as u32;
        let pairs: Box<[(u32, u32)]> =
            labels.iter().map(|(k, v)| (self.symbols.intern(k), self.symbols.intern(v))).collect();
        for (k, v) in pairs.iter() {
            self.postings.entry(*k).or_default().entry(*v).or_default().push(slot);
        }
        let h = labels_hash(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match self.by_hash.get_mut(&h) {
            None => {
                self.by_hash.insert(h, Slots::One(slot));
            }
            Some(Slots::One(other)) => {
                let other = *other;
                self.by_hash.insert(h, Slots::Many(vec![other, slot]));
            }
            Some(Slots::Many(v)) => v.push(slot),
        }
        self.series.push(HeadSeries::new(ref_id, pairs));
        self.next_ref = self.next_ref.max(ref_id + 1);
        slot
    }

    fn note_time(&mut self, t: i64) {
        self.min_t = self.min_t.min(t);
        self.max_t = self.max_t.max(t);
    }
}

impl PostingsIndex for Inner {
    fn all_ids(&self) -> Vec<u32> {
        (0..self.series.len() as u32).collect()
    }

    fn postings(&self, name: &str, value: &str) -> Option<&[u32]> {
        let (n, v) = (self.symbols.get(name)?, self.symbols.get(value)?);
        self.postings.get(&n)?.get(&v).map(Vec::as_slice)
    }

    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str, &[u32])) {
        let Some(values) = self.symbols.get(name).and_then(|n| self.postings.get(&n)) else { return };
        for (v, ids) in values {
            f(self.symbols.str(*v), ids);
        }
    }
}

/// What one batch did to the head: the series it created and the samples it stored, for
/// the WAL, and the counts per outcome.
#[derive(Debug, Default)]
pub struct HeadAppend {
    pub new_series: Vec<(u64, Labels)>,
    pub stored: Vec<(u64, i64, f64)>,
    /// For each of `stored`, its index in the batch.
    pub stored_at: Vec<usize>,
    /// Samples accepted (including exact repeats, which store nothing).
    pub accepted: usize,
    pub too_old: usize,
    pub duplicate: usize,
    pub series_limit: usize,
}

/// One series' samples before a cut time, re-encoded, as a block receives them.
pub struct CutSeries {
    pub labels: Labels,
    pub chunks: Vec<Chunk>,
}

/// A series as a checkpoint stores it: its ref, labels, and chunks (encoded bytes, count).
pub struct SnapshotSeries {
    pub ref_id: u64,
    pub labels: Labels,
    pub chunks: Vec<(u16, Vec<u8>)>,
}

impl Head {
    pub fn new(ooo_window_ms: i64, max_series: usize) -> Self {
        Head { inner: RwLock::new(Inner::new()), ooo_window_ms, max_series }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Active series.
    pub fn series_count(&self) -> usize {
        self.read().series.len()
    }

    /// Oldest and newest sample time held, when any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let inner = self.read();
        (inner.min_t <= inner.max_t).then_some((inner.min_t, inner.max_t))
    }

    /// Appends one sample (t in milliseconds) to the series with `labels` (any order).
    pub fn append(&self, labels: Labels, t: i64, v: f64) -> Result<(), Rejected> {
        let mut out = HeadAppend::default();
        self.append_batch(&[(labels, t, v)], &mut out);
        if out.too_old > 0 {
            Err(Rejected::TooOld)
        } else if out.duplicate > 0 {
            Err(Rejected::Duplicate)
        } else if out.series_limit > 0 {
            Err(Rejected::TooManySeries)
        } else {
            Ok(())
        }
    }

    /// Appends a batch under one lock, reporting into `out` what the WAL must record.
    pub fn append_batch(&self, samples: &[(Labels, i64, f64)], out: &mut HeadAppend) {
        let mut inner = self.write();
        let mut sorted = Labels::new();
        for (i, (labels, t, v)) in samples.iter().enumerate() {
            let labels = if labels.is_sorted() {
                labels
            } else {
                sorted.clone_from(labels);
                sorted.sort();
                &sorted
            };
            let slot = match inner.find(labels) {
                Some(s) => s,
                None => {
                    if inner.series.len() >= self.max_series {
                        out.series_limit += 1;
                        continue;
                    }
                    let r = inner.next_ref;
                    out.new_series.push((r, labels.clone()));
                    inner.create(r, labels)
                }
            };
            let s = &mut inner.series[slot as usize];
            match s.append(*t, *v, self.ooo_window_ms) {
                Ok(stored) => {
                    out.accepted += 1;
                    if stored {
                        out.stored.push((s.ref_id, *t, *v));
                        out.stored_at.push(i);
                        inner.note_time(*t);
                    }
                }
                Err(Rejected::TooOld) => out.too_old += 1,
                Err(Rejected::Duplicate) => out.duplicate += 1,
                Err(Rejected::TooManySeries) => out.series_limit += 1,
            }
        }
    }

    /// Applies a replayed WAL or checkpoint record; `refs` maps WAL series ids to slots
    /// across the replay. Returns the samples that referred to unknown series or were
    /// refused (series limits do not apply: these were accepted before).
    pub fn replay(&self, rec: Record, refs: &mut HashMap<u64, u32>) -> u64 {
        let mut inner = self.write();
        let mut skipped = 0;
        let mut put = |inner: &mut Inner, ref_id: u64, t: i64, v: f64| match refs.get(&ref_id) {
            Some(slot) => match inner.series[*slot as usize].append(t, v, i64::MAX / 2) {
                Ok(true) => inner.note_time(t),
                Ok(false) => {}
                Err(_) => skipped += 1,
            },
            None => skipped += 1,
        };
        match rec {
            Record::Series(list) => {
                for (ref_id, mut labels) in list {
                    labels.sort();
                    let slot = match inner.find(&labels) {
                        Some(s) => s,
                        None => inner.create(ref_id, &labels),
                    };
                    inner.next_ref = inner.next_ref.max(ref_id + 1);
                    refs.insert(ref_id, slot);
                }
            }
            Record::Samples(list) => {
                for (ref_id, t, v) in list {
                    put(&mut inner, ref_id, t, v);
                }
            }
            Record::Chunk { series, count, bytes } => {
                for (t, v) in super::chunk::decode(&bytes, count) {
                    put(&mut inner, series, t, v);
                }
            }
        }
        skipped
    }

    /// Every sample before `before`, per series, re-encoded and sorted by labels: what a
    /// block cut from the head receives. The head is unchanged (see [`Head::truncate`]).
    pub fn collect_before(&self, before: i64) -> Vec<CutSeries> {
        let inner = self.read();
        let mut cut = Vec::new();
        for s in &inner.series {
            let old = s.samples(i64::MIN, before.saturating_sub(1));
            if !old.is_empty() {
                cut.push(CutSeries { labels: inner.labels_of(s), chunks: encode_chunks(&old) });
            }
        }
        cut.sort_by(|a, b| a.labels.cmp(&b.labels));
        cut
    }

    /// Removes every sample before `before`; series left without samples are dropped
    /// (slots are renumbered and symbols rebuilt, refs stay). Chunks wholly before or after
    /// `before` are dropped or kept as they are; only a chunk straddling it is re-encoded.
    pub fn truncate(&self, before: i64) {
        let mut inner = self.write();
        let (mut min_t, mut max_t, mut emptied) = (i64::MAX, i64::MIN, false);
        for s in inner.series.iter_mut() {
            match s.truncate(before) {
                Some(oldest) => {
                    min_t = min_t.min(oldest);
                    max_t = max_t.max(s.max_t);
                }
                None => emptied = true,
            }
        }
        if emptied {
            let Inner { symbols, series, next_ref, .. } = std::mem::replace(&mut *inner, Inner::new());
            inner.next_ref = next_ref;
            for s in series {
                if s.is_empty() {
                    continue;
                }
                let labels = labels_from(&symbols, &s);
                let slot = inner.create(s.ref_id, &labels) as usize;
                let ns = &mut inner.series[slot];
                (ns.sealed, ns.open, ns.ooo, ns.max_t) = (s.sealed, s.open, s.ooo, s.max_t);
            }
        }
        (inner.min_t, inner.max_t) = (min_t, max_t);
    }

    /// Every series with its chunks (the open one and the out-of-order buffer included):
    /// what a checkpoint stores.
    pub fn snapshot(&self) -> Vec<SnapshotSeries> {
        let inner = self.read();
        inner
            .series
            .iter()
            .map(|s| {
                let mut chunks: Vec<(u16, Vec<u8>)> =
                    s.sealed.iter().map(|c| (c.len() as u16, c.bytes().to_vec())).collect();
                if !s.open.is_empty() {
                    chunks.push((s.open.len() as u16, s.open.bytes().to_vec()));
                }
                chunks.extend(encode_chunks(&s.ooo).iter().map(|c| (c.len() as u16, c.bytes().to_vec())));
                SnapshotSeries { ref_id: s.ref_id, labels: inner.labels_of(s), chunks }
            })
            .collect()
    }

    /// The series matching every matcher, with their samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SelectedSeries> {
        let inner = self.read();
        let mut out = Vec::new();
        for slot in select_ids(&*inner, matchers) {
            let s = &inner.series[slot as usize];
            let samples = s.samples(mint, maxt);
            if !samples.is_empty() {
                out.push(SelectedSeries { labels: inner.labels_of(s), samples });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The labels of the series matching every matcher with samples in `[mint, maxt]`
    /// (for the label APIs: no sample is decoded).
    pub fn series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let inner = self.read();
        select_ids(&*inner, matchers)
            .into_iter()
            .map(|slot| &inner.series[slot as usize])
            .filter(|s| s.overlaps(mint, maxt))
            .map(|s| inner.labels_of(s))
            .collect()
    }

    /// Label names, and values per name (for the label API and completion).
    pub fn label_values(&self) -> BTreeMap<String, BTreeSet<String>> {
        let inner = self.read();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, values) in &inner.postings {
            let e = out.entry(inner.symbols.str(*k).to_owned()).or_default();
            e.extend(values.keys().map(|v| inner.symbols.str(*v).to_owned()));
        }
        out
    }

    /// Bytes of chunk data held.
    pub fn chunk_bytes(&self) -> usize {
        let inner = self.read();
        inner
            .series
            .iter()
            .map(|s| s.sealed.iter().map(|c| c.bytes().len()).sum::<usize>() + s.open.bytes().len())
            .sum()
    }

    /// Estimated heap bytes of the whole head: series, chunks, symbols, postings and the
    /// label hash table (from capacities, so it counts what is reserved).
    pub fn heap_bytes(&self) -> usize {
        let inner = self.read();
        let series = inner.series.capacity() * size_of::<HeadSeries>()
            + inner.series.iter().map(HeadSeries::heap_bytes).sum::<usize>();
        let by_hash = hash_map_bytes(inner.by_hash.capacity(), size_of::<(u64, Slots)>())
            + inner.by_hash.values().map(|s| if let Slots::Many(v) = s { v.capacity() * 4 } else { 0 }).sum::<usize>();
        let mut postings = hash_map_bytes(inner.postings.capacity(), size_of::<(u32, HashMap<u32, Vec<u32>>)>());
        for values in inner.postings.values() {
            postings += hash_map_bytes(values.capacity(), size_of::<(u32, Vec<u32>)>());
            postings += values.values().map(|v| v.capacity() * 4).sum::<usize>();
        }
        series + by_hash + postings + inner.symbols.heap_bytes()
    }
}

impl Appender for Head {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<Appended, StorageError> {
        let mut out = Appended::default();
        for (labels, t, v) in samples {
            let before = self.series_count();
            match Head::append(self, labels.clone(), *t, *v) {
                Ok(()) => out.accepted += 1,
                Err(Rejected::TooOld) => out.too_old += 1,
                Err(Rejected::Duplicate) => out.duplicate += 1,
                Err(Rejected::TooManySeries) => out.over_limit += 1,
            }
            out.new_series += self.series_count() - before;
        }
        Ok(out)
    }
}

impl Queryable for Head {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SelectedSeries>, StorageError> {
        Ok(Head::select(self, matchers, mint, maxt))
    }
}

#[cfg(test)]
mod tests;
