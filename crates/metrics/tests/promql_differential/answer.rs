//! A query answer in one shape for both engines, and the comparison that decides whether two
//! answers agree: series compared as sets keyed by labels (in order only where the query's
//! outermost function defines one), values equal up to floating-point noise, NaN equal to
//! NaN, infinities exact, and any two errors equal (their wording is not compared).

/// Labels as sorted `(name, value)` pairs, `__name__` included when present.
pub type Labels = Vec<(String, String)>;

/// What a query returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        v: String,
    },
    Vector(Vec<(Labels, i64, f64)>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
    Error(String),
    /// The engine panicked or did not answer in time: never agrees with anything.
    Crash(String),
}

impl Answer {
    fn kind(&self) -> &'static str {
        match self {
            Answer::Scalar { .. } => "scalar",
            Answer::String { .. } => "string",
            Answer::Vector(_) => "vector",
            Answer::Matrix(_) => "matrix",
            Answer::Error(_) => "error",
            Answer::Crash(_) => "crash",
        }
    }
}

/// Relative tolerance for values: beyond it a difference is not floating-point noise.
const RELATIVE_TOLERANCE: f64 = 1e-9;
/// Absolute tolerance near zero, where a relative one means nothing (`x - x` computed in two
/// orders may give 0 or 1e-16).
const ABSOLUTE_TOLERANCE: f64 = 1e-12;

/// Whether two floats agree: NaN equals NaN, infinities must match exactly.
pub fn same_value(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let diff = (a - b).abs();
    diff <= ABSOLUTE_TOLERANCE || diff <= RELATIVE_TOLERANCE * a.abs().max(b.abs())
}

/// Whether a query's result order is part of its meaning: its outermost call is `sort`,
/// `sort_desc`, or a `topk`/`bottomk` without grouping (whose single group comes out ordered).
pub fn order_matters(query: &str) -> bool {
    let q = query.trim();
    ["sort(", "sort_desc(", "topk(", "bottomk("].iter().any(|f| q.starts_with(f) && call_spans_whole(q, f.len() - 1))
}

/// Whether the parenthesis at `open` closes at the very end of `q` (so the call is the whole
/// expression). String literals are skipped so a `)` inside quotes does not count.
fn call_spans_whole(q: &str, open: usize) -> bool {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in q.char_indices().skip_while(|(i, _)| *i < open) {
        if let Some(qc) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == qc {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i == q.len() - 1;
                }
            }
            _ => {}
        }
    }
    false
}

fn show_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Compares Signalbox's answer with Prometheus's; `Err` describes the first difference.
pub fn compare(ours: &Answer, theirs: &Answer, ordered: bool) -> Result<(), String> {
    match (ours, theirs) {
        (Answer::Crash(e), _) => Err(format!("Signalbox crashed: {e}")),
        (_, Answer::Crash(e)) => Err(format!("Prometheus crashed: {e}")),
        (Answer::Error(_), Answer::Error(_)) => Ok(()),
        (Answer::Error(e), other) => Err(format!("Signalbox failed ({e}), Prometheus answered a {}", other.kind())),
        (other, Answer::Error(e)) => Err(format!("Prometheus failed ({e}), Signalbox answered a {}", other.kind())),
        (Answer::Scalar { t: t1, v: v1 }, Answer::Scalar { t: t2, v: v2 }) => {
            if t1 != t2 {
                Err(format!("scalar time: Signalbox {t1}, Prometheus {t2}"))
            } else if !same_value(*v1, *v2) {
                Err(format!("scalar: Signalbox {v1}, Prometheus {v2}"))
            } else {
                Ok(())
            }
        }
        (Answer::String { t: t1, v: v1 }, Answer::String { t: t2, v: v2 }) => {
            if t1 != t2 || v1 != v2 {
                Err(format!("string: Signalbox {v1:?}@{t1}, Prometheus {v2:?}@{t2}"))
            } else {
                Ok(())
            }
        }
        (Answer::Vector(a), Answer::Vector(b)) => compare_vectors(a, b, ordered),
        (Answer::Matrix(a), Answer::Matrix(b)) => compare_matrices(a, b),
        (a, b) => Err(format!("Signalbox answered a {}, Prometheus a {}", a.kind(), b.kind())),
    }
}

fn compare_vectors(ours: &[(Labels, i64, f64)], theirs: &[(Labels, i64, f64)], ordered: bool) -> Result<(), String> {
    if ordered {
        let a: Vec<f64> = ours.iter().map(|s| s.2).collect();
        let b: Vec<f64> = theirs.iter().map(|s| s.2).collect();
        if a.len() == b.len() && !a.iter().zip(&b).all(|(x, y)| same_value(*x, *y)) {
            return Err(format!("order of values: Signalbox {a:?}, Prometheus {b:?}"));
        }
    }
    let mut a: Vec<&(Labels, i64, f64)> = ours.iter().collect();
    let mut b: Vec<&(Labels, i64, f64)> = theirs.iter().collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                if x.1 != y.1 || !same_value(x.2, y.2) {
                    return Err(format!(
                        "{}: Signalbox {}@{}, Prometheus {}@{}",
                        show_labels(&x.0),
                        x.2,
                        x.1,
                        y.2,
                        y.1
                    ));
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                return Err(format!("only Signalbox has {} = {}", show_labels(&x.0), x.2));
            }
            (Some(x), None) => return Err(format!("only Signalbox has {} = {}", show_labels(&x.0), x.2)),
            (_, Some(y)) => return Err(format!("only Prometheus has {} = {}", show_labels(&y.0), y.2)),
            (None, None) => unreachable!("the loop runs while either side has samples"),
        }
    }
    Ok(())
}

