//! The access log: one JSON line per request, written by hand on the request thread
//! ([`JsonLine`]), batched per thread, and handed in chunks to a writer thread that appends
//! them to the log file and turns each line into a record of the node's log store
//! ([`access_record`]).
//!
//! The writer thread reads the gateway's own lines back with a flat-object scanner
//! ([`flat_object`]) instead of `serde_json::Value`: the `Value` map cost a tree node and a
//! dozen small allocations per line, and the access-log thread took ~8% of the node's CPU
//! under `bench/gateway.sh` with telemetry on (perf, 2026-12-02). The records are the ones
//! the `Value` path built: attributes in key order, numbers as integers when they have no
//! fraction or exponent, a line that is not one flat JSON object skipped. Floats are parsed
//! correctly rounded, so they read back exactly as written (`serde_json` without its
//! `float_roundtrip` feature could differ in the last place).

use signalbox_core::log::{LogOffer, LogRecord, Severity};
use signalbox_core::metrics::Counter;
use signalbox_core::span::{AttrValue, KeyValue};
use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc;

/// Starts the writer thread; `target` is a file path, `"stdout"`, or `None` (records for
/// the log store only).
pub(super) fn spawn_log_writer(
    target: Option<&str>,
    logs: Option<Arc<dyn LogOffer>>,
    dropped: Counter,
    gateway: String,
    chunks: usize,
) -> std::io::Result<mpsc::SyncSender<Vec<u8>>> {
    let mut out: Option<Box<dyn Write + Send>> = match target {
        None => None,
        Some("stdout") => Some(Box::new(std::io::stdout())),
        Some(path) => Some(Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)),
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(chunks);
    std::thread::Builder::new().name("access-log".into()).spawn(move || {
        while let Ok(chunk) = rx.recv() {
            if let Some(out) = out.as_mut() {
                let _ = out.write_all(&chunk).and_then(|_| out.flush());
            }
            if let Some(logs) = &logs {
                // Off the request path: each line becomes a record of the log store.
                let records: Vec<LogRecord> =
                    chunk.split(|b| *b == b'\n').filter_map(|l| access_record(l, &gateway)).collect();
                let n = records.len() as u64;
                if !logs.offer(records) {
                    dropped.add(n);
                }
            }
        }
    })?;
    Ok(tx)
}

/// A value of a flat JSON object (no nested objects or arrays).
#[derive(Debug, PartialEq)]
pub(super) enum Flat<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

/// The members of one flat JSON object, sorted by key (the last of duplicate keys wins), as
/// `serde_json`'s map holds them. `None` when `line` is not exactly one such object.
pub(super) fn flat_object(line: &[u8]) -> Option<Vec<(Cow<'_, str>, Flat<'_>)>> {
    let mut p = Scanner { s: line, i: 0 };
    p.ws();
    p.eat(b'{')?;
    let mut members = Vec::with_capacity(24);
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let value = p.value()?;
            members.push((key, value));
            p.ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.ws();
    if p.i != line.len() {
        return None;
    }
    members.reverse();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, kept| later.0 == kept.0);
    Some(members)
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Option<Flat<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Flat::Str),
            b't' => self.word(b"true", Flat::Bool(true)),
            b'f' => self.word(b"false", Flat::Bool(false)),
            b'n' => self.word(b"null", Flat::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, w: &[u8], v: Flat<'a>) -> Option<Flat<'a>> {
        let end = self.i + w.len();
        (self.s.get(self.i..end)? == w).then(|| {
            self.i = end;
            v
        })
    }

    /// A number as JSON writes it: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<Flat<'a>> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        self.digits()?;
        if self.s[int_start] == b'0' && self.i - int_start > 1 {
            return None;
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits()?;
            integer = false;
        }
        // The scanned bytes are ASCII digits and signs.
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if integer && let Ok(i) = text.parse::<i64>() {
            return Some(Flat::Int(i));
        }
        text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Flat::Float)
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        (self.i > start).then_some(())
    }

    /// A string, borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return std::str::from_utf8(&self.s[start..self.i - 1]).ok().map(Cow::Borrowed),
                b'\\' => break,
                c if c < 0x20 => return None,
                _ => {}
            }
        }
        let mut out: Vec<u8> = self.s[start..self.i - 1].to_vec();
        self.i -= 1;
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).ok().map(Cow::Owned),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    /// The character of a `\u` escape (its `u` already read), a surrogate pair in two.
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if !(0xD800..0xDC00).contains(&hi) {
            return char::from_u32(hi);
        }
        self.eat(b'\\')?;
        self.eat(b'u')?;
        let lo = self.hex4()?;
        if !(0xDC00..0xE000).contains(&lo) {
            return None;
        }
        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        self.i += 4;
        let text = std::str::from_utf8(h).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    }
}

