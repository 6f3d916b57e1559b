//! What a rollout is asked to do: the service, the stable and canary versions, the traffic
//! steps, how long each step is watched, and the thresholds the canary must stay within.
//!
//! [`StartRequest`] is the raw form (the API's JSON body, the CLI's flags), with
//! human-friendly values (`"1%"`, `"+20%"`, `"1m"`); [`StartRequest::validate`] turns it into
//! a [`Spec`] or names the field that is wrong.

use crate::error::RolloutError;
use serde::{Deserialize, Serialize};
use signalbox_core::traffic::version_ok;
use std::time::Duration;

/// The steps when none are given: 5, 25, 50 and 100 % of requests to the canary.
pub const DEFAULT_STEPS: [u8; 4] = [5, 25, 50, 100];
/// The interval when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The error-rate limit when none is given: 1 %.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;
/// Requests the canary must have served in a window before it is judged.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;
/// Consecutive holds (too few requests) before the rollout pauses for a human.
pub const DEFAULT_MAX_HOLDS: u32 = 5;
/// The shortest interval (the metrics need two samples in a window).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A start request as the API and the CLI send it. Every field but `to` is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The canary version (an instance's `version` meta or `version=...` tag).
    pub to: String,
    /// The stable version; by default the version the traffic policy sends most requests
    /// to, or the one other version registered.
    #[serde(default)]
    pub from: Option<String>,
    /// Percent of requests to the canary at each step, rising, ending at 100.
    #[serde(default)]
    pub steps: Option<Vec<u8>>,
    /// How long each step is watched before it is judged (`"30s"`, `"1m"`), or `"pause"`:
    /// each step waits for a promote (failing checks still roll back).
    #[serde(default)]
    pub interval: Option<String>,
    /// The canary's highest error rate (`"1%"`, or a fraction like `0.01`).
    #[serde(default)]
    pub max_error_rate: Option<Threshold>,
    /// The canary's highest p99: absolute (`"250ms"`) or relative to stable (`"+20%"`).
    #[serde(default)]
    pub max_p99: Option<String>,
    /// Requests the canary must serve in a window before it is judged.
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// Consecutive holds (too few requests to judge) before the rollout pauses for a human.
    #[serde(default)]
    pub max_holds: Option<u32>,
    /// An extra PromQL check.
    #[serde(default)]
    pub query: Option<QueryCheck>,
}

/// A number or a text like `"1%"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Threshold {
    Number(f64),
    Text(String),
}

/// An extra check: a PromQL expression evaluated at each analysis. `$service`, `$canary`,
/// `$stable` and `$interval` (a range like `60s`) are replaced first.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryCheck {
    /// The expression.
    pub expr: String,
    /// The highest value allowed; without it the expression must return a non-zero value
    /// (a comparison such as `... < 0.5` that returns nothing is false).
    #[serde(default)]
    pub max: Option<f64>,
}

/// The p99 limit.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum P99Limit {
    /// At most this many milliseconds.
    AbsoluteMs(f64),
    /// At most stable's p99 plus this many percent.
    RelativePercent(f64),
}

/// The thresholds a canary is judged against.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Thresholds {
    /// Highest error rate, a fraction (0.01 is 1 %).
    pub max_error_rate: f64,
    pub max_p99: Option<P99Limit>,
    pub min_requests: u64,
    pub max_holds: u32,
    pub query: Option<QueryCheck>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_error_rate: DEFAULT_MAX_ERROR_RATE,
            max_p99: None,
            min_requests: DEFAULT_MIN_REQUESTS,
            max_holds: DEFAULT_MAX_HOLDS,
            query: None,
        }
    }
}

/// A validated rollout request.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Spec {
    pub service: String,
    pub stable: String,
    pub canary: String,
    pub steps: Vec<u8>,
    /// Milliseconds per step; `None`: every step waits for a promote.
    pub interval_ms: Option<u64>,
    pub thresholds: Thresholds,
}

