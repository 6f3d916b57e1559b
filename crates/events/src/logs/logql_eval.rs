//! Running a parsed [`logql`](super::logql) expression over log records.
//!
//! Records are seen through their LogQL labels ([`stream_labels`]): the resource attributes
//! (dots become underscores, as Loki's OTLP ingestion names them), `service_name` and
//! `instance`. Structured metadata (the record's attributes) and `detected_level` are
//! available to label filters, as in Loki 3. Log queries return streams; metric queries
//! evaluate at each step over the window `(t - range, t]`, as Loki does.

use super::logql::{AggOp, Expr, Grouping, LabelExpr, LogQuery, MatchOp, Matcher, MetricExpr, NumOp, RangeFunc, Stage};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::AttrValue;
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// A label name as LogQL allows it: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn attr_text(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.clone(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Float(f) => f.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    }
}

/// The labels that identify a record's stream.
pub fn stream_labels(r: &LogRecord) -> Labels {
    let mut l: Labels = r.resource.iter().map(|kv| (sanitize(&kv.key), attr_text(&kv.value))).collect();
    if !r.service.is_empty() {
        l.entry("service_name".into()).or_insert_with(|| r.service.clone());
    }
    if !r.instance.is_empty() {
        l.entry("instance".into()).or_insert_with(|| r.instance.clone());
    }
    l
}

/// Whether the stream selector accepts these labels.
pub fn selects(selector: &[Matcher], labels: &Labels) -> bool {
    selector.iter().all(|m| matcher_ok(m, labels.get(&m.name).map(String::as_str).unwrap_or("")))
}

fn matcher_ok(m: &Matcher, v: &str) -> bool {
    match m.op {
        MatchOp::Eq => v == m.value,
        MatchOp::Ne => v != m.value,
        MatchOp::Re => m.regex.as_ref().is_some_and(|r| r.is_match(v)),
        MatchOp::NotRe => !m.regex.as_ref().is_some_and(|r| r.is_match(v)),
    }
}

/// Runs a log query's selector and stages on one record: its final labels and line, or
/// `None` when it is filtered out.
pub fn run_pipeline(q: &LogQuery, r: &LogRecord) -> Option<(Labels, String)> {
    let stream = stream_labels(r);
    if !selects(&q.selector, &stream) {
        return None;
    }
    let mut labels = stream;
    for kv in &r.attributes {
        labels.entry(sanitize(&kv.key)).or_insert_with(|| attr_text(&kv.value));
    }
    if r.severity != Severity::UNSPECIFIED {
        labels.entry("detected_level".into()).or_insert_with(|| r.severity.name().to_ascii_lowercase());
    }
    let mut line = r.body.clone();
    for st in &q.stages {
        match st {
            Stage::LineFilter { op, text, regex } => {
                let ok = match op {
                    MatchOp::Eq => line.contains(text.as_str()),
                    MatchOp::Ne => !line.contains(text.as_str()),
                    MatchOp::Re => regex.as_ref().is_some_and(|re| re.is_match(&line)),
                    MatchOp::NotRe => !regex.as_ref().is_some_and(|re| re.is_match(&line)),
                };
                if !ok {
                    return None;
                }
            }
            Stage::Json(fields) => json_stage(&line, fields, &mut labels),
            Stage::Logfmt => logfmt_stage(&line, &mut labels),
            Stage::LineFormat(t) => line = line_format(t, &labels),
            Stage::LabelFilter(e) => {
                if !label_ok(e, &labels) {
                    return None;
                }
            }
            Stage::Drop(names) => names.iter().for_each(|n| {
                labels.remove(n);
            }),
            Stage::Keep(names) => labels.retain(|k, _| names.contains(k)),
        }
    }
    Some((labels, line))
}

fn json_stage(line: &str, fields: &[(String, String)], labels: &mut Labels) {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line) else {
        labels.insert("__error__".into(), "JSONParserErr".into());
        return;
    };
    if fields.is_empty() {
        fn walk(prefix: &str, obj: &serde_json::Map<String, serde_json::Value>, labels: &mut Labels, depth: usize) {
            for (k, v) in obj {
                let key = if prefix.is_empty() { sanitize(k) } else { format!("{prefix}_{}", sanitize(k)) };
                match v {
                    serde_json::Value::Object(m) if depth < 8 => walk(&key, m, labels, depth + 1),
                    serde_json::Value::Null => {}
                    serde_json::Value::String(s) => {
                        labels.insert(key, s.clone());
                    }
                    other => {
                        labels.insert(key, other.to_string());
                    }
                }
            }
        }
        walk("", &obj, labels, 0);
    } else {
        for (name, path) in fields {
            let mut cur = Some(&serde_json::Value::Object(obj.clone()));
            for part in path.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            if let Some(v) = cur {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                labels.insert(sanitize(name), text);
            }
        }
    }
}

