//! The log search language a person types (docs/log-queries.md):
//!
//! ```text
//! timeout                      a word anywhere in the message (case-insensitive)
//! "connection reset"           a phrase
//! time*                        a word by prefix (`*` and `?` wildcards)
//! service:checkout             a field: service, instance, level, trace_id, span_id,
//!                              body, or any attribute or resource attribute by name
//! status:>=500  level:>=warn   comparisons (numbers, and severities by rank)
//! path:~"/api/v[0-9]+/.*"      a regular expression on the whole value
//! user_id:*                    the field exists
//! a AND b, a b, a OR b, NOT a, -a, ( ... )
//! ```
//!
//! After the filter, one aggregation may follow a `|`: `| count by service`,
//! `| top 10 user_id`, `| stats count, avg(latency_ms), p50(latency_ms), p99(latency_ms) by
//! route`. A parse error names the byte offset and what was expected.

use regex::Regex;

/// A parsed query: the filter and an optional aggregation.
#[derive(Debug, Clone)]
pub struct Query {
    pub filter: Expr,
    pub aggregation: Option<Aggregation>,
}

/// A boolean filter over records.
#[derive(Debug, Clone)]
pub enum Expr {
    All,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A free-text word or wildcard pattern in the body.
    Word(Pattern),
    /// A phrase in the body (case-insensitive substring on word boundaries).
    Phrase(String),
    Field {
        name: String,
        test: Test,
    },
}

/// A test of one field's value.
#[derive(Debug, Clone)]
pub enum Test {
    /// Equal (case-insensitive for text), or matching a wildcard pattern.
    Is(Pattern),
    Phrase(String),
    Cmp(CmpOp, Operand),
    Regex(RegexBox),
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// The right side of a comparison: a number, or a word (compared as a severity for `level`,
/// else as text).
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Num(f64),
    Text(String),
}

/// A word, lower-cased, with `*`/`?` wildcards compiled when present.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub text: String,
    pub wildcard: Option<RegexBox>,
}

/// A compiled regex (kept with its source for display and equality in tests).
#[derive(Debug, Clone)]
pub struct RegexBox(pub Regex);

/// What to compute over the matching records.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregation {
    /// Matches per time bucket, optionally split by a field.
    Count { by: Option<String> },
    /// The most frequent values of a field.
    Top { n: usize, field: String },
    /// Statistics of numeric fields, optionally by a field.
    Stats { stats: Vec<Stat>, by: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stat {
    Count,
    Avg(String),
    Min(String),
    Max(String),
    Sum(String),
    Quantile(f64, String),
}

/// A query that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at offset {offset}: {message}")]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

/// Longest query accepted (a bound on parser work and regex compilation).
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Deepest nesting of parentheses and NOTs.
const MAX_DEPTH: usize = 64;

/// Parses a query.
pub fn parse(src: &str) -> Result<Query, ParseError> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            offset: MAX_QUERY_BYTES,
            message: format!("queries are limited to {MAX_QUERY_BYTES} bytes"),
        });
    }
    let (filter_src, agg_src) = split_pipe(src);
    let mut p = Parser { toks: lex(filter_src)?, pos: 0, depth: 0 };
    let filter = if p.toks.is_empty() { Expr::All } else { p.or()? };
    if let Some(t) = p.toks.get(p.pos) {
        return Err(ParseError { offset: t.at, message: format!("unexpected `{}`", t.text(filter_src)) });
    }
    let aggregation = match agg_src {
        Some((at, a)) => Some(parse_aggregation(a).map_err(|m| ParseError { offset: at, message: m })?),
        None => None,
    };
    Ok(Query { filter, aggregation })
}

/// Splits at the first `|` outside quotes.
fn split_pipe(src: &str) -> (&str, Option<(usize, &str)>) {
    let mut in_q = false;
    let mut esc = false;
    for (i, c) in src.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_q => esc = true,
            '"' => in_q = !in_q,
            '|' if !in_q => return (&src[..i], Some((i + 1, &src[i + 1..]))),
            _ => {}
        }
    }
    (src, None)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Minus,
    /// `name:` — a field prefix; the value follows.
    Field(String),
    Word(String),
    Quoted(String),
    Op(CmpOp),
    Tilde,
}

#[derive(Debug, Clone)]
struct Lexed {
    tok: Tok,
    at: usize,
    end: usize,
}

impl Lexed {
    fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.at..self.end).unwrap_or("")
    }
}

