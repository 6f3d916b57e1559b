use super::*;
use crate::logs::logql_eval::{log_streams, metric_series, run_pipeline, stream_labels};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::KeyValue;

const S: u64 = 1_000_000_000;

fn rec(ts_s: u64, job: &str, line: &str) -> LogRecord {
    LogRecord {
        unix_nanos: ts_s * S,
        observed_unix_nanos: ts_s * S,
        severity: Severity::UNSPECIFIED,
        severity_text: String::new(),
        body: line.into(),
        service: job.into(),
        instance: String::new(),
        resource: vec![KeyValue::str("job", job), KeyValue::str("k8s.namespace.name", "prod")],
        attributes: vec![],
        trace_id: None,
        span_id: None,
    }
}

fn log(q: &str) -> LogQuery {
    match parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Log(l) => l,
        Expr::Metric(_) => panic!("{q} is a metric query"),
    }
}

#[test]
fn grafana_queries_parse() {
    for q in [
        r#"{job="api"}"#,
        r#"{job=~"api|web", k8s_namespace_name!="dev"} |= "error" != "timeout" |~ `(?i)fail` !~ "x+""#,
        r#"{job="api"} | json | status >= 500 and duration > 250ms"#,
        r#"{job="api"} | json status="response.status", path | line_format "{{.path}} {{ .status }}""#,
        r#"{job="api"} | logfmt | level="error" or level="warn""#,
        r#"{job="api"} | logfmt | drop pid, tid | keep level"#,
        r#"count_over_time({job="api"} |= "error" [5m])"#,
        r#"sum by (level) (count_over_time({job="api"} | logfmt [1m]))"#,
        r#"sum(rate({job="api"}[30s])) by (job)"#,
        r#"topk(5, sum by (path) (bytes_over_time({job="api"} | json [1h])))"#,
        r#"vector(1)+vector(1)"#,
        r#"sum(count_over_time({job="api"}[1m])) / 60"#,
    ] {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

#[test]
fn parse_errors_are_located_as_loki_reports_them() {
    let e = parse(r#"{job=""}"#).unwrap_err();
    assert!(e.message.contains("at least one label matcher"), "{e}");
    let e = parse(r#"{job="api"} |= error"#).unwrap_err();
    assert!(e.to_string().starts_with("parse error at line 1, col "), "{e}");
    assert!(parse(r#"{job=~"("}"#).unwrap_err().message.contains("regular expression"));
    assert!(parse(r#"count_over_time({job="a"}[bogus])"#).is_err());
    assert!(parse(r#"topk(0, count_over_time({job="a"}[1m]))"#).is_err());
    assert!(parse(r#"frobnicate({job="a"})"#).is_err());
    assert!(parse(&"(".repeat(100)).is_err());
}

#[test]
fn selectors_line_filters_and_labels() {
    assert_eq!(stream_labels(&rec(1, "api", "x")).get("k8s_namespace_name").map(String::as_str), Some("prod"));
    assert_eq!(stream_labels(&rec(1, "api", "x")).get("service_name").map(String::as_str), Some("api"));
    let records = [rec(1, "api", "GET /a 200"), rec(2, "api", "GET /b 500 error"), rec(3, "web", "error here")];
    let q = log(r#"{job=~"api|web"} |= "error" != "here""#);
    let out: Vec<_> = records.iter().filter_map(|r| run_pipeline(&q, r)).map(|(_, l)| l).collect();
    assert_eq!(out, vec!["GET /b 500 error"]);
    let q = log(r#"{job="api"} |~ "5[0-9]{2}""#);
    assert_eq!(records.iter().filter(|r| run_pipeline(&q, r).is_some()).count(), 1);
}

#[test]
fn json_logfmt_label_filters_and_line_format() {
    let r = rec(1, "api", r#"{"status":503,"response":{"took":"300ms"},"path":"/pay","user":{"id":7}}"#);
    let (labels, line) = run_pipeline(
        &log(r#"{job="api"} | json | status >= 500 and response_took > 250ms | line_format "{{.path}} {{.user_id}}""#),
        &r,
    )
    .unwrap();
    assert_eq!(line, "/pay 7");
    assert_eq!(labels.get("status").map(String::as_str), Some("503"));
    assert!(run_pipeline(&log(r#"{job="api"} | json | status < 500"#), &r).is_none());
    let (labels, _) = run_pipeline(&log(r#"{job="api"} | json code="status""#), &r).unwrap();
    assert_eq!(labels.get("code").map(String::as_str), Some("503"));
    let bad = rec(1, "api", "not json");
    let (labels, _) = run_pipeline(&log(r#"{job="api"} | json"#), &bad).unwrap();
    assert_eq!(labels.get("__error__").map(String::as_str), Some("JSONParserErr"));
    let lf = rec(1, "api", r#"level=warn msg="disk almost full" pct=91"#);
    assert!(run_pipeline(&log(r#"{job="api"} | logfmt | level="error" or level="warn""#), &lf).is_some());
    let (labels, _) = run_pipeline(&log(r#"{job="api"} | logfmt | pct > 90 | drop pct"#), &lf).unwrap();
    assert_eq!(labels.get("msg").map(String::as_str), Some("disk almost full"));
    assert!(!labels.contains_key("pct"));
}

#[test]
fn log_streams_are_grouped_limited_and_ordered() {
    let records = [rec(1, "api", "a"), rec(2, "web", "b"), rec(3, "api", "c"), rec(4, "api", "d")];
    let s = log_streams(&log(r#"{job=~".+"}"#), records.iter(), 3, false);
    let total: usize = s.iter().map(|x| x.entries.len()).sum();
    assert_eq!(total, 3);
    let api = s.iter().find(|x| x.labels.get("job").map(String::as_str) == Some("api")).unwrap();
    assert_eq!(api.entries, vec![(4 * S, "d".to_string()), (3 * S, "c".to_string())], "newest first");
    let fwd = log_streams(&log(r#"{job="api"}"#), records.iter(), 2, true);
    assert_eq!(fwd[0].entries, vec![(S, "a".to_string()), (3 * S, "c".to_string())]);
}

#[test]
fn metric_queries_count_over_windows_as_loki_does() {
    // One line a second for 10 s from two jobs; api lines 3 and 7 are errors.
    let mut records = Vec::new();
    for t in 1..=10 {
        records.push(rec(t, "api", if t == 3 || t == 7 { "level=error" } else { "level=info" }));
        records.push(rec(t, "web", "level=info"));
    }
    let m = |q: &str| match parse(q).unwrap() {
        Expr::Metric(m) => m,
        _ => panic!(),
    };
    // count_over_time over (t-5s, t] at t = 5, 10.
    let s = metric_series(&m(r#"count_over_time({job="api"}[5s])"#), &records, 5 * S, 10 * S, 5 * S);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].points, vec![(5 * S, 5.0), (10 * S, 5.0)]);
    let s = metric_series(
        &m(r#"sum by (level) (count_over_time({job=~".+"} | logfmt [10s]))"#),
        &records,
        10 * S,
        10 * S,
        S,
    );
    let get =
        |lvl: &str| s.iter().find(|x| x.labels.get("level").map(String::as_str) == Some(lvl)).unwrap().points[0].1;
    assert_eq!((get("info"), get("error")), (18.0, 2.0));
    let s = metric_series(&m(r#"sum(rate({job="api"}[10s]))"#), &records, 10 * S, 10 * S, S);
    assert_eq!(s[0].points, vec![(10 * S, 1.0)]);
    assert!(s[0].labels.is_empty());
    let s =
        metric_series(&m(r#"topk(1, sum by (job) (bytes_over_time({job=~".+"}[10s])))"#), &records, 10 * S, 10 * S, S);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].labels.get("job").map(String::as_str), Some("api"), "api's error lines are longer");
    let s = metric_series(&m("vector(1)+vector(1)"), &records, 10 * S, 10 * S, S);
    assert_eq!(s[0].points, vec![(10 * S, 2.0)]);
    let s = metric_series(&m(r#"sum(count_over_time({job="api"}[10s])) * 2"#), &records, 10 * S, 10 * S, S);
    assert_eq!(s[0].points, vec![(10 * S, 20.0)]);
}

#[test]
fn mutated_logql_never_panics() {
    let seeds = [
        r#"sum by (level) (count_over_time({job=~"a|b"} | json x="a.b" | logfmt | x >= 5 and y="z" or w!~"q" | line_format "{{.x}}" [5m]))"#,
        r#"topk(3, rate({a="b"} |= "x" !~ `y+` [1h])) / 2"#,
        r#"{a="b"} | drop c, d | keep e"#,
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let r = rec(1, "a", r#"{"a":{"b":7}} level=error x=9"#);
    for i in 0..20_000 {
        let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % (b.len() + 1);
            let spice = b"{}()[]|=~!\"`,.5mhs ";
            match next() % 3 {
                0 if at < b.len() => {
                    b.remove(at);
                }
                1 => b.insert(at, spice[(next() as usize) % spice.len()]),
                _ => b.truncate(at),
            }
        }
        if let Ok(e) = parse(&String::from_utf8_lossy(&b)) {
            match e {
                Expr::Log(q) => {
                    let _ = run_pipeline(&q, &r);
                }
                Expr::Metric(m) => {
                    let _ = metric_series(&m, std::slice::from_ref(&r), 0, 10 * S, S);
                }
            }
        }
    }
}