/// `key=value key2="quoted value"` pairs.
pub fn logfmt_pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[ks..i];
        if i >= b.len() || b[i] != b'=' {
            if !key.is_empty() {
                out.push((key.to_owned(), String::new()));
            }
            continue;
        }
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            let mut chars = line[i..].char_indices();
            let mut end = line.len() - i;
            while let Some((j, c)) = chars.next() {
                match c {
                    '"' => {
                        end = j + 1;
                        break;
                    }
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(if n == 'n' { '\n' } else { n });
                        }
                    }
                    c => v.push(c),
                }
            }
            i += end;
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            line[vs..i].to_owned()
        };
        if !key.is_empty() {
            out.push((key.to_owned(), value));
        }
    }
    out
}

fn logfmt_stage(line: &str, labels: &mut Labels) {
    for (k, v) in logfmt_pairs(line) {
        labels.insert(sanitize(&k), v);
    }
}

/// `{{.name}}` and `{{ .name }}` replaced by label values (missing: empty).
fn line_format(t: &str, labels: &Labels) -> String {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = rest[open + 2..open + close].trim();
        if let Some(name) = inner.strip_prefix('.') {
            out.push_str(labels.get(name.trim()).map(String::as_str).unwrap_or(""));
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

fn label_ok(e: &LabelExpr, labels: &Labels) -> bool {
    match e {
        LabelExpr::And(a, b) => label_ok(a, labels) && label_ok(b, labels),
        LabelExpr::Or(a, b) => label_ok(a, labels) || label_ok(b, labels),
        LabelExpr::Str(m) => matcher_ok(m, labels.get(&m.name).map(String::as_str).unwrap_or("")),
        LabelExpr::Num { name, op, value } => {
            let Some(v) = labels.get(name).and_then(|v| number(v)) else { return false };
            match op {
                NumOp::Eq => v == *value,
                NumOp::Ne => v != *value,
                NumOp::Gt => v > *value,
                NumOp::Ge => v >= *value,
                NumOp::Lt => v < *value,
                NumOp::Le => v <= *value,
            }
        }
    }
}

fn number(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().or_else(|| super::logql::go_duration(v).map(|d| d.as_secs_f64()))
}

/// A stream of a log query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub labels: Labels,
    /// (Unix nanoseconds, line), in the order asked for.
    pub entries: Vec<(u64, String)>,
}

/// Runs a log query over `records`; at most `limit` entries in all, newest first unless
/// `forward`.
pub fn log_streams<'a>(
    q: &LogQuery,
    records: impl Iterator<Item = &'a LogRecord>,
    limit: usize,
    forward: bool,
) -> Vec<Stream> {
    let mut hits: Vec<(u64, Labels, String)> =
        records.filter_map(|r| run_pipeline(q, r).map(|(l, line)| (r.unix_nanos, l, line))).collect();
    if forward {
        hits.sort_by_key(|h| h.0);
    } else {
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
    }
    hits.truncate(limit);
    let mut by: BTreeMap<Labels, Vec<(u64, String)>> = BTreeMap::new();
    for (ts, l, line) in hits {
        by.entry(l).or_default().push((ts, line));
    }
    by.into_iter().map(|(labels, entries)| Stream { labels, entries }).collect()
}

/// A metric series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    /// (Unix nanoseconds of the step, value).
    pub points: Vec<(u64, f64)>,
}

/// Evaluates a metric expression at `start, start+step, ... <= end` (nanoseconds).
/// `records` must cover `(start - range, end]` of every range in the expression.
pub fn metric_series(e: &MetricExpr, records: &[LogRecord], start: u64, end: u64, step: u64) -> Vec<Series> {
    let step = step.max(1);
    let steps: Vec<u64> = (0..).map(|i| start + i * step).take_while(|t| *t <= end).take(11_000).collect();
    eval(e, records, &steps)
}

fn eval(e: &MetricExpr, records: &[LogRecord], steps: &[u64]) -> Vec<Series> {
    match e {
        MetricExpr::Scalar(v) => {
            vec![Series { labels: Labels::new(), points: steps.iter().map(|t| (*t, *v)).collect() }]
        }
        MetricExpr::Range { func, query, range } => range_series(*func, query, range.as_nanos() as u64, records, steps),
        MetricExpr::Aggregate { op, param, grouping, inner } => {
            aggregate(*op, *param, grouping, eval(inner, records, steps))
        }
        MetricExpr::Binary { op, left, right } => {
            let (l, r) = (eval(left, records, steps), eval(right, records, steps));
            binary(*op, l, r)
        }
    }
}

