//! Generated queries: thousands of random well-typed expressions built from every function,
//! aggregation and operator. Each must evaluate or fail with an error (never panic), and a
//! vector result must equal the middle step of the same query in range mode.

use super::*;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const SELECTORS: &[&str] = &[
    "up",
    r#"up{job="api"}"#,
    r#"up{job=~"a.*|web"}"#,
    r#"up{instance!="a"}"#,
    "down",
    "nope",
    r#"{__name__=~"up|down"}"#,
    "lat_bucket",
];
const MODIFIERS: &[&str] = &["", "", "", " offset 20s", " offset -10s", " @ 50", " @ start()", " @ end()"];
const RANGES: &[&str] = &["[30s]", "[1m]", "[15s]", "[2m]"];
const SCALARS: &[&str] = &["1", "0.5", "-2", "NaN", "Inf", "time()", "pi()", "scalar(down)", "2 * 3"];
const VECTOR_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "exp",
    "sqrt",
    "ln",
    "log2",
    "log10",
    "sgn",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "deg",
    "rad",
    "round",
    "timestamp",
    "sort",
    "sort_desc",
    "absent",
    "year",
    "month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
];
const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
    "absent_over_time",
    "changes",
    "resets",
    "deriv",
];
const AGGREGATIONS: &[&str] = &["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"];
const GROUPINGS: &[&str] = &["", " by (job)", " without (instance)", " by ()", " by (le, job)", " without (job)"];
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%", "^", "atan2"];
const COMPARISONS: &[&str] = &["==", "!=", ">", "<", ">=", "<="];
const MATCHINGS: &[&str] =
    &["", " on(job)", " ignoring(instance)", " on(job, instance)", " on(job) group_left", " on(job) group_right"];

fn scalar_expr(rng: &mut Rng, depth: u32) -> String {
    if depth == 0 || rng.chance(60) {
        return rng.pick(SCALARS).to_string();
    }
    let op = rng.pick(ARITHMETIC);
    format!("({} {op} {})", scalar_expr(rng, depth - 1), scalar_expr(rng, depth - 1))
}

fn range_expr(rng: &mut Rng, depth: u32) -> String {
    if depth > 0 && rng.chance(25) {
        let step = rng.pick(&["10s", "20s", ""]);
        return format!("({})[1m:{step}]{}", vector_expr(rng, depth - 1), rng.pick(&["", " offset 10s", " @ 60"]));
    }
    format!("{}{}{}", rng.pick(SELECTORS), rng.pick(RANGES), rng.pick(MODIFIERS))
}

