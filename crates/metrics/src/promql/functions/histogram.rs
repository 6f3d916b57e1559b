//! `histogram_quantile` over classic histograms: bucket series told apart by their `le`.

use std::borrow::Cow;

use crate::promql::eval::{StepOutput, StepSample};
use crate::storage::Labels;

/// One bucket: its upper bound and cumulative count.
#[derive(Clone, Copy)]
struct Bucket {
    upper_bound: f64,
    count: f64,
}

/// Groups the step's bucket samples by their labels without `le` and computes the φ-quantile
/// of each group; the output drops `__name__` and `le`. Samples without a numeric `le` are
/// ignored, as in Prometheus.
pub(super) fn quantile_of_buckets<'m>(q: f64, vector: &[StepSample<'m>]) -> StepOutput<'m> {
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let mut index: std::collections::HashMap<Labels, usize> = Default::default();
    for s in vector {
        let Some(upper_bound) = s.labels.iter().find(|(k, _)| k == "le").and_then(|(_, v)| parse_go_float(v)) else {
            continue;
        };
        let key: Labels = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key.iter().filter(|(k, _)| k != "__name__").cloned().collect(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(Bucket { upper_bound, count: s.v });
    }
    groups.into_iter().map(|(labels, mut buckets)| (Cow::Owned(labels), bucket_quantile(q, &mut buckets))).collect()
}

/// Parses an `le` value as Go's `strconv.ParseFloat` does, including `+Inf`.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "+inf" | "Inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
    if buckets.last().is_none_or(|b| b.upper_bound != f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket (the +Inf one excluded) whose count reaches the rank.
    let b = buckets[..buckets.len() - 1].partition_point(|bucket| bucket.count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].upper_bound;
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return buckets[0].upper_bound;
    }
    let bucket_end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Merges buckets with the same upper bound (series that differ only in `le`'s spelling).
fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.upper_bound == b.upper_bound => last.count += b.count,
            _ => merged.push(*b),
        }
    }
    *buckets = merged;
}

/// Raises any count below an earlier bucket's to that count: scrapes are not atomic, so a
/// rate of buckets can dip, and the search needs monotonic counts (as Prometheus 2.42).
fn ensure_monotonic(buckets: &mut [Bucket]) {
    let mut max = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
}