fn range_series(func: RangeFunc, q: &LogQuery, range: u64, records: &[LogRecord], steps: &[u64]) -> Vec<Series> {
    let mut acc: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    let (Some(first), Some(last)) = (steps.first(), steps.last()) else { return Vec::new() };
    let step = if steps.len() > 1 { steps[1] - steps[0] } else { 1 };
    for r in records {
        let ts = r.unix_nanos;
        if ts + range <= *first || ts > *last {
            continue;
        }
        let Some((mut labels, line)) = run_pipeline(q, r) else { continue };
        labels.remove("__error__");
        let v = match func {
            RangeFunc::CountOverTime | RangeFunc::Rate => 1.0,
            RangeFunc::BytesOverTime | RangeFunc::BytesRate => line.len() as f64,
        };
        let slots = acc.entry(labels).or_insert_with(|| vec![0.0; steps.len()]);
        // Steps t with t - range < ts <= t.
        let lo = if ts <= *first { 0 } else { ((ts - first) as usize).div_ceil(step as usize) };
        for (i, t) in steps.iter().enumerate().skip(lo) {
            if *t >= ts + range {
                break;
            }
            slots[i] += v;
        }
    }
    let secs = range as f64 / 1e9;
    acc.into_iter()
        .map(|(labels, vals)| Series {
            labels,
            points: steps
                .iter()
                .zip(vals)
                .filter(|(_, v)| *v > 0.0)
                .map(|(t, v)| (*t, if matches!(func, RangeFunc::Rate | RangeFunc::BytesRate) { v / secs } else { v }))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

fn aggregate(op: AggOp, param: Option<f64>, grouping: &Grouping, input: Vec<Series>) -> Vec<Series> {
    let key = |l: &Labels| -> Labels {
        match grouping {
            Grouping::None => Labels::new(),
            Grouping::By(names) => {
                l.iter().filter(|(k, _)| names.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            Grouping::Without(names) => {
                l.iter().filter(|(k, _)| !names.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
            }
        }
    };
    if matches!(op, AggOp::Topk | AggOp::Bottomk) {
        // Per group and step, keep the k largest (smallest) series values.
        let k = param.unwrap_or(1.0) as usize;
        let mut groups: BTreeMap<Labels, Vec<&Series>> = BTreeMap::new();
        for s in &input {
            groups.entry(key(&s.labels)).or_default().push(s);
        }
        let mut keep: BTreeMap<Labels, Vec<(u64, f64)>> = BTreeMap::new();
        for members in groups.values() {
            let mut at: BTreeMap<u64, Vec<(f64, &Labels)>> = BTreeMap::new();
            for s in members {
                for (t, v) in &s.points {
                    at.entry(*t).or_default().push((*v, &s.labels));
                }
            }
            for (t, mut vals) in at {
                vals.sort_by(|a, b| if op == AggOp::Topk { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) });
                for (v, l) in vals.into_iter().take(k) {
                    keep.entry(l.clone()).or_default().push((t, v));
                }
            }
        }
        return keep.into_iter().map(|(labels, points)| Series { labels, points }).collect();
    }
    let mut groups: BTreeMap<Labels, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for s in input {
        let g = groups.entry(key(&s.labels)).or_default();
        for (t, v) in s.points {
            g.entry(t).or_default().push(v);
        }
    }
    groups
        .into_iter()
        .map(|(labels, at)| Series {
            labels,
            points: at
                .into_iter()
                .map(|(t, vs)| {
                    let n = vs.len() as f64;
                    let v = match op {
                        AggOp::Sum => vs.iter().sum(),
                        AggOp::Count => n,
                        AggOp::Avg => vs.iter().sum::<f64>() / n,
                        AggOp::Min => vs.iter().copied().fold(f64::INFINITY, f64::min),
                        AggOp::Max => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        AggOp::Topk | AggOp::Bottomk => 0.0,
                    };
                    (t, v)
                })
                .collect(),
        })
        .collect()
}

/// Arithmetic where at least one side is a scalar (the only form LogQL metric queries here
/// need); two vectors are matched on identical label sets.
fn binary(op: char, l: Vec<Series>, r: Vec<Series>) -> Vec<Series> {
    let f = |a: f64, b: f64| match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        _ => a / b,
    };
    let scalar = |s: &[Series]| s.len() == 1 && s[0].labels.is_empty();
    if scalar(&r) {
        let rv: BTreeMap<u64, f64> = r[0].points.iter().copied().collect();
        return l
            .into_iter()
            .map(|s| Series {
                points: s.points.iter().filter_map(|(t, v)| rv.get(t).map(|x| (*t, f(*v, *x)))).collect(),
                labels: s.labels,
            })
            .collect();
    }
    if scalar(&l) {
        let lv: BTreeMap<u64, f64> = l[0].points.iter().copied().collect();
        return r
            .into_iter()
            .map(|s| Series {
                points: s.points.iter().filter_map(|(t, v)| lv.get(t).map(|x| (*t, f(*x, *v)))).collect(),
                labels: s.labels,
            })
            .collect();
    }
    let rm: BTreeMap<Labels, BTreeMap<u64, f64>> =
        r.into_iter().map(|s| (s.labels, s.points.into_iter().collect())).collect();
    l.into_iter()
        .filter_map(|s| {
            let other = rm.get(&s.labels)?;
            Some(Series {
                points: s.points.iter().filter_map(|(t, v)| other.get(t).map(|x| (*t, f(*v, *x)))).collect(),
                labels: s.labels,
            })
        })
        .collect()
}

/// Whether an expression is a log query (answers streams) or a metric query.
pub fn is_log(e: &Expr) -> bool {
    matches!(e, Expr::Log(_))
}
