//! The small Go-template language alert labels and annotations are written in, the subset
//! Prometheus rule files use in practice:
//!
//! - text with `{{ ... }}` actions (`{{-` and `-}}` trim the whitespace beside them);
//! - values: `$labels.name` (also `.Labels.name`), `$value` (`.Value`), `$externalURL`
//!   (`.ExternalURL`), string literals (`"..."`, `` `...` ``) and numbers;
//! - Signalbox's own values, for links to the console at the alert's time: `$activeAtMs` (Unix
//!   ms when the alert became active; the evaluation time for a new one) and `$windowStartMs`
//!   (15 minutes before that, where the window its links show begins).
//! - pipelines `x | f` passing `x` as the last argument of `f`, and calls `f a b`;
//! - functions `humanize`, `humanize1024`, `humanizePercentage`, `humanizeDuration`,
//!   `printf`, `toUpper`, `toLower`, `title`, `urlquery`.
//!
//! A template is compiled when its rule file loads, so syntax errors and unknown functions
//! are load errors, never evaluation surprises. Numbers print as Go prints them (`%v`).

use std::collections::BTreeMap;

/// What a template sees when it is expanded.
#[derive(Debug, Clone, Default)]
pub struct TemplateData<'a> {
    pub labels: BTreeMap<&'a str, &'a str>,
    pub value: f64,
    pub external_url: &'a str,
    /// When the alert became active (Unix ms).
    pub active_at_ms: i64,
}

/// How far before an alert's activation the window of its console links starts.
pub const LINK_WINDOW_BEFORE_MS: i64 = 15 * 60 * 1000;

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Vec<Command>),
}

/// One command of a pipeline: a function call, or a single operand.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Call(Func, Vec<Operand>),
    Operand(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Label(String),
    Value,
    ExternalUrl,
    ActiveAtMs,
    WindowStartMs,
    Str(String),
    Num(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
    UrlQuery,
}

impl Func {
    fn by_name(name: &str) -> Option<Func> {
        Some(match name {
            "humanize" => Func::Humanize,
            "humanize1024" => Func::Humanize1024,
            "humanizePercentage" => Func::HumanizePercentage,
            "humanizeDuration" => Func::HumanizeDuration,
            "printf" => Func::Printf,
            "toUpper" => Func::ToUpper,
            "toLower" => Func::ToLower,
            "title" => Func::Title,
            "urlquery" => Func::UrlQuery,
            _ => return None,
        })
    }
}

/// A value inside a pipeline.
#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(v) => go_float_v(*v),
        }
    }

    fn number(&self, func: &str) -> Result<f64, String> {
        match self {
            Val::Num(v) => Ok(*v),
            Val::Str(s) => s.trim().parse::<f64>().map_err(|_| format!("{func}: {s:?} is not a number")),
        }
    }
}

