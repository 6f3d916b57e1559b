//! The function library: rates with extrapolation, `*_over_time`, histogram_quantile,
//! math, labels, sorting, time and date functions.

use super::*;

/// One series `c` with samples at 10, 25, 40 and 55 s.
fn four(values: [f64; 4]) -> MemStorage {
    let mut db = MemStorage::default();
    load_values(&mut db, r#"c{job="api"}"#, 10, 15, &values);
    db
}

#[test]
fn rate_extrapolates_but_not_below_zero() {
    // Window [0, 60]: first sample 10 s after the start, last 5 s before the end. The
    // counter starts at 0, so extrapolation to the start stops at zero: 45 + 0 + 5 s.
    let db = four([0.0, 1.0, 2.0, 3.0]);
    assert_close(single(&db, "increase(c[1m])", 60), 3.0 * 50.0 / 45.0);
    assert_close(single(&db, "rate(c[1m])", 60), 3.0 * 50.0 / 45.0 / 60.0);
    // Starting at 10, the whole 10 s towards the start counts: 45 + 10 + 5 s.
    let db = four([10.0, 11.0, 12.0, 13.0]);
    assert_close(single(&db, "increase(c[1m])", 60), 4.0);
    assert_close(single(&db, "rate(c[1m])", 60), 4.0 / 60.0);
    assert_close(single(&db, "delta(c[1m])", 60), 4.0);
    // Functions drop the metric name.
    assert_vector(vector(&db, "rate(c[1m])", 60), &[(r#"{job="api"}"#, 4.0 / 60.0)]);
}

#[test]
fn rate_corrects_counter_resets_and_delta_does_not() {
    // 5, 8, 2, 4: the drop to 2 is a reset, so the increase is (4 - 5) + 8 = 7 over 45 s;
    // the zero point lies 45 * 5/7 s before the first sample, further than the start.
    let db = four([5.0, 8.0, 2.0, 4.0]);
    assert_close(single(&db, "increase(c[1m])", 60), 7.0 * 60.0 / 45.0);
    assert_close(single(&db, "delta(c[1m])", 60), -60.0 / 45.0);
    assert_close(single(&db, "resets(c[1m])", 60), 1.0);
    assert_close(single(&db, "irate(c[1m])", 60), 4.0 / 15.0 - 2.0 / 15.0);
    assert_close(single(&db, "idelta(c[1m])", 60), 2.0);
    // irate after a reset uses the new value as the increase.
    let db = four([5.0, 6.0, 8.0, 2.0]);
    assert_close(single(&db, "irate(c[1m])", 60), 2.0 / 15.0);
    assert_close(single(&db, "idelta(c[1m])", 60), -6.0);
}

#[test]
fn rate_extrapolates_half_an_interval_over_long_gaps() {
    // Samples at 30 and 45 s (1, 2) in [0, 60]: the start is 30 s away (more than 1.1 times
    // the 15 s interval). delta extrapolates half an interval there; increase goes to the
    // counter's zero 15 s before the first sample, which is within the threshold.
    let mut db = MemStorage::default();
    load_values(&mut db, "g", 30, 15, &[1.0, 2.0]);
    assert_close(single(&db, "delta(g[1m])", 60), 37.5 / 15.0);
    assert_close(single(&db, "increase(g[1m])", 60), 45.0 / 15.0);
    // One sample is no rate.
    assert_vector(vector(&db, "rate(g[10s])", 50), &[]);
}

#[test]
fn over_time_aggregates() {
    let db = four([1.0, 2.0, 3.0, 4.0]);
    let at = |q: &str| single(&db, q, 60);
    assert_close(at("avg_over_time(c[1m])"), 2.5);
    assert_close(at("sum_over_time(c[1m])"), 10.0);
    assert_close(at("count_over_time(c[1m])"), 4.0);
    assert_close(at("min_over_time(c[1m])"), 1.0);
    assert_close(at("max_over_time(c[1m])"), 4.0);
    assert_close(at("stdvar_over_time(c[1m])"), 1.25);
    assert_close(at("stddev_over_time(c[1m])"), 1.25f64.sqrt());
    assert_close(at("quantile_over_time(0.5, c[1m])"), 2.5);
    assert_close(at("quantile_over_time(0.25, c[1m])"), 1.75);
    assert_close(at("quantile_over_time(2, c[1m])"), f64::INFINITY);
    assert_close(at("present_over_time(c[1m])"), 1.0);
    assert_close(at("changes(c[1m])"), 3.0);
    // last_over_time keeps the metric name.
    assert_vector(vector(&db, "last_over_time(c[1m])", 60), &[(r#"c{job="api"}"#, 4.0)]);
    assert_vector(vector(&db, "max_over_time(c[1m])", 60), &[(r#"{job="api"}"#, 4.0)]);
    // The window [25, 40] at t=40 holds two samples.
    assert_close(single(&db, "sum_over_time(c[15s])", 40), 5.0);
}

#[test]
fn absent_and_absent_over_time() {
    let db = four([1.0, 2.0, 3.0, 4.0]);
    assert_vector(vector(&db, "absent(c)", 60), &[]);
    assert_vector(vector(&db, r#"absent(nope{job="x",env=~"p.*"})"#, 60), &[(r#"{job="x"}"#, 1.0)]);
    assert_vector(vector(&db, "absent_over_time(c[1m])", 60), &[]);
    assert_vector(vector(&db, r#"absent_over_time(c{job="api"}[1m])"#, 500), &[(r#"{job="api"}"#, 1.0)]);
    // Windows of 10 s at 0, 30, 60 and 90 s: only the first and the last find no sample.
    let m = range(&db, r#"absent_over_time(c{job="api"}[10s])"#, 0, 90, 30);
    assert_eq!(m, vec![(r#"{job="api"}"#.to_string(), vec![(0, 1.0), (90, 1.0)])]);
}

#[test]
fn deriv_predict_linear_and_holt_winters() {
    let mut db = MemStorage::default();
    load_values(&mut db, "lin", 0, 60, &[0.0, 60.0, 120.0]);
    assert_close(single(&db, "deriv(lin[2m])", 120), 1.0);
    assert_close(single(&db, "predict_linear(lin[2m], 60)", 120), 180.0);
    // Smoothing 1, 3, 4, 8 with factors 0.5: 3, then 4.5 (trend 2), then 7.125 (trend 1.75).
    load_values(&mut db, "hw", 0, 10, &[1.0, 3.0, 4.0, 8.0]);
    assert_close(single(&db, "holt_winters(hw[1m], 0.5, 0.5)", 30), 7.125);
    let e = error(&db, "holt_winters(hw[1m], 1, 0.5)", 30);
    assert_eq!(e.error_type(), "execution");
    assert!(e.to_string().contains("smoothing factor"), "{e}");
}

fn buckets(counts: &[(&str, f64)]) -> MemStorage {
    let mut db = MemStorage::default();
    for (le, count) in counts {
        load_values(&mut db, &format!(r#"lat_bucket{{job="api",le="{le}"}}"#), 0, 10, &[*count]);
    }
    db
}

#[test]
fn histogram_quantile_interpolates_within_buckets() {
    let db = buckets(&[("0.5", 10.0), ("1", 20.0), ("+Inf", 20.0)]);
    assert_vector(vector(&db, "histogram_quantile(0.5, lat_bucket)", 10), &[(r#"{job="api"}"#, 0.5)]);
    assert_close(single(&db, "histogram_quantile(0.75, lat_bucket)", 10), 0.75);
    assert_close(single(&db, "histogram_quantile(1, lat_bucket)", 10), 1.0);
    assert_close(single(&db, "histogram_quantile(-1, lat_bucket)", 10), f64::NEG_INFINITY);
    assert_close(single(&db, "histogram_quantile(2, lat_bucket)", 10), f64::INFINITY);
    // In the +Inf bucket the answer is the highest finite bound.
    let db = buckets(&[("0.5", 10.0), ("1", 20.0), ("+Inf", 25.0)]);
    assert_close(single(&db, "histogram_quantile(0.9, lat_bucket)", 10), 1.0);
    // Without a +Inf bucket there is no answer.
    let db = buckets(&[("0.5", 10.0), ("1", 20.0)]);
    assert_close(single(&db, "histogram_quantile(0.5, lat_bucket)", 10), f64::NAN);
}

#[test]
fn histogram_quantile_fixes_non_monotonic_buckets() {
    // le=1 counts 8 < 10: raised to 10, so the 0.75 rank (15) falls in +Inf.
    let db = buckets(&[("0.5", 10.0), ("1", 8.0), ("+Inf", 20.0)]);
    assert_close(single(&db, "histogram_quantile(0.5, lat_bucket)", 10), 0.5);
    assert_close(single(&db, "histogram_quantile(0.75, lat_bucket)", 10), 1.0);
    // With the rate of buckets, grouped by the other labels.
    let mut db = MemStorage::default();
    for (le, per_s) in [("0.1", 1.0), ("1", 3.0), ("+Inf", 4.0)] {
        for job in ["a", "b"] {
            let values: Vec<f64> = (0..=6).map(|i| f64::from(i) * 10.0 * per_s).collect();
            load_values(&mut db, &format!(r#"h_bucket{{job="{job}",le="{le}"}}"#), 0, 10, &values);
        }
    }
    let v = vector(&db, "histogram_quantile(0.5, sum by (le, job) (rate(h_bucket[1m])))", 60);
    // Rank 2 of 4 lies halfway into (0.1, 1]: 0.1 + 0.9 * (1 / 2).
    assert_vector(v, &[(r#"{job="a"}"#, 0.55), (r#"{job="b"}"#, 0.55)]);
}

#[test]
fn math_functions_drop_the_name() {
    let mut db = MemStorage::default();
    load_values(&mut db, r#"x{k="neg"}"#, 0, 10, &[-2.5]);
    load_values(&mut db, r#"x{k="pos"}"#, 0, 10, &[2.25]);
    let v = |q: &str| vector(&db, q, 0);
    assert_vector(v("abs(x)"), &[(r#"{k="neg"}"#, 2.5), (r#"{k="pos"}"#, 2.25)]);
    assert_vector(v("ceil(x)"), &[(r#"{k="neg"}"#, -2.0), (r#"{k="pos"}"#, 3.0)]);
    assert_vector(v("floor(x)"), &[(r#"{k="neg"}"#, -3.0), (r#"{k="pos"}"#, 2.0)]);
    // round rounds halves up, also to a multiple.
    assert_vector(v("round(x)"), &[(r#"{k="neg"}"#, -2.0), (r#"{k="pos"}"#, 2.0)]);
    assert_vector(v("round(x, 0.5)"), &[(r#"{k="neg"}"#, -2.5), (r#"{k="pos"}"#, 2.5)]);
    assert_vector(v("sgn(x)"), &[(r#"{k="neg"}"#, -1.0), (r#"{k="pos"}"#, 1.0)]);
    assert_vector(v("clamp(x, -1, 1)"), &[(r#"{k="neg"}"#, -1.0), (r#"{k="pos"}"#, 1.0)]);
    assert_vector(v("clamp(x, 1, -1)"), &[]);
    // NaN bounds give NaN, as Go's math.Max and math.Min do.
    assert_vector(v("clamp(x, 0, NaN)"), &[(r#"{k="neg"}"#, f64::NAN), (r#"{k="pos"}"#, f64::NAN)]);
    assert_vector(v("clamp_min(x, NaN)"), &[(r#"{k="neg"}"#, f64::NAN), (r#"{k="pos"}"#, f64::NAN)]);
    assert_vector(v("clamp_min(x, 0)"), &[(r#"{k="neg"}"#, 0.0), (r#"{k="pos"}"#, 2.25)]);
    assert_vector(v("clamp_max(x, 0)"), &[(r#"{k="neg"}"#, -2.5), (r#"{k="pos"}"#, 0.0)]);
    assert_close(single(&db, r#"sqrt(x{k="pos"})"#, 0), 1.5);
    assert_close(single(&db, r#"exp(x{k="pos"})"#, 0), 2.25f64.exp());
    assert_close(single(&db, r#"ln(x{k="pos"})"#, 0), 2.25f64.ln());
    assert_close(single(&db, r#"log2(x{k="pos"} * 0 + 8)"#, 0), 3.0);
    assert_close(single(&db, r#"log10(x{k="pos"} * 0 + 1000)"#, 0), 3.0);
    assert_close(single(&db, r#"ln(x{k="neg"})"#, 0), f64::NAN);
    assert_close(single(&db, r#"sin(x{k="pos"})"#, 0), 2.25f64.sin());
    assert_close(single(&db, r#"cos(x{k="pos"})"#, 0), 2.25f64.cos());
    assert_close(single(&db, r#"tan(x{k="pos"})"#, 0), 2.25f64.tan());
    assert_close(single(&db, r#"asin(x{k="pos"} / 4)"#, 0), 0.5625f64.asin());
    assert_close(single(&db, r#"acos(x{k="pos"} / 4)"#, 0), 0.5625f64.acos());
    assert_close(single(&db, r#"atan(x{k="pos"})"#, 0), 2.25f64.atan());
    assert_close(single(&db, r#"sinh(x{k="pos"})"#, 0), 2.25f64.sinh());
    assert_close(single(&db, r#"cosh(x{k="pos"})"#, 0), 2.25f64.cosh());
    assert_close(single(&db, r#"tanh(x{k="pos"})"#, 0), 2.25f64.tanh());
    assert_close(single(&db, r#"asinh(x{k="pos"})"#, 0), 2.25f64.asinh());
    assert_close(single(&db, r#"acosh(x{k="pos"})"#, 0), 2.25f64.acosh());
    assert_close(single(&db, r#"atanh(x{k="pos"} / 4)"#, 0), 0.5625f64.atanh());
    assert_close(single(&db, r#"deg(x{k="pos"} * 0 + pi())"#, 0), 180.0);
    assert_close(single(&db, r#"rad(x{k="pos"} * 0 + 180)"#, 0), std::f64::consts::PI);
    assert_close(scalar(&db, "pi()", 0), std::f64::consts::PI);
}

#[test]
fn label_replace_and_label_join() {
    let mut db = MemStorage::default();
    load_values(&mut db, r#"up{job="api-1",instance="host:9090"}"#, 0, 10, &[1.0]);
    assert_vector(
        vector(&db, r#"label_replace(up, "port", "$2", "instance", "(.*):(.*)")"#, 0),
        &[(r#"up{instance="host:9090",job="api-1",port="9090"}"#, 1.0)],
    );
    // No match leaves the labels; an empty replacement removes the destination.
    assert_vector(
        vector(&db, r#"label_replace(up, "job", "x", "instance", "nomatch")"#, 0),
        &[(r#"up{instance="host:9090",job="api-1"}"#, 1.0)],
    );
    assert_vector(
        vector(&db, r#"label_replace(up, "job", "", "job", ".*")"#, 0),
        &[(r#"up{instance="host:9090"}"#, 1.0)],
    );
    assert_vector(
        vector(&db, r#"label_join(up, "both", "/", "job", "instance")"#, 0),
        &[(r#"up{both="api-1/host:9090",instance="host:9090",job="api-1"}"#, 1.0)],
    );
    let e = error(&db, r#"label_replace(up, "x", "", "job", "(")"#, 0);
    assert_eq!(e.error_type(), "execution");
    assert!(error(&db, r#"label_replace(up, "1x", "", "job", ".*")"#, 0).to_string().contains("destination"));
}

#[test]
fn sort_and_sort_desc_order_the_vector() {
    let mut db = MemStorage::default();
    for (k, v) in [("a", 2.0), ("b", f64::NAN), ("c", 3.0), ("d", 1.0)] {
        load_values(&mut db, &format!(r#"s{{k="{k}"}}"#), 0, 10, &[v]);
    }
    let keys = |q: &str| vector(&db, q, 0).into_iter().map(|(l, _)| l).collect::<Vec<_>>();
    assert_eq!(keys("sort(s)"), [r#"s{k="d"}"#, r#"s{k="a"}"#, r#"s{k="c"}"#, r#"s{k="b"}"#]);
    assert_eq!(keys("sort_desc(s)"), [r#"s{k="c"}"#, r#"s{k="a"}"#, r#"s{k="d"}"#, r#"s{k="b"}"#]);
    // Other results come sorted by labels.
    assert_eq!(keys("s * 1"), [r#"{k="a"}"#, r#"{k="b"}"#, r#"{k="c"}"#, r#"{k="d"}"#]);
}

#[test]
fn time_timestamp_vector_and_scalar() {
    let mut db = MemStorage::default();
    load_values(&mut db, r#"m{k="a"}"#, 10, 10, &[5.0]);
    assert_close(scalar(&db, "time()", 42), 42.0);
    // timestamp() of a selector is the sample's own time, not the evaluation time.
    assert_vector(vector(&db, "timestamp(m)", 42), &[(r#"{k="a"}"#, 10.0)]);
    assert_vector(vector(&db, "timestamp(m offset 5s)", 42), &[(r#"{k="a"}"#, 10.0)]);
    assert_vector(vector(&db, "timestamp(m * 1)", 42), &[(r#"{k="a"}"#, 42.0)]);
    assert_vector(vector(&db, "vector(3)", 42), &[("{}", 3.0)]);
    assert_close(scalar(&db, "scalar(m)", 42), 5.0);
    assert_close(scalar(&db, "scalar(nope)", 42), f64::NAN);
}

#[test]
fn date_functions_in_utc() {
    let db = MemStorage::default();
    // 1700000000 s is Tuesday 2023-11-14 22:13:20 UTC, day 318 of the year.
    let at = |f: &str| single(&db, &format!("{f}(vector(1700000000))"), 0);
    assert_close(at("year"), 2023.0);
    assert_close(at("month"), 11.0);
    assert_close(at("day_of_month"), 14.0);
    assert_close(at("day_of_week"), 2.0);
    assert_close(at("day_of_year"), 318.0);
    assert_close(at("days_in_month"), 30.0);
    assert_close(at("hour"), 22.0);
    assert_close(at("minute"), 13.0);
    // 2024-02-10 is in a leap February, a Saturday.
    assert_close(single(&db, "days_in_month(vector(1707523200))", 0), 29.0);
    assert_close(single(&db, "day_of_week(vector(1707523200))", 0), 6.0);
    assert_close(single(&db, "day_of_year(vector(1707523200))", 0), 41.0);
    // -1 s is 1969-12-31 23:59:59, a Wednesday.
    assert_close(single(&db, "year(vector(-1))", 0), 1969.0);
    assert_close(single(&db, "day_of_week(vector(-1))", 0), 3.0);
    // Without an argument: the evaluation time.
    assert_close(single(&db, "hour()", 1_700_000_000), 22.0);
}
