//! Backtick raw strings for `promql-parser`, whose lexer (0.11) reads escapes inside
//! `` `...` `` as it does inside `"..."` and so rejects `` `\d+` ``, which Prometheus takes
//! literally. Before parsing, each raw string becomes the double-quoted string with the
//! same value.

use std::borrow::Cow;

/// `query` with every backtick string outside quotes and comments rewritten as a
/// double-quoted one; borrowed when there is none. An unterminated raw string is left for
/// the parser to reject.
pub(super) fn quote_raw_strings(query: &str) -> Cow<'_, str> {
    if !query.contains('`') {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len() + 8);
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                out.push(c);
                while let Some(&n) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    out.push(n);
                    chars.next();
                }
            }
            '"' | '\'' => {
                out.push(c);
                while let Some(n) = chars.next() {
                    out.push(n);
                    if n == '\\' {
                        if let Some(escaped) = chars.next() {
                            out.push(escaped);
                        }
                    } else if n == c {
                        break;
                    }
                }
            }
            '`' => {
                let rest: String = chars.clone().collect();
                match rest.find('`') {
                    Some(end) => {
                        out.push('"');
                        for r in rest[..end].chars() {
                            match r {
                                '\\' => out.push_str("\\\\"),
                                '"' => out.push_str("\\\""),
                                '\n' => out.push_str("\\n"),
                                '\r' => out.push_str("\\r"),
                                other => out.push(other),
                            }
                        }
                        out.push('"');
                        for _ in 0..rest[..end].chars().count() + 1 {
                            chars.next();
                        }
                    }
                    None => {
                        out.push(c);
                        out.push_str(&rest);
                        break;
                    }
                }
            }
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::quote_raw_strings;

    #[test]
    fn raw_strings_become_double_quoted_with_the_same_value() {
        assert_eq!(quote_raw_strings(r"up{instance=~`10\.0\..*`}"), r#"up{instance=~"10\\.0\\..*"}"#);
        assert_eq!(quote_raw_strings(r#"`a"b`"#), r#""a\"b""#);
        assert_eq!(quote_raw_strings("`line\nbreak`"), r#""line\nbreak""#);
    }

    #[test]
    fn backticks_inside_quotes_and_comments_stay() {
        let q = r#"label_replace(up, "a", "`x\"`", "b", '`') # `c"#;
        assert_eq!(quote_raw_strings(q), q);
        assert_eq!(quote_raw_strings("up # `\n`x`"), "up # `\n\"x\"");
        assert_eq!(quote_raw_strings("`unterminated"), "`unterminated");
    }
}
