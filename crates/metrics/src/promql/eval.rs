//! The evaluator: every expression is evaluated over the step grid `start..=end` by
//! `interval` and yields one series per label set with at most one point per step.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher as ParserMatcher};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::{DEFAULT_SUBQUERY_STEP_MS, QueryError, aggregate, binary, functions};
use crate::storage::{Labels, Matcher, Series, is_stale};

/// The label that holds a series' metric name.
pub(super) const METRIC_NAME: &str = "__name__";

/// The query's deadline and the count of samples it holds, shared by nested evaluators.
pub(crate) struct Budget {
    deadline: Instant,
    max_samples: usize,
    held: Cell<usize>,
}

impl Budget {
    pub(crate) fn new(deadline: Instant, max_samples: usize) -> Budget {
        Budget { deadline, max_samples, held: Cell::new(0) }
    }

    pub(crate) fn check_time(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline { Err(QueryError::Timeout) } else { Ok(()) }
    }

    /// Counts `n` more samples held, failing past the limit.
    pub(super) fn take(&self, n: usize) -> Result<(), QueryError> {
        let held = self.held.get().saturating_add(n);
        self.held.set(held);
        if held > self.max_samples { Err(QueryError::TooManySamples { limit: self.max_samples }) } else { Ok(()) }
    }

    /// Fails if `n` more samples would exceed the limit, without counting them.
    pub(super) fn check_room(&self, n: usize) -> Result<(), QueryError> {
        if self.held.get().saturating_add(n) > self.max_samples {
            Err(QueryError::TooManySamples { limit: self.max_samples })
        } else {
            Ok(())
        }
    }

    /// Counts `n` samples as released.
    pub(super) fn release(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
    }
}

/// What an expression evaluates to: step-aligned series (vectors, and scalars as one series
/// without labels present at every step), or a string.
pub(super) enum Evaluated {
    Steps(Vec<Series>),
    Text(String),
}

/// One sample of the instant vector at one step, pointing at its input series.
#[derive(Clone, Copy)]
pub(super) struct StepSample<'m> {
    pub labels: &'m Labels,
    pub v: f64,
    /// The index of the series in its input matrix (for per-series data computed once).
    pub series: usize,
}

/// One output sample of a step: its labels (borrowed where unchanged) and value.
pub(super) type StepOutput<'m> = Vec<(Cow<'m, Labels>, f64)>;

/// A range function's points for one input series (by index).
pub(super) type WindowResults = (usize, Vec<(i64, f64)>);

/// The samples a range function reads: a matrix selector's or a subquery's series, with the
/// window each step sees.
pub(super) struct RangeInput {
    /// Samples in time order, staleness markers removed.
    pub series: Vec<Series>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

pub(crate) struct Evaluator<'a> {
    pub db: &'a dyn crate::storage::Queryable,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    pub lookback: i64,
    /// The outermost query's start and end, which `@ start()` and `@ end()` mean.
    pub query_start: i64,
    pub query_end: i64,
    pub budget: &'a Budget,
}

/// The largest time or duration the engine computes with (about 31,700 years in
/// milliseconds): sums of a few of these cannot overflow an `i64`.
pub(crate) const MAX_MILLIS: i64 = 1_000_000_000_000_000;

/// How many steps an evaluator runs between checks of the deadline.
const CHECK_EVERY: usize = 4096;

pub(super) fn millis(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(MAX_MILLIS)
}

fn system_time_millis(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => millis(&d),
        Err(e) => -millis(&e.duration()),
    }
}

pub(super) fn offset_millis(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
    }
}

/// Removes `__name__`, as functions and arithmetic do.
pub(super) fn drop_metric_name(labels: &Labels) -> Labels {
    labels.iter().filter(|(k, _)| k != METRIC_NAME).cloned().collect()
}

/// The value of label `name`, or "" when absent.
pub(super) fn label_value<'l>(labels: &'l Labels, name: &str) -> &'l str {
    labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Sets (or with an empty value, removes) a label, keeping the labels sorted.
pub(super) fn set_label(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value.to_string(),
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value.to_string())),
    }
}

