//! Binary operators: arithmetic, comparisons (filtering or `bool`), `and`/`or`/`unless`,
//! with one-to-one, many-to-one and one-to-many vector matching as Prometheus 2.42 does.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL, T_NEQ, T_POW,
    T_SUB,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::QueryError;
use super::eval::{Evaluator, METRIC_NAME, StepOutput, StepSample, format_labels, set_label};
use super::functions::without_names;
use crate::storage::{Labels, Series};

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic drops the metric name; comparisons and set operators keep it.
fn drops_metric_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD)
}

/// The operator applied to two floats: the value, and for comparisons whether it holds
/// (the value is then the left operand).
fn apply(op: u16, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        // Go's math.Mod: the result has the sign of the dividend, like Rust's %.
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => {
            return Err(QueryError::Execution(format!(
                "operator {} not allowed here",
                promql_parser::parser::token::TokenType::new(op)
            )));
        }
    })
}

pub(super) fn eval(ev: &Evaluator, b: &BinaryExpr) -> Result<Vec<Series>, QueryError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval_steps(&b.lhs)?;
    let rhs = ev.eval_steps(&b.rhs)?;
    let scalar = |v: &[StepSample]| v.first().map(|s| s.v).unwrap_or(f64::NAN);
    match (b.lhs.value_type(), b.rhs.value_type()) {
        (ValueType::Scalar, ValueType::Scalar) => ev.range_eval(&[&lhs, &rhs], |v, _| {
            let (value, keep) = apply(op, scalar(&v[0]), scalar(&v[1]))?;
            let value = if is_comparison(op) { f64::from(u8::from(keep)) } else { value };
            Ok(vec![(Cow::Owned(Vec::new()), value)])
        }),
        (ValueType::Vector, ValueType::Scalar) => {
            let nameless = without_names(&lhs);
            ev.range_eval(&[&lhs, &rhs], |v, _| vector_scalar(op, &v[0], &nameless, scalar(&v[1]), false, return_bool))
        }
        (ValueType::Scalar, ValueType::Vector) => {
            let nameless = without_names(&rhs);
            ev.range_eval(&[&lhs, &rhs], |v, _| vector_scalar(op, &v[1], &nameless, scalar(&v[0]), true, return_bool))
        }
        _ => {
            let matching = Matching::of(b);
            let sides = Sides::prepare(&matching, op, return_bool, &lhs, &rhs);
            ev.range_eval(&[&lhs, &rhs], |v, _| match op {
                T_LAND => Ok(and_unless(&v[0], &v[1], &sides, true)),
                T_LUNLESS => Ok(and_unless(&v[0], &v[1], &sides, false)),
                T_LOR => Ok(or(&v[0], &v[1], &sides)),
                _ => vector_vector(op, return_bool, &matching, &v[0], &v[1], &sides),
            })
        }
    }
}

/// What vector matching needs per input series, computed once for all steps: the match
/// group each series belongs to (as a small integer), and the labels its results get when
/// it is on the "many" side (without labels copied from the other side).
struct Sides {
    lsig: Vec<usize>,
    rsig: Vec<usize>,
    lresult: Vec<Labels>,
    rresult: Vec<Labels>,
    groups: usize,
}

impl Sides {
    fn prepare(matching: &Matching, op: u16, return_bool: bool, lhs: &[Series], rhs: &[Series]) -> Sides {
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut sig = |s: &Series| {
            let next = ids.len();
            *ids.entry(matching.signature(&s.labels)).or_insert(next)
        };
        let lsig = lhs.iter().map(&mut sig).collect();
        let rsig = rhs.iter().map(&mut sig).collect();
        let result = |m: &[Series]| -> Vec<Labels> {
            m.iter()
                .map(|s| {
                    let mut labels = result_labels(&s.labels, op, matching);
                    if return_bool {
                        labels.retain(|(k, _)| k != METRIC_NAME);
                    }
                    labels
                })
                .collect()
        };
        let (lresult, rresult) = if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
            (Vec::new(), Vec::new())
        } else {
            (result(lhs), result(rhs))
        };
        Sides { lsig, rsig, lresult, rresult, groups: ids.len() }
    }
}

fn vector_scalar<'m>(
    op: u16,
    vector: &[StepSample<'m>],
    nameless: &'m [Labels],
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<StepOutput<'m>, QueryError> {
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if scalar_left { (scalar, s.v) } else { (s.v, scalar) };
        let (mut value, mut keep) = apply(op, l, r)?;
        if is_comparison(op) {
            // A filter keeps the vector's own value whichever side it is on.
            value = s.v;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            let labels = if drops_metric_name(op) || return_bool {
                Cow::Borrowed(&nameless[s.series])
            } else {
                Cow::Borrowed(s.labels)
            };
            out.push((labels, value));
        }
    }
    Ok(out)
}

/// A binary expression's vector matching.
struct Matching {
    /// `on(...)` (true) or `ignoring(...)` (false, also when no clause is given).
    on: bool,
    labels: Vec<String>,
    card: VectorMatchCardinality,
}

