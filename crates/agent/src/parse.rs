//! Parsing a record's text into fields: JSON, logfmt or a regex with named groups, then the
//! timestamp, severity, message and trace ids taken out of those fields.
//!
//! Bad input never fails a record: text that does not parse is kept whole as the body, and a
//! timestamp that does not parse leaves the read time in place (both are counted).

use crate::record::normalize_severity;
use regex::Regex;
use time::format_description::OwnedFormatItem;

/// How the text is split into fields.
#[derive(Debug)]
pub enum Format {
    None,
    Json,
    Logfmt,
    Regex(Regex),
}

/// How a timestamp field is written.
#[derive(Debug)]
pub enum TsFormat {
    Rfc3339,
    /// A number of seconds scaled by this many nanoseconds per unit.
    Unix(u64),
    Strftime(OwnedFormatItem),
}

impl TsFormat {
    /// Parses a `timestamp_format` value.
    pub fn from_config(s: &str) -> Result<TsFormat, String> {
        Ok(match s {
            "rfc3339" => TsFormat::Rfc3339,
            "unix" => TsFormat::Unix(1_000_000_000),
            "unix_ms" => TsFormat::Unix(1_000_000),
            "unix_us" => TsFormat::Unix(1_000),
            "unix_ns" => TsFormat::Unix(1),
            other => TsFormat::Strftime(strftime(other)?),
        })
    }

    /// Unix nanoseconds of `s`, or `None` when it does not match the format.
    pub fn parse(&self, s: &str) -> Option<u64> {
        let s = s.trim();
        let nanos: i128 = match self {
            TsFormat::Rfc3339 => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()?
                .unix_timestamp_nanos(),
            TsFormat::Unix(scale) => parse_decimal_scaled(s, *scale)?,
            TsFormat::Strftime(items) => {
                let mut parsed = time::parsing::Parsed::new();
                let rest = parsed.parse_items(s.as_bytes(), std::slice::from_ref(items)).ok()?;
                if !rest.is_empty() {
                    return None;
                }
                time::UtcDateTime::try_from(parsed).ok()?.unix_timestamp_nanos()
            }
        };
        u64::try_from(nanos).ok()
    }
}

/// A strftime pattern, plus the fractional seconds `time`'s strftime lacks: `%f`, `%3f`,
/// `%6f`, `%9f` (digits), `%.3f`, `%.6f`, `%.9f` (a dot and digits) and `%.f` (optional dot
/// and digits). Any number of digits is accepted when parsing.
fn strftime(pattern: &str) -> Result<OwnedFormatItem, String> {
    const FRACTIONS: [(&str, bool, bool); 8] = [
        ("%.3f", true, false),
        ("%.6f", true, false),
        ("%.9f", true, false),
        ("%.f", true, true),
        ("%3f", false, false),
        ("%6f", false, false),
        ("%9f", false, false),
        ("%f", false, false),
    ];
    let bad = |e: &dyn std::fmt::Display| format!("`{pattern}` is not a strftime format: {e}");
    // A format of its own syntax, constant: cannot fail.
    let digits = time::format_description::parse_owned::<2>("[subsecond digits:1+]").map_err(|e| bad(&e))?;
    let mut items = Vec::new();
    let mut rest = pattern;
    loop {
        let next = FRACTIONS.iter().filter_map(|(tok, dot, opt)| rest.find(tok).map(|i| (i, *tok, *dot, *opt))).min();
        let Some((i, tok, dot, optional)) = next else { break };
        // `%%f` is a literal `%f`, not a fraction.
        if rest[..i].ends_with('%') && rest[..i].chars().rev().take_while(|c| *c == '%').count() % 2 == 1 {
            items.push(time::format_description::parse_strftime_owned(&rest[..i + tok.len()]).map_err(|e| bad(&e))?);
            rest = &rest[i + tok.len()..];
            continue;
        }
        if i > 0 {
            items.push(time::format_description::parse_strftime_owned(&rest[..i]).map_err(|e| bad(&e))?);
        }
        let frac = if dot {
            OwnedFormatItem::Compound(Box::new([OwnedFormatItem::StringLiteral(".".into()), digits.clone()]))
        } else {
            digits.clone()
        };
        items.push(if optional { OwnedFormatItem::Optional(Box::new(frac)) } else { frac });
        rest = &rest[i + tok.len()..];
    }
    if !rest.is_empty() {
        items.push(time::format_description::parse_strftime_owned(rest).map_err(|e| bad(&e))?);
    }
    Ok(OwnedFormatItem::Compound(items.into_boxed_slice()))
}

/// `"1700000000.5"` × `scale` nanoseconds, without float rounding.
fn parse_decimal_scaled(s: &str, scale: u64) -> Option<i128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i128 = int.parse::<i128>().ok()?.checked_mul(scale as i128)?;
    let mut part: i128 = 0;
    let mut unit = scale as i128;
    for b in frac.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        part += (b - b'0') as i128 * unit;
    }
    whole.checked_add(part)
}

/// A source's compiled parser.
#[derive(Debug)]
pub struct Parser {
    pub format: Format,
    pub ts_fields: Vec<String>,
    pub ts_format: TsFormat,
    pub level_fields: Vec<String>,
    pub message_fields: Vec<String>,
}

