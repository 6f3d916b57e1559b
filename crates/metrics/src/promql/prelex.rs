//! Where `promql-parser` 0.11's lexer reads a query differently from Prometheus 2.42's, the
//! query text is rewritten (or rejected) before parsing:
//! - backtick raw strings: the crate reads escapes inside `` `...` `` as inside `"..."` and
//!   rejects `` `\d+` ``, which Prometheus takes literally. Each becomes the double-quoted
//!   string with the same value.
//! - number literals: Prometheus reads one as a Go integer (base from its prefix) or else as
//!   a float, and rejects a float out of range (`1e400`); the crate returns +Inf for that and
//!   fails on a float with a leading zero (`010e1`, `00.5`). Such floats are rejected or
//!   rewritten in their shortest form.

use std::borrow::Cow;

/// `query` as `promql-parser` must see it to read it as Prometheus does; borrowed when
/// unchanged. `Err` is a parse error message. An unterminated raw string is left for the
/// parser to reject.
pub(super) fn prepare(query: &str) -> Result<Cow<'_, str>, String> {
    let mut out = String::with_capacity(query.len() + 8);
    let mut changed = false;
    let chars: Vec<char> = query.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
                continue;
            }
            '"' | '\'' => {
                out.push(c);
                i += 1;
                while i < chars.len() {
                    let n = chars[i];
                    out.push(n);
                    i += 1;
                    if n == '\\' {
                        if let Some(&escaped) = chars.get(i) {
                            out.push(escaped);
                            i += 1;
                        }
                    } else if n == c {
                        break;
                    }
                }
                continue;
            }
            '`' => match chars[i + 1..].iter().position(|&r| r == '`') {
                Some(len) => {
                    out.push('"');
                    for &r in &chars[i + 1..i + 1 + len] {
                        match r {
                            '\\' => out.push_str("\\\\"),
                            '"' => out.push_str("\\\""),
                            '\n' => out.push_str("\\n"),
                            '\r' => out.push_str("\\r"),
                            other => out.push(other),
                        }
                    }
                    out.push('"');
                    changed = true;
                    i += len + 2;
                    continue;
                }
                None => {
                    out.extend(&chars[i..]);
                    break;
                }
            },
            _ if starts_number(&chars, i) => {
                let mut end = i;
                while end < chars.len()
                    && (chars[end].is_ascii_alphanumeric() || chars[end] == '_' || chars[end] == '.')
                {
                    end += 1;
                    // An exponent's sign belongs to the number.
                    if matches!(chars[end - 1], 'e' | 'E')
                        && matches!(chars.get(end), Some('+' | '-'))
                        && chars.get(end + 1).is_some_and(|d| d.is_ascii_digit())
                    {
                        end += 1;
                    }
                }
                let token: String = chars[i..end].iter().collect();
                match float_literal(&token)? {
                    Some(rewritten) => {
                        out.push_str(&rewritten);
                        changed = true;
                    }
                    None => out.push_str(&token),
                }
                i = end;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(if changed { Cow::Owned(out) } else { Cow::Borrowed(query) })
}

/// Whether a number token starts at `i`: a digit, or a dot before one, not inside a name.
fn starts_number(chars: &[char], i: usize) -> bool {
    let c = chars[i];
    let digit_start = c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()));
    let inside_name = i > 0 && (chars[i - 1].is_ascii_alphanumeric() || matches!(chars[i - 1], '_' | ':' | '.'));
    digit_start && !inside_name
}

/// For a token that Prometheus would read as a float (not a Go integer literal): `Err` when
/// out of range, the shortest form when `promql-parser` would misread it (a leading zero),
/// `None` to leave it be (integers, durations, anything else).
fn float_literal(token: &str) -> Result<Option<String>, String> {
    let decimal_float = !token.is_empty()
        && token.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && token.chars().any(|c| matches!(c, '.' | 'e' | 'E'));
    if !decimal_float {
        return Ok(None);
    }
    let Ok(value) = token.parse::<f64>() else {
        return Ok(None);
    };
    if value.is_infinite() {
        return Err(format!("error parsing number: parsing {token:?}: value out of range"));
    }
    let leading_zero = token.starts_with('0') && token.chars().nth(1).is_some_and(|c| c.is_ascii_digit());
    Ok(leading_zero.then(|| format!("{value:e}")))
}

#[cfg(test)]
mod tests {
    use super::prepare;

    fn prepared(q: &str) -> String {
        prepare(q).expect("no error").into_owned()
    }

    #[test]
    fn raw_strings_become_double_quoted_with_the_same_value() {
        assert_eq!(prepared(r"up{instance=~`10\.0\..*`}"), r#"up{instance=~"10\\.0\\..*"}"#);
        assert_eq!(prepared(r#"`a"b`"#), r#""a\"b""#);
        assert_eq!(prepared("`line\nbreak`"), r#""line\nbreak""#);
    }

    #[test]
    fn backticks_inside_quotes_and_comments_stay() {
        let q = r#"label_replace(up, "a", "`x\"`", "b", '`') # `c"#;
        assert_eq!(prepared(q), q);
        assert_eq!(prepared("up # `\n`x`"), "up # `\n\"x\"");
        assert_eq!(prepared("`unterminated"), "`unterminated");
    }

    #[test]
    fn floats_out_of_range_fail_and_leading_zeros_are_rewritten() {
        assert!(prepare("1e400").unwrap_err().contains("out of range"));
        assert!(prepare("up * -1.5E+309").unwrap_err().contains("out of range"));
        assert_eq!(prepared("1.5e3 + 010e1"), "1.5e3 + 1e2");
        assert_eq!(prepared("00.5"), "5e-1");
        // Integers (octal and hex included), durations, names and label values stay.
        for q in ["010", "0x1F", "1e-400", "rate(x[5m]) offset 1h30m", "up1e400", r#"up{a="1e400"}"#, "a:1e400"] {
            assert_eq!(prepared(q), q);
        }
    }

    #[test]
    fn fragments_at_the_end_of_the_text_do_not_panic() {
        for q in ["`", "0", ".", "1e", "1e+", "1e+9", "#", "\"", "'\\", "0x", "00", "..5", "5.", "x`", "\"`", "é1e400"]
        {
            let _ = prepare(q);
        }
    }
}
