//! Functions of one series' samples in a window: rates with Prometheus's extrapolation,
//! the `*_over_time` aggregates, `changes`, `resets`, linear regression, Holt-Winters.

use super::Window;
use crate::promql::QueryError;

/// `rate`, `increase` and `delta`: the change over the window, corrected for counter resets
/// when `is_counter`, extrapolated towards the window's edges as Prometheus 2.42 does.
pub(in crate::promql) fn extrapolated_rate(
    samples: &[(i64, f64)],
    w: &Window,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &samples[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let range_start = w.end - w.range;
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let duration_to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_between_samples = sampled_interval / (samples.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // A counter does not extrapolate below zero.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between_samples * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold { duration_to_start } else { average_between_samples / 2.0 };
    extrapolate_to += if duration_to_end < threshold { duration_to_end } else { average_between_samples / 2.0 };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
pub(in crate::promql) fn instant_value(samples: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (last_t, last_v) = samples[samples.len() - 1];
    let (prev_t, prev_v) = samples[samples.len() - 2];
    let mut result = if is_rate && last_v < prev_v { last_v } else { last_v - prev_v };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// One step of Kahan-Babuska summation: returns the new sum and compensation.
pub(in crate::promql) fn kahan_add(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

pub(in crate::promql) fn avg(samples: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0, 0.0);
    for &(_, v) in samples {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_add(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

pub(in crate::promql) fn sum(samples: &[(i64, f64)]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &(_, v) in samples {
        (sum, c) = kahan_add(v, sum, c);
    }
    if f64::is_infinite(sum) { sum } else { sum + c }
}

pub(in crate::promql) fn min(samples: &[(i64, f64)]) -> f64 {
    let mut min = samples[0].1;
    for &(_, v) in samples {
        if v < min || min.is_nan() {
            min = v;
        }
    }
    min
}

pub(in crate::promql) fn max(samples: &[(i64, f64)]) -> f64 {
    let mut max = samples[0].1;
    for &(_, v) in samples {
        if v > max || max.is_nan() {
            max = v;
        }
    }
    max
}

/// The population variance (Welford's method with compensated sums).
pub(in crate::promql) fn stdvar(samples: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in samples {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_add(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_add(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The φ-quantile of `values` by linear interpolation between the closest ranks; sorts
/// `values`. NaN for no values or a NaN φ, ±Inf for φ outside [0, 1].
pub(in crate::promql) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Prometheus sorts NaNs first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

pub(in crate::promql) fn changes(samples: &[(i64, f64)]) -> f64 {
    let mut changes = 0;
    let mut prev = samples[0].1;
    for &(_, v) in &samples[1..] {
        if v != prev && !(v.is_nan() && prev.is_nan()) {
            changes += 1;
        }
        prev = v;
    }
    changes as f64
}

pub(in crate::promql) fn resets(samples: &[(i64, f64)]) -> f64 {
    let mut resets = 0;
    let mut prev = samples[0].1;
    for &(_, v) in &samples[1..] {
        if v < prev {
            resets += 1;
        }
        prev = v;
    }
    resets as f64
}

/// Least-squares slope (per second) and intercept at `intercept_time`.
pub(in crate::promql) fn linear_regression(samples: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = samples[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in samples.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1000.0;
        (sum_x, c_x) = kahan_add(x, sum_x, c_x);
        (sum_y, c_y) = kahan_add(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_add(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_add(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Double exponential smoothing with smoothing factor `sf` and trend factor `tf`.
pub(in crate::promql) fn holt_winters(samples: &[(i64, f64)], sf: f64, tf: f64) -> Result<Option<f64>, QueryError> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(QueryError::Execution(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}")));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(QueryError::Execution(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf}")));
    }
    if samples.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, samples[0].1);
    let mut b = samples[1].1 - samples[0].1;
    for (i, &(_, v)) in samples.iter().enumerate().skip(1) {
        let x = sf * v;
        // The trend of the first step is the initial slope.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Ok(Some(s1))
}
