use super::access_log::{JsonLine, access_record, flat_object};
use super::head_sampled;
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::{AttrValue, KeyValue};

#[test]
fn log_lines_are_valid_json() {
    let mut buf = Vec::new();
    let mut j = JsonLine::new(&mut buf);
    j.str("path", "/a\"b\\c\n\u{1}é");
    j.num("status", 200.0);
    j.num("ms", 1.25);
    j.raw("endpoint", "null");
    j.uint("bytes", 123_456_789);
    let id = TraceId::random();
    j.hex("trace_id", &id.0);
    j.end();
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v["path"], "/a\"b\\c\n\u{1}é");
    assert_eq!(v["status"], 200);
    assert_eq!(v["ms"], 1.25);
    assert!(v["endpoint"].is_null());
    assert_eq!(v["bytes"], 123_456_789);
    assert_eq!(v["trace_id"], id.to_hex());
    // Whole numbers read the same written either way.
    for n in [0u64, 7, 200, 65_535, 1 << 40] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        JsonLine::new(&mut a).num("n", n as f64);
        JsonLine::new(&mut b).uint("n", n);
        assert_eq!(a, b);
    }
}

/// The record the writer thread built before the flat scanner, through `serde_json::Value`:
/// the reference the scanner must match.
fn reference_record(line: &[u8], gateway: &str) -> Option<LogRecord> {
    let serde_json::Value::Object(obj) = serde_json::from_slice(line).ok()? else { return None };
    let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let status = obj.get("status").and_then(|v| v.as_f64()).unwrap_or(0.0) as u16;
    let duration = obj.get("duration_ms").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let ts = signalbox_core::time::parse_rfc3339(text("ts")).unwrap_or_else(signalbox_core::time::unix_nanos);
    let severity = match status {
        500.. => Severity::ERROR,
        400..=499 => Severity::WARN,
        _ => Severity::INFO,
    };
    let attributes = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "ts" | "trace_id" | "span_id"))
        .filter_map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => AttrValue::Str(s.clone()),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => AttrValue::Int(i),
                    None => AttrValue::Float(n.as_f64()?),
                },
                serde_json::Value::Bool(b) => AttrValue::Bool(*b),
                _ => return None,
            };
            let key = if k == "service" { "upstream.service".to_owned() } else { format!("http.{k}") };
            Some(KeyValue { key: key.into(), value })
        })
        .collect();
    Some(LogRecord {
        unix_nanos: ts,
        observed_unix_nanos: 0,
        severity,
        severity_text: String::new(),
        body: format!("{} {} {status} {duration:.1}ms", text("method"), text("path")),
        service: gateway.to_owned(),
        instance: String::new(),
        resource: Vec::new(),
        attributes,
        trace_id: TraceId::from_hex(text("trace_id")),
        span_id: SpanId::from_hex(text("span_id")),
    })
}

/// Records equal but for floats, which may differ in the last place: `serde_json` (without
/// its `float_roundtrip` feature) does not always round to the nearest double; the scanner
/// uses the standard library's correctly rounded parse, so a value written with `{}` reads
/// back exactly.
fn assert_same(got: Option<LogRecord>, want: Option<LogRecord>, line: &[u8]) {
    let (Some(mut got), Some(mut want)) = (got, want) else { panic!("{}", String::from_utf8_lossy(line)) };
    if !line.windows(4).any(|w| w == b"\"ts\"") {
        // No timestamp in the line: both took the clock's time when they read it.
        (got.unix_nanos, want.unix_nanos) = (0, 0);
    }
    let (ga, wa) = (std::mem::take(&mut got.attributes), std::mem::take(&mut want.attributes));
    assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
    assert_eq!(ga.len(), wa.len(), "{}", String::from_utf8_lossy(line));
    for (g, w) in ga.iter().zip(&wa) {
        assert_eq!(g.key, w.key);
        match (&g.value, &w.value) {
            (AttrValue::Float(a), AttrValue::Float(b)) => {
                assert!((a - b).abs() <= 2.0 * f64::EPSILON * a.abs().max(b.abs()), "{a} {b}");
                assert_eq!(format!("{a}").parse::<f64>().unwrap(), *a);
            }
            (a, b) => assert_eq!(a, b, "{}", String::from_utf8_lossy(line)),
        }
    }
}

fn scanned(line: &[u8]) -> Option<LogRecord> {
    access_record(line, "edge").map(|mut r| {
        r.observed_unix_nanos = 0;
        r
    })
}

