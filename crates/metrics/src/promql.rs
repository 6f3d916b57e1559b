//! PromQL evaluation with Prometheus 2.x semantics (2.42 is the reference): queries are
//! parsed by `promql-parser` and evaluated here against any [`Queryable`].
//!
//! Every expression is evaluated over a grid of steps, as Prometheus does: an instant query
//! is a range evaluation with one step. Selectors read storage once for the whole range and
//! walk the samples step by step; range functions slide a window over them.
//!
//! # Layout
//! - [`Engine`]: the entry point ([`Engine::instant`], [`Engine::range`]) with its limits.
//! - `eval`: the evaluator: selectors, lookback, offset and `@`, subqueries, step iteration.
//! - `functions`: the function library (`rate`, `*_over_time`, `histogram_quantile`, ...).
//! - `aggregate`: `sum`, `avg`, `topk`, `count_values` and the other aggregations.
//! - `binary`: arithmetic, comparison and set operators with vector matching.
//! - `prelex`: rewrites a query where `promql-parser` would lex it differently from
//!   Prometheus (backtick raw strings, float literals).
//!
//! Time windows are closed at both ends, as in 2.42 (Prometheus 3 opened the left end): a
//! vector selector takes the newest sample in `[t - lookback, t]`, a range selector `[5m]`
//! the samples in `[t - 5m, t]`, where `t` is the step time minus any `offset`, or the `@`
//! time. A staleness marker as the newest sample means no value; range selectors skip them.
//!
//! Differences from Prometheus 2.42 that a caller may notice: native histograms are not
//! supported (storage holds floats only); instant vectors come back sorted by labels unless
//! the outermost operation orders them (`sort`, `sort_desc`, `topk`, `bottomk`); the sample
//! limit counts the whole of a range selector's samples at once, where Prometheus holds one
//! series' window at a time. `examples/promql_testdata.rs` runs Prometheus's own test
//! scripts (`promql/testdata/*.test`) against this engine: 2.42's 566 evaluations pass.
//!
//! Evaluation is synchronous and CPU-bound: call it from a blocking thread.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod prelex;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

pub use crate::storage::{Labels, Queryable, Series, StorageError};
use eval::{Budget, Evaluated, Evaluator};

/// The subquery step when a subquery gives none (`foo[1h:]`): Prometheus uses the global
/// evaluation interval, whose default is one minute.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Evaluates PromQL queries with limits on lookback, time and memory.
#[derive(Debug, Clone)]
pub struct Engine {
    /// How far back a vector selector looks for a sample (Prometheus's `--query.lookback-delta`).
    pub lookback_delta_ms: i64,
    /// How long one query may evaluate before it fails with [`QueryError::Timeout`].
    pub timeout: Duration,
    /// How many samples a query may hold at once (`--query.max-samples`).
    pub max_samples: usize,
}

impl Default for Engine {
    fn default() -> Self {
        Engine { lookback_delta_ms: 300_000, timeout: Duration::from_secs(120), max_samples: 50_000_000 }
    }
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A query's result, in the four types of the Prometheus HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{message}")]
    Parse { message: String },
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error("query processing would load too many samples into memory in query execution (limit {limit})")]
    TooManySamples { limit: usize },
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// The `errorType` the Prometheus HTTP API reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse { .. } => "bad_data",
            QueryError::Timeout => "timeout",
            QueryError::TooManySamples { .. } | QueryError::Execution(_) => "execution",
            QueryError::Storage(_) => "internal",
        }
    }

    fn parse(message: impl Into<String>) -> QueryError {
        QueryError::Parse { message: message.into() }
    }
}

/// Parses a duration as the Prometheus HTTP API accepts it (`step=15`, `step=1m30s`, `0.5`)
/// into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, QueryError> {
    let bad = || QueryError::parse(format!("cannot parse {s:?} to a valid duration"));
    if let Ok(secs) = s.parse::<f64>() {
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms < 0.0 || ms > i64::MAX as f64 {
            return Err(bad());
        }
        return Ok(ms as i64);
    }
    match promql_parser::util::parse_duration(s) {
        Ok(d) => i64::try_from(d.as_millis()).map_err(|_| bad()),
        // "0s" is a valid duration for the API (the parser wants positive ranges).
        Err(e) if e.contains("greater than 0") => Ok(0),
        Err(_) => Err(bad()),
    }
}

/// Parses a query, registering the functions Prometheus 2.42 has that the parser (which
/// follows Prometheus 3) renamed.
pub fn parse_query(query: &str) -> Result<Expr, QueryError> {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        let holt_winters = parser::Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Only fails if a future parser makes holt_winters a built-in, which is fine too.
        let _ = parser::register_extra_functions(vec![holt_winters]);
    });
    let query = prelex::prepare(query).map_err(QueryError::parse)?;
    // A parser bug must not take the node down: a panic becomes a parse error.
    match std::panic::catch_unwind(|| parser::parse(&query)) {
        Ok(parsed) => parsed.map_err(QueryError::parse),
        Err(_) => Err(QueryError::parse("cannot parse the query")),
    }
}

