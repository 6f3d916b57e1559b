//! The judgement of one analysis: the canary's figures against the thresholds, with the
//! stable version's beside them. Pure: the numbers come from [`crate::measure`].
//!
//! Order of the checks, first failure wins:
//! 1. too few canary requests in the window (`min_requests`): **hold**, nothing is judged;
//! 2. canary error rate above `max_error_rate`: **fail**;
//! 3. canary p99 above the absolute limit, or above stable's p99 plus the relative margin
//!    (skipped, and said so, while stable has no p99 to compare with): **fail**;
//! 4. the extra PromQL check above its `max` (or false, without `max`): **fail**; a check
//!    that cannot be evaluated (an error, or no value with `max`) **holds**.
//!
//! Otherwise the canary **passes**. Every verdict carries its reason with the numbers.

use crate::spec::{P99Limit, Thresholds};
use crate::state::Measurements;

/// The outcome of one analysis.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass(String),
    Hold(String),
    Fail(String),
}

impl Verdict {
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Pass(r) | Verdict::Hold(r) | Verdict::Fail(r) => r,
        }
    }
}

/// `0.0123` -> `1.23%`.
pub fn pct(v: f64) -> String {
    let p = v * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p >= 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "n/a".into(),
    }
}

fn count(v: f64) -> String {
    format!("{}", v.round() as i64)
}

/// Judges the canary.
pub fn judge(t: &Thresholds, m: &Measurements) -> Verdict {
    let c = &m.canary;
    let s = &m.stable;
    let window = format!("{:.0}s", m.window_s);
    if c.requests < t.min_requests as f64 {
        return Verdict::Hold(format!(
            "too few requests to judge: the canary served {} in {window}, the minimum is {}",
            count(c.requests),
            t.min_requests
        ));
    }
    let c_rate = c.error_rate.unwrap_or(0.0);
    let stable_rate = s.error_rate.map(pct).unwrap_or_else(|| "n/a".into());
    if c_rate > t.max_error_rate {
        return Verdict::Fail(format!(
            "error rate {} ({} of {} requests in {window}) is above the limit {} (stable {stable_rate})",
            pct(c_rate),
            count(c.errors),
            count(c.requests),
            pct(t.max_error_rate)
        ));
    }
    let mut passed = vec![format!(
        "error rate {} <= {} (stable {stable_rate}, {} canary requests in {window})",
        pct(c_rate),
        pct(t.max_error_rate),
        count(c.requests)
    )];
    match t.max_p99 {
        Some(P99Limit::AbsoluteMs(limit)) => match c.p99_ms {
            Some(p) if p > limit => {
                return Verdict::Fail(format!(
                    "p99 {} is above the limit {} (stable {})",
                    ms(Some(p)),
                    ms(Some(limit)),
                    ms(s.p99_ms)
                ));
            }
            p => passed.push(format!("p99 {} <= {}", ms(p), ms(Some(limit)))),
        },
        Some(P99Limit::RelativePercent(margin)) => match (c.p99_ms, s.p99_ms) {
            (Some(p), Some(base)) => {
                let limit = base * (1.0 + margin / 100.0);
                if p > limit {
                    return Verdict::Fail(format!(
                        "p99 {} is above stable's {} +{margin}% = {}",
                        ms(Some(p)),
                        ms(Some(base)),
                        ms(Some(limit))
                    ));
                }
                passed.push(format!("p99 {} <= stable {} +{margin}%", ms(Some(p)), ms(Some(base))));
            }
            _ => passed.push(format!(
                "p99 not compared: stable {} canary {} (no requests to compare)",
                ms(s.p99_ms),
                ms(c.p99_ms)
            )),
        },
        None => {}
    }
    if let Some(q) = &t.query {
        if let Some(e) = &m.query_error {
            return Verdict::Hold(format!("the query check could not be evaluated: {e}"));
        }
        match (m.query_value, q.max) {
            (Some(v), Some(max)) if v > max => {
                return Verdict::Fail(format!("query value {v} is above its max {max}"));
            }
            (Some(v), Some(max)) => passed.push(format!("query value {v} <= {max}")),
            (None, Some(_)) => return Verdict::Hold("the query check returned no value".into()),
            (Some(v), None) if v != 0.0 => passed.push("query check true".into()),
            (_, None) => return Verdict::Fail("the query check is false (it returned nothing or 0)".into()),
        }
    }
    Verdict::Pass(passed.join("; "))
}

#[cfg(test)]
mod tests;
