//! The function library, following Prometheus 2.42's `functions.go`: functions of a range
//! vector (`rate`, `*_over_time`, ...) slide a window over each series; the others map the
//! instant vector of each step.

use std::borrow::Cow;

use promql_parser::parser::{Call, Expr};

use super::QueryError;
use super::eval::{
    Evaluated, Evaluator, METRIC_NAME, RangeInput, StepOutput, StepSample, check_unique_labels, drop_metric_name,
    label_value, set_label, unsupported, unwrap_parens,
};
use crate::storage::{Labels, Series};

mod calendar;
mod histogram;
mod over_time;

pub(super) use over_time::quantile;

/// Evaluates a function call at every step.
pub(super) fn eval(ev: &Evaluator, call: &Call) -> Result<Vec<Series>, QueryError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| a.as_ref()).collect();
    if name == "timestamp"
        && let Some(Expr::VectorSelector(vs)) = args.first().map(|a| unwrap_parens(a))
    {
        // The samples' own times, not the step times a vector carries after evaluation.
        let mut m = ev.vector_selector(vs, true)?;
        for s in &mut m {
            s.labels = drop_metric_name(&s.labels);
        }
        check_unique_labels(&m)?;
        return Ok(m);
    }
    for (i, arg) in args.iter().enumerate() {
        if let Some(input) = ev.range_input(arg)? {
            return eval_range_function(ev, name, &args, i, input);
        }
    }
    eval_instant_function(ev, name, &args)
}

/// The per-step values of the scalar arguments other than the range vector.
fn scalar_params(ev: &Evaluator, args: &[&Expr], skip: usize) -> Result<Vec<Vec<f64>>, QueryError> {
    let mut params = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i == skip {
            continue;
        }
        let series = ev.eval_steps(arg)?;
        let mut values = vec![f64::NAN; ev.step_count()];
        if let Some(s) = series.first() {
            let mut points = s.samples.iter().peekable();
            for (k, ts) in ev.steps().enumerate() {
                while points.next_if(|(t, _)| *t < ts).is_some() {}
                if let Some((_, v)) = points.next_if(|(t, _)| *t == ts) {
                    values[k] = *v;
                }
            }
            ev.budget.release(s.samples.len());
        }
        params.push(values);
    }
    Ok(params)
}

/// What a range function sees at one step besides the window's samples.
pub(super) struct Window {
    /// The window's end (the step time minus offset, or the `@` time).
    pub end: i64,
    /// The range in milliseconds; the window is `[end - range, end]`.
    pub range: i64,
    /// The step's evaluation time.
    pub ts: i64,
}

type RangeFn = fn(&[(i64, f64)], &Window, &[f64]) -> Result<Option<f64>, QueryError>;

fn range_function(name: &str) -> Option<RangeFn> {
    use over_time::*;
    Some(match name {
        "rate" => |s, w, _| Ok(extrapolated_rate(s, w, true, true)),
        "increase" => |s, w, _| Ok(extrapolated_rate(s, w, true, false)),
        "delta" => |s, w, _| Ok(extrapolated_rate(s, w, false, false)),
        "irate" => |s, _, _| Ok(instant_value(s, true)),
        "idelta" => |s, _, _| Ok(instant_value(s, false)),
        "avg_over_time" => |s, _, _| Ok(Some(avg(s))),
        "min_over_time" => |s, _, _| Ok(Some(min(s))),
        "max_over_time" => |s, _, _| Ok(Some(max(s))),
        "sum_over_time" => |s, _, _| Ok(Some(sum(s))),
        "count_over_time" => |s, _, _| Ok(Some(s.len() as f64)),
        "last_over_time" => |s, _, _| Ok(s.last().map(|p| p.1)),
        "present_over_time" => |_, _, _| Ok(Some(1.0)),
        "stddev_over_time" => |s, _, _| Ok(Some(stdvar(s).sqrt())),
        "stdvar_over_time" => |s, _, _| Ok(Some(stdvar(s))),
        "quantile_over_time" => |s, _, p| {
            let mut values: Vec<f64> = s.iter().map(|p| p.1).collect();
            Ok(Some(quantile(p[0], &mut values)))
        },
        "changes" => |s, _, _| Ok(Some(changes(s))),
        "resets" => |s, _, _| Ok(Some(resets(s))),
        "deriv" => |s, _, _| Ok((s.len() >= 2).then(|| linear_regression(s, s[0].0).0)),
        "predict_linear" => |s, w, p| {
            Ok((s.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(s, w.ts);
                slope * p[0] + intercept
            }))
        },
        "holt_winters" | "double_exponential_smoothing" => |s, _, p| holt_winters(s, p[0], p[1]),
        _ => return None,
    })
}