/// An access-log line as a log record: the gateway's service, severity from the status
/// (5xx error, 4xx warning), `METHOD path status duration` as the body, the request's trace
/// and span ids, and every field of the line as an attribute.
pub(super) fn access_record(line: &[u8], gateway: &str) -> Option<LogRecord> {
    let members = flat_object(line)?;
    let get = |k: &str| members.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let text = |k: &str| match get(k) {
        Some(Flat::Str(s)) => &**s,
        _ => "",
    };
    let number = |k: &str| match get(k) {
        Some(Flat::Int(i)) => *i as f64,
        Some(Flat::Float(f)) => *f,
        _ => 0.0,
    };
    let status = number("status") as u16;
    let duration = number("duration_ms");
    let ts = signalbox_core::time::parse_rfc3339(text("ts")).unwrap_or_else(signalbox_core::time::unix_nanos);
    let severity = match status {
        500.. => Severity::ERROR,
        400..=499 => Severity::WARN,
        _ => Severity::INFO,
    };
    let trace_id = signalbox_core::ids::TraceId::from_hex(text("trace_id"));
    let span_id = signalbox_core::ids::SpanId::from_hex(text("span_id"));
    let body = format!("{} {} {status} {duration:.1}ms", text("method"), text("path"));
    let attributes = members
        .iter()
        .filter(|(k, _)| !matches!(&**k, "ts" | "trace_id" | "span_id"))
        .filter_map(|(k, v)| {
            let value = match v {
                Flat::Str(s) => AttrValue::Str(s.to_string()),
                Flat::Int(i) => AttrValue::Int(*i),
                Flat::Float(f) => AttrValue::Float(*f),
                Flat::Bool(b) => AttrValue::Bool(*b),
                Flat::Null => return None,
            };
            let key: Cow<'static, str> = match attribute_key(k) {
                Some(known) => known.into(),
                None if k == "service" => "upstream.service".into(),
                None => format!("http.{k}").into(),
            };
            Some(KeyValue { key, value })
        })
        .collect();
    Some(LogRecord {
        unix_nanos: ts,
        observed_unix_nanos: signalbox_core::time::unix_nanos(),
        severity,
        severity_text: String::new(),
        body,
        service: gateway.to_owned(),
        instance: String::new(),
        resource: Vec::new(),
        attributes,
        trace_id,
        span_id,
    })
}

/// The attribute keys of the fields the gateway writes, as constants (no allocation).
fn attribute_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "service" => "upstream.service",
        "request_id" => "http.request_id",
        "client" => "http.client",
        "method" => "http.method",
        "host" => "http.host",
        "path" => "http.path",
        "protocol" => "http.protocol",
        "route" => "http.route",
        "endpoint" => "http.endpoint",
        "status" => "http.status",
        "tries" => "http.tries",
        "duration_ms" => "http.duration_ms",
        "bytes_out" => "http.bytes_out",
        "error_code" => "http.error_code",
        "error" => "http.error",
        "grpc_status" => "http.grpc_status",
        "client_id" => "http.client_id",
        "user_agent" => "http.user_agent",
        _ => return None,
    })
}

/// A minimal JSON object writer for log lines.
pub(super) struct JsonLine<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonLine<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonLine { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub(super) fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.push(b'"');
        for c in v.chars() {
            match c {
                '"' => self.out.extend_from_slice(b"\\\""),
                '\\' => self.out.extend_from_slice(b"\\\\"),
                '\n' => self.out.extend_from_slice(b"\\n"),
                '\r' => self.out.extend_from_slice(b"\\r"),
                '\t' => self.out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut b = [0u8; 4];
                    self.out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        self.out.push(b'"');
    }

    /// A string of lowercase hex digits of `bytes`, written without a temporary string.
    pub(super) fn hex(&mut self, k: &str, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.key(k);
        self.out.push(b'"');
        for b in bytes {
            self.out.push(DIGITS[(b >> 4) as usize]);
            self.out.push(DIGITS[(b & 15) as usize]);
        }
        self.out.push(b'"');
    }

    /// An integer: the same text as [`JsonLine::num`] gives the same whole number, without
    /// the float formatting.
    pub(super) fn uint(&mut self, k: &str, v: u64) {
        self.key(k);
        let _ = write!(self.out, "{v}");
    }

    pub(super) fn num(&mut self, k: &str, v: f64) {
        self.key(k);
        let _ = write!(self.out, "{v}");
    }

    pub(super) fn raw(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.extend_from_slice(v.as_bytes());
    }

    pub(super) fn end(self) {
        self.out.extend_from_slice(b"}\n");
    }
}