fn vector_expr(rng: &mut Rng, depth: u32) -> String {
    if depth == 0 {
        return format!("{}{}", rng.pick(SELECTORS), rng.pick(MODIFIERS));
    }
    let d = depth - 1;
    match rng.next() % 14 {
        0 | 1 => format!("{}{}", rng.pick(SELECTORS), rng.pick(MODIFIERS)),
        2 => format!("{}({})", rng.pick(VECTOR_FUNCTIONS), vector_expr(rng, d)),
        3 | 4 => format!("{}({})", rng.pick(RANGE_FUNCTIONS), range_expr(rng, d)),
        5 => {
            let agg = rng.pick(AGGREGATIONS);
            format!("{agg}{} ({})", rng.pick(GROUPINGS), vector_expr(rng, d))
        }
        6 => {
            let agg = rng.pick(&["topk", "bottomk", "quantile"]);
            format!("{agg}{} ({}, {})", rng.pick(GROUPINGS), scalar_expr(rng, 1), vector_expr(rng, d))
        }
        7 => format!(r#"count_values{} ("v", {})"#, rng.pick(GROUPINGS), vector_expr(rng, d)),
        8 => {
            let op = rng.pick(ARITHMETIC);
            format!("{} {op}{} {}", vector_expr(rng, d), rng.pick(MATCHINGS), vector_expr(rng, d))
        }
        9 => {
            let op = rng.pick(COMPARISONS);
            let b = if rng.chance(50) { " bool" } else { "" };
            format!("{} {op}{b}{} {}", vector_expr(rng, d), rng.pick(MATCHINGS), vector_expr(rng, d))
        }
        10 => {
            let op = rng.pick(&["and", "or", "unless"]);
            let m = rng.pick(&["", " on(job)", " ignoring(instance)"]);
            format!("{} {op}{m} {}", vector_expr(rng, d), vector_expr(rng, d))
        }
        11 => {
            let op = rng.pick(ARITHMETIC);
            if rng.chance(50) {
                format!("{} {op} {}", vector_expr(rng, d), scalar_expr(rng, 1))
            } else {
                format!("{} {op} {}", scalar_expr(rng, 1), vector_expr(rng, d))
            }
        }
        12 => match rng.next() % 7 {
            0 => format!("histogram_quantile({}, {})", scalar_expr(rng, 1), vector_expr(rng, d)),
            1 => format!(r#"label_replace({}, "dst", "$1-x", "job", "(.*)")"#, vector_expr(rng, d)),
            2 => format!(r#"label_join({}, "dst", ",", "job", "instance")"#, vector_expr(rng, d)),
            3 => format!("clamp({}, {}, {})", vector_expr(rng, d), scalar_expr(rng, 1), scalar_expr(rng, 1)),
            4 => format!("quantile_over_time({}, {})", scalar_expr(rng, 1), range_expr(rng, d)),
            5 => format!("predict_linear({}, {})", range_expr(rng, d), scalar_expr(rng, 1)),
            _ => format!("holt_winters({}, 0.5, 0.3)", range_expr(rng, d)),
        },
        _ => format!("-({})", vector_expr(rng, d)),
    }
}

fn data() -> MemStorage {
    let mut db = MemStorage::default();
    for (job, instance, factor) in [("api", "a", 1.0), ("api", "b", 2.0), ("web", "a", 0.5)] {
        let values: Vec<Option<f64>> =
            (0..=12).map(|i| if i == 7 && job == "web" { None } else { Some(f64::from(i) * factor) }).collect();
        load(&mut db, &format!(r#"up{{job="{job}",instance="{instance}"}}"#), 0, 10, &values);
    }
    load_values(&mut db, r#"down{job="api"}"#, 0, 30, &[3.0, 1.0, 4.0, 1.0, 5.0]);
    for (le, count) in [("0.1", 1.0), ("1", 4.0), ("+Inf", 5.0)] {
        load_values(
            &mut db,
            &format!(r#"lat_bucket{{job="api",le="{le}"}}"#),
            0,
            20,
            &[count, count * 2.0, count * 3.0],
        );
    }
    db
}

fn same_values(a: &[(Labels, f64)], b: &[(Labels, f64)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((la, va), (lb, vb))| {
            la == lb && (va == vb || (va.is_nan() && vb.is_nan()) || (va - vb).abs() <= 1e-9 * va.abs().max(1.0))
        })
}

#[test]
fn generated_queries_evaluate_consistently_and_never_panic() {
    let db = data();
    let engine = Engine::default();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut vectors, mut errors) = (0, 0);
    for _ in 0..2000 {
        let depth = (rng.next() % 4) as u32;
        let query = vector_expr(&mut rng, depth);
        let t = 60_000 + (rng.next() % 4) as i64 * 10_000;
        let instant = match engine.instant(&db, &query, t) {
            Ok(Value::Vector(v)) => v,
            Ok(other) => panic!("{query}: a vector expression gave {other:?}"),
            Err(e) => {
                assert!(matches!(e, QueryError::Parse { .. } | QueryError::Execution(_)), "{query}: {e}");
                errors += 1;
                continue;
            }
        };
        vectors += 1;
        let mut expected: Vec<(Labels, f64)> = instant.into_iter().map(|s| (s.labels, s.v)).collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        if query.contains("start()") || query.contains("end()") {
            // These mean different times in the two modes.
            continue;
        }
        let got: Vec<(Labels, f64)> = match engine.range(&db, &query, t - 20_000, t + 20_000, 20_000) {
            Ok(Value::Matrix(m)) => m
                .into_iter()
                .filter_map(|s| s.samples.iter().find(|(pt, _)| *pt == t).map(|(_, v)| (s.labels.clone(), *v)))
                .collect(),
            // A range query can meet an error at a step the instant query does not evaluate.
            Err(QueryError::Execution(_)) => continue,
            other => panic!("{query}: range mode gave {other:?}"),
        };
        assert!(same_values(&got, &expected), "{query} at {t}: range mode {got:?}, instant {expected:?}");
    }
    // The generator is meant to produce mostly valid queries.
    assert!(vectors > 1300, "only {vectors} of 2000 evaluated ({errors} errors)");
}