/// Prometheus's limit on the points of one series in a range query's result.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

fn check_time_arg(name: &str, t: i64) -> Result<(), QueryError> {
    if !(-eval::MAX_MILLIS..=eval::MAX_MILLIS).contains(&t) {
        return Err(QueryError::parse(format!("invalid {name}: {t} ms is out of range")));
    }
    Ok(())
}

impl Engine {
    /// The lookback delta in use: Prometheus's default when unset, and bounded so that time
    /// arithmetic cannot overflow.
    fn lookback(&self) -> i64 {
        if self.lookback_delta_ms <= 0 { 300_000 } else { self.lookback_delta_ms.min(eval::MAX_MILLIS) }
    }

    fn budget(&self) -> Budget {
        Budget::new(Instant::now() + self.timeout, self.max_samples)
    }

    /// Evaluates `query` at `t_ms`.
    pub fn instant(&self, db: &dyn Queryable, query: &str, t_ms: i64) -> Result<Value, QueryError> {
        check_time_arg("time", t_ms)?;
        let expr = parse_query(query)?;
        let budget = self.budget();
        let ev = Evaluator {
            db,
            start: t_ms,
            end: t_ms,
            interval: 1,
            lookback: self.lookback(),
            query_start: t_ms,
            query_end: t_ms,
            budget: &budget,
        };
        let result = ev.eval(&expr)?;
        budget.check_time()?;
        match (expr.value_type(), result) {
            (_, Evaluated::Text(v)) => Ok(Value::String { t: t_ms, v }),
            (ValueType::Scalar, Evaluated::Steps(m)) => {
                let v = m.first().and_then(|s| s.samples.first()).map(|p| p.1).unwrap_or(f64::NAN);
                Ok(Value::Scalar { t: t_ms, v })
            }
            (ValueType::Matrix, Evaluated::Steps(mut m)) => {
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(Value::Matrix(m))
            }
            (_, Evaluated::Steps(m)) => {
                let mut vector: Vec<Sample> = m
                    .into_iter()
                    .filter_map(|s| s.samples.first().map(|p| Sample { labels: s.labels.clone(), t: t_ms, v: p.1 }))
                    .collect();
                if !keeps_order(&expr) {
                    vector.sort_by(|a, b| a.labels.cmp(&b.labels));
                }
                Ok(Value::Vector(vector))
            }
        }
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`; the result is always a
    /// matrix sorted by labels (a scalar becomes one series without labels).
    pub fn range(
        &self,
        db: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::parse(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        check_time_arg("start", start_ms)?;
        check_time_arg("end", end_ms)?;
        if end_ms < start_ms {
            return Err(QueryError::parse("end timestamp must not be before start time"));
        }
        if (end_ms - start_ms) / step_ms > MAX_POINTS_PER_SERIES {
            return Err(QueryError::parse(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let expr = parse_query(query)?;
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                return Err(QueryError::parse(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_name(other)
                )));
            }
        }
        let budget = self.budget();
        let ev = Evaluator {
            db,
            start: start_ms,
            end: end_ms,
            interval: step_ms,
            lookback: self.lookback(),
            query_start: start_ms,
            query_end: end_ms,
            budget: &budget,
        };
        let mut matrix = match ev.eval(&expr)? {
            Evaluated::Steps(m) => m,
            Evaluated::Text(_) => return Err(QueryError::Execution("a string is not a range query result".into())),
        };
        budget.check_time()?;
        matrix.retain(|s| !s.samples.is_empty());
        matrix.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(matrix))
    }
}

/// Prometheus's name for a value type, as its error messages print it.
fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// Whether the outermost operation of `expr` orders its result (so the vector is returned
/// in evaluation order rather than sorted by labels).
fn keeps_order(expr: &Expr) -> bool {
    use promql_parser::parser::token::{T_BOTTOMK, T_TOPK};
    match expr {
        Expr::Paren(p) => keeps_order(&p.expr),
        Expr::Call(c) => matches!(c.func.name, "sort" | "sort_desc"),
        Expr::Aggregate(a) => matches!(a.op.id(), T_TOPK | T_BOTTOMK),
        _ => false,
    }
}

/// The matchers of a series selector as the series, labels and delete APIs take it
/// (`up{job="api"}`, `{__name__=~"http_.*"}`), refusing one that matches every series as
/// Prometheus does.
pub fn selector_matchers(selector: &str) -> Result<Vec<crate::storage::Matcher>, QueryError> {
    let expr = parse_query(selector)?;
    let Expr::VectorSelector(vs) = eval::unwrap_parens(&expr) else {
        return Err(QueryError::parse(format!("{selector:?} is not a series selector")));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name
        && !vs.matchers.matchers.iter().any(|m| m.name == "__name__")
    {
        out.push(crate::storage::Matcher::Equal("__name__".into(), name.clone()));
    }
    for m in &vs.matchers.matchers {
        out.push(eval::to_storage_matcher(m)?);
    }
    if out.iter().all(|m| m.matches("")) {
        return Err(QueryError::parse("match[] must contain at least one non-empty matcher"));
    }
    Ok(out)
}
