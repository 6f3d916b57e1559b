//! Evaluating a parsed [`lang`](super::lang) filter against records, and the words a
//! record must contain to match (what block bloom filters are asked before a block is
//! opened).

use super::block::value_text;
use super::lang::{CmpOp, Expr, Operand, Pattern, Test};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::KeyValue;
use std::borrow::Cow;

/// The words of a text as the search sees them: runs of letters, digits and `_`,
/// lower-cased. The same split indexes the store's token blooms.
pub fn words(text: &str) -> impl Iterator<Item = Cow<'_, str>> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(|w| if w.chars().any(|c| c.is_uppercase()) { Cow::Owned(w.to_lowercase()) } else { Cow::Borrowed(w) })
}

/// What a filter needs to read from a record.
pub trait Fields {
    fn body(&self) -> &str;
    fn severity(&self) -> (Severity, &str);
    /// A named field's value as text: the well-known ones, then attributes, then resource.
    fn field(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl Fields for LogRecord {
    fn body(&self) -> &str {
        &self.body
    }
    fn severity(&self) -> (Severity, &str) {
        (self.severity, &self.severity_text)
    }
    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "body" => Some(Cow::Borrowed(&self.body)),
            "service" => Some(Cow::Borrowed(&self.service)),
            "instance" => Some(Cow::Borrowed(&self.instance)),
            "level" => Some(Cow::Borrowed(self.severity.name())),
            "trace_id" => self.trace_id.map(|t| Cow::Owned(t.to_hex())),
            "span_id" => self.span_id.map(|s| Cow::Owned(s.to_hex())),
            _ => attr_lookup(&self.attributes, &self.resource, name),
        }
    }
}

/// A named attribute's value as text: the first attribute, then resource attribute, with
/// exactly that key, else the first whose key matches ignoring ASCII case.
pub fn attr_lookup<'a>(attributes: &'a [KeyValue], resource: &'a [KeyValue], name: &str) -> Option<Cow<'a, str>> {
    attributes
        .iter()
        .chain(resource.iter())
        .find(|kv| kv.key == name)
        .or_else(|| attributes.iter().chain(resource.iter()).find(|kv| kv.key.eq_ignore_ascii_case(name)))
        .map(|kv| value_text(&kv.value))
}

/// Whether `r` matches `e`.
pub fn matches<R: Fields + ?Sized>(e: &Expr, r: &R) -> bool {
    match e {
        Expr::All => true,
        Expr::And(v) => v.iter().all(|x| matches(x, r)),
        Expr::Or(v) => v.iter().any(|x| matches(x, r)),
        Expr::Not(x) => !matches(x, r),
        Expr::Word(p) => words(r.body()).any(|w| word_is(p, &w)),
        Expr::Phrase(p) => contains_ci(r.body(), p),
        Expr::Field { name, test } => field_test(r, name, test),
    }
}

fn word_is(p: &Pattern, w: &str) -> bool {
    match &p.wildcard {
        Some(re) => re.0.is_match(w),
        None => w == p.text,
    }
}

fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    if hay.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle_lower.as_bytes());
        n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    } else {
        hay.to_lowercase().contains(needle_lower)
    }
}

fn field_test<R: Fields + ?Sized>(r: &R, name: &str, test: &Test) -> bool {
    if name == "level" {
        let (sev, text) = r.severity();
        return match test {
            Test::Exists => sev != Severity::UNSPECIFIED || !text.is_empty(),
            Test::Is(p) => {
                let named = Severity::parse(&p.text);
                (named != Severity::UNSPECIFIED && named.name() == sev.name())
                    || word_is(p, &text.to_lowercase())
                    || word_is(p, &sev.name().to_lowercase())
            }
            Test::Cmp(op, operand) => {
                let rhs = match operand {
                    Operand::Num(n) => Severity::from_number(*n as i32),
                    Operand::Text(t) => Severity::parse(t),
                };
                // Compare ranges (ERROR is 17..=20) by their first number.
                let lhs = Severity(sev.0.saturating_sub(1) / 4 * 4 + 1);
                let rhs = Severity(rhs.0.saturating_sub(1) / 4 * 4 + 1);
                sev != Severity::UNSPECIFIED && cmp(*op, lhs.0 as f64, rhs.0 as f64)
            }
            Test::Phrase(p) => contains_ci(text, p),
            Test::Regex(re) => re.0.is_match(text) || re.0.is_match(sev.name()),
        };
    }
    let Some(v) = r.field(name) else { return false };
    match test {
        Test::Exists => true,
        Test::Is(p) => match &p.wildcard {
            Some(re) => re.0.is_match(&v.to_lowercase()),
            None => v.eq_ignore_ascii_case(&p.text) || (name == "body" && words(&v).any(|w| w == p.text)),
        },
        Test::Phrase(p) => {
            if name == "body" {
                contains_ci(&v, p)
            } else {
                v.to_lowercase() == *p
            }
        }
        Test::Regex(re) => re.0.is_match(&v),
        Test::Cmp(op, Operand::Num(n)) => v.trim().parse::<f64>().is_ok_and(|x| cmp(*op, x, *n)),
        Test::Cmp(op, Operand::Text(t)) => {
            let o = v.to_lowercase().as_str().cmp(t.as_str());
            match op {
                CmpOp::Gt => o.is_gt(),
                CmpOp::Ge => o.is_ge(),
                CmpOp::Lt => o.is_lt(),
                CmpOp::Le => o.is_le(),
            }
        }
    }
}

fn cmp(op: CmpOp, a: f64, b: f64) -> bool {
    match op {
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
    }
}

/// Words that every matching record's body must contain, for skipping blocks whose bloom
/// filter lacks one. Conservative: only words under AND (never under OR or NOT), without
/// wildcards; phrases give their words.
pub fn required_words(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    collect(e, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::And(v) => v.iter().for_each(|x| collect(x, out)),
        Expr::Word(p) if p.wildcard.is_none() => out.push(p.text.clone()),
        Expr::Phrase(p) => out.extend(words(p).map(|w| w.into_owned())),
        _ => {}
    }
}

/// Field values every match must have exactly (`trace_id:abc`, `service:x` under AND), for
/// blooms and per-block dictionaries of high-cardinality fields.
pub fn required_values(e: &Expr) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(e: &Expr, out: &mut Vec<(String, String)>) {
        match e {
            Expr::And(v) => v.iter().for_each(|x| walk(x, out)),
            Expr::Field { name, test: Test::Is(p) } if p.wildcard.is_none() && name != "level" && name != "body" => {
                out.push((name.clone(), p.text.clone()))
            }
            _ => {}
        }
    }
    walk(e, &mut out);
    out
}