fn eval_range_function(
    ev: &Evaluator,
    name: &str,
    args: &[&Expr],
    range_arg: usize,
    input: RangeInput,
) -> Result<Vec<Series>, QueryError> {
    let params = scalar_params(ev, args, range_arg)?;
    let held: usize = input.series.iter().map(|s| s.samples.len()).sum();
    let result = if name == "absent_over_time" {
        absent_over_time(ev, args[range_arg], &input)
    } else {
        let f = range_function(name).ok_or_else(|| unsupported(&format!("function {name}")))?;
        let mut step_params = vec![0.0; params.len()];
        let windows = ev.range_windows(&input, |samples, ts, end, step| {
            for (p, values) in step_params.iter_mut().zip(&params) {
                *p = values[step];
            }
            f(samples, &Window { end, range: input.range, ts }, &step_params)
        })?;
        let keep_name = name == "last_over_time";
        let out: Vec<Series> = windows
            .into_iter()
            .map(|(si, samples)| {
                let labels = &input.series[si].labels;
                Series { labels: if keep_name { labels.clone() } else { drop_metric_name(labels) }, samples }
            })
            .collect();
        check_unique_labels(&out).map(|_| out)
    };
    ev.budget.release(held);
    result
}

/// `absent_over_time`: 1 at the steps where no series has a sample in its window.
fn absent_over_time(ev: &Evaluator, arg: &Expr, input: &RangeInput) -> Result<Vec<Series>, QueryError> {
    let mut present = vec![false; ev.step_count()];
    ev.range_windows(input, |_, _, _, step| {
        present[step] = true;
        Ok(None)
    })?;
    let samples: Vec<(i64, f64)> = ev.steps().zip(&present).filter(|(_, p)| !**p).map(|(ts, _)| (ts, 1.0)).collect();
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    ev.budget.take(samples.len())?;
    Ok(vec![Series { labels: absent_labels(arg), samples }])
}

/// The labels `absent` and `absent_over_time` give: the selector's equality matchers.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unwrap_parens(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Vec::new(),
    };
    let mut labels: Labels = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && seen.insert(m.name.clone()) {
            set_label(&mut labels, &m.name, &m.value);
        } else {
            set_label(&mut labels, &m.name, "");
        }
    }
    labels
}

fn string_arg<'e>(args: &[&'e Expr], i: usize) -> Result<&'e str, QueryError> {
    match args.get(i).map(|a| unwrap_parens(a)) {
        Some(Expr::StringLiteral(s)) => Ok(&s.val),
        _ => Err(QueryError::Execution(format!("expected a string literal as argument {}", i + 1))),
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Maps every sample of the step's first vector with `f`; `nameless` holds each input
/// series' labels without `__name__`, computed once rather than per step.
fn map_values<'m>(vector: &[StepSample<'m>], nameless: &'m [Labels], f: impl Fn(f64) -> f64) -> StepOutput<'m> {
    vector.iter().map(|s| (Cow::Borrowed(&nameless[s.series]), f(s.v))).collect()
}

/// Each series' labels without `__name__`.
pub(super) fn without_names(m: &[Series]) -> Vec<Labels> {
    m.iter().map(|s| drop_metric_name(&s.labels)).collect()
}

/// Go's `math.Max`: NaN wins (Rust's `f64::max` ignores it), +0 beats -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins, -0 beats +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

