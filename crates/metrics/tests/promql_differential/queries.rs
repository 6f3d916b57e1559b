//! The query set (`queries.txt`) and the known differences (`known_differences.txt`), and the
//! evaluations each query gets: instant queries at times chosen to hit the data's end, its
//! gaps and the lookback edge, and range queries with aligned and unaligned steps.

use crate::dataset::Dataset;

/// One query of `queries.txt`.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    /// Marked `! `: Prometheus rejects it (at parse or evaluation time).
    pub must_fail: bool,
}

/// Reads `queries.txt`: one query a line, `#` comment lines, `! ` marking expected errors.
pub fn parse_queries(text: &str) -> Vec<Query> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.strip_prefix("! ") {
            Some(q) => Query { text: q.trim().to_string(), must_fail: true },
            None => Query { text: l.to_string(), must_fail: false },
        })
        .collect()
}

/// Reads `known_differences.txt`: `query ## reason` lines and `#` comments. A line without a
/// reason is an error: every allowed difference must say why.
pub fn parse_known_differences(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(" ## ") {
            Some((q, reason)) if !q.trim().is_empty() && !reason.trim().is_empty() => {
                out.push((q.trim().to_string(), reason.trim().to_string()))
            }
            _ => return Err(format!("known_differences.txt line {}: expected `query ## reason`, got {line:?}", n + 1)),
        }
    }
    Ok(out)
}

/// How one query is evaluated.
#[derive(Debug, Clone, Copy)]
pub enum Eval {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

/// The evaluations every query gets, each with a short name for the report.
pub fn evaluations(data: &Dataset) -> Vec<(String, Eval)> {
    let (start, end) = (data.start_ms, data.end_ms);
    let min = 60_000;
    vec![
        ("instant at end".into(), Eval::Instant(end)),
        ("instant at start+90s".into(), Eval::Instant(start + 90_000)),
        ("instant at end-59m13s (sparse gap)".into(), Eval::Instant(end - 59 * min - 13_000)),
        ("instant at start+47m (batch gap)".into(), Eval::Instant(start + 47 * min)),
        ("instant at end-7.123s".into(), Eval::Instant(end - 7_123)),
        ("instant at end+4m".into(), Eval::Instant(end + 4 * min)),
        ("instant at end+8m (past lookback)".into(), Eval::Instant(end + 8 * min)),
        ("range last 1h step 60s".into(), Eval::Range { start: end - 60 * min, end, step: min }),
        (
            "range end-95m+7s..end+3m step 37s".into(),
            Eval::Range { start: end - 95 * min + 7_000, end: end + 3 * min, step: 37_000 },
        ),
        ("range all step 5m".into(), Eval::Range { start, end, step: 5 * min }),
        ("range last 40m step 7s".into(), Eval::Range { start: end - 40 * min, end, step: 7_000 }),
        (
            "range start-10m..start+20m step 30s".into(),
            Eval::Range { start: start - 10 * min, end: start + 20 * min, step: 30_000 },
        ),
    ]
}
