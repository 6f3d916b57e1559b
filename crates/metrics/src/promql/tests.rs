//! Unit tests of the engine against handmade data in [`MemStorage`]; expected numbers are
//! derived by hand from Prometheus 2.42's documented and implemented semantics.

mod functions;
mod generated;
mod operators;
mod selectors;

use super::*;
use crate::storage::{MemStorage, stale_nan};

/// Parses `name{a="1",b="2"}` (values without commas or quotes) into labels.
fn parse_labels(spec: &str) -> Labels {
    let (name, rest) = spec.split_once('{').unwrap_or((spec, "}"));
    let mut labels: Labels = Vec::new();
    if !name.is_empty() {
        labels.push(("__name__".into(), name.into()));
    }
    for pair in rest.trim_end_matches('}').split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').expect("label pair");
        labels.push((k.trim().into(), v.trim().trim_matches('"').into()));
    }
    labels.sort();
    labels
}

/// Adds samples `values[i]` at `start_s + i * step_s` seconds; `None` is a staleness marker.
fn load(db: &mut MemStorage, spec: &str, start_s: i64, step_s: i64, values: &[Option<f64>]) {
    for (i, v) in values.iter().enumerate() {
        db.add(parse_labels(spec), (start_s + i as i64 * step_s) * 1000, v.unwrap_or_else(stale_nan));
    }
}

/// `load` for values without staleness markers.
fn load_values(db: &mut MemStorage, spec: &str, start_s: i64, step_s: i64, values: &[f64]) {
    let values: Vec<Option<f64>> = values.iter().copied().map(Some).collect();
    load(db, spec, start_s, step_s, &values);
}

/// Labels printed as `name{a="1"}` for readable assertions.
fn show(labels: &Labels) -> String {
    let name = labels.iter().find(|(k, _)| k == "__name__").map(|(_, v)| v.as_str()).unwrap_or("");
    let rest: Vec<String> =
        labels.iter().filter(|(k, _)| k != "__name__").map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", rest.join(","))
}

fn instant(db: &MemStorage, query: &str, t_s: i64) -> Value {
    Engine::default().instant(db, query, t_s * 1000).unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// An instant query's vector as (labels, value) pairs, in the engine's order.
fn vector(db: &MemStorage, query: &str, t_s: i64) -> Vec<(String, f64)> {
    match instant(db, query, t_s) {
        Value::Vector(v) => {
            for s in &v {
                assert_eq!(s.t, t_s * 1000, "{query}: a vector sample carries the evaluation time");
            }
            v.iter().map(|s| (show(&s.labels), s.v)).collect()
        }
        other => panic!("{query}: expected a vector, got {other:?}"),
    }
}

fn scalar(db: &MemStorage, query: &str, t_s: i64) -> f64 {
    match instant(db, query, t_s) {
        Value::Scalar { t, v } => {
            assert_eq!(t, t_s * 1000);
            v
        }
        other => panic!("{query}: expected a scalar, got {other:?}"),
    }
}

/// The value of a one-sample vector result.
fn single(db: &MemStorage, query: &str, t_s: i64) -> f64 {
    let v = vector(db, query, t_s);
    assert_eq!(v.len(), 1, "{query}: expected one sample, got {v:?}");
    v[0].1
}

/// A range query's series as (labels, [(t seconds, value)]).
fn range(db: &MemStorage, query: &str, start_s: i64, end_s: i64, step_s: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    match Engine::default().range(db, query, start_s * 1000, end_s * 1000, step_s * 1000) {
        Ok(Value::Matrix(m)) => {
            m.iter().map(|s| (show(&s.labels), s.samples.iter().map(|(t, v)| (t / 1000, *v)).collect())).collect()
        }
        other => panic!("{query}: expected a matrix, got {other:?}"),
    }
}

fn error(db: &MemStorage, query: &str, t_s: i64) -> QueryError {
    match Engine::default().instant(db, query, t_s * 1000) {
        Err(e) => e,
        Ok(v) => panic!("{query}: expected an error, got {v:?}"),
    }
}

#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    let ok = (actual.is_nan() && expected.is_nan())
        || actual == expected
        || (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0);
    assert!(ok, "expected {expected}, got {actual}");
}

#[track_caller]
fn assert_vector(actual: Vec<(String, f64)>, expected: &[(&str, f64)]) {
    assert_eq!(actual.len(), expected.len(), "got {actual:?}, expected {expected:?}");
    for ((al, av), (el, ev)) in actual.iter().zip(expected) {
        assert_eq!(al, el, "got {actual:?}, expected {expected:?}");
        assert_close(*av, *ev);
    }
}
