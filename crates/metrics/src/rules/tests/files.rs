//! Rule files: every problem reported with its file and line.

use crate::rules::file::{RuleKind, parse_model_duration, parse_rule_file};
use crate::rules::{DEFAULT_RULES, DEFAULT_RULES_FILE, check_file};

const BROKEN: &str = r#"groups:
  - name: api
    interval: 1x
    rules:
      - record: job:up:sum
        expr: sum(up
      - alert: Down
        record: also
        expr: up == 0
      - alert: NoExpr
        for: 5m
      - alert: BadLabels
        expr: up == 0
        colour: red
        labels:
          1bad: x
          ok: "{{ $labels.job "
        annotations:
          summary: "{{ $value | shout }}"
  - name: api
    rules:
      - record: "not a name"
        expr: up
        for: 1m
"#;

#[test]
fn a_broken_file_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yml");
    std::fs::write(&path, BROKEN).unwrap();
    let f = path.display().to_string();
    let errors = check_file(&path).unwrap_err();
    let expected = vec![
        format!(
            "{f}:3: groups[0].interval: not a valid duration: \"1x\" (expected a duration such as 30s, 5m or 1h30m)"
        ),
        format!("{f}:6: groups[0].rules[0].expr: could not parse expression: unclosed left parenthesis"),
        format!("{f}:7: groups[0].rules[1]: only one of 'record' and 'alert' must be set"),
        format!("{f}:10: groups[0].rules[2].expr: field 'expr' must be set in rule"),
        format!(
            "{f}:14: groups[0].rules[3].colour: unknown field; expected one of record, alert, expr, for, keep_firing_for, labels, annotations"
        ),
        format!("{f}:16: groups[0].rules[3].labels.1bad: invalid label name: \"1bad\""),
        format!("{f}:17: groups[0].rules[3].labels.ok: template: unclosed action: `{{{{` without `}}}}`"),
        format!("{f}:19: groups[0].rules[3].annotations.summary: template: function \"shout\" not defined"),
        format!("{f}:22: groups[1].rules[0].record: invalid recording rule name: \"not a name\""),
        format!("{f}:24: groups[1].rules[0].for: invalid field 'for' in recording rule"),
        format!("{f}:20: groups[1].name: group name \"api\" is repeated in the same file"),
    ];
    assert_eq!(errors, expected, "\n{}", errors.join("\n"));
}

#[test]
fn yaml_syntax_errors_and_unreadable_files_are_reported() {
    let e = parse_rule_file("x.yml", "groups:\n  - name: a\n   rules: [\n").unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("x.yml:3: yaml: "), "{e:?}");
    let e = check_file("/nonexistent/rules.yml").unwrap_err();
    assert!(e[0].starts_with("/nonexistent/rules.yml:0: file: cannot read it"), "{e:?}");
    let e = parse_rule_file("x.yml", "groups:\n  - name: a\n    wat: 1\n").unwrap_err();
    assert_eq!(e, vec!["x.yml:3: groups[0].wat: unknown field; expected one of name, interval, limit, rules"]);
    let e = parse_rule_file("x.yml", "groups: 3\n").unwrap_err();
    assert_eq!(e, vec!["x.yml:1: groups: must be a list of groups"]);
}

#[test]
fn a_good_file_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.yml");
    std::fs::write(
        &path,
        "groups:\n- name: g\n  interval: 30s\n  limit: 5\n  rules:\n  - record: a:b\n    expr: sum(up)\n  - alert: X\n    expr: up == 0\n    for: 0s\n    keep_firing_for: 1m\n    labels: {severity: page}\n",
    )
    .unwrap();
    let s = check_file(&path).unwrap();
    assert_eq!((s.groups, s.recording_rules, s.alerting_rules), (1, 1, 1));
    let g = parse_rule_file("good.yml", &std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(g[0].interval_ms, Some(30_000));
    assert_eq!(g[0].limit, 5);
    assert_eq!(g[0].rules[1].line, 8);
    match &g[0].rules[1].kind {
        RuleKind::Alerting { for_ms, keep_firing_for_ms, .. } => {
            assert_eq!((*for_ms, *keep_firing_for_ms), (0, 60_000))
        }
        RuleKind::Recording => panic!("an alerting rule"),
    }
}

#[test]
fn durations_follow_prometheus() {
    assert_eq!(parse_model_duration("0s"), Ok(0));
    assert_eq!(parse_model_duration("0"), Ok(0));
    assert_eq!(parse_model_duration("1h30m"), Ok(5_400_000));
    assert!(parse_model_duration("1.5m").is_err());
    assert!(parse_model_duration("").is_err());
}

#[test]
fn the_default_rules_load() {
    let groups = parse_rule_file(DEFAULT_RULES_FILE, DEFAULT_RULES).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let names: Vec<&str> = groups.iter().flat_map(|g| &g.rules).map(|r| r.name.as_str()).collect();
    for want in [
        "ServiceHighErrorRate",
        "ServiceHighLatency",
        "CircuitOpen",
        "InstanceDown",
        "MetricsIngestRefused",
        "HostDiskWillFillIn4Hours",
        "HostFilesystemReadOnly",
        "HostMemoryPressure",
        "HostCpuSaturated",
        "HostOomKill",
        "HostClockSkew",
        "HostStoppedReporting",
        "ContainerCpuThrottled",
        "ContainerMemoryNearLimit",
        "ContainerOomKilled",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}
