//! The head: the in-memory part of the TSDB where every series' recent samples live in
//! compressed chunks, with an inverted index (postings) from each `name=value` label pair to
//! the series that carry it.
//!
//! In-order samples append to the series' open chunk (cut at [`MAX_SAMPLES`]). A sample older
//! than the series' newest but within the out-of-order window goes to a small sorted buffer
//! of its own and is merged into reads, as Prometheus's out-of-order head does; older ones
//! are refused (the caller counts them). A sample at an existing timestamp with the same
//! value is a no-op; with another value it is refused as a duplicate.

use super::chunk::{AppendError, Chunk, MAX_SAMPLES};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

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

struct Series {
    labels: Labels,
    sealed: Vec<Chunk>,
    open: Chunk,
    /// Out-of-order samples, sorted by time.
    ooo: Vec<(i64, f64)>,
    max_t: i64,
}

impl Series {
    fn new(labels: Labels) -> Self {
        Series { labels, sealed: Vec::new(), open: Chunk::new(), ooo: Vec::new(), max_t: i64::MIN }
    }

    fn value_at(&self, t: i64) -> Option<f64> {
        self.samples(t, t).into_iter().next().map(|(_, v)| v)
    }

    /// Samples in `[mint, maxt]`, in time order.
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
        if !self.ooo.is_empty() {
            out.extend(self.ooo.iter().copied().filter(|(t, _)| *t >= mint && *t <= maxt));
            out.sort_by_key(|(t, _)| *t);
        }
        out
    }
}

/// The in-memory head of the TSDB.
pub struct Head {
    inner: RwLock<Inner>,
    ooo_window_ms: i64,
    max_series: usize,
}

#[derive(Default)]
struct Inner {
    series: Vec<Series>,
    by_labels: HashMap<Labels, usize>,
    postings: HashMap<(String, String), BTreeSet<usize>>,
}

impl Head {
    pub fn new(ooo_window_ms: i64, max_series: usize) -> Self {
        Head { inner: RwLock::new(Inner::default()), ooo_window_ms, max_series }
    }

