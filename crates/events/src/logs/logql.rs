//! LogQL, the query language of Loki's API, as far as Grafana's Loki data source needs it:
//!
//! - log queries: a stream selector `{app="x", env=~"prod|dev", level!="debug"}`, line
//!   filters `|= != |~ !~`, parsers `| json` and `| logfmt` (all fields, or `| json a="b.c"`),
//!   `| line_format "{{.field}}"`, label filters (`| status >= 500`, `| level="error" or
//!   level="warn"`, `| duration > 250ms`), and `| drop a, b` / `| keep a, b`;
//! - metric queries: `count_over_time`, `rate`, `bytes_over_time`, `bytes_rate` over
//!   `[range]`, under `sum`, `count`, `avg`, `min`, `max`, `topk`, `bottomk` with `by (...)`
//!   or `without (...)`, and scalar literals with `+ - * /` (Grafana's health check
//!   `vector(1)+vector(1)`).
//!
//! Parsing only; [`super::logql_eval`] runs a query over records.

use regex::Regex;
use std::time::Duration;

/// A parsed LogQL expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Log(LogQuery),
    Metric(MetricExpr),
}

/// `{selector} | stages...`
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub selector: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

/// A label matcher of the stream selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    pub regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// One pipeline stage.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"`.
    LineFilter {
        op: MatchOp,
        text: String,
        regex: Option<Regex>,
    },
    /// `| json` (all fields) or `| json a="path.to.a", b`.
    Json(Vec<(String, String)>),
    Logfmt,
    /// `| line_format "{{.a}} {{.b}}"`.
    LineFormat(String),
    LabelFilter(LabelExpr),
    Drop(Vec<String>),
    Keep(Vec<String>),
}