impl Template {
    /// Compiles `src`, or says what is wrong with it.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            let mut inner = &rest[open + 2..];
            if let Some(stripped) = inner.strip_prefix('-') {
                text = text.trim_end();
                inner = stripped;
            }
            if !text.is_empty() {
                parts.push(Part::Text(text.to_owned()));
            }
            let close = find_close(inner).ok_or_else(|| "unclosed action: `{{` without `}}`".to_string())?;
            let mut body = &inner[..close];
            let mut after = &inner[close + 2..];
            if let Some(b) = body.strip_suffix('-') {
                body = b;
                after = after.trim_start();
            }
            let body = body.trim();
            if body.starts_with("/*") {
                // A comment.
            } else {
                parts.push(Part::Action(parse_pipeline(body)?));
            }
            rest = after;
        }
        if rest.contains("}}") {
            return Err("unexpected `}}` outside an action".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Whether the template is plain text.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Expands the template. Errors (a function given a bad argument) are rare: Prometheus
    /// then uses the error text as the value, and so does the caller.
    pub fn expand(&self, data: &TemplateData<'_>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(cmds) => {
                    let mut piped: Option<Val> = None;
                    for c in cmds {
                        piped = Some(run(c, piped.take(), data)?);
                    }
                    if let Some(v) = piped {
                        out.push_str(&v.text());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The end of an action, skipping `}}` inside string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

fn tokenize(body: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            out.push("|".into());
            i += 1;
        } else if c == '"' || c == '`' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if c == '"' && chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err("unterminated quoted string".into());
            }
            i += 1;
            out.push(chars[start..i].iter().collect());
        } else if c == '(' || c == ')' {
            return Err("parenthesised pipelines are not supported".into());
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '|' {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

fn parse_pipeline(body: &str) -> Result<Vec<Command>, String> {
    if body.is_empty() {
        return Err("missing value for command".into());
    }
    let tokens = tokenize(body)?;
    let mut cmds = Vec::new();
    for (i, group) in tokens.split(|t| t == "|").enumerate() {
        let Some((head, args)) = group.split_first() else {
            return Err("missing command in pipeline".into());
        };
        let args: Vec<Operand> = args.iter().map(|a| parse_operand(a)).collect::<Result<_, _>>()?;
        let is_ident = head.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if is_ident {
            let func = Func::by_name(head).ok_or_else(|| format!("function {head:?} not defined"))?;
            if func == Func::Printf && args.is_empty() && i == 0 {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            }
            let given = args.len() + usize::from(i > 0);
            if func != Func::Printf && given != 1 {
                return Err(format!("wrong number of args for {head}: want 1 got {given}"));
            }
            cmds.push(Command::Call(func, args));
        } else {
            if i > 0 {
                return Err(format!("non executable command in pipeline stage {}", i + 1));
            }
            if !args.is_empty() {
                return Err(format!("can't give argument to non-function {head}"));
            }
            cmds.push(Command::Operand(parse_operand(head)?));
        }
    }
    Ok(cmds)
}

fn parse_operand(t: &str) -> Result<Operand, String> {
    if let Some(name) = t.strip_prefix("$labels.").or_else(|| t.strip_prefix(".Labels.")) {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label reference {t:?}"));
        }
        return Ok(Operand::Label(name.to_owned()));
    }
    match t {
        "$value" | ".Value" => return Ok(Operand::Value),
        "$externalURL" | ".ExternalURL" => return Ok(Operand::ExternalUrl),
        "$activeAtMs" => return Ok(Operand::ActiveAtMs),
        "$windowStartMs" => return Ok(Operand::WindowStartMs),
        "$labels" | ".Labels" => return Err(format!("{t} is a map; name one label, as {t}.name")),
        _ => {}
    }
    if let Some(s) = t.strip_prefix('`') {
        return Ok(Operand::Str(s.trim_end_matches('`').to_owned()));
    }
    if t.starts_with('"') {
        return unquote(t).map(Operand::Str);
    }
    if let Ok(v) = t.parse::<f64>() {
        return Ok(Operand::Num(v));
    }
    if t.starts_with('$') {
        return Err(format!("undefined variable {t:?}"));
    }
    if Func::by_name(t).is_some() {
        return Err(format!("function {t} used as an argument; use a pipeline"));
    }
    if t.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(format!("function {t:?} not defined"));
    }
    Err(format!("unexpected {t:?} in command"))
}

fn unquote(t: &str) -> Result<String, String> {
    let inner = &t[1..t.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            other => return Err(format!("unknown escape sequence \\{}", other.map(String::from).unwrap_or_default())),
        }
    }
    Ok(out)
}

fn operand(o: &Operand, data: &TemplateData<'_>) -> Val {
    match o {
        Operand::Label(n) => Val::Str(data.labels.get(n.as_str()).copied().unwrap_or("").to_owned()),
        Operand::Value => Val::Num(data.value),
        Operand::ExternalUrl => Val::Str(data.external_url.to_owned()),
        Operand::ActiveAtMs => Val::Str(data.active_at_ms.to_string()),
        Operand::WindowStartMs => Val::Str((data.active_at_ms - LINK_WINDOW_BEFORE_MS).to_string()),
        Operand::Str(s) => Val::Str(s.clone()),
        Operand::Num(v) => Val::Num(*v),
    }
}

fn run(c: &Command, piped: Option<Val>, data: &TemplateData<'_>) -> Result<Val, String> {
    let (func, args) = match c {
        Command::Operand(o) => return Ok(operand(o, data)),
        Command::Call(f, args) => (*f, args),
    };
    let mut vals: Vec<Val> = args.iter().map(|a| operand(a, data)).collect();
    vals.extend(piped);
    let first = || vals.first().cloned().unwrap_or(Val::Str(String::new()));
    Ok(match func {
        Func::Humanize => Val::Str(humanize(first().number("humanize")?)),
        Func::Humanize1024 => Val::Str(humanize1024(first().number("humanize1024")?)),
        Func::HumanizePercentage => Val::Str(format!("{}%", go_g(first().number("humanizePercentage")? * 100.0, 4))),
        Func::HumanizeDuration => Val::Str(humanize_duration(first().number("humanizeDuration")?)),
        Func::ToUpper => Val::Str(first().text().to_uppercase()),
        Func::ToLower => Val::Str(first().text().to_lowercase()),
        Func::Title => Val::Str(title(&first().text())),
        Func::UrlQuery => Val::Str(query_escape(&first().text())),
        Func::Printf => {
            let fmt = first().text();
            Val::Str(sprintf(&fmt, &vals[1..]))
        }
    })
}

/// Go's `url.QueryEscape` (what its `urlquery` template function does for one string).
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn title(s: &str) -> String {
    let mut out = String::new();
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric();
    }
    out
}