fn eval_instant_function(ev: &Evaluator, name: &str, args: &[&Expr]) -> Result<Vec<Series>, QueryError> {
    match name {
        "time" => return ev.scalar_series(|ts| ts as f64 / 1000.0),
        "pi" => return ev.scalar_series(|_| std::f64::consts::PI),
        _ => {}
    }
    if let Some(date) = calendar::date_function(name) {
        if args.is_empty() {
            return ev.scalar_series(|ts| date(ts.div_euclid(1000)));
        }
        let m = ev.eval_steps(args[0])?;
        let nameless = without_names(&m);
        return ev.range_eval(&[&m], |v, _| Ok(map_values(&v[0], &nameless, |x| calendar::of_value(date, x))));
    }
    // Evaluate every non-string argument; strings are read from the literals.
    let mut evaluated = Vec::new();
    for arg in args {
        match ev.eval(arg)? {
            Evaluated::Steps(m) => evaluated.push(m),
            Evaluated::Text(_) => {}
        }
    }
    let inputs: Vec<&[Series]> = evaluated.iter().map(|m| m.as_slice()).collect();
    let nameless = evaluated.first().map(|m| without_names(m)).unwrap_or_default();
    let nameless = nameless.as_slice();
    if let Some(f) = math_function(name) {
        return ev.range_eval(&inputs, |v, _| Ok(map_values(&v[0], nameless, f)));
    }
    let scalar = |v: &[Vec<StepSample>], i: usize| v[i].first().map(|s| s.v).unwrap_or(f64::NAN);
    match name {
        "round" => ev.range_eval(&inputs, |v, _| {
            let to_nearest = if v.len() > 1 { scalar(v, 1) } else { 1.0 };
            let inverse = 1.0 / to_nearest;
            Ok(map_values(&v[0], nameless, |x| (x * inverse + 0.5).floor() / inverse))
        }),
        "clamp" => ev.range_eval(&inputs, |v, _| {
            let (lo, hi) = (scalar(v, 1), scalar(v, 2));
            if hi < lo {
                return Ok(Vec::new());
            }
            Ok(map_values(&v[0], nameless, |x| go_max(lo, go_min(hi, x))))
        }),
        "clamp_min" => ev.range_eval(&inputs, |v, _| {
            let lo = scalar(v, 1);
            Ok(map_values(&v[0], nameless, |x| go_max(lo, x)))
        }),
        "clamp_max" => ev.range_eval(&inputs, |v, _| {
            let hi = scalar(v, 1);
            Ok(map_values(&v[0], nameless, |x| go_min(hi, x)))
        }),
        // Without a vector selector argument the samples carry the evaluation time.
        "timestamp" => ev.range_eval(&inputs, |v, ts| Ok(map_values(&v[0], nameless, |_| ts as f64 / 1000.0))),
        "vector" => ev.range_eval(&inputs, |v, _| Ok(vec![(Cow::Owned(Vec::new()), scalar(v, 0))])),
        "scalar" => ev.range_eval(&inputs, |v, _| {
            let value = if v[0].len() == 1 { v[0][0].v } else { f64::NAN };
            Ok(vec![(Cow::Owned(Vec::new()), value)])
        }),
        "absent" => {
            let labels = absent_labels(args[0]);
            ev.range_eval(&inputs, |v, _| {
                Ok(if v[0].is_empty() { vec![(Cow::Owned(labels.clone()), 1.0)] } else { Vec::new() })
            })
        }
        "sort" | "sort_desc" => {
            let descending = name == "sort_desc";
            ev.range_eval(&inputs, |v, _| {
                let mut out: Vec<StepSample> = v[0].clone();
                // NaNs go last either way, as in Prometheus.
                out.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if descending => b.v.total_cmp(&a.v),
                    _ => a.v.total_cmp(&b.v),
                });
                Ok(out.into_iter().map(|s| (Cow::Borrowed(s.labels), s.v)).collect())
            })
        }
        "label_replace" => label_replace(ev, args, &inputs),
        "label_join" => label_join(ev, args, &inputs),
        "histogram_quantile" => ev.range_eval(&inputs, |v, _| Ok(histogram::quantile_of_buckets(scalar(v, 0), &v[1]))),
        // Native-histogram functions skip float samples, and storage holds floats only: they
        // answer nothing, as Prometheus does for float series.
        "histogram_count" | "histogram_sum" | "histogram_fraction" => ev.range_eval(&inputs, |_, _| Ok(Vec::new())),
        _ => Err(unsupported(&format!("function {name}"))),
    }
}

fn label_replace(ev: &Evaluator, args: &[&Expr], inputs: &[&[Series]]) -> Result<Vec<Series>, QueryError> {
    let (dst, replacement, src, pattern) =
        (string_arg(args, 1)?, string_arg(args, 2)?, string_arg(args, 3)?, string_arg(args, 4)?);
    let re = regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|_| QueryError::Execution(format!("invalid regular expression in label_replace(): {pattern}")))?;
    if !is_label_name(dst) {
        return Err(QueryError::Execution(format!("invalid destination label name in label_replace(): {dst}")));
    }
    // Each input series' output labels, computed once.
    let relabeled: Vec<Option<Labels>> = inputs[0]
        .iter()
        .map(|s| {
            let caps = re.captures(label_value(&s.labels, src))?;
            let mut value = String::new();
            caps.expand(replacement, &mut value);
            let mut labels = s.labels.clone();
            set_label(&mut labels, dst, "");
            set_label(&mut labels, dst, &value);
            Some(labels)
        })
        .collect();
    ev.range_eval(inputs, |v, _| {
        Ok(v[0]
            .iter()
            .map(|s| match &relabeled[s.series] {
                Some(l) => (Cow::Owned(l.clone()), s.v),
                None => (Cow::Borrowed(s.labels), s.v),
            })
            .collect())
    })
}

fn label_join(ev: &Evaluator, args: &[&Expr], inputs: &[&[Series]]) -> Result<Vec<Series>, QueryError> {
    let (dst, separator) = (string_arg(args, 1)?, string_arg(args, 2)?);
    let mut sources = Vec::new();
    for i in 3..args.len() {
        let src = string_arg(args, i)?;
        if !is_label_name(src) {
            return Err(QueryError::Execution(format!("invalid source label name in label_join(): {src}")));
        }
        sources.push(src);
    }
    if !is_label_name(dst) {
        return Err(QueryError::Execution(format!("invalid destination label name in label_join(): {dst}")));
    }
    let relabeled: Vec<Labels> = inputs[0]
        .iter()
        .map(|s| {
            let joined: Vec<&str> = sources.iter().map(|src| label_value(&s.labels, src)).collect();
            let mut labels = s.labels.clone();
            set_label(&mut labels, dst, &joined.join(separator));
            labels
        })
        .collect();
    ev.range_eval(inputs, |v, _| Ok(v[0].iter().map(|s| (Cow::Owned(relabeled[s.series].clone()), s.v)).collect()))
}