fn compare_matrices(ours: &[(Labels, Vec<(i64, f64)>)], theirs: &[(Labels, Vec<(i64, f64)>)]) -> Result<(), String> {
    let mut a: Vec<&(Labels, Vec<(i64, f64)>)> = ours.iter().collect();
    let mut b: Vec<&(Labels, Vec<(i64, f64)>)> = theirs.iter().collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    for (x, y) in a.iter().zip(&b) {
        if x.0 != y.0 {
            let (first, side) = if x.0 < y.0 { (x, "Signalbox") } else { (y, "Prometheus") };
            return Err(format!("only {side} has {} ({} points)", show_labels(&first.0), first.1.len()));
        }
        for (k, (p, q)) in x.1.iter().zip(&y.1).enumerate() {
            if p.0 != q.0 || !same_value(p.1, q.1) {
                return Err(format!(
                    "{} point {k}: Signalbox {}@{}, Prometheus {}@{}",
                    show_labels(&x.0),
                    p.1,
                    p.0,
                    q.1,
                    q.0
                ));
            }
        }
        if x.1.len() != y.1.len() {
            let (longer, side) = if x.1.len() > y.1.len() { (&x.1, "Signalbox") } else { (&y.1, "Prometheus") };
            let extra = longer[x.1.len().min(y.1.len())];
            return Err(format!(
                "{}: {} points from Signalbox, {} from Prometheus; first extra from {side}: {}@{}",
                show_labels(&x.0),
                x.1.len(),
                y.1.len(),
                extra.1,
                extra.0
            ));
        }
    }
    if a.len() != b.len() {
        let (longer, side) = if a.len() > b.len() { (&a, "Signalbox") } else { (&b, "Prometheus") };
        let extra = longer[a.len().min(b.len())];
        return Err(format!("only {side} has {} ({} points)", show_labels(&extra.0), extra.1.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_agree_up_to_noise_and_nan_equals_nan() {
        assert!(same_value(1.0, 1.0 + 1e-12));
        assert!(same_value(0.0, 1e-15));
        assert!(!same_value(1.0, 1.0001));
        assert!(same_value(f64::NAN, f64::NAN));
        assert!(!same_value(f64::NAN, 0.0));
        assert!(same_value(f64::INFINITY, f64::INFINITY));
        assert!(!same_value(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!same_value(f64::INFINITY, 1e308));
    }

    #[test]
    fn order_matters_only_for_an_outermost_sort_or_ungrouped_topk() {
        assert!(order_matters("sort_desc(rate(x[5m]))"));
        assert!(order_matters(" topk(3, x) "));
        assert!(!order_matters("topk by (job) (3, x)"));
        assert!(!order_matters("sort(x) + sort(y)"));
        assert!(!order_matters("sum(sort(x))"));
        assert!(order_matters(r#"sort(label_replace(x, "a", ")", "b", "c"))"#));
    }

    #[test]
    fn vectors_compare_as_sets_unless_ordered() {
        let a = Answer::Vector(vec![(l(&[("a", "1")]), 5, 1.0), (l(&[("a", "2")]), 5, 2.0)]);
        let b = Answer::Vector(vec![(l(&[("a", "2")]), 5, 2.0), (l(&[("a", "1")]), 5, 1.0)]);
        assert_eq!(compare(&a, &b, false), Ok(()));
        assert!(compare(&a, &b, true).unwrap_err().contains("order"));
        let c = Answer::Vector(vec![(l(&[("a", "1")]), 5, 1.0)]);
        assert!(compare(&a, &c, false).unwrap_err().contains("only Signalbox has {a=\"2\"}"));
        assert!(compare(&c, &a, false).unwrap_err().contains("only Prometheus has {a=\"2\"}"));
        let d = Answer::Vector(vec![(l(&[("a", "1")]), 6, 1.0)]);
        assert!(compare(&c, &d, false).is_err(), "sample times are compared");
    }

    #[test]
    fn matrices_report_the_first_differing_point() {
        let a = Answer::Matrix(vec![(l(&[("a", "1")]), vec![(1, 1.0), (2, 2.0)])]);
        let b = Answer::Matrix(vec![(l(&[("a", "1")]), vec![(1, 1.0), (2, 2.5)])]);
        assert!(compare(&a, &b, false).unwrap_err().contains("point 1"));
        let c = Answer::Matrix(vec![(l(&[("a", "1")]), vec![(1, 1.0)])]);
        assert!(compare(&a, &c, false).unwrap_err().contains("first extra from Signalbox: 2@2"));
        let d = Answer::Matrix(vec![]);
        assert!(compare(&a, &d, false).unwrap_err().contains("only Signalbox"));
        assert_eq!(compare(&a, &a.clone(), false), Ok(()));
    }

    #[test]
    fn errors_agree_with_errors_only() {
        let e = Answer::Error("parse error".into());
        assert_eq!(compare(&e, &Answer::Error("bad_data: other words".into()), false), Ok(()));
        assert!(compare(&e, &Answer::Scalar { t: 0, v: 1.0 }, false).unwrap_err().contains("Signalbox failed"));
        assert!(compare(&Answer::Vector(vec![]), &Answer::Matrix(vec![]), false).is_err());
        assert!(compare(&Answer::Crash("panicked".into()), &e, false).is_err(), "a panic is no error answer");
    }
}