/// A label filter: comparisons joined by `and`/`,` and `or`.
#[derive(Debug, Clone)]
pub enum LabelExpr {
    And(Box<LabelExpr>, Box<LabelExpr>),
    Or(Box<LabelExpr>, Box<LabelExpr>),
    Str(Matcher),
    Num { name: String, op: NumOp, value: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A metric expression.
#[derive(Debug, Clone)]
pub enum MetricExpr {
    Range { func: RangeFunc, query: LogQuery, range: Duration },
    Aggregate { op: AggOp, param: Option<f64>, grouping: Grouping, inner: Box<MetricExpr> },
    Scalar(f64),
    Binary { op: char, left: Box<MetricExpr>, right: Box<MetricExpr> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFunc {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Avg,
    Min,
    Max,
    Topk,
    Bottomk,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Grouping {
    #[default]
    None,
    By(Vec<String>),
    Without(Vec<String>),
}

/// A LogQL parse error with its byte offset (Loki reports "parse error at line 1, col N").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line 1, col {}: {message}", offset + 1)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

/// Longest query accepted.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
const MAX_DEPTH: usize = 32;

pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(ParseError { offset: 0, message: format!("queries are limited to {MAX_QUERY_BYTES} bytes") });
    }
    let mut p = P { s: src, i: 0, depth: 0 };
    p.ws();
    let e = if p.peek() == Some('{') { Expr::Log(p.log_query()?) } else { Expr::Metric(p.metric(0)?) };
    p.ws();
    if p.i < src.len() {
        return p.err("unexpected input after the query");
    }
    Ok(e)
}

struct P<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

impl P<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn err<T>(&self, m: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { offset: self.i, message: m.into() })
    }
    fn ws(&mut self) {
        let t = self.rest().trim_start();
        self.i = self.s.len() - t.len();
    }
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.rest().starts_with(tok) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, tok: &str) -> Result<(), ParseError> {
        if self.eat(tok) { Ok(()) } else { self.err(format!("expected `{tok}`")) }
    }
    fn ident(&mut self) -> Result<String, ParseError> {
        self.ws();
        let n = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(self.rest().len());
        if n == 0 || self.rest().starts_with(|c: char| c.is_ascii_digit()) {
            return self.err("expected a name");
        }
        let id = self.rest()[..n].to_owned();
        self.i += n;
        Ok(id)
    }
    /// A double-quoted (with escapes) or back-quoted (raw) string.
    fn string(&mut self) -> Result<String, ParseError> {
        self.ws();
        let start = self.i;
        match self.peek() {
            Some('`') => {
                let end = self.rest()[1..]
                    .find('`')
                    .ok_or(ParseError { offset: start, message: "unterminated raw string".into() })?;
                let v = self.rest()[1..1 + end].to_owned();
                self.i += end + 2;
                Ok(v)
            }
            Some('"') => {
                let mut out = String::new();
                let mut chars = self.rest()[1..].char_indices();
                loop {
                    match chars.next() {
                        None => return Err(ParseError { offset: start, message: "unterminated string".into() }),
                        Some((j, '"')) => {
                            self.i += j + 2;
                            return Ok(out);
                        }
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => out.push('\n'),
                            Some((_, 't')) => out.push('\t'),
                            Some((_, c)) => out.push(c),
                            None => return Err(ParseError { offset: start, message: "unterminated string".into() }),
                        },
                        Some((_, c)) => out.push(c),
                    }
                }
            }
            _ => self.err("expected a quoted string"),
        }
    }
    fn number(&mut self) -> Result<f64, ParseError> {
        self.ws();
        let n = self
            .rest()
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
            .unwrap_or(self.rest().len());
        let v = self.rest()[..n]
            .parse::<f64>()
            .map_err(|_| ParseError { offset: self.i, message: "expected a number".into() })?;
        self.i += n;
        Ok(v)
    }

    fn log_query(&mut self) -> Result<LogQuery, ParseError> {
        self.expect("{")?;
        let mut selector = Vec::new();
        loop {
            if self.eat("}") {
                break;
            }
            let name = self.ident()?;
            let op = self.match_op(&["=~", "!~", "!=", "="])?;
            let value = self.string()?;
            selector.push(matcher(name, op, value, self.i)?);
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        if selector.is_empty() || selector.iter().all(matches_empty) {
            return self.err("queries require at least one label matcher that does not match the empty string");
        }
        let mut stages = Vec::new();
        loop {
            self.ws();
            let line_op = if self.rest().starts_with("|=") {
                Some(MatchOp::Eq)
            } else if self.rest().starts_with("!=") {
                Some(MatchOp::Ne)
            } else if self.rest().starts_with("|~") {
                Some(MatchOp::Re)
            } else if self.rest().starts_with("!~") {
                Some(MatchOp::NotRe)
            } else {
                None
            };
            if let Some(op) = line_op {
                self.i += 2;
                let at = self.i;
                let text = self.string()?;
                let regex =
                    if matches!(op, MatchOp::Re | MatchOp::NotRe) { Some(compile(&text, false, at)?) } else { None };
                stages.push(Stage::LineFilter { op, text, regex });
                continue;
            }
            if !self.rest().starts_with('|') {
                break;
            }
            self.i += 1;
            self.ws();
            let save = self.i;
            let word = self.ident().unwrap_or_default();
            match word.as_str() {
                "json" => {
                    let mut fields = Vec::new();
                    loop {
                        let before = self.i;
                        let Ok(name) = self.ident() else {
                            self.i = before;
                            break;
                        };
                        let path = if self.eat("=") { self.string()? } else { name.clone() };
                        fields.push((name, path));
                        if !self.eat(",") {
                            break;
                        }
                    }
                    stages.push(Stage::Json(fields));
                }
                "logfmt" => stages.push(Stage::Logfmt),
                "line_format" => stages.push(Stage::LineFormat(self.string()?)),
                "drop" | "keep" => {
                    let mut names = vec![self.ident()?];
                    while self.eat(",") {
                        names.push(self.ident()?);
                    }
                    stages.push(if word == "drop" { Stage::Drop(names) } else { Stage::Keep(names) });
                }
                "" => return self.err("expected a parser, a filter or a label filter after `|`"),
                _ => {
                    self.i = save;
                    stages.push(Stage::LabelFilter(self.label_or()?));
                }
            }
        }
        Ok(LogQuery { selector, stages })
    }

    fn match_op(&mut self, ops: &[&str]) -> Result<MatchOp, ParseError> {
        self.ws();
        for op in ops {
            if self.rest().starts_with(op) {
                self.i += op.len();
                return Ok(match *op {
                    "=~" => MatchOp::Re,
                    "!~" => MatchOp::NotRe,
                    "!=" => MatchOp::Ne,
                    _ => MatchOp::Eq,
                });
            }
        }
        self.err("expected one of = != =~ !~")
    }

    fn label_or(&mut self) -> Result<LabelExpr, ParseError> {
        let mut left = self.label_and()?;
        while self.eat_word("or") {
            let right = self.label_and()?;
            left = LabelExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn label_and(&mut self) -> Result<LabelExpr, ParseError> {
        let mut left = self.label_cmp()?;
        while self.eat_word("and") || self.eat(",") {
            let right = self.label_cmp()?;
            left = LabelExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        self.ws();
        let r = self.rest();
        if r.starts_with(w) && !r[w.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            self.i += w.len();
            true
        } else {
            false
        }
    }

    fn label_cmp(&mut self) -> Result<LabelExpr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("the filter nests too deeply");
        }
        let r = if self.eat("(") {
            let e = self.label_or()?;
            self.expect(")")?;
            Ok(e)
        } else {
            let name = self.ident()?;
            self.ws();
            let ops: [(&str, Option<NumOp>, Option<MatchOp>); 8] = [
                (">=", Some(NumOp::Ge), None),
                ("<=", Some(NumOp::Le), None),
                ("==", Some(NumOp::Eq), None),
                ("=~", None, Some(MatchOp::Re)),
                ("!~", None, Some(MatchOp::NotRe)),
                ("!=", Some(NumOp::Ne), Some(MatchOp::Ne)),
                (">", Some(NumOp::Gt), None),
                ("<", Some(NumOp::Lt), None),
            ];
            let found = ops.iter().find(|(t, _, _)| self.rest().starts_with(t)).copied();
            let (tok, num, str_op) = match found {
                Some(x) => x,
                None if self.rest().starts_with('=') => ("=", Some(NumOp::Eq), Some(MatchOp::Eq)),
                None => return self.err(format!("expected a comparison after `{name}`")),
            };
            self.i += tok.len();
            self.ws();
            if matches!(self.peek(), Some('"') | Some('`')) {
                let Some(op) = str_op else { return self.err("a string compares with = != =~ !~") };
                let at = self.i;
                let value = self.string()?;
                Ok(LabelExpr::Str(matcher(name, op, value, at)?))
            } else {
                let Some(op) = num else { return self.err("a regex needs a quoted string") };
                let value = self.num_or_duration()?;
                Ok(LabelExpr::Num { name, op, value })
            }
        };
        self.depth -= 1;
        r
    }

    /// A number, a duration (`250ms`, `1.5s`: compared in seconds) or bytes (`10KB`).
    fn num_or_duration(&mut self) -> Result<f64, ParseError> {
        self.ws();
        let n =
            self.rest().find(|c: char| c.is_whitespace() || matches!(c, ')' | ',' | '|')).unwrap_or(self.rest().len());
        let word = &self.rest()[..n];
        let v = if let Ok(v) = word.parse::<f64>() {
            v
        } else if let Some(d) = go_duration(word) {
            d.as_secs_f64()
        } else if let Some(b) = bytes(word) {
            b
        } else {
            return self.err(format!("`{word}` is not a number, a duration or a byte size"));
        };
        self.i += n;
        Ok(v)
    }

    fn metric(&mut self, depth: usize) -> Result<MetricExpr, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("the query nests too deeply");
        }
        let mut left = self.metric_term(depth)?;
        loop {
            self.ws();
            let Some(op) = self.peek().filter(|c| matches!(c, '+' | '-' | '*' | '/')) else { break };
            self.i += 1;
            let right = self.metric_term(depth + 1)?;
            left = MetricExpr::Binary { op, left: Box::new(left), right: Box::new(right) };
        }
        Ok(left)
    }

    fn metric_term(&mut self, depth: usize) -> Result<MetricExpr, ParseError> {
        self.ws();
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Ok(MetricExpr::Scalar(self.number()?));
        }
        if self.eat("(") {
            let e = self.metric(depth + 1)?;
            self.expect(")")?;
            return Ok(e);
        }
        let name = self.ident()?;
        let range = match name.as_str() {
            "count_over_time" => Some(RangeFunc::CountOverTime),
            "rate" => Some(RangeFunc::Rate),
            "bytes_over_time" => Some(RangeFunc::BytesOverTime),
            "bytes_rate" => Some(RangeFunc::BytesRate),
            _ => None,
        };
        if let Some(func) = range {
            self.expect("(")?;
            let query = self.log_query()?;
            self.expect("[")?;
            self.ws();
            let end = self.rest().find(']').ok_or(ParseError { offset: self.i, message: "expected `]`".into() })?;
            let text = self.rest()[..end].trim().to_owned();
            let range = go_duration(&text)
                .filter(|d| !d.is_zero())
                .ok_or(ParseError { offset: self.i, message: format!("`{text}` is not a range like 5m") })?;
            self.i += end + 1;
            self.expect(")")?;
            return Ok(MetricExpr::Range { func, query, range });
        }
        if name == "vector" {
            self.expect("(")?;
            let v = self.number()?;
            self.expect(")")?;
            return Ok(MetricExpr::Scalar(v));
        }
        let op = match name.as_str() {
            "sum" => AggOp::Sum,
            "count" => AggOp::Count,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            other => return self.err(format!("unknown function `{other}`")),
        };
        let mut grouping = self.grouping()?;
        self.expect("(")?;
        let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
            let k = self.number()?;
            if k < 1.0 || k.fract() != 0.0 {
                return self.err("topk and bottomk take a whole number k >= 1");
            }
            self.expect(",")?;
            Some(k)
        } else {
            None
        };
        let inner = self.metric(depth + 1)?;
        self.expect(")")?;
        if grouping == Grouping::None {
            grouping = self.grouping()?;
        }
        Ok(MetricExpr::Aggregate { op, param, grouping, inner: Box::new(inner) })
    }

    fn grouping(&mut self) -> Result<Grouping, ParseError> {
        let by = if self.eat_word("by") {
            true
        } else if self.eat_word("without") {
            false
        } else {
            return Ok(Grouping::None);
        };
        self.expect("(")?;
        let mut names = Vec::new();
        if !self.eat(")") {
            loop {
                names.push(self.ident()?);
                if !self.eat(",") {
                    self.expect(")")?;
                    break;
                }
            }
        }
        Ok(if by { Grouping::By(names) } else { Grouping::Without(names) })
    }
}

