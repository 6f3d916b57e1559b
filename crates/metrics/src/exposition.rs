//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, as scrape targets
//! serve them: `# HELP`, `# TYPE` (and OpenMetrics' `# UNIT`, `# EOF`), and samples
//! `name{label="value",...} value [timestamp]`, with escapes in label values and help text,
//! `NaN`, `+Inf`, `-Inf`, and OpenMetrics exemplars (` # {trace_id="..."} 1 1.5`), which are
//! kept. A malformed line is an error naming its line number; limits bound what one scrape
//! may hold.

use std::collections::HashMap;

/// A metric family's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Untyped,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds (Prometheus text) or seconds scaled to milliseconds (OpenMetrics).
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

/// An OpenMetrics exemplar: labels (a trace id, usually), value, optional time.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// A parsed exposition.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: HashMap<String, MetricType>,
    pub help: HashMap<String, String>,
    pub units: HashMap<String, String>,
}

/// What went wrong, on which line (from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Limits of one parse.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_samples: usize,
    pub max_labels: usize,
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_samples: 1_000_000, max_labels: 64, max_line_bytes: 64 * 1024 }
    }
}

/// Parses `text`; `openmetrics` selects OpenMetrics rules (timestamps in seconds, `# EOF`).
pub fn parse(text: &str, openmetrics: bool, limits: Limits) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut saw_eof = false;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let err = |m: &str| ParseError { line: n, message: m.to_owned() };
        if saw_eof {
            if line.is_empty() {
                continue;
            }
            return Err(err("content after # EOF"));
        }
        if line.len() > limits.max_line_bytes {
            return Err(err(&format!("the line is longer than {} bytes", limits.max_line_bytes)));
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            if rest == "EOF" {
                saw_eof = true;
                continue;
            }
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            let arg = parts.next().unwrap_or("");
            match kind {
                "TYPE" => {
                    if !valid_metric_name(name) {
                        return Err(err("# TYPE needs a metric name"));
                    }
                    let t = match arg.trim() {
                        "counter" => MetricType::Counter,
                        "gauge" => MetricType::Gauge,
                        "histogram" => MetricType::Histogram,
                        "gaugehistogram" => MetricType::GaugeHistogram,
                        "summary" => MetricType::Summary,
                        "info" => MetricType::Info,
                        "stateset" => MetricType::StateSet,
                        "untyped" | "unknown" => MetricType::Untyped,
                        other => return Err(err(&format!("unknown metric type `{other}`"))),
                    };
                    out.types.insert(name.to_owned(), t);
                }
                "HELP" => {
                    out.help.insert(name.to_owned(), unescape_help(arg));
                }
                "UNIT" => {
                    out.units.insert(name.to_owned(), arg.trim().to_owned());
                }
                // Other comments are allowed in the text format.
                _ => {}
            }
            continue;
        }
        if out.samples.len() >= limits.max_samples {
            return Err(err(&format!("more than {} samples", limits.max_samples)));
        }
        out.samples.push(sample(line, openmetrics, limits).map_err(|m| err(&m))?);
    }
    if openmetrics && !saw_eof {
        return Err(ParseError { line: text.lines().count(), message: "OpenMetrics text must end with # EOF".into() });
    }
    Ok(out)
}

fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn sample(line: &str, openmetrics: bool, limits: Limits) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("`{name}` is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let (l, after) = label_set(&rest[1..], limits.max_labels)?;
        labels = l;
        rest = after;
    }
    let (main, exemplar) = match rest.find(" # ") {
        Some(i) if openmetrics || rest[i + 3..].trim_start().starts_with('{') => (&rest[..i], Some(&rest[i + 3..])),
        _ => (rest, None),
    };
    let mut fields = main.split_whitespace();
    let value = parse_value(fields.next().ok_or("a sample needs a value")?)?;
    let timestamp_ms = fields.next().map(|t| parse_timestamp(t, openmetrics)).transpose()?;
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    let exemplar = match exemplar {
        None => None,
        Some(e) => {
            let e = e.trim_start();
            let e = e.strip_prefix('{').ok_or("an exemplar starts with {")?;
            let (labels, after) = label_set(e, limits.max_labels)?;
            let mut f = after.split_whitespace();
            let value = parse_value(f.next().ok_or("an exemplar needs a value")?)?;
            let timestamp_ms = f.next().map(|t| parse_timestamp(t, true)).transpose()?;
            Some(Exemplar { labels, value, timestamp_ms })
        }
    };
    Ok(Sample { name: name.to_owned(), labels, value, timestamp_ms, exemplar })
}

/// Label pairs in the order written.
type Labels = Vec<(String, String)>;

/// Parses `a="x",b="y"}` (after the opening brace); returns the pairs and what follows.
fn label_set(mut s: &str, max: usize) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((out, after));
        }
        let eq = s.find('=').ok_or("expected label=\"value\"")?;
        let name = s[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("`{name}` is not a label name"));
        }
        s = s[eq + 1..].trim_start().strip_prefix('"').ok_or("label values are quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("an unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if out.iter().any(|(n, _): &(String, String)| n == name) {
            return Err(format!("label `{name}` appears twice"));
        }
        out.push((name.to_owned(), value));
        if out.len() > max {
            return Err(format!("more than {max} labels"));
        }
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" | "nan" => Ok(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => v.parse::<f64>().map_err(|_| format!("`{v}` is not a number")),
    }
}

fn parse_timestamp(t: &str, openmetrics: bool) -> Result<i64, String> {
    if openmetrics {
        let secs: f64 = t.parse().map_err(|_| format!("`{t}` is not a timestamp"))?;
        if !secs.is_finite() || secs.abs() > 9.2e15 {
            return Err(format!("timestamp `{t}` is out of range"));
        }
        Ok((secs * 1000.0).round() as i64)
    } else {
        t.parse::<i64>().map_err(|_| format!("`{t}` is not a timestamp in milliseconds"))
    }
}

#[cfg(test)]
mod tests;