fn lex(src: &str) -> Result<Vec<Lexed>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let push = |out: &mut Vec<Lexed>, tok, end| out.push(Lexed { tok, at: start, end });
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                i += 1;
                push(&mut out, Tok::LParen, i);
            }
            b')' => {
                i += 1;
                push(&mut out, Tok::RParen, i);
            }
            b'~' => {
                i += 1;
                push(&mut out, Tok::Tilde, i);
            }
            b'>' | b'<' => {
                let eq = b.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    (b'>', true) => CmpOp::Ge,
                    (b'>', false) => CmpOp::Gt,
                    (_, true) => CmpOp::Le,
                    _ => CmpOp::Lt,
                };
                i += if eq { 2 } else { 1 };
                push(&mut out, Tok::Op(op), i);
            }
            b'"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(ParseError { offset: start, message: "unterminated quote".into() }),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if i + 1 < b.len() => {
                            let ch = src[i + 1..].chars().next().unwrap_or('\\');
                            s.push(ch);
                            i += 1 + ch.len_utf8();
                        }
                        Some(_) => {
                            let ch = src[i..].chars().next().unwrap_or(' ');
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                push(&mut out, Tok::Quoted(s), i);
            }
            b'-' if out.last().is_none_or(|l| !matches!(l.tok, Tok::Field(_) | Tok::Op(_))) => {
                i += 1;
                push(&mut out, Tok::Minus, i);
            }
            _ => {
                // A bare word, up to a space, a paren or a quote; `name:` ends a field prefix.
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b'"') {
                    if b[i] == b':' {
                        break;
                    }
                    i += 1;
                }
                let word = &src[start..i];
                if b.get(i) == Some(&b':') && !word.is_empty() {
                    i += 1;
                    push(&mut out, Tok::Field(word.to_owned()), i);
                    continue;
                }
                if word.is_empty() {
                    // A lone `:`.
                    return Err(ParseError { offset: start, message: "a `:` needs a field name before it".into() });
                }
                let tok = match word {
                    "AND" | "&&" => Tok::And,
                    "OR" | "||" => Tok::Or,
                    "NOT" | "!" => Tok::Not,
                    _ => Tok::Word(word.to_owned()),
                };
                push(&mut out, tok, i);
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Lexed>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or_else(|| self.toks.last().map_or(0, |t| t.end), |t| t.at)
    }
    fn err<T>(&self, m: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { offset: self.offset(), message: m.into() })
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.pos += 1;
                    parts.push(self.unary()?);
                }
                None | Some(Tok::Or) | Some(Tok::RParen) => break,
                Some(_) => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("the query nests too deeply");
        }
        let r = match self.peek() {
            Some(Tok::Not) | Some(Tok::Minus) => {
                self.pos += 1;
                self.unary().map(|e| Expr::Not(Box::new(e)))
            }
            _ => self.primary(),
        };
        self.depth -= 1;
        r
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let Some(t) = self.toks.get(self.pos).cloned() else { return self.err("expected a term") };
        self.pos += 1;
        match t.tok {
            Tok::LParen => {
                let e = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return self.err("expected `)`");
                }
                self.pos += 1;
                Ok(e)
            }
            Tok::Word(w) => Ok(Expr::Word(pattern(&w).map_err(|m| ParseError { offset: t.at, message: m })?)),
            Tok::Quoted(q) => Ok(Expr::Phrase(q.to_lowercase())),
            Tok::Field(name) => {
                let test = self.value(&name)?;
                Ok(Expr::Field { name: canonical_field(&name), test })
            }
            _ => {
                self.pos -= 1;
                self.err("expected a word, a \"phrase\", a field:value or `(`")
            }
        }
    }

    fn value(&mut self, field: &str) -> Result<Test, ParseError> {
        let Some(t) = self.toks.get(self.pos).cloned() else {
            return self.err(format!("expected a value after `{field}:`"));
        };
        self.pos += 1;
        let bad = |m: String| ParseError { offset: t.at, message: m };
        match t.tok {
            Tok::Word(w) if w == "*" => Ok(Test::Exists),
            Tok::Word(w) => Ok(Test::Is(pattern(&w).map_err(bad)?)),
            Tok::Quoted(q) => Ok(Test::Phrase(q.to_lowercase())),
            Tok::Op(op) => match self.toks.get(self.pos).cloned() {
                Some(Lexed { tok: Tok::Word(w) | Tok::Quoted(w), .. }) => {
                    self.pos += 1;
                    let operand = w.parse::<f64>().map(Operand::Num).unwrap_or(Operand::Text(w.to_lowercase()));
                    Ok(Test::Cmp(op, operand))
                }
                _ => self.err(format!("expected a number or a word after the comparison on `{field}`")),
            },
            Tok::Tilde => match self.toks.get(self.pos).cloned() {
                Some(Lexed { tok: Tok::Quoted(r) | Tok::Word(r), at, .. }) => {
                    self.pos += 1;
                    let re = regex::RegexBuilder::new(&format!("^(?:{r})$"))
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| ParseError { offset: at, message: format!("invalid regular expression: {e}") })?;
                    Ok(Test::Regex(RegexBox(re)))
                }
                _ => self.err(format!("expected a \"regex\" after `{field}:~`")),
            },
            _ => {
                self.pos -= 1;
                self.err(format!("expected a value after `{field}:`"))
            }
        }
    }
}