/// Labels as Prometheus prints them: `{__name__="up", job="api"}`.
pub(super) fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Strips parentheses.
pub(super) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn to_storage_matcher(m: &ParserMatcher) -> Result<Matcher, QueryError> {
    Ok(match &m.op {
        MatchOp::Equal => Matcher::Equal(m.name.clone(), m.value.clone()),
        MatchOp::NotEqual => Matcher::NotEqual(m.name.clone(), m.value.clone()),
        MatchOp::Re(parsed) | MatchOp::NotRe(parsed) => {
            let negate = matches!(m.op, MatchOp::NotRe(_));
            match Matcher::regex(&m.name, &m.value, negate) {
                Ok(matcher) => matcher,
                // The parser accepts some Go regexes Rust rejects by escaping them; use its
                // (equally anchored) translation then.
                Err(_) if negate => Matcher::NotRegex(m.name.clone(), parsed.clone()),
                Err(_) => Matcher::Regex(m.name.clone(), parsed.clone()),
            }
        }
    })
}

impl<'a> Evaluator<'a> {
    /// The evaluation timestamps.
    pub(super) fn steps(&self) -> impl Iterator<Item = i64> + use<> {
        let (start, end, interval) = (self.start, self.end, self.interval.max(1));
        (0..).map(move |k| start + k * interval).take_while(move |t| *t <= end)
    }

    pub(super) fn step_count(&self) -> usize {
        usize::try_from((self.end - self.start) / self.interval.max(1) + 1).unwrap_or(0)
    }