fn matcher(name: String, op: MatchOp, value: String, at: usize) -> Result<Matcher, ParseError> {
    let regex = match op {
        MatchOp::Re | MatchOp::NotRe => Some(compile(&value, true, at)?),
        _ => None,
    };
    Ok(Matcher { name, op, value, regex })
}

fn compile(re: &str, anchored: bool, at: usize) -> Result<Regex, ParseError> {
    let src = if anchored { format!("^(?:{re})$") } else { re.to_owned() };
    regex::RegexBuilder::new(&src)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ParseError { offset: at, message: format!("invalid regular expression: {e}") })
}

fn matches_empty(m: &Matcher) -> bool {
    match m.op {
        MatchOp::Eq => m.value.is_empty(),
        MatchOp::Ne => !m.value.is_empty(),
        MatchOp::Re => m.regex.as_ref().is_some_and(|r| r.is_match("")),
        MatchOp::NotRe => !m.regex.as_ref().is_some_and(|r| r.is_match("")),
    }
}

pub use signalbox_core::time::go_duration;

fn bytes(s: &str) -> Option<f64> {
    let n = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let v: f64 = s[..n].parse().ok()?;
    let mult = match s[n..].to_ascii_uppercase().as_str() {
        "B" => 1.0,
        "KB" => 1e3,
        "KIB" => 1024.0,
        "MB" => 1e6,
        "MIB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(v * mult)
}

#[cfg(test)]
mod tests;
