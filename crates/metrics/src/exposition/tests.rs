use super::*;

const NODE_EXPORTER: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 12345.67
node_cpu_seconds_total{cpu="0",mode="user"} 89.5
# HELP http_request_duration_seconds A histogram with "quotes" and a \\ backslash\nand a newline.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1",path="/a \"b\""} 5 1700000000000
http_request_duration_seconds_bucket{le="+Inf",path="/a \"b\""} 7 1700000000000
http_request_duration_seconds_sum{path="/a \"b\""} 1.5e-1
http_request_duration_seconds_count{path="/a \"b\""} 7
# a plain comment
up 1
weird_value NaN
neg -Inf
"#;

#[test]
fn the_text_format_as_exporters_write_it() {
    let e = parse(NODE_EXPORTER, false, Limits::default()).unwrap();
    assert_eq!(e.samples.len(), 9);
    assert_eq!(e.types["node_cpu_seconds_total"], MetricType::Counter);
    assert_eq!(
        e.help["http_request_duration_seconds"],
        "A histogram with \"quotes\" and a \\ backslash\nand a newline."
    );
    let b = &e.samples[2];
    assert_eq!(b.name, "http_request_duration_seconds_bucket");
    assert_eq!(b.labels, vec![("le".into(), "0.1".into()), ("path".into(), "/a \"b\"".into())]);
    assert_eq!(b.timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(e.samples[3].labels[0].1, "+Inf");
    assert_eq!(e.samples[4].value, 0.15);
    assert!(e.samples[7].value.is_nan());
    assert_eq!(e.samples[8].value, f64::NEG_INFINITY);
}

#[test]
fn openmetrics_with_units_exemplars_and_eof() {
    let text = "# TYPE req counter\n# UNIT req_seconds seconds\nreq_total{a=\"b\"} 3 1700000000.5 # {trace_id=\"0af7651916cd43dd\"} 1 1700000000.25\nreq_created 1700000000\n# EOF\n";
    let e = parse(text, true, Limits::default()).unwrap();
    assert_eq!(e.samples[0].timestamp_ms, Some(1_700_000_000_500));
    let ex = e.samples[0].exemplar.as_ref().unwrap();
    assert_eq!(ex.labels, vec![("trace_id".into(), "0af7651916cd43dd".into())]);
    assert_eq!(ex.timestamp_ms, Some(1_700_000_000_250));
    assert_eq!(e.units["req_seconds"], "seconds");
    assert!(parse("req_total 1\n", true, Limits::default()).unwrap_err().message.contains("EOF"));
    assert!(parse("# EOF\nreq_total 1\n", true, Limits::default()).is_err());
}

#[test]
fn bad_lines_are_named_and_limits_hold() {
    for (bad, line) in [
        ("ok 1\n1bad 2\n", 2),
        ("m{a=\"x} 1\n", 1),
        ("m{a=x} 1\n", 1),
        ("m{a=\"1\",a=\"2\"} 1\n", 1),
        ("m{0a=\"1\"} 1\n", 1),
        ("m one\n", 1),
        ("m 1 notatime\n", 1),
        ("m\n", 1),
        ("# TYPE m gaugey\n", 1),
    ] {
        let e = parse(bad, false, Limits::default()).unwrap_err();
        assert_eq!(e.line, line, "{bad:?}: {e}");
    }
    let many: String = (0..11).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
    let l = Limits { max_samples: 10, ..Limits::default() };
    assert!(parse(&many, false, l).unwrap_err().message.contains("more than 10"));
    let labels: String = format!("m{{{}}} 1\n", (0..70).map(|i| format!("l{i}=\"x\"")).collect::<Vec<_>>().join(","));
    assert!(parse(&labels, false, Limits::default()).is_err());
}

#[test]
fn mutated_expositions_never_panic() {
    let mut st = 0xfeed_beef_u64;
    let seed = NODE_EXPORTER.as_bytes();
    for _ in 0..10_000 {
        let mut b = seed.to_vec();
        for _ in 0..3 {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            let at = (st as usize) % b.len();
            b[at] = b"{}\"\\=, #\n1eNaI+-"[(st >> 40) as usize % 16];
        }
        let s = String::from_utf8_lossy(&b);
        let _ = parse(&s, false, Limits::default());
        let _ = parse(&s, true, Limits::default());
    }
}