    fn at_millis(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_millis(t)),
        }
    }

    pub(super) fn eval(&self, expr: &Expr) -> Result<Evaluated, QueryError> {
        self.budget.check_time()?;
        match expr {
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::NumberLiteral(n) => Ok(Evaluated::Steps(self.scalar_series(|_| n.val)?)),
            Expr::StringLiteral(s) => Ok(Evaluated::Text(s.val.clone())),
            Expr::VectorSelector(vs) => Ok(Evaluated::Steps(self.vector_selector(vs, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                // Only an instant query's outermost expression can be a range vector (the
                // parser checks types); it is returned as it was read.
                let input = self.range_input(expr)?.ok_or_else(|| unsupported("range vector"))?;
                self.raw_window(input).map(Evaluated::Steps)
            }
            Expr::Unary(u) => {
                let mut m = self.eval_steps(&u.expr)?;
                for s in &mut m {
                    s.labels = drop_metric_name(&s.labels);
                    for p in &mut s.samples {
                        p.1 = -p.1;
                    }
                }
                check_unique_labels(&m)?;
                Ok(Evaluated::Steps(m))
            }
            Expr::Binary(b) => binary::eval(self, b).map(Evaluated::Steps),
            Expr::Aggregate(a) => aggregate::eval(self, a).map(Evaluated::Steps),
            Expr::Call(c) => functions::eval(self, c).map(Evaluated::Steps),
            Expr::Extension(_) => Err(unsupported("extension expression")),
        }
    }

    /// Evaluates an expression that must yield series (not a string).
    pub(super) fn eval_steps(&self, expr: &Expr) -> Result<Vec<Series>, QueryError> {
        match self.eval(expr)? {
            Evaluated::Steps(m) => Ok(m),
            Evaluated::Text(_) => Err(QueryError::Execution("expected a vector or scalar, got a string".into())),
        }
    }

    /// A scalar as one series without labels, with a point at every step.
    pub(super) fn scalar_series(&self, value: impl Fn(i64) -> f64) -> Result<Vec<Series>, QueryError> {
        self.budget.take(self.step_count())?;
        let samples = self.steps().map(|t| (t, value(t))).collect();
        Ok(vec![Series { labels: Vec::new(), samples }])
    }

    /// Reads the series a selector names with samples in `[mint, maxt]`.
    pub(super) fn select(&self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<Series>, QueryError> {
        let mut base = Vec::new();
        if let Some(name) = &vs.name {
            base.push(Matcher::Equal(METRIC_NAME.into(), name.clone()));
        }
        for m in &vs.matchers.matchers {
            base.push(to_storage_matcher(m)?);
        }
        let mut series = if vs.matchers.or_matchers.is_empty() {
            self.db.select(&base, mint, maxt)?
        } else {
            // `{a="1" or b="2"}`: the union of each alternative's series.
            let mut by_labels: std::collections::BTreeMap<Labels, Series> = Default::default();
            for alternative in &vs.matchers.or_matchers {
                let mut ms = base.clone();
                for m in alternative {
                    ms.push(to_storage_matcher(m)?);
                }
                for s in self.db.select(&ms, mint, maxt)? {
                    by_labels.entry(s.labels.clone()).or_insert(s);
                }
            }
            by_labels.into_values().collect()
        };
        series.retain(|s| !s.samples.is_empty());
        Ok(series)
    }

    /// Evaluates a vector selector at every step: the newest sample within the lookback
    /// window before the (offset, `@`-adjusted) time, unless that sample is a staleness
    /// marker. With `timestamps`, a point's value is its sample's time in seconds.
    pub(super) fn vector_selector(&self, vs: &VectorSelector, timestamps: bool) -> Result<Vec<Series>, QueryError> {
        let offset = offset_millis(&vs.offset);
        let at = self.at_millis(&vs.at);
        let ref_time = |ts: i64| at.unwrap_or(ts) - offset;
        // As in Prometheus, only the points a selector yields count towards the sample
        // limit, not the raw samples it walks.
        let raw = self.select(vs, ref_time(self.start) - self.lookback, ref_time(self.end))?;
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            self.budget.check_time()?;
            let mut points = Vec::new();
            let mut next = 0;
            for (step, ts) in self.steps().enumerate() {
                if step % CHECK_EVERY == CHECK_EVERY - 1 {
                    self.budget.check_time()?;
                    self.budget.check_room(points.len())?;
                }
                let r = ref_time(ts);
                while next < s.samples.len() && s.samples[next].0 <= r {
                    next += 1;
                }
                if next == 0 {
                    continue;
                }
                let (t, v) = s.samples[next - 1];
                if t >= r - self.lookback && !is_stale(v) {
                    points.push((ts, if timestamps { t as f64 / 1000.0 } else { v }));
                }
            }
            if !points.is_empty() {
                self.budget.take(points.len())?;
                out.push(Series { labels: s.labels, samples: points });
            }
        }
        Ok(out)
    }

    /// The samples behind a matrix selector or subquery argument (through parentheses), or
    /// `None` for any other expression.
    pub(super) fn range_input(&self, expr: &Expr) -> Result<Option<RangeInput>, QueryError> {
        match unwrap_parens(expr) {
            Expr::MatrixSelector(ms) => {
                let range = millis(&ms.range);
                let offset = offset_millis(&ms.vs.offset);
                let at = self.at_millis(&ms.vs.at);
                let ref_time = |ts: i64| at.unwrap_or(ts) - offset;
                let mut series = self.select(&ms.vs, ref_time(self.start) - range, ref_time(self.end))?;
                for s in &mut series {
                    s.samples.retain(|(_, v)| !is_stale(*v));
                }
                series.retain(|s| !s.samples.is_empty());
                // The samples of every window are held at once (Prometheus holds one
                // series' window at a time, so this limit is stricter for range queries).
                self.budget.take(series.iter().map(|s| s.samples.len()).sum())?;
                Ok(Some(RangeInput { series, range, offset, at }))
            }
            Expr::Subquery(sq) => {
                let range = millis(&sq.range);
                let offset = offset_millis(&sq.offset);
                let at = self.at_millis(&sq.at);
                let interval = match &sq.step {
                    Some(step) if millis(step) > 0 => millis(step),
                    _ => DEFAULT_SUBQUERY_STEP_MS,
                };
                let (first, last) = match at {
                    Some(at) => (at, at),
                    None => (self.start, self.end),
                };
                // The first step at or after the window's start that is a multiple of the
                // subquery step, as Prometheus aligns subqueries.
                let earliest = first - offset - range;
                let mut start = earliest.div_euclid(interval) * interval;
                if start < earliest {
                    start += interval;
                }
                let inner = Evaluator { start, end: last - offset, interval, ..*self };
                // Stepping through more steps than the query may hold samples would only
                // end in the timeout.
                self.budget.check_room(inner.step_count())?;
                let series = if inner.end < inner.start { Vec::new() } else { inner.eval_steps(&sq.expr)? };
                Ok(Some(RangeInput { series, range, offset, at }))
            }
            _ => Ok(None),
        }
    }

    /// A range vector as an instant query returns it: the samples in `[t - range, t]`.
    fn raw_window(&self, input: RangeInput) -> Result<Vec<Series>, QueryError> {
        let maxt = input.at.unwrap_or(self.start) - input.offset;
        let mint = maxt - input.range;
        let mut out = Vec::new();
        for mut s in input.series {
            s.samples.retain(|(t, _)| *t >= mint && *t <= maxt);
            if !s.samples.is_empty() {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Applies `f` to the instant vectors of `inputs` at every step and collects its output
    /// into series. A label set twice in one step's output is an error, as in Prometheus.
    pub(super) fn range_eval<'m, F>(&self, inputs: &[&'m [Series]], mut f: F) -> Result<Vec<Series>, QueryError>
    where
        F: FnMut(&[Vec<StepSample<'m>>], i64) -> Result<StepOutput<'m>, QueryError>,
    {
        let mut cursors: Vec<Vec<usize>> = inputs.iter().map(|m| vec![0; m.len()]).collect();
        let mut vectors: Vec<Vec<StepSample<'m>>> = inputs.iter().map(|_| Vec::new()).collect();
        let mut out: Vec<Series> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut by_address: HashMap<usize, usize> = HashMap::new();
        for ts in self.steps() {
            self.budget.check_time()?;
            for (i, matrix) in inputs.iter().enumerate() {
                vectors[i].clear();
                for (si, s) in matrix.iter().enumerate() {
                    let c = &mut cursors[i][si];
                    while *c < s.samples.len() && s.samples[*c].0 < ts {
                        *c += 1;
                    }
                    if *c < s.samples.len() && s.samples[*c].0 == ts {
                        vectors[i].push(StepSample { labels: &s.labels, v: s.samples[*c].1, series: si });
                    }
                }
            }
            let result = f(&vectors, ts)?;
            self.budget.take(result.len())?;
            for (labels, v) in result {
                // Borrowed labels live as long as the inputs, so their address identifies
                // them: a cheaper key than hashing the labels at every step.
                let address = match &labels {
                    Cow::Borrowed(l) => Some(*l as *const Labels as usize),
                    Cow::Owned(_) => None,
                };
                let known = address.and_then(|a| by_address.get(&a).copied());
                let i = match known.or_else(|| index.get(labels.as_ref()).copied()) {
                    Some(i) => i,
                    None => {
                        let labels = labels.into_owned();
                        index.insert(labels.clone(), out.len());
                        out.push(Series { labels, samples: Vec::new() });
                        out.len() - 1
                    }
                };
                if let (Some(a), None) = (address, known) {
                    by_address.insert(a, i);
                }
                let samples = &mut out[i].samples;
                if samples.last().is_some_and(|(t, _)| *t == ts) {
                    return Err(duplicate_labelset());
                }
                samples.push((ts, v));
            }
        }
        for m in inputs {
            self.budget.release(m.iter().map(|s| s.samples.len()).sum());
        }
        Ok(out)
    }

    /// Runs `f` over the window of every series of `input` at every step, passing the step
    /// time, the window's end, and the step index; collects the values it returns.
    pub(super) fn range_windows<F>(&self, input: &RangeInput, mut f: F) -> Result<Vec<WindowResults>, QueryError>
    where
        F: FnMut(&[(i64, f64)], i64, i64, usize) -> Result<Option<f64>, QueryError>,
    {
        let mut out = Vec::new();
        for (si, s) in input.series.iter().enumerate() {
            self.budget.check_time()?;
            let (mut lo, mut hi) = (0, 0);
            let mut points = Vec::new();
            for (step, ts) in self.steps().enumerate() {
                if step % CHECK_EVERY == CHECK_EVERY - 1 {
                    self.budget.check_time()?;
                    self.budget.check_room(points.len())?;
                }
                let maxt = input.at.unwrap_or(ts) - input.offset;
                let mint = maxt - input.range;
                while lo < s.samples.len() && s.samples[lo].0 < mint {
                    lo += 1;
                }
                hi = hi.max(lo);
                while hi < s.samples.len() && s.samples[hi].0 <= maxt {
                    hi += 1;
                }
                if lo == hi {
                    continue;
                }
                if let Some(v) = f(&s.samples[lo..hi], ts, maxt, step)? {
                    points.push((ts, v));
                }
            }
            if !points.is_empty() {
                self.budget.take(points.len())?;
                out.push((si, points));
            }
        }
        Ok(out)
    }
}

pub(super) fn duplicate_labelset() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

pub(super) fn unsupported(what: &str) -> QueryError {
    QueryError::Execution(format!("{what} is not supported"))
}

/// Fails if two series share a label set (after a function dropped `__name__`, say).
pub(super) fn check_unique_labels(m: &[Series]) -> Result<(), QueryError> {
    let mut seen = std::collections::HashSet::with_capacity(m.len());
    for s in m {
        if !seen.insert(&s.labels) {
            return Err(duplicate_labelset());
        }
    }
    Ok(())
}