/// Whether a service or version name is acceptable: 1-128 letters, digits, `-`, `_`, `.`.
pub fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Parses `"1%"`, `"0.5 %"` or a fraction `"0.01"` into a fraction.
pub fn parse_rate(t: &Threshold) -> Result<f64, String> {
    let v = match t {
        Threshold::Number(n) => *n,
        Threshold::Text(s) => {
            let s = s.trim();
            match s.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map_err(|_| format!("`{s}` is not a percentage like 1%"))? / 100.0,
                None => s.parse::<f64>().map_err(|_| format!("`{s}` is not a rate: use a percentage like 1%"))?,
            }
        }
    };
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is outside 0%..100%"));
    }
    Ok(v)
}

/// Parses `"+20%"` (relative to stable) or `"250ms"` / `"1s"` (absolute).
pub fn parse_p99(s: &str) -> Result<P99Limit, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('+') {
        let p = rest
            .strip_suffix('%')
            .ok_or_else(|| format!("`{s}`: a relative limit is a percentage like +20%"))?
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("`{s}` is not a percentage like +20%"))?;
        if !p.is_finite() || !(0.0..=10_000.0).contains(&p) {
            return Err(format!("`{s}`: the percentage must be 0..10000"));
        }
        return Ok(P99Limit::RelativePercent(p));
    }
    let d = signalbox_core::config::parse_duration(s)
        .map_err(|e| format!("{e}; or a limit relative to stable like +20%"))?;
    if d.is_zero() {
        return Err(format!("`{s}`: the limit must be above zero"));
    }
    Ok(P99Limit::AbsoluteMs(d.as_secs_f64() * 1000.0))
}

/// Checks steps: 1-20 of them, each 1..=100, strictly rising, the last 100.
pub fn check_steps(steps: &[u8]) -> Result<(), String> {
    if steps.is_empty() || steps.len() > 20 {
        return Err("give 1 to 20 steps, like 5,25,50,100".into());
    }
    if steps.iter().any(|s| !(1..=100).contains(s)) {
        return Err("each step is a percentage from 1 to 100".into());
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err("steps must rise, like 5,25,50,100".into());
    }
    if steps.last() != Some(&100) {
        return Err("the last step must be 100 (every request on the canary)".into());
    }
    Ok(())
}

/// Parses an interval: a duration of at least [`MIN_INTERVAL`], or `pause`.
pub fn parse_interval(s: &str) -> Result<Option<u64>, String> {
    if s.trim() == "pause" {
        return Ok(None);
    }
    let d = signalbox_core::config::parse_duration(s).map_err(|e| format!("{e}; or `pause`"))?;
    if d < MIN_INTERVAL || d > Duration::from_secs(7 * 86_400) {
        return Err(format!("`{s}`: an interval is 1s to 7d"));
    }
    Ok(Some(d.as_millis() as u64))
}

