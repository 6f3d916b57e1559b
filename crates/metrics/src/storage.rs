//! What the query engine reads: the [`Queryable`] trait every part of the TSDB (the head,
//! persisted blocks, and the whole database that merges them) implements, the label
//! [`Matcher`]s a selector is made of, and the staleness marker.
//!
//! Times are milliseconds since the Unix epoch, as Prometheus stores them. A series' labels
//! are sorted by name and include `__name__`.

use std::collections::BTreeSet;

/// A series' labels, sorted by name; `__name__` is the metric name.
pub type Labels = Vec<(String, String)>;

/// The bit pattern Prometheus writes as a staleness marker (a NaN no computation yields).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (not merely any NaN).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// How a selector matches one label. A missing label matches as the empty string, as in
/// Prometheus (`{foo=""}` selects series without `foo`).
#[derive(Debug, Clone)]
pub enum Matcher {
    Equal(String, String),
    NotEqual(String, String),
    /// The regex must be anchored (`^(?:...)$`) by whoever builds it; see [`Matcher::regex`].
    Regex(String, regex::Regex),
    NotRegex(String, regex::Regex),
}

impl Matcher {
    /// A `=~` or `!~` matcher with Prometheus's full-string anchoring.
    pub fn regex(name: &str, pattern: &str, negate: bool) -> Result<Matcher, regex::Error> {
        let re = regex::Regex::new(&format!("^(?s:{pattern})$"))?;
        Ok(if negate { Matcher::NotRegex(name.into(), re) } else { Matcher::Regex(name.into(), re) })
    }

    pub fn name(&self) -> &str {
        match self {
            Matcher::Equal(n, _) | Matcher::NotEqual(n, _) | Matcher::Regex(n, _) | Matcher::NotRegex(n, _) => n,
        }
    }

    pub fn matches(&self, v: &str) -> bool {
        match self {
            Matcher::Equal(_, x) => v == x,
            Matcher::NotEqual(_, x) => v != x,
            Matcher::Regex(_, r) => r.is_match(v),
            Matcher::NotRegex(_, r) => !r.is_match(v),
        }
    }

    /// Whether a series with `labels` passes this matcher.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        let v = labels.iter().find(|(k, _)| k == self.name()).map(|(_, v)| v.as_str()).unwrap_or("");
        self.matches(v)
    }
}

/// One series and its samples in the asked range, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// Why storage could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("reading the block {path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The input was refused whole (a sample's labels or time); the message names it.
    #[error("{0}")]
    Invalid(String),
    /// Writing failed (the log could not be made durable).
    #[error("{0}")]
    Write(String),
}

/// Anything PromQL and the label APIs can read.
pub trait Queryable: Send + Sync {
    /// The series matching every matcher that have samples in `[mint, maxt]` (inclusive),
    /// with those samples (staleness markers included), sorted by labels.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, StorageError>;

    /// Label names of the series matching `matchers` (all series when empty) in the range.
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        for s in self.select(matchers, mint, maxt)? {
            names.extend(s.labels.into_iter().map(|(k, _)| k));
        }
        Ok(names.into_iter().collect())
    }

    /// Values of label `name` among the series matching `matchers` in the range.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = BTreeSet::new();
        for s in self.select(matchers, mint, maxt)? {
            values.extend(s.labels.into_iter().filter(|(k, _)| k == name).map(|(_, v)| v));
        }
        Ok(values.into_iter().collect())
    }
}

/// Series held in a plain vector: what tests and the rule evaluator's scratch space use.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    pub series: Vec<Series>,
}

impl MemStorage {
    /// Adds a sample to the series with `labels` (any order), keeping samples in time order.
    pub fn add(&mut self, mut labels: Labels, t: i64, v: f64) {
        labels.sort();
        let i = match self.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                self.series.push(Series { labels, samples: Vec::new() });
                self.series.len() - 1
            }
        };
        let samples = &mut self.series[i].samples;
        let at = samples.partition_point(|(st, _)| *st <= t);
        samples.insert(at, (t, v));
    }
}

impl Queryable for MemStorage {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, StorageError> {
        let mut out: Vec<Series> = self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .filter_map(|s| {
                let samples: Vec<(i64, f64)> =
                    s.samples.iter().copied().filter(|(t, _)| *t >= mint && *t <= maxt).collect();
                (!samples.is_empty()).then(|| Series { labels: s.labels.clone(), samples })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

/// What one append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub accepted: usize,
    /// Older than the out-of-order window allows.
    pub too_old: usize,
    /// Another value at a stored timestamp.
    pub duplicate: usize,
    /// Refused because a series limit is reached.
    pub over_limit: usize,
    /// Series created by this append.
    pub new_series: usize,
}

impl Appended {
    pub fn refused(&self) -> usize {
        self.too_old + self.duplicate + self.over_limit
    }
}

/// Anything that takes samples: the TSDB, and the head alone in tests. Returns once the
/// samples are as durable as the implementation makes them (the TSDB: in its fsync'd log).
pub trait Appender: Send + Sync {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<Appended, StorageError>;
}