/// Go's `%v` of a float64 (shortest representation; exponent form from 1e+06 and below
/// 1e-4).
pub fn go_float_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let (digits, exp) = shortest_digits(v);
    // Go decides with precision 6 when printing the shortest representation.
    if !(-4..6).contains(&exp) { go_exp(v, &digits, exp) } else { format!("{v}") }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as Prometheus's API prints alert values.
pub fn go_float_e(v: f64) -> String {
    if !v.is_finite() {
        return go_float_v(v);
    }
    if v == 0.0 {
        return "0e+00".into();
    }
    let (digits, exp) = shortest_digits(v);
    go_exp(v, &digits, exp)
}

/// The shortest decimal digits of `v` and its decimal exponent (`1.5e3`: "15", 3).
fn shortest_digits(v: f64) -> (String, i32) {
    let s = format!("{:e}", v.abs());
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    (m.replace('.', ""), e.parse().unwrap_or(0))
}

fn go_exp(v: f64, digits: &str, exp: i32) -> String {
    let sign = if v < 0.0 { "-" } else { "" };
    let mantissa = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits.to_owned() };
    let esign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
}

/// Go's `%.{prec}g`.
pub fn go_g(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return go_float_v(v);
    }
    if v == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    let s = format!("{:.*e}", prec - 1, v);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = e.parse().unwrap_or(0);
    let trim = |t: &str| -> String {
        if t.contains('.') { t.trim_end_matches('0').trim_end_matches('.').to_owned() } else { t.to_owned() }
    };
    if exp < -4 || exp >= prec as i32 {
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{}e{esign}{:02}", trim(m), exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{:.*}", decimals, v))
    }
}

/// Prometheus's `humanize`: SI prefixes, four significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanizeDuration` of seconds.
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {mins}m {secs}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {mins}m {secs}s")
        } else if mins != 0 {
            format!("{sign}{mins}m {secs}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %g %e %q %x %%` with
/// flags, width and precision.
fn sprintf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let num = |a: &Val| match a {
            Val::Num(v) => Some(*v),
            Val::Str(_) => None,
        };
        let body = match (verb, arg) {
            ('s' | 'v', a) => {
                let t = a.text();
                match prec {
                    Some(p) if matches!(a, Val::Str(_)) => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            ('q', a) => format!("{:?}", a.text()),
            ('d', a) => match num(a) {
                Some(v) => format!("%!d(float64={})", go_float_v(v)),
                None => format!("%!d(string={})", a.text()),
            },
            ('f' | 'F', a) => match num(a) {
                Some(v) if v.is_finite() => format!("{:.*}", prec.unwrap_or(6), v),
                Some(v) => go_float_v(v),
                None => format!("%!f(string={})", a.text()),
            },
            ('e', a) => match num(a) {
                Some(v) => {
                    let s = format!("{:.*e}", prec.unwrap_or(6), v);
                    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                    let exp: i32 = e.parse().unwrap_or(0);
                    format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
                }
                None => format!("%!e(string={})", a.text()),
            },
            ('g', a) => match (num(a), prec) {
                (Some(v), Some(p)) => go_g(v, p),
                (Some(v), None) => go_float_v(v),
                (None, _) => format!("%!g(string={})", a.text()),
            },
            (other, a) => format!("%!{other}({})", a.text()),
        };
        let body = if flags.contains('+') && num(arg).is_some_and(|v| v >= 0.0) && "feEgGd".contains(verb) {
            format!("+{body}")
        } else {
            body
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len < w {
            let pad = w - len;
            if flags.contains('-') {
                out.push_str(&body);
                out.extend(std::iter::repeat_n(' ', pad));
            } else if flags.contains('0') && num(arg).is_some() {
                let (sign, digits) = match body.strip_prefix(['-', '+']) {
                    Some(d) => (&body[..1], d),
                    None => ("", body.as_str()),
                };
                out.push_str(sign);
                out.extend(std::iter::repeat_n('0', pad));
                out.push_str(digits);
            } else {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
    }
    if args.next().is_some() {
        out.push_str("%!(EXTRA)");
    }
    out
}
