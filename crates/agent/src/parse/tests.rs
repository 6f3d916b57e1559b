use super::*;

fn parser(format: Format, ts_format: &str) -> Parser {
    Parser {
        format,
        ts_fields: vec!["timestamp".into(), "time".into(), "ts".into()],
        ts_format: TsFormat::from_config(ts_format).unwrap(),
        level_fields: vec!["level".into(), "severity".into()],
        message_fields: vec!["message".into(), "msg".into()],
    }
}

#[test]
fn json_flattens_and_takes_out_known_fields() {
    let p = parser(Format::Json, "rfc3339");
    let out = p.parse(
        r#"{"time":"2024-02-29T12:34:56.789Z","level":"warning","msg":"disk low","ctx":{"disk":"sda","pct":93},"trace.id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","tags":[1,2],"none":null}"#,
    );
    assert_eq!(out.timestamp_ns, Some(1_709_210_096_789_000_000));
    assert_eq!(out.severity.as_deref(), Some("WARN"));
    assert_eq!(out.body, "disk low");
    assert_eq!(hex::encode(out.trace_id.unwrap()), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex::encode(out.span_id.unwrap()), "00f067aa0ba902b7");
    assert_eq!(
        out.fields,
        vec![("ctx.disk".into(), "sda".into()), ("ctx.pct".into(), "93".into()), ("tags".into(), "[1,2]".into())]
    );
    assert!(!out.format_error && !out.timestamp_error);
}

#[test]
fn bad_input_is_kept_whole() {
    let p = parser(Format::Json, "rfc3339");
    let out = p.parse("not json {");
    assert!(out.format_error);
    assert_eq!(out.body, "not json {");
    let out = p.parse(r#"{"time":"yesterday","message":"m"}"#);
    assert!(out.timestamp_error);
    assert_eq!(out.timestamp_ns, None);
    assert_eq!(out.fields, vec![("timestamp".into(), "yesterday".into())]);
    // An all-zero or malformed trace id stays an attribute.
    let out = p.parse(r#"{"trace_id":"00000000000000000000000000000000","traceId":"zz"}"#);
    assert_eq!(out.trace_id, None);
    assert_eq!(out.fields.len(), 2);
}

#[test]
fn logfmt_pairs_quotes_and_flags() {
    assert_eq!(
        logfmt_fields(r#"level=info msg="hello \"world\"" user=ana dry_run"#).unwrap(),
        vec![
            ("level".into(), "info".into()),
            ("msg".into(), "hello \"world\"".into()),
            ("user".into(), "ana".into()),
            ("dry_run".into(), "true".into()),
        ]
    );
    assert_eq!(logfmt_fields("plain words only"), None);
    assert_eq!(logfmt_fields(r#"a="unclosed"#), None);
    assert_eq!(logfmt_fields("=x"), None);
    assert_eq!(logfmt_fields(r#"k="é\ü""#).unwrap(), vec![("k".into(), "éü".into())]);
    let p = parser(Format::Logfmt, "unix_ms");
    let out = p.parse("ts=1700000000123 level=ERROR msg=boom code=7");
    assert_eq!(out.timestamp_ns, Some(1_700_000_000_123_000_000));
    assert_eq!(out.severity.as_deref(), Some("ERROR"));
    assert_eq!(out.body, "boom");
    assert_eq!(out.fields, vec![("code".into(), "7".into())]);
}

#[test]
fn regex_groups_and_strftime_timestamps() {
    let re = Regex::new(r"^(?P<timestamp>\S+ \S+) (?P<level>\w+) \[(?P<thread>[^\]]+)\] (?P<message>.*)$").unwrap();
    let p = parser(Format::Regex(re), "%Y-%m-%d %H:%M:%S%.f");
    let out = p.parse("2024-02-29 12:34:56.5 ERROR [main] failed\n\tat a.B.c(B.java:1)");
    assert_eq!(out.timestamp_ns, Some(1_709_210_096_500_000_000));
    assert_eq!(out.severity.as_deref(), Some("ERROR"));
    assert_eq!(out.body, "failed\n\tat a.B.c(B.java:1)");
    assert_eq!(out.fields, vec![("thread".into(), "main".into())]);
    let out = p.parse("no match here");
    assert!(out.format_error);
}

#[test]
fn timestamp_formats() {
    let f = TsFormat::from_config("%d/%b/%Y:%H:%M:%S %z").unwrap();
    assert_eq!(f.parse("29/Feb/2024:13:34:56 +0100"), Some(1_709_210_096_000_000_000));
    assert_eq!(TsFormat::from_config("unix").unwrap().parse("1700000000.25"), Some(1_700_000_000_250_000_000));
    assert_eq!(TsFormat::from_config("unix_ns").unwrap().parse("17"), Some(17));
    assert_eq!(TsFormat::from_config("unix").unwrap().parse("-5"), None);
    assert_eq!(TsFormat::from_config("unix").unwrap().parse("99999999999999999999999999999999999999"), None);
    assert_eq!(TsFormat::from_config("rfc3339").unwrap().parse("1969-12-31T23:59:59Z"), None);
    assert!(TsFormat::from_config("%Q").is_err());
    let f = TsFormat::from_config("%Y-%m-%dT%H:%M:%S%.f").unwrap();
    assert_eq!(f.parse("2024-02-29T12:34:56"), Some(1_709_210_096_000_000_000));
    assert_eq!(f.parse("2024-02-29T12:34:56.000001"), Some(1_709_210_096_000_001_000));
    let f = TsFormat::from_config("%H:%M:%S,%3f %d.%m.%Y").unwrap();
    assert_eq!(f.parse("12:34:56,250 29.02.2024"), Some(1_709_210_096_250_000_000));
    let f = TsFormat::from_config("%Y%m%d %H%M%S %%f").unwrap();
    assert_eq!(f.parse("20240229 123456 %f"), Some(1_709_210_096_000_000_000));
}