    /// Active series.
    pub fn series_count(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).series.len()
    }

    /// Appends one sample (t in milliseconds) to the series with `labels` (any order).
    pub fn append(&self, mut labels: Labels, t: i64, v: f64) -> Result<(), Rejected> {
        labels.sort();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let id = match inner.by_labels.get(&labels) {
            Some(id) => *id,
            None => {
                if inner.series.len() >= self.max_series {
                    return Err(Rejected::TooManySeries);
                }
                let id = inner.series.len();
                for (k, val) in &labels {
                    inner.postings.entry((k.clone(), val.clone())).or_default().insert(id);
                }
                inner.by_labels.insert(labels.clone(), id);
                inner.series.push(Series::new(labels));
                id
            }
        };
        let window = self.ooo_window_ms;
        let s = &mut inner.series[id];
        if t > s.max_t {
            match s.open.append(t, v) {
                Ok(()) => {}
                Err(AppendError::Full) => {
                    let full = std::mem::replace(&mut s.open, Chunk::new());
                    s.sealed.push(full);
                    s.open.append(t, v).map_err(|_| Rejected::TooOld)?;
                }
                Err(AppendError::OutOfOrder) => return Err(Rejected::TooOld),
            }
            s.max_t = t;
            return Ok(());
        }
        if let Some(existing) = s.value_at(t) {
            return if existing.to_bits() == v.to_bits() { Ok(()) } else { Err(Rejected::Duplicate) };
        }
        if t < s.max_t - window {
            return Err(Rejected::TooOld);
        }
        let at = s.ooo.partition_point(|(x, _)| *x < t);
        s.ooo.insert(at, (t, v));
        // Keep the out-of-order buffer small: fold it into a chunk of its own once it grows.
        if s.ooo.len() >= MAX_SAMPLES {
            let mut c = Chunk::new();
            for (t, v) in s.ooo.drain(..) {
                let _ = c.append(t, v);
            }
            s.sealed.push(c);
        }
        Ok(())
    }

    /// The series matching every matcher, with their samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SelectedSeries> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        // Start from the smallest postings list of an equality matcher, else every series.
        let mut candidates: Option<BTreeSet<usize>> = None;
        for m in matchers {
            if let Matcher::Equal(n, v) = m
                && !v.is_empty()
            {
                let p = inner.postings.get(&(n.clone(), v.clone())).cloned().unwrap_or_default();
                candidates = Some(match candidates {
                    None => p,
                    Some(c) => c.intersection(&p).copied().collect(),
                });
            }
        }
        let ids: Vec<usize> = match candidates {
            Some(c) => c.into_iter().collect(),
            None => (0..inner.series.len()).collect(),
        };
        let mut out = Vec::new();
        for id in ids {
            let s = &inner.series[id];
            if matchers.iter().all(|m| m.matches_labels(&s.labels)) {
                let samples = s.samples(mint, maxt);
                if !samples.is_empty() {
                    out.push(SelectedSeries { labels: s.labels.clone(), samples });
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Label names, and values per name (for the label API and completion).
    pub fn label_values(&self) -> BTreeMap<String, BTreeSet<String>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, v) in inner.postings.keys() {
            out.entry(k.clone()).or_default().insert(v.clone());
        }
        out
    }

    /// Bytes of chunk data held (for the memory-per-series figure).
    pub fn chunk_bytes(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .series
            .iter()
            .map(|s| s.sealed.iter().map(|c| c.bytes().len()).sum::<usize>() + s.open.bytes().len())
            .sum()
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
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn appends_select_by_postings_and_regex() {
        let h = Head::new(60_000, 1000);
        for i in 0..300 {
            h.append(l(&[("__name__", "up"), ("job", "api"), ("instance", "a")]), i * 15_000, 1.0).unwrap();
            h.append(l(&[("instance", "b"), ("__name__", "up"), ("job", "api")]), i * 15_000, (i % 2) as f64).unwrap();
            h.append(l(&[("__name__", "up"), ("job", "db"), ("instance", "c")]), i * 15_000, 0.0).unwrap();
        }
        assert_eq!(h.series_count(), 3);
        let api = h.select(
            &[Matcher::Equal("__name__".into(), "up".into()), Matcher::Equal("job".into(), "api".into())],
            0,
            i64::MAX,
        );
        assert_eq!(api.len(), 2);
        assert_eq!(api[0].samples.len(), 300, "chunks are cut at 120 samples and read back whole");
        let re = regex::Regex::new("^(a|c)$").unwrap();
        let sel = h.select(
            &[Matcher::Regex("instance".into(), re), Matcher::NotEqual("job".into(), "db".into())],
            15_000,
            30_000,
        );
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].samples, vec![(15_000, 1.0), (30_000, 1.0)]);
        assert!(h.label_values()["instance"].contains("b"));
        assert!(h.chunk_bytes() < 3 * 300 * 3, "a few bits per regular sample");
    }

    #[test]
    fn out_of_order_within_the_window_duplicates_and_limits() {
        let h = Head::new(10_000, 2);
        let s = l(&[("__name__", "m")]);
        h.append(s.clone(), 100_000, 1.0).unwrap();
        h.append(s.clone(), 95_000, 0.5).unwrap();
        h.append(s.clone(), 98_000, 0.8).unwrap();
        assert_eq!(h.append(s.clone(), 80_000, 0.1), Err(Rejected::TooOld));
        assert_eq!(h.append(s.clone(), 98_000, 0.8), Ok(()), "the same sample again is a no-op");
        assert_eq!(h.append(s.clone(), 98_000, 0.9), Err(Rejected::Duplicate));
        let got = h.select(&[Matcher::Equal("__name__".into(), "m".into())], 0, i64::MAX);
        assert_eq!(got[0].samples, vec![(95_000, 0.5), (98_000, 0.8), (100_000, 1.0)]);
        h.append(l(&[("__name__", "n")]), 1, 1.0).unwrap();
        assert_eq!(h.append(l(&[("__name__", "o")]), 1, 1.0), Err(Rejected::TooManySeries));
    }
}