/// What parsing produced for one record.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub timestamp_ns: Option<u64>,
    pub severity: Option<String>,
    pub body: String,
    pub fields: Vec<(String, String)>,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    /// The text did not have the expected format (kept whole as the body).
    pub format_error: bool,
    /// A timestamp field was present but did not match the format.
    pub timestamp_error: bool,
}

const TRACE_ID_FIELDS: [&str; 3] = ["trace_id", "traceId", "trace.id"];
const SPAN_ID_FIELDS: [&str; 3] = ["span_id", "spanId", "span.id"];

impl Parser {
    /// Parses `text` (one line, or lines joined by `\n`).
    pub fn parse(&self, text: &str) -> Parsed {
        let (first, rest) = match text.split_once('\n') {
            Some((f, r)) => (f, Some(r)),
            None => (text, None),
        };
        let parsed = match &self.format {
            Format::None => return Parsed { body: text.to_owned(), ..Parsed::default() },
            Format::Json => json_fields(text).map(|f| (f, None)),
            Format::Logfmt => logfmt_fields(first).map(|f| (f, rest)),
            Format::Regex(re) => regex_fields(re, first).map(|f| (f, rest)),
        };
        let Some((mut fields, continuation)) = parsed else {
            return Parsed { body: text.to_owned(), format_error: true, ..Parsed::default() };
        };
        let mut out = Parsed::default();
        if let Some(v) = take_first(&mut fields, &self.ts_fields) {
            match self.ts_format.parse(&v) {
                Some(ns) => out.timestamp_ns = Some(ns),
                None => {
                    out.timestamp_error = true;
                    fields.push((self.ts_fields.first().cloned().unwrap_or_default(), v));
                }
            }
        }
        if let Some(v) = take_first(&mut fields, &self.level_fields) {
            out.severity = Some(normalize_severity(&v));
        }
        let message = take_first(&mut fields, &self.message_fields);
        out.body = match (message, continuation) {
            (Some(m), Some(c)) => format!("{m}\n{c}"),
            (Some(m), None) => m,
            (None, _) => text.to_owned(),
        };
        take_id(&mut fields, &TRACE_ID_FIELDS, &mut out.trace_id);
        take_id(&mut fields, &SPAN_ID_FIELDS, &mut out.span_id);
        out.fields = fields;
        out
    }
}

/// Removes and returns the value of the first of `names` present.
fn take_first(fields: &mut Vec<(String, String)>, names: &[String]) -> Option<String> {
    for n in names {
        if let Some(i) = fields.iter().position(|(k, _)| k == n) {
            return Some(fields.remove(i).1);
        }
    }
    None
}

/// Takes a valid, non-zero hex id of `N` bytes from the first of `names`; an invalid one stays
/// an attribute.
fn take_id<const N: usize>(fields: &mut Vec<(String, String)>, names: &[&str], out: &mut Option<[u8; N]>) {
    for n in names {
        if let Some(i) = fields.iter().position(|(k, _)| k == n) {
            let mut id = [0u8; N];
            if hex::decode_to_slice(fields[i].1.trim(), &mut id).is_ok() && id != [0u8; N] {
                fields.remove(i);
                *out = Some(id);
            }
            return;
        }
    }
}

/// A JSON object, flattened: nested keys joined with `.`, scalars as text, arrays as JSON.
fn json_fields(text: &str) -> Option<Vec<(String, String)>> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let serde_json::Value::Object(map) = v else { return None };
    let mut out = Vec::with_capacity(map.len());
    flatten("", map, &mut out, 0);
    Some(out)
}

fn flatten(prefix: &str, map: serde_json::Map<String, serde_json::Value>, out: &mut Vec<(String, String)>, depth: u8) {
    for (k, v) in map {
        let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => out.push((key, s)),
            serde_json::Value::Object(m) if depth < 8 => flatten(&key, m, out, depth + 1),
            other => out.push((key, other.to_string())),
        }
    }
}

/// `key=value key="quoted \"value\"" flag`: at least one `key=value` pair, else `None`.
pub fn logfmt_fields(line: &str) -> Option<Vec<(String, String)>> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let mut pairs = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        if i == start {
            if i < b.len() && b[i] == b'=' {
                return None; // `=value` with no key
            }
            continue;
        }
        let key = &line[start..i];
        if i >= b.len() || b[i] == b' ' {
            out.push((key.to_owned(), "true".to_owned()));
            continue;
        }
        i += 1; // '='
        let value = if b.get(i) == Some(&b'"') {
            let mut v = String::new();
            let mut chars = line[i + 1..].char_indices();
            let mut end = None;
            while let Some((j, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => v.push('\n'),
                        Some((_, 't')) => v.push('\t'),
                        Some((_, 'r')) => v.push('\r'),
                        Some((_, c)) => v.push(c),
                        None => break,
                    },
                    '"' => {
                        end = Some(i + 1 + j + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            i = end?; // an unclosed quote is not logfmt
            v
        } else {
            let s = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            line[s..i].to_owned()
        };
        pairs += 1;
        out.push((key.to_owned(), value));
    }
    (pairs > 0).then_some(out)
}

/// The named groups of `re` that matched `line`.
fn regex_fields(re: &Regex, line: &str) -> Option<Vec<(String, String)>> {
    let caps = re.captures(line)?;
    let out = re
        .capture_names()
        .flatten()
        .filter_map(|name| caps.name(name).map(|m| (name.to_owned(), m.as_str().to_owned())))
        .collect();
    Some(out)
}

#[cfg(test)]
mod tests;
