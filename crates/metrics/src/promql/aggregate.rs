//! Aggregation operators (`sum by (job) (...)` and the rest), as Prometheus 2.42's
//! `aggregation()`: groups keep the order in which they first appear in a step.

use std::borrow::Cow;
use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::QueryError;
use super::eval::{Evaluator, METRIC_NAME, StepOutput, StepSample, label_value, set_label, unsupported};
use super::functions::quantile;
use crate::storage::{Labels, Series};

/// How series are grouped: `by` keeps the listed labels, `without` drops them and the name.
struct Grouping {
    names: Vec<String>,
    without: bool,
}

impl Grouping {
    fn key(&self, labels: &Labels) -> Vec<String> {
        if self.without {
            labels
                .iter()
                .filter(|(k, _)| k != METRIC_NAME && !self.names.contains(k))
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect()
        } else {
            self.names.iter().map(|n| label_value(labels, n).to_string()).collect()
        }
    }

    fn output_labels(&self, labels: &Labels) -> Labels {
        labels
            .iter()
            .filter(
                |(k, _)| {
                    if self.without { k != METRIC_NAME && !self.names.contains(k) } else { self.names.contains(k) }
                },
            )
            .cloned()
            .collect()
    }
}

/// One group's running state.
struct Group<'m> {
    labels: Labels,
    value: f64,
    mean: f64,
    count: usize,
    /// The samples `topk`, `bottomk` and `quantile` choose among.
    samples: Vec<StepSample<'m>>,
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` does.
pub(super) fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

pub(super) fn eval(ev: &Evaluator, agg: &AggregateExpr) -> Result<Vec<Series>, QueryError> {
    let op = agg.op.id();
    let mut names: Vec<String> = match &agg.modifier {
        Some(m) => m.labels().labels.clone(),
        None => Vec::new(),
    };
    names.sort();
    names.dedup();
    let without = matches!(agg.modifier, Some(LabelModifier::Exclude(_)));
    let mut value_label = String::new();
    let mut param_series = None;
    if let Some(param) = &agg.param {
        match super::eval::unwrap_parens(param) {
            Expr::StringLiteral(s) => value_label = s.val.clone(),
            _ => param_series = Some(ev.eval_steps(param)?),
        }
    }
    if op == T_COUNT_VALUES {
        let valid = {
            let mut c = value_label.chars();
            c.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && c.all(|c| c == '_' || c.is_ascii_alphanumeric())
        };
        if !valid {
            return Err(QueryError::Execution(format!("invalid label name {value_label:?}")));
        }
        if !without {
            names.push(value_label.clone());
            names.sort();
            names.dedup();
        }
    }
    let grouping = Grouping { names, without };
    let vector = ev.eval_steps(&agg.expr)?;
    // Group keys and labels per input series, computed once (count_values aside).
    let keys: Vec<Vec<String>> = vector.iter().map(|s| grouping.key(&s.labels)).collect();
    let mut inputs: Vec<&[Series]> = vec![&vector];
    if let Some(p) = &param_series {
        inputs.push(p);
    }
    ev.range_eval(&inputs, |v, _| {
        let param = v.get(1).and_then(|p| p.first()).map(|s| s.v).unwrap_or(f64::NAN);
        if op == T_COUNT_VALUES {
            return Ok(count_values(&grouping, &value_label, &v[0]));
        }
        aggregate_step(op, param, &grouping, &keys, &v[0])
    })
}

fn aggregate_step<'m>(
    op: u16,
    param: f64,
    grouping: &Grouping,
    keys: &[Vec<String>],
    vector: &[StepSample<'m>],
) -> Result<StepOutput<'m>, QueryError> {
    let mut k = 0usize;
    if op == T_TOPK || op == T_BOTTOMK {
        // Go's convertibleToInt64: NaN and values beyond ±2^63 are rejected.
        if param.is_nan() || param.abs() >= 9.223_372_036_854_775e18 {
            return Err(QueryError::Execution(format!("Scalar value {param} overflows int64")));
        }
        if param < 1.0 {
            return Ok(Vec::new());
        }
        k = param as usize;
    }
    let mut groups: Vec<Group<'m>> = Vec::new();
    let mut index: HashMap<&[String], usize> = HashMap::new();
    for s in vector {
        let key = keys[s.series].as_slice();
        let Some(&gi) = index.get(key) else {
            index.insert(key, groups.len());
            groups.push(Group {
                labels: grouping.output_labels(s.labels),
                value: match op {
                    T_STDDEV | T_STDVAR => 0.0,
                    T_GROUP => 1.0,
                    _ => s.v,
                },
                mean: s.v,
                count: 1,
                samples: vec![*s],
            });
            continue;
        };
        let g = &mut groups[gi];
        match op {
            T_SUM => g.value += s.v,
            T_AVG => {
                g.count += 1;
                let skip = g.mean.is_infinite()
                    && ((s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0)) || (!s.v.is_infinite() && !s.v.is_nan()));
                if !skip {
                    let n = g.count as f64;
                    g.mean += s.v / n - g.mean / n;
                }
            }
            T_GROUP => {}
            T_MAX => {
                if g.value < s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            T_MIN => {
                if g.value > s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            T_COUNT => g.count += 1,
            T_STDDEV | T_STDVAR => {
                g.count += 1;
                let delta = s.v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (s.v - g.mean);
            }
            T_TOPK | T_BOTTOMK | T_QUANTILE => g.samples.push(*s),
            _ => return Err(unsupported(&format!("aggregation {}", promql_parser::parser::token::TokenType::new(op)))),
        }
    }
    let mut out: StepOutput<'m> = Vec::with_capacity(groups.len());
    for g in groups {
        let value = match op {
            T_AVG => g.mean,
            T_COUNT => g.count as f64,
            T_STDVAR => g.value / g.count as f64,
            T_STDDEV => (g.value / g.count as f64).sqrt(),
            T_QUANTILE => {
                let mut values: Vec<f64> = g.samples.iter().map(|s| s.v).collect();
                quantile(param, &mut values)
            }
            T_TOPK | T_BOTTOMK => {
                let top = op == T_TOPK;
                let mut kept = heap_select(&g.samples, |s| s.v, k, top);
                // Best first, NaNs last, as Prometheus orders its heap on output.
                kept.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if top => b.v.total_cmp(&a.v),
                    _ => a.v.total_cmp(&b.v),
                });
                out.extend(kept.iter().map(|s| (Cow::Borrowed(s.labels), s.v)));
                continue;
            }
            _ => g.value,
        };
        out.push((Cow::Owned(g.labels), value));
    }
    Ok(out)
}

/// The at most `k` items `topk` (`top`) or `bottomk` keeps, chosen as Prometheus 2.42 does
/// with a binary heap (Go's `container/heap`) whose root is the weakest kept item, so that
/// ties resolve the same way: an item equal to the root does not displace it, a NaN root is
/// always displaced, and a displaced root leaves by `heap.Pop` before the newcomer's
/// `heap.Push`. (A stable sort would keep the first of equal items; Prometheus often keeps
/// a later one.)
fn heap_select<T: Copy>(items: &[T], value: impl Fn(&T) -> f64, k: usize, top: bool) -> Vec<T> {
    // The heap order: NaN is weakest, then the smallest value (topk) or largest (bottomk).
    let less = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
    let up = |h: &mut Vec<T>, mut j: usize| {
        while j > 0 {
            let parent = (j - 1) / 2;
            if !less(value(&h[j]), value(&h[parent])) {
                break;
            }
            h.swap(parent, j);
            j = parent;
        }
    };
    let down = |h: &mut Vec<T>, mut i: usize, n: usize| loop {
        let left = 2 * i + 1;
        if left >= n {
            break;
        }
        let mut j = left;
        if left + 1 < n && less(value(&h[left + 1]), value(&h[left])) {
            j = left + 1;
        }
        if !less(value(&h[j]), value(&h[i])) {
            break;
        }
        h.swap(i, j);
        i = j;
    };
    let mut heap: Vec<T> = Vec::with_capacity(k.min(items.len()));
    for (n, &item) in items.iter().enumerate() {
        if n == 0 {
            heap.push(item);
            continue;
        }
        let (root, v) = (value(&heap[0]), value(&item));
        let beats_root = if top { root < v } else { root > v };
        if heap.len() < k || beats_root || root.is_nan() {
            if heap.len() == k {
                if k == 1 {
                    heap[0] = item;
                    continue;
                }
                let last = heap.len() - 1;
                heap.swap(0, last);
                down(&mut heap, 0, last);
                heap.pop();
            }
            heap.push(item);
            let last = heap.len() - 1;
            up(&mut heap, last);
        }
    }
    heap
}

/// `count_values("label", v)`: how many samples have each value, the value in `label`.
fn count_values<'m>(grouping: &Grouping, value_label: &str, vector: &[StepSample<'m>]) -> StepOutput<'m> {
    let mut groups: Vec<(Labels, f64)> = Vec::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    for s in vector {
        let mut labels = s.labels.clone();
        set_label(&mut labels, value_label, &format_go_float(s.v));
        let key = grouping.key(&labels);
        match index.get(&key) {
            Some(&i) => groups[i].1 += 1.0,
            None => {
                index.insert(key, groups.len());
                groups.push((grouping.output_labels(&labels), 1.0));
            }
        }
    }
    groups.into_iter().map(|(l, c)| (Cow::Owned(l), c)).collect()
}