impl Matching {
    fn of(b: &BinaryExpr) -> Matching {
        let (mut on, mut labels, mut card) = (false, Vec::new(), VectorMatchCardinality::OneToOne);
        if let Some(m) = &b.modifier {
            card = m.card.clone();
            match &m.matching {
                Some(LabelModifier::Include(l)) => (on, labels) = (true, l.labels.clone()),
                Some(LabelModifier::Exclude(l)) => labels = l.labels.clone(),
                None => {}
            }
        }
        if matches!(b.op.id(), T_LAND | T_LOR | T_LUNLESS) {
            card = VectorMatchCardinality::ManyToMany;
        }
        labels.sort();
        labels.dedup();
        Matching { on, labels, card }
    }

    /// The labels that must match: those listed with `on`, or all but the listed ones and
    /// the metric name with `ignoring`.
    fn matched_labels(&self, labels: &Labels) -> Labels {
        labels
            .iter()
            .filter(
                |(k, _)| {
                    if self.on { self.labels.contains(k) } else { k != METRIC_NAME && !self.labels.contains(k) }
                },
            )
            .cloned()
            .collect()
    }

    fn signature(&self, labels: &Labels) -> String {
        let mut sig = String::new();
        for (k, v) in self.matched_labels(labels) {
            sig.push_str(&k);
            sig.push('\u{ff}');
            sig.push_str(&v);
            sig.push('\u{ff}');
        }
        sig
    }
}

fn and_unless<'m>(lhs: &[StepSample<'m>], rhs: &[StepSample<'m>], sides: &Sides, and: bool) -> StepOutput<'m> {
    let mut right = vec![false; sides.groups];
    for s in rhs {
        right[sides.rsig[s.series]] = true;
    }
    lhs.iter().filter(|s| right[sides.lsig[s.series]] == and).map(|s| (Cow::Borrowed(s.labels), s.v)).collect()
}

fn or<'m>(lhs: &[StepSample<'m>], rhs: &[StepSample<'m>], sides: &Sides) -> StepOutput<'m> {
    let mut left = vec![false; sides.groups];
    for s in lhs {
        left[sides.lsig[s.series]] = true;
    }
    let mut out: StepOutput<'m> = lhs.iter().map(|s| (Cow::Borrowed(s.labels), s.v)).collect();
    out.extend(rhs.iter().filter(|s| !left[sides.rsig[s.series]]).map(|s| (Cow::Borrowed(s.labels), s.v)));
    out
}

fn vector_vector<'m>(
    op: u16,
    return_bool: bool,
    matching: &Matching,
    lhs: &[StepSample<'m>],
    rhs: &[StepSample<'m>],
    sides: &'m Sides,
) -> Result<StepOutput<'m>, QueryError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    // group_right: the right side is the "many" side; swap so `many` is always iterated.
    let one_to_many = matches!(matching.card, VectorMatchCardinality::OneToMany(_));
    let (many, one, many_sig, one_sig, many_result) = if one_to_many {
        (rhs, lhs, &sides.rsig, &sides.lsig, &sides.rresult)
    } else {
        (lhs, rhs, &sides.lsig, &sides.rsig, &sides.lresult)
    };
    let mut one_by_sig: HashMap<usize, &StepSample<'m>> = HashMap::with_capacity(one.len());
    for s in one {
        if let Some(dup) = one_by_sig.insert(one_sig[s.series], s) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];\
                 many-to-many matching not allowed: matching labels must be unique on one side",
                format_labels(&matching.matched_labels(s.labels)),
                format_labels(s.labels),
                format_labels(dup.labels),
            )));
        }
    }
    let include: &[String] = match &matching.card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
        _ => &[],
    };
    let one_to_one = matches!(matching.card, VectorMatchCardinality::OneToOne);
    let mut matched_once: HashSet<usize> = HashSet::new();
    let mut matched: HashMap<usize, HashSet<Cow<'m, Labels>>> = HashMap::new();
    let mut out = Vec::new();
    for s in many {
        let sig = many_sig[s.series];
        let Some(o) = one_by_sig.get(&sig) else { continue };
        let (l, r) = if one_to_many { (o.v, s.v) } else { (s.v, o.v) };
        let (mut value, keep) = apply(op, l, r)?;
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        let mut labels = Cow::Borrowed(&many_result[s.series]);
        for name in include {
            let value = o.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
            set_label(labels.to_mut(), name, value);
        }
        if one_to_one {
            if !matched_once.insert(sig) {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
        } else if !matched.entry(sig).or_default().insert(labels.clone()) {
            return Err(QueryError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push((labels, value));
    }
    Ok(out)
}

/// The labels of a "many" side series' results: without the name for arithmetic, reduced to
/// the matching labels for one-to-one `on`/`ignoring`. `group_left`/`group_right` labels
/// from the "one" side are added per match.
fn result_labels(many: &Labels, op: u16, matching: &Matching) -> Labels {
    let mut labels: Labels = many.clone();
    if drops_metric_name(op) {
        labels.retain(|(k, _)| k != METRIC_NAME);
    }
    if matches!(matching.card, VectorMatchCardinality::OneToOne) {
        if matching.on {
            labels.retain(|(k, _)| matching.labels.contains(k));
        } else {
            labels.retain(|(k, _)| !matching.labels.contains(k));
        }
    }
    labels
}