/// Lines as the gateway writes them, with awkward strings and numbers.
fn sample_lines() -> Vec<Vec<u8>> {
    let texts = ["", "/plain", "/q\"uote\\back", "line\nbreak\r\ttab", "\u{1}\u{1f}ctl", "é ü 中文 🚀", "a/b?c=d&e"];
    let numbers = [0.0, 200.0, 503.0, 1.25, 0.0004, 1e-7, 123456.789, 9.5e15, 1e300];
    let mut lines = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        for (n, x) in numbers.iter().enumerate() {
            let mut buf = Vec::new();
            let mut j = JsonLine::new(&mut buf);
            j.str("ts", "2026-12-02T09:30:00.123Z");
            j.hex("trace_id", &TraceId::random().0);
            j.hex("span_id", &SpanId::random().0);
            j.str("request_id", &format!("req-{i}-{n}"));
            j.str("client", "127.0.0.1");
            j.str("method", if n % 2 == 0 { "GET" } else { "POST" });
            j.str("host", "example.test");
            j.str("path", t);
            j.str("protocol", "1.1");
            j.str("route", "r");
            j.str("service", "svc");
            if n % 3 == 0 {
                j.raw("endpoint", "null");
            } else {
                j.str("endpoint", "127.0.0.1:1");
            }
            j.num("status", [200.0, 404.0, 503.0][n % 3]);
            j.num("tries", (n % 4) as f64);
            j.num("duration_ms", *x);
            j.num("bytes_out", *x * 3.0);
            if i % 2 == 1 {
                j.str("error_code", "upstream_timeout");
                j.str("error", t);
                j.num("grpc_status", 14.0);
                j.str("client_id", "key-1");
            }
            j.str("user_agent", t);
            j.end();
            buf.pop();
            lines.push(buf);
        }
    }
    lines
}

#[test]
fn access_records_match_the_serde_json_reference() {
    for line in sample_lines() {
        assert_same(scanned(&line), reference_record(&line, "edge"), &line);
    }
    // Hand-written lines: whitespace, duplicate keys, escapes JSON allows, booleans.
    for line in [
        &br#" { "status" : 201 , "method":"GET","path":"\/x\u00e9\ud83d\ude80" , "ok": true, "no": false } "#[..],
        br#"{"status":500,"status":404,"service":"a","service":"b"}"#,
        br#"{}"#,
        br#"{"duration_ms":-1.5e2,"tries":-3,"big":18446744073709551615,"e":1E3}"#,
        br#"{"s":"\b\f\/"}"#,
    ] {
        assert_same(scanned(line), reference_record(line, "edge"), line);
    }
}

#[test]
fn malformed_lines_are_skipped_as_serde_json_skips_them() {
    for bad in [
        &b""[..],
        b"{",
        b"[1]",
        b"\"s\"",
        br#"{"a":}"#,
        br#"{"a":1,}"#,
        br#"{"a" 1}"#,
        br#"{"a":1} x"#,
        br#"{"a":01}"#,
        br#"{"a":1.}"#,
        br#"{"a":-}"#,
        br#"{"a":1e}"#,
        br#"{"a":1e400}"#,
        br#"{"a":tru}"#,
        br#"{"a":"x}"#,
        br#"{"a":"\q"}"#,
        br#"{"a":"\u12"}"#,
        br#"{"a":"\ud800"}"#,
        br#"{"a":"\ud800\u0041"}"#,
        b"{\"a\":\"\x01\"}",
        b"{\"a\":\"\xff\"}",
    ] {
        assert!(reference_record(bad, "edge").is_none(), "the reference takes {bad:?}");
        assert!(flat_object(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        assert!(access_record(bad, "edge").is_none());
    }
}

#[test]
fn head_sampling_follows_the_trace_id() {
    let ids: Vec<TraceId> = (0..20_000).map(|_| TraceId::random()).collect();
    assert!(ids.iter().all(|t| head_sampled(t, 1.0)));
    assert!(!ids.iter().any(|t| head_sampled(t, 0.0)));
    let kept = ids.iter().filter(|t| head_sampled(t, 0.1)).count();
    assert!((1_600..2_400).contains(&kept), "{kept} of 20000 kept at 10%");
    // The same id gets the same answer, and a lower ratio keeps a subset of a higher one.
    for t in &ids[..1000] {
        let same = TraceId::from_hex(&t.to_hex()).unwrap();
        assert_eq!(head_sampled(t, 0.3), head_sampled(&same, 0.3));
        assert!(!head_sampled(t, 0.05) || head_sampled(t, 0.3));
    }
    // A 64-bit (B3) trace id sits in the last 8 bytes and is sampled the same way.
    let short: Vec<TraceId> = (0..20_000).map(|_| TraceId::from_hex(&SpanId::random().to_hex()).unwrap()).collect();
    let kept = short.iter().filter(|t| head_sampled(t, 0.5)).count();
    assert!((9_000..11_000).contains(&kept), "{kept} of 20000 64-bit ids kept at 50%");
}