/// Field names people type for the same thing.
fn canonical_field(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "level" | "severity" | "lvl" => "level".into(),
        "message" | "msg" | "body" | "line" => "body".into(),
        "service" | "service.name" | "app" => "service".into(),
        "instance" | "service.instance.id" => "instance".into(),
        "trace_id" | "traceid" | "trace" => "trace_id".into(),
        "span_id" | "spanid" => "span_id".into(),
        _ => name.to_owned(),
    }
}

fn pattern(w: &str) -> Result<Pattern, String> {
    let text = w.to_lowercase();
    let wildcard = if text.contains(['*', '?']) {
        let mut re = String::from("^");
        for c in text.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        Some(RegexBox(Regex::new(&re).map_err(|e| format!("invalid wildcard: {e}"))?))
    } else {
        None
    };
    Ok(Pattern { text, wildcard })
}

fn parse_aggregation(src: &str) -> Result<Aggregation, String> {
    let words: Vec<&str> = src.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
    let by = |rest: &[&str]| -> Result<Option<String>, String> {
        match rest {
            [] => Ok(None),
            ["by", f] => Ok(Some(canonical_field(f))),
            _ => Err(format!("expected `by FIELD`, found `{}`", rest.join(" "))),
        }
    };
    match words.as_slice() {
        ["count", rest @ ..] => Ok(Aggregation::Count { by: by(rest)? }),
        ["top", n, field] => {
            let n = n.parse::<usize>().map_err(|_| format!("`top` takes a count, found `{n}`"))?;
            if n == 0 || n > 10_000 {
                return Err("`top` takes a count from 1 to 10000".into());
            }
            Ok(Aggregation::Top { n, field: canonical_field(field) })
        }
        ["top", field] => Ok(Aggregation::Top { n: 10, field: canonical_field(field) }),
        ["stats", rest @ ..] => {
            let split = rest.iter().position(|w| *w == "by").unwrap_or(rest.len());
            let (list, tail) = rest.split_at(split);
            if list.is_empty() {
                return Err(
                    "`stats` needs at least one of count, avg(f), min(f), max(f), sum(f), p50(f), p99(f)".into()
                );
            }
            let stats = list.iter().map(|s| parse_stat(s)).collect::<Result<Vec<_>, _>>()?;
            Ok(Aggregation::Stats { stats, by: by(tail)? })
        }
        _ => Err(format!("unknown aggregation `{}`: expected count, top or stats", src.trim())),
    }
}

fn parse_stat(s: &str) -> Result<Stat, String> {
    if s == "count" || s == "count()" {
        return Ok(Stat::Count);
    }
    let (f, arg) = s
        .strip_suffix(')')
        .and_then(|x| x.split_once('('))
        .ok_or_else(|| format!("`{s}` is not a statistic like avg(latency_ms)"))?;
    let arg = canonical_field(arg.trim());
    if arg.is_empty() {
        return Err(format!("`{s}` needs a field"));
    }
    match f {
        "avg" | "mean" => Ok(Stat::Avg(arg)),
        "min" => Ok(Stat::Min(arg)),
        "max" => Ok(Stat::Max(arg)),
        "sum" => Ok(Stat::Sum(arg)),
        p if p.starts_with('p') => {
            let q: f64 = p[1..].parse().map_err(|_| format!("`{p}` is not a percentile like p99"))?;
            if !(0.0..=100.0).contains(&q) {
                return Err(format!("`{p}`: percentiles run from p0 to p100"));
            }
            Ok(Stat::Quantile(q / 100.0, arg))
        }
        other => Err(format!("unknown statistic `{other}`")),
    }
}

#[cfg(test)]
mod tests;
