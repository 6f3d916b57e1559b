//! Selectors, lookback, staleness, offset, `@`, matrix selectors, subqueries, literals,
//! range queries and the engine's limits.

use super::*;

/// `up` for two jobs, one sample every 10 s from 0 to 100 s (value = t / 10).
fn counters() -> MemStorage {
    let mut db = MemStorage::default();
    let values: Vec<f64> = (0..=10).map(f64::from).collect();
    load_values(&mut db, r#"up{job="api",instance="a"}"#, 0, 10, &values);
    let doubled: Vec<f64> = values.iter().map(|v| v * 2.0).collect();
    load_values(&mut db, r#"up{job="web",instance="b"}"#, 0, 10, &doubled);
    load_values(&mut db, r#"down{job="api"}"#, 0, 10, &[7.0]);
    db
}

#[test]
fn vector_selector_takes_the_newest_sample_at_or_before_t() {
    let db = counters();
    assert_vector(
        vector(&db, "up", 35),
        &[(r#"up{instance="a",job="api"}"#, 3.0), (r#"up{instance="b",job="web"}"#, 6.0)],
    );
    assert_vector(
        vector(&db, "up", 40),
        &[(r#"up{instance="a",job="api"}"#, 4.0), (r#"up{instance="b",job="web"}"#, 8.0)],
    );
    // Before the first sample there is nothing.
    assert_vector(vector(&db, "up", -1), &[]);
}

#[test]
fn every_matcher_kind_selects() {
    let db = counters();
    assert_vector(vector(&db, r#"up{job="api"}"#, 10), &[(r#"up{instance="a",job="api"}"#, 1.0)]);
    assert_vector(vector(&db, r#"up{job!="api"}"#, 10), &[(r#"up{instance="b",job="web"}"#, 2.0)]);
    assert_vector(vector(&db, r#"up{job=~"a.*"}"#, 10), &[(r#"up{instance="a",job="api"}"#, 1.0)]);
    // Regexes are anchored: "p" alone matches neither job.
    assert_vector(vector(&db, r#"up{job=~"p"}"#, 10), &[]);
    assert_vector(vector(&db, r#"up{job!~"a.*"}"#, 10), &[(r#"up{instance="b",job="web"}"#, 2.0)]);
    // A name matcher, and `label=""` selecting series without the label.
    assert_vector(vector(&db, r#"{__name__=~"up|down",job="api",instance=""}"#, 10), &[(r#"down{job="api"}"#, 7.0)]);
}

#[test]
fn lookback_is_five_minutes_inclusive() {
    let db = counters();
    // down's only sample is at 0 s: visible for 300 s (2.42 includes the boundary), then gone.
    assert_vector(vector(&db, "down", 300), &[(r#"down{job="api"}"#, 7.0)]);
    assert_vector(vector(&db, "down", 301), &[]);
    let engine = Engine { lookback_delta_ms: 60_000, ..Engine::default() };
    match engine.instant(&db, "down", 61_000).unwrap() {
        Value::Vector(v) => assert!(v.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_staleness_marker_ends_a_series() {
    let mut db = MemStorage::default();
    load(&mut db, "m", 0, 10, &[Some(1.0), Some(2.0), None]);
    assert_vector(vector(&db, "m", 15), &[("m{}", 2.0)]);
    assert_vector(vector(&db, "m", 20), &[]);
    assert_vector(vector(&db, "m", 100), &[]);
    // A range vector skips the marker.
    assert_close(single(&db, "count_over_time(m[1m])", 25), 2.0);
}

#[test]
fn offset_and_at_move_the_evaluation_time() {
    let db = counters();
    assert_close(single(&db, r#"up{job="api"} offset 30s"#, 100), 7.0);
    assert_close(single(&db, r#"up{job="api"} @ 50"#, 100), 5.0);
    assert_close(single(&db, r#"up{job="api"} @ 50 offset 20s"#, 100), 3.0);
    // A negative offset looks ahead.
    assert_close(single(&db, r#"up{job="api"} offset -20s"#, 50), 7.0);
    // @ start() and @ end() of a range query hold at every step.
    let m = range(&db, r#"up{job="api"} @ start()"#, 20, 60, 20);
    assert_eq!(m, vec![(r#"up{instance="a",job="api"}"#.to_string(), vec![(20, 2.0), (40, 2.0), (60, 2.0)])]);
    let m = range(&db, r#"up{job="api"} @ end()"#, 20, 60, 20);
    assert_eq!(m[0].1, vec![(20, 6.0), (40, 6.0), (60, 6.0)]);
}

#[test]
fn matrix_selector_includes_both_ends_as_2_42() {
    let db = counters();
    match instant(&db, r#"up{job="api"}[30s]"#, 60) {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 1);
            // Samples at 30, 40, 50 and 60 s: 2.42 selects [t - 30s, t].
            assert_eq!(m[0].samples, vec![(30_000, 3.0), (40_000, 4.0), (50_000, 5.0), (60_000, 6.0)]);
            assert_eq!(show(&m[0].labels), r#"up{instance="a",job="api"}"#);
        }
        other => panic!("{other:?}"),
    }
    match instant(&db, r#"up{job="api"}[30s] offset 20s"#, 60) {
        Value::Matrix(m) => assert_eq!(m[0].samples.first(), Some(&(10_000, 1.0))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn subqueries_align_their_steps_to_multiples_of_the_step() {
    let db = counters();
    // At t=95 with [60s:20s]: steps from the first multiple of 20 s at or after 35 s.
    match instant(&db, r#"up{job="api"}[60s:20s]"#, 95) {
        Value::Matrix(m) => assert_eq!(m[0].samples, vec![(40_000, 4.0), (60_000, 6.0), (80_000, 8.0)]),
        other => panic!("{other:?}"),
    }
    // A function of a subquery: the max of rate over the window (the rate is 0.1/s for api).
    assert_close(single(&db, r#"max_over_time(rate(up{job="api"}[30s])[60s:10s])"#, 100), 0.1);
    assert_close(single(&db, r#"sum_over_time(up{job="api"}[30s:10s] offset 20s)"#, 100), 8.0 + 7.0 + 6.0 + 5.0);
    assert_close(single(&db, r#"count_over_time(up{job="api"}[30s:10s] @ 50)"#, 100), 4.0);
    // Without a step the default of one minute applies: steps at 0 and 60 s in [0, 100].
    assert_close(single(&db, r#"count_over_time(up{job="api"}[100s:])"#, 100), 2.0);
}

#[test]
fn literals_parentheses_and_unary_minus() {
    let db = MemStorage::default();
    assert_close(scalar(&db, "1 + 2 * 3", 0), 7.0);
    assert_close(scalar(&db, "(1 + 2) * 3", 0), 9.0);
    assert_close(scalar(&db, "2 ^ 3 ^ 2", 0), 512.0);
    assert_close(scalar(&db, "-(3)", 0), -3.0);
    assert_close(scalar(&db, "0x10", 0), 16.0);
    match instant(&db, r#""hello""#, 5) {
        Value::String { t, v } => assert_eq!((t, v.as_str()), (5000, "hello")),
        other => panic!("{other:?}"),
    }
    let db = counters();
    assert_vector(vector(&db, r#"-up{job="api"}"#, 10), &[(r#"{instance="a",job="api"}"#, -1.0)]);
}

#[test]
fn range_queries_evaluate_every_step_and_sort_by_labels() {
    let db = counters();
    let m = range(&db, "up", 0, 40, 20);
    assert_eq!(
        m,
        vec![
            (r#"up{instance="a",job="api"}"#.to_string(), vec![(0, 0.0), (20, 2.0), (40, 4.0)]),
            (r#"up{instance="b",job="web"}"#.to_string(), vec![(0, 0.0), (20, 4.0), (40, 8.0)]),
        ]
    );
    // A scalar becomes one series without labels.
    assert_eq!(range(&db, "time() + 1", 0, 20, 10), vec![("{}".to_string(), vec![(0, 1.0), (10, 11.0), (20, 21.0)])]);
    // Series appear only at steps where they have a value.
    let m = range(&db, "down", 200, 400, 100);
    assert_eq!(m, vec![(r#"down{job="api"}"#.to_string(), vec![(200, 7.0), (300, 7.0)])]);
    // A range vector is no range query result.
    let e = Engine::default().range(&db, "up[1m]", 0, 10, 1).unwrap_err();
    assert_eq!(e.error_type(), "bad_data");
    assert!(e.to_string().contains("range vector"), "{e}");
    assert!(Engine::default().range(&db, "up", 0, 10, 0).is_err());
}

#[test]
fn a_range_query_equals_instant_queries_at_each_step() {
    let db = counters();
    let queries = [
        "rate(up[30s])",
        "sum by (job) (up)",
        "up * on(job) group_left down",
        "max_over_time(up[20s:5s])",
        r#"label_replace(up, "x", "$1", "job", "(.*)")"#,
        "up > 3",
        "absent(nope)",
    ];
    for q in queries {
        let m = range(&db, q, 0, 100, 25);
        for t in (0..=100).step_by(25) {
            let mut expected = vector(&db, q, t);
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            let mut got: Vec<(String, f64)> = m
                .iter()
                .filter_map(|(l, pts)| pts.iter().find(|(pt, _)| *pt == t).map(|(_, v)| (l.clone(), *v)))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, expected, "{q} at {t}");
        }
    }
}

#[test]
fn parse_errors_are_bad_data() {
    let db = counters();
    let e = error(&db, "sum(", 0);
    assert!(matches!(e, QueryError::Parse { .. }));
    assert_eq!(e.error_type(), "bad_data");
    assert_eq!(error(&db, "rate(up)", 0).error_type(), "bad_data");
}

#[test]
fn the_timeout_is_checked_during_evaluation() {
    let db = counters();
    let engine = Engine { timeout: std::time::Duration::ZERO, ..Engine::default() };
    let e = engine.range(&db, "rate(up[1m])", 0, 100_000, 1000).unwrap_err();
    assert!(matches!(e, QueryError::Timeout));
    assert_eq!(e.error_type(), "timeout");
}

#[test]
fn the_sample_limit_stops_a_query() {
    let db = counters();
    let engine = Engine { max_samples: 10, ..Engine::default() };
    let e = engine.instant(&db, "up[1m]", 100_000).unwrap_err();
    assert!(matches!(e, QueryError::TooManySamples { limit: 10 }), "{e}");
    assert_eq!(e.error_type(), "execution");
    // A range query holds a point per step and series.
    let e = engine.range(&db, "up", 0, 100_000, 1000).unwrap_err();
    assert!(matches!(e, QueryError::TooManySamples { .. }));
    // Within the limit it passes.
    assert!(engine.instant(&db, "up", 100_000).is_ok());
}

#[test]
fn parse_duration_accepts_seconds_and_durations() {
    assert_eq!(parse_duration("15").unwrap(), 15_000);
    assert_eq!(parse_duration("0.5").unwrap(), 500);
    assert_eq!(parse_duration("1m30s").unwrap(), 90_000);
    assert_eq!(parse_duration("2h").unwrap(), 7_200_000);
    assert!(parse_duration("-1").is_err());
    assert!(parse_duration("abc").is_err());
    assert!(parse_duration("NaN").is_err());
}

/// Storage that counts how often it is asked.
struct CountingStorage {
    inner: MemStorage,
    selects: std::sync::atomic::AtomicUsize,
}

impl crate::storage::Queryable for CountingStorage {
    fn select(
        &self,
        matchers: &[crate::storage::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, crate::storage::StorageError> {
        self.selects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.select(matchers, mint, maxt)
    }
}

#[test]
fn a_range_query_reads_storage_once_per_selector() {
    let db = CountingStorage { inner: counters(), selects: Default::default() };
    let engine = Engine::default();
    // rate needs two samples in its window: from 10 s on, 19 steps.
    let result = engine.range(&db, "rate(up[30s]) + on(job, instance) up", 0, 100_000, 5_000).unwrap();
    assert!(matches!(result, Value::Matrix(ref m) if m.len() == 2 && m[0].samples.len() == 19), "{result:?}");
    assert_eq!(db.selects.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn nested_subqueries_and_at_inside_subqueries() {
    let db = counters();
    // The inner subquery yields 4, 6, 8, 10 at 40..100 s; the outer takes their max at
    // 80 and 100 s.
    assert_close(single(&db, r#"max_over_time(max_over_time(up{job="api"}[60s:20s])[20s:20s])"#, 100), 10.0);
    // @ inside a subquery pins the selector whatever the subquery's steps are.
    assert_close(single(&db, r#"sum_over_time((up{job="api"} @ 30)[40s:10s])"#, 100), 3.0 * 5.0);
    // @ end() of an instant query is its time.
    assert_close(single(&db, r#"up{job="api"} @ end()"#, 70), 7.0);
}

#[test]
fn out_of_range_arguments_are_errors_not_panics() {
    let db = counters();
    let engine = Engine::default();
    assert_eq!(engine.instant(&db, "up", i64::MAX).unwrap_err().error_type(), "bad_data");
    assert_eq!(engine.range(&db, "up", i64::MIN, 0, 1).unwrap_err().error_type(), "bad_data");
    // More than 11,000 points per series.
    let e = engine.range(&db, "up", 0, 11_001_000, 1000).unwrap_err();
    assert!(e.to_string().contains("11,000 points"), "{e}");
    assert!(engine.range(&db, "up", 0, 11_000_000, 1000).is_ok());
    // Huge offsets and @ times saturate instead of overflowing.
    assert!(engine.instant(&db, "up offset 100000000y", 0).is_ok());
    assert!(engine.instant(&db, "rate(up[1000000y] @ 100000000000)", 0).is_ok());
    assert!(engine.instant(&db, "topk(1e18, up)", 0).is_ok());
    assert_eq!(engine.instant(&db, "topk(1e300, up)", 0).unwrap_err().error_type(), "execution");
    assert_eq!(engine.instant(&db, "topk(scalar(nope), up)", 0).unwrap_err().error_type(), "execution");
    // A tiny subquery step is bounded by the sample limit.
    let small = Engine { max_samples: 100_000, ..Engine::default() };
    assert!(matches!(small.instant(&db, "max_over_time(up[1y:1ms])", 0), Err(QueryError::TooManySamples { .. })));
}

/// Storage whose every read fails.
struct BrokenStorage;

impl crate::storage::Queryable for BrokenStorage {
    fn select(
        &self,
        _: &[crate::storage::Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<Series>, crate::storage::StorageError> {
        Err(crate::storage::StorageError::Corrupt { path: "b/chunks".into(), message: "bad crc".into() })
    }
}

#[test]
fn storage_errors_are_internal() {
    let e = Engine::default().instant(&BrokenStorage, "sum(rate(up[1m]))", 0).unwrap_err();
    assert!(matches!(e, QueryError::Storage(_)), "{e}");
    assert_eq!(e.error_type(), "internal");
    assert!(e.to_string().contains("bad crc"), "{e}");
    // A query that reads nothing does not fail.
    assert!(matches!(Engine::default().instant(&BrokenStorage, "1 + 1", 0), Ok(Value::Scalar { v, .. }) if v == 2.0));
}
