use super::*;
use crate::spec::QueryCheck;
use crate::state::VersionStats;

fn stats(requests: f64, errors: f64, p99_ms: Option<f64>) -> VersionStats {
    VersionStats {
        requests,
        errors,
        error_rate: (requests > 0.0).then(|| errors / requests),
        p99_ms: if requests > 0.0 { p99_ms } else { None },
    }
}

fn m(stable: VersionStats, canary: VersionStats) -> Measurements {
    Measurements { window_s: 10.0, stable, canary, query_value: None, query_error: None }
}

#[test]
fn too_few_requests_hold_whatever_the_errors() {
    let t = Thresholds::default();
    let v = judge(&t, &m(stats(500.0, 0.0, Some(10.0)), stats(19.0, 19.0, Some(10.0))));
    assert!(matches!(&v, Verdict::Hold(r) if r.contains("served 19 in 10s") && r.contains("minimum is 20")), "{v:?}");
    // At the minimum the canary is judged.
    let v = judge(&t, &m(stats(500.0, 0.0, Some(10.0)), stats(20.0, 0.0, Some(10.0))));
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
}

#[test]
fn error_rate_above_the_limit_fails_with_the_numbers() {
    let t = Thresholds { max_error_rate: 0.01, ..Default::default() };
    let v = judge(&t, &m(stats(1000.0, 2.0, Some(10.0)), stats(200.0, 10.0, Some(10.0))));
    match v {
        Verdict::Fail(r) => {
            assert!(r.contains("5.00%"), "{r}");
            assert!(r.contains("10 of 200"), "{r}");
            assert!(r.contains("limit 1.00%"), "{r}");
            assert!(r.contains("stable 0.20%"), "{r}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // Exactly at the limit passes.
    let v = judge(&t, &m(stats(1000.0, 0.0, None), stats(200.0, 2.0, None)));
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
}

#[test]
fn absolute_p99_limit() {
    let t = Thresholds { max_p99: Some(P99Limit::AbsoluteMs(250.0)), ..Default::default() };
    let v = judge(&t, &m(stats(100.0, 0.0, Some(50.0)), stats(100.0, 0.0, Some(300.0))));
    assert!(matches!(&v, Verdict::Fail(r) if r.contains("300 ms") && r.contains("250 ms")), "{v:?}");
    let v = judge(&t, &m(stats(100.0, 0.0, Some(50.0)), stats(100.0, 0.0, Some(240.0))));
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
}

#[test]
fn relative_p99_compares_with_stable() {
    let t = Thresholds { max_p99: Some(P99Limit::RelativePercent(20.0)), ..Default::default() };
    // Stable 100 ms: the limit is 120 ms.
    let v = judge(&t, &m(stats(100.0, 0.0, Some(100.0)), stats(100.0, 0.0, Some(125.0))));
    assert!(matches!(&v, Verdict::Fail(r) if r.contains("125 ms") && r.contains("120 ms")), "{v:?}");
    let v = judge(&t, &m(stats(100.0, 0.0, Some(100.0)), stats(100.0, 0.0, Some(119.0))));
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
    // Without stable requests nothing is compared, and the reason says so.
    let v = judge(&t, &m(stats(0.0, 0.0, None), stats(100.0, 0.0, Some(900.0))));
    assert!(matches!(&v, Verdict::Pass(r) if r.contains("not compared")), "{v:?}");
}

#[test]
fn query_check_with_and_without_max() {
    let with_max = Thresholds { query: Some(QueryCheck { expr: "x".into(), max: Some(0.5) }), ..Default::default() };
    let mut meas = m(stats(100.0, 0.0, None), stats(100.0, 0.0, None));
    meas.query_value = Some(0.7);
    assert!(matches!(judge(&with_max, &meas), Verdict::Fail(r) if r.contains("0.7")));
    meas.query_value = Some(0.5);
    assert!(matches!(judge(&with_max, &meas), Verdict::Pass(_)));
    meas.query_value = None;
    assert!(matches!(judge(&with_max, &meas), Verdict::Hold(_)));
    meas.query_error = Some("parse error".into());
    assert!(matches!(judge(&with_max, &meas), Verdict::Hold(r) if r.contains("parse error")));

    let truth = Thresholds { query: Some(QueryCheck { expr: "x".into(), max: None }), ..Default::default() };
    let mut meas = m(stats(100.0, 0.0, None), stats(100.0, 0.0, None));
    meas.query_value = Some(1.0);
    assert!(matches!(judge(&truth, &meas), Verdict::Pass(_)));
    meas.query_value = None;
    assert!(matches!(judge(&truth, &meas), Verdict::Fail(_)));
    meas.query_value = Some(0.0);
    assert!(matches!(judge(&truth, &meas), Verdict::Fail(_)));
}

#[test]
fn errors_are_judged_before_latency() {
    let t = Thresholds { max_p99: Some(P99Limit::AbsoluteMs(1.0)), ..Default::default() };
    let v = judge(&t, &m(stats(100.0, 0.0, Some(1.0)), stats(100.0, 50.0, Some(500.0))));
    assert!(matches!(&v, Verdict::Fail(r) if r.starts_with("error rate")), "{v:?}");
}