impl StartRequest {
    /// The spec for `service`, with `stable` already chosen (see
    /// [`crate::Controller::start`]).
    pub fn validate(&self, service: &str, stable: &str) -> Result<Spec, RolloutError> {
        if !name_ok(service) {
            return Err(RolloutError::invalid("service", "must be 1-128 letters, digits, `-`, `_` or `.`"));
        }
        if !version_ok(&self.to) {
            return Err(RolloutError::invalid("to", "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
        }
        if !version_ok(stable) {
            return Err(RolloutError::invalid("from", "a version is 1-64 letters, digits, `-`, `_`, `.` or `+`"));
        }
        if stable == self.to {
            return Err(RolloutError::invalid("to", format!("`{}` is already the stable version", self.to)));
        }
        let steps = self.steps.clone().unwrap_or_else(|| DEFAULT_STEPS.to_vec());
        check_steps(&steps).map_err(|m| RolloutError::invalid("steps", m))?;
        let interval_ms = match &self.interval {
            None => Some(DEFAULT_INTERVAL.as_millis() as u64),
            Some(s) => parse_interval(s).map_err(|m| RolloutError::invalid("interval", m))?,
        };
        let mut t = Thresholds::default();
        if let Some(r) = &self.max_error_rate {
            t.max_error_rate = parse_rate(r).map_err(|m| RolloutError::invalid("max_error_rate", m))?;
        }
        if let Some(p) = &self.max_p99 {
            t.max_p99 = Some(parse_p99(p).map_err(|m| RolloutError::invalid("max_p99", m))?);
        }
        if let Some(n) = self.min_requests {
            if n > 1_000_000_000 {
                return Err(RolloutError::invalid("min_requests", "at most 1000000000"));
            }
            t.min_requests = n;
        }
        if let Some(n) = self.max_holds {
            if n > 10_000 {
                return Err(RolloutError::invalid("max_holds", "at most 10000"));
            }
            t.max_holds = n;
        }
        if let Some(q) = &self.query {
            let probe = crate::measure::expand(&q.expr, service, stable, &self.to, 60_000);
            if let Err(e) = signalbox_metrics::promql::parse_query(&probe) {
                return Err(RolloutError::invalid("query.expr", format!("not valid PromQL: {e}")));
            }
            if q.max.is_some_and(|m| !m.is_finite()) {
                return Err(RolloutError::invalid("query.max", "must be a finite number"));
            }
            t.query = Some(q.clone());
        }
        Ok(Spec {
            service: service.to_string(),
            stable: stable.to_string(),
            canary: self.to.clone(),
            steps,
            interval_ms,
            thresholds: t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_percentages_and_fractions() {
        assert_eq!(parse_rate(&Threshold::Text("1%".into())), Ok(0.01));
        assert_eq!(parse_rate(&Threshold::Text("0.5 %".into())), Ok(0.005));
        assert_eq!(parse_rate(&Threshold::Number(0.02)), Ok(0.02));
        assert!(parse_rate(&Threshold::Text("150%".into())).is_err());
        assert!(parse_rate(&Threshold::Text("lots".into())).is_err());
    }

    #[test]
    fn p99_limits_relative_and_absolute() {
        assert_eq!(parse_p99("+20%"), Ok(P99Limit::RelativePercent(20.0)));
        assert_eq!(parse_p99("250ms"), Ok(P99Limit::AbsoluteMs(250.0)));
        assert_eq!(parse_p99("1.5s"), Ok(P99Limit::AbsoluteMs(1500.0)));
        assert!(parse_p99("+20").is_err());
        assert!(parse_p99("0s").is_err());
    }

    #[test]
    fn steps_and_intervals() {
        assert!(check_steps(&[5, 25, 50, 100]).is_ok());
        assert!(check_steps(&[100]).is_ok());
        assert!(check_steps(&[5, 5, 100]).is_err());
        assert!(check_steps(&[5, 50]).is_err());
        assert!(check_steps(&[0, 100]).is_err());
        assert_eq!(parse_interval("pause"), Ok(None));
        assert_eq!(parse_interval("2s"), Ok(Some(2000)));
        assert!(parse_interval("10ms").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let r = StartRequest { to: "v2".into(), max_p99: Some("fast".into()), ..Default::default() };
        assert!(matches!(r.validate("shop", "v1"), Err(RolloutError::Invalid { field, .. }) if field == "max_p99"));
        let r = StartRequest { to: "v1".into(), ..Default::default() };
        assert!(matches!(r.validate("shop", "v1"), Err(RolloutError::Invalid { field, .. }) if field == "to"));
        let q = QueryCheck { expr: "sum(rate(x[$interval])".into(), max: None };
        let r = StartRequest { to: "v2".into(), query: Some(q), ..Default::default() };
        assert!(matches!(r.validate("shop", "v1"), Err(RolloutError::Invalid { field, .. }) if field == "query.expr"));
        let spec = StartRequest { to: "v2".into(), ..Default::default() }.validate("shop", "v1").unwrap();
        assert_eq!(spec.steps, DEFAULT_STEPS);
        assert_eq!(spec.interval_ms, Some(60_000));
    }
}
