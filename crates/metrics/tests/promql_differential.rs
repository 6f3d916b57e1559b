//! The differential test of Signalbox's PromQL against a real Prometheus 2.x (issue 10):
//! a generated dataset is loaded into both, every query of `promql_differential/queries.txt`
//! runs on both as instant queries at several times and as range queries, and the answers
//! must agree up to floating-point noise. Queries listed in `known_differences.txt` (each
//! with its reason) may differ; any other difference fails the test, which prints the match
//! rate and a table of the differences. Without a `prometheus` binary the test skips loudly,
//! unless `CI` is set, where it fails.
//!
//! # Layout
//! - `dataset`: the seeded generator of the series both sides load.
//! - `prometheus`: the Prometheus server (blocks via promtool) and its HTTP API client.
//! - `answer`: the common answer shape and the comparison.
//! - `queries`: the query set, the known differences, the evaluation times and ranges.

#[path = "promql_differential/answer.rs"]
mod answer;
#[path = "promql_differential/dataset.rs"]
mod dataset;
#[path = "promql_differential/prometheus.rs"]
mod prometheus;
#[path = "promql_differential/queries.rs"]
mod queries;

use answer::{Answer, compare};
use dataset::Dataset;
use prometheus::Prometheus;
use queries::{Eval, parse_queries};

const QUERIES: &str = include_str!("promql_differential/queries.txt");

/// The dataset's seed: change it and every run still compares like with like.
const SEED: u64 = 0x5167_6e61_6c62_6f78;

/// The end of the data: ten minutes before now, on a whole minute, well inside Prometheus's
/// default retention.
fn data_end_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is after 1970");
    let now_ms = now.as_millis() as i64;
    now_ms / 60_000 * 60_000 - 10 * 60_000
}

/// Whether Prometheus can be started; `false` (after a loud message) means skip. In CI a
/// missing Prometheus is a failure.
fn prometheus_available() -> bool {
    let missing: Vec<&str> =
        ["prometheus", "promtool"].into_iter().filter(|b| prometheus::find_executable(b).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "the PromQL differential test needs {} on PATH (Debian package `prometheus`; scripts/test-deps.sh installs it)",
        missing.join(" and ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!! SKIPPING: {message} !!!!!!!!\n");
    false
}

/// The harness itself: what Prometheus holds after the promtool import is exactly the
/// generated dataset (timestamps to the millisecond, NaN and infinities, label values), and
/// Prometheus rejects exactly the queries marked `! ` in the query set (so a typo cannot pass
/// as "both failed"). Queries whose answers are empty everywhere are listed, not failed.
#[test]
fn prometheus_holds_the_dataset_and_rejects_exactly_the_marked_queries() {
    if !prometheus_available() {
        return;
    }
    let data = Dataset::generate(SEED, data_end_ms());
    let server = Prometheus::start(&data.to_openmetrics()).unwrap_or_else(|e| panic!("{e}"));
    let got = server.instant(r#"{__name__=~".+"}[2h10m]"#, data.end_ms + 5_000);
    let want = Answer::Matrix(data.series().map(|s| (s.labels.clone(), s.samples.clone())).collect());
    if let Err(diff) = compare(&want, &got, false) {
        panic!("Prometheus's copy of the dataset differs from the generated one: {diff} (files in {})", server.dir().display());
    }
    let Answer::Matrix(series) = got else { unreachable!("compare checked the kind") };
    assert!(series.len() >= 60, "the dataset has {} series, fewer than the 60 it should", series.len());

    let queries = parse_queries(QUERIES);
    assert!(queries.len() >= 150, "the query set has {} queries, fewer than 150", queries.len());
    let evals = queries::evaluations(&data);
    let mut wrong = Vec::new();
    let mut always_empty = Vec::new();
    for q in &queries {
        let answers: Vec<Answer> = evals
            .iter()
            .map(|(_, eval)| match *eval {
                Eval::Instant(t) => server.instant(&q.text, t),
                Eval::Range { start, end, step } => server.range(&q.text, start, end, step),
            })
            .collect();
        let failed = matches!(answers[0], Answer::Error(_));
        if failed != q.must_fail {
            wrong.push(format!("{:?}: marked {}, Prometheus said {:?}", q.text, if q.must_fail { "`!`" } else { "valid" }, answers[0]));
        }
        let empty = answers.iter().all(|a| match a {
            Answer::Vector(v) => v.is_empty(),
            Answer::Matrix(m) => m.is_empty(),
            _ => !matches!(a, Answer::Scalar { .. } | Answer::String { .. }),
        });
        if empty && !q.must_fail {
            always_empty.push(q.text.clone());
        }
    }
    eprintln!("queries whose answers are empty at every evaluation ({}):\n  {}", always_empty.len(), always_empty.join("\n  "));
    assert!(wrong.is_empty(), "queries.txt marks these wrongly:\n{}", wrong.join("\n"));
}

