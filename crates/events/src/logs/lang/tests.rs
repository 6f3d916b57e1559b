use super::*;
use crate::logs::eval::{matches, required_values, required_words};
use signalbox_core::ids::TraceId;
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::KeyValue;

fn rec(body: &str, sev: Severity, service: &str, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        unix_nanos: 1,
        observed_unix_nanos: 1,
        severity: sev,
        severity_text: sev.name().into(),
        body: body.into(),
        service: service.into(),
        instance: "i-1".into(),
        resource: vec![KeyValue::str("host.name", "node-7")],
        attributes: attrs,
        trace_id: TraceId::from_hex("0af7651916cd43dd8448eb211c80319c"),
        span_id: None,
    }
}

fn m(q: &str, r: &LogRecord) -> bool {
    matches(&parse(q).unwrap_or_else(|e| panic!("{q}: {e}")).filter, r)
}

#[test]
fn words_phrases_and_wildcards() {
    let r = rec("Connection reset by peer after 30s timeout", Severity::ERROR, "checkout", vec![]);
    assert!(m("timeout", &r));
    assert!(m("TIMEOUT reset", &r));
    assert!(!m("timeouts", &r));
    assert!(m("time*", &r));
    assert!(m("t?meout", &r));
    assert!(m("\"reset by peer\"", &r));
    assert!(!m("\"peer by reset\"", &r));
    assert!(m("", &r), "an empty query matches everything");
}

#[test]
fn fields_comparisons_regex_and_existence() {
    let r = rec(
        "GET /api/v2/orders done",
        Severity::WARN,
        "checkout",
        vec![KeyValue::int("status", 503), KeyValue::str("path", "/api/v2/orders"), KeyValue::str("user_id", "u-42")],
    );
    assert!(m("service:checkout", &r));
    assert!(m("service:CHECK*", &r));
    assert!(m("status:>=500", &r));
    assert!(!m("status:<500", &r));
    assert!(m("level:warn", &r));
    assert!(m("level:>=warning", &r));
    assert!(!m("level:>=error", &r));
    assert!(m("path:~\"/api/v[0-9]+/.*\"", &r));
    assert!(!m("path:~\"/v[0-9]\"", &r), "a regex matches the whole value");
    assert!(m("user_id:*", &r));
    assert!(!m("session_id:*", &r));
    assert!(m("host.name:node-7", &r), "resource attributes are fields too");
    assert!(m("trace_id:0af7651916cd43dd8448eb211c80319c", &r));
    assert!(m("msg:orders", &r), "a word of the body");
}

#[test]
fn boolean_logic_and_precedence() {
    let r = rec("payment declined", Severity::ERROR, "payments", vec![]);
    assert!(m("declined AND service:payments", &r));
    assert!(m("approved OR declined", &r));
    assert!(!m("NOT declined", &r));
    assert!(m("-approved", &r));
    assert!(m("(approved OR declined) service:payments", &r));
    assert!(!m("approved OR declined AND service:orders", &r), "AND binds tighter than OR");
    assert!(m("declined OR approved AND service:orders", &r));
}

#[test]
fn aggregations_parse() {
    let q = parse("level:error | count by service").unwrap();
    assert_eq!(q.aggregation, Some(Aggregation::Count { by: Some("service".into()) }));
    assert_eq!(parse("| top 5 user_id").unwrap().aggregation, Some(Aggregation::Top { n: 5, field: "user_id".into() }));
    assert_eq!(
        parse("\"a|b\" | stats count, avg(latency_ms), p99(latency_ms) by route").unwrap().aggregation,
        Some(Aggregation::Stats {
            stats: vec![Stat::Count, Stat::Avg("latency_ms".into()), Stat::Quantile(0.99, "latency_ms".into())],
            by: Some("route".into())
        })
    );
    assert!(parse("x | top 0 f").is_err());
    assert!(parse("x | stats p101(f)").is_err());
    assert!(parse("x | frobnicate").is_err());
}

#[test]
fn errors_name_the_offset() {
    let e = parse("service:checkout AND (timeout").unwrap_err();
    assert!(e.message.contains(")"), "{e}");
    let e = parse("status:>").unwrap_err();
    assert!(e.message.contains("number"), "{e}");
    assert_eq!(parse("\"open").unwrap_err().offset, 0);
    assert!(parse("path:~\"(\"").unwrap_err().message.contains("regular expression"));
    assert!(parse(&"(".repeat(200)).is_err(), "nesting is bounded");
    assert!(parse(&"x ".repeat(MAX_QUERY_BYTES)).is_err(), "length is bounded");
    assert!(parse(":x").is_err());
}

#[test]
fn required_words_and_values_for_block_pruning() {
    let q = parse("timeout \"reset by\" service:checkout trace_id:ABC (a OR b) -c time*").unwrap();
    assert_eq!(required_words(&q.filter), vec!["by", "reset", "timeout"]);
    assert_eq!(
        required_values(&q.filter),
        vec![("service".to_string(), "checkout".to_string()), ("trace_id".to_string(), "abc".to_string())]
    );
}

#[test]
fn mutated_queries_never_panic() {
    let seeds =
        ["service:a AND (b OR \"c d\") | count by e", "x:>=5 -y:~\"[a-z]+\" z*", "level:>=warn | stats p99(l) by s"];
    let mut state = 0x1234_5678_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..20_000 {
        let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % (b.len() + 1);
            match next() % 3 {
                0 if at < b.len() => {
                    b.remove(at);
                }
                1 => {
                    let spice = b"():\"|-~*<>= aANDORNOT\xc3\xa9";
                    b.insert(at, spice[(next() as usize) % spice.len()])
                }
                _ => b.truncate(at),
            }
        }
        let s = String::from_utf8_lossy(&b);
        if let Ok(q) = parse(&s) {
            let _ = matches(&q.filter, &rec("a b c d", Severity::INFO, "a", vec![]));
        }
    }
}
