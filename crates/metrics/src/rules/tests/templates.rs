//! The template subset, printed as Prometheus (Go) prints it.

use crate::rules::template::{
    Template, TemplateData, go_float_e, go_float_v, humanize, humanize_duration, humanize1024,
};

fn expand(src: &str, value: f64) -> String {
    let t = Template::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let data = TemplateData {
        labels: [("service", "checkout"), ("instance", "10.0.0.1:80")].into_iter().collect(),
        value,
        external_url: "https://sb.example",
        active_at_ms: 1_700_000_000_000,
    };
    t.expand(&data).unwrap()
}

#[test]
fn values_labels_and_pipelines_expand() {
    assert_eq!(expand("{{ $labels.service }} is at {{ $value }}", 0.5), "checkout is at 0.5");
    assert_eq!(expand("{{ .Labels.instance }}/{{ .Value }}", 3.0), "10.0.0.1:80/3");
    assert_eq!(expand("{{ $labels.missing }}|", 1.0), "|");
    assert_eq!(expand("{{ $value | humanize }}", 1234567.0), "1.235M");
    assert_eq!(expand("{{ humanize $value }}", 0.0012), "1.2m");
    assert_eq!(expand("{{ $value | humanize1024 }}", 2048.0), "2ki");
    assert_eq!(expand("{{ $value | humanizePercentage }}", 0.0512), "5.12%");
    assert_eq!(expand("{{ $value | humanizeDuration }}", 3725.0), "1h 2m 5s");
    assert_eq!(expand(r#"{{ printf "%.2f" $value }}"#, 2.0 / 3.0), "0.67");
    assert_eq!(expand(r#"{{ printf "%s has %5.1f%%" $labels.service $value }}"#, 12.345), "checkout has  12.3%");
    assert_eq!(expand("{{ $externalURL }}/alerts", 1.0), "https://sb.example/alerts");
    assert_eq!(expand("{{ $activeAtMs }}/{{ $windowStartMs }}", 1.0), "1700000000000/1699999100000");
    assert_eq!(expand("a  {{- $labels.service -}}  b", 1.0), "acheckoutb");
    assert_eq!(expand("{{ $labels.service | toUpper }}", 1.0), "CHECKOUT");
    assert_eq!(expand("/logs?query={{ $labels.instance | urlquery }}", 1.0), "/logs?query=10.0.0.1%3A80");
    assert_eq!(expand(r#"{{ "}}" }}"#, 1.0), "}}");
    assert_eq!(expand("{{/* a comment */}}x", 1.0), "x");
    assert_eq!(expand("/services/{{ $labels.service }}?x={{ $value }}", 1e6), "/services/checkout?x=1e+06");
}

#[test]
fn syntax_errors_and_unknown_functions_fail_at_parse() {
    for (src, want) in [
        ("{{ $value | shout }}", "function \"shout\" not defined"),
        ("{{ $value", "unclosed action"),
        ("a }} b", "unexpected `}}`"),
        ("{{ $labels }}", "is a map"),
        ("{{ $nope }}", "undefined variable"),
        ("{{ }}", "missing value"),
        ("{{ \"open }}", "unclosed action"),
        ("{{ `a }}", "unclosed action"),
        ("{{ humanize }}", "wrong number of args"),
        ("{{ $value | }}", "missing command"),
    ] {
        let e = Template::parse(src).unwrap_err();
        assert!(e.contains(want), "{src}: {e}");
    }
}

#[test]
fn numbers_print_as_go_does() {
    assert_eq!(go_float_v(100000.0), "100000");
    assert_eq!(go_float_v(1e21), "1e+21");
    assert_eq!(go_float_v(1234567.0), "1.234567e+06");
    assert_eq!(go_float_v(123456.0), "123456");
    assert_eq!(go_float_v(0.0001), "0.0001");
    assert_eq!(go_float_v(0.00001), "1e-05");
    assert_eq!(go_float_v(f64::NAN), "NaN");
    assert_eq!(go_float_e(1.0), "1e+00");
    assert_eq!(go_float_e(0.25), "2.5e-01");
    assert_eq!(go_float_e(-1234.5), "-1.2345e+03");
    assert_eq!(humanize(0.0), "0");
    assert_eq!(humanize(999.0), "999");
    assert_eq!(humanize(1e-9), "1n");
    assert_eq!(humanize1024(1.0), "1");
    assert_eq!(humanize1024(1536.0 * 1024.0), "1.5Mi");
    assert_eq!(humanize_duration(0.0), "0s");
    assert_eq!(humanize_duration(1.5), "1.5s");
    assert_eq!(humanize_duration(0.25), "250ms");
    assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
}
