use super::*;

fn group(rule: Rule, text: &str) -> Vec<String> {
    let m = Multiline { rule, max_lines: 50, max_bytes: 4096, timeout: Duration::from_secs(1) };
    let mut g = Grouper::default();
    let now = Instant::now();
    let mut out: Vec<String> = Vec::new();
    let mut offset = 0;
    for line in text.lines() {
        out.extend(g.push(&m, line, offset, now));
        offset += line.len() as u64 + 1;
    }
    out.extend(g.flush());
    out
}

#[test]
fn java_preset_groups_spring_traces() {
    let text = "2024-02-29 12:00:00.000 ERROR 1 --- [main] a.B : failed\n\
                java.lang.IllegalStateException: boom\n\
                \tat a.B.c(B.java:1)\n\
                Caused by: java.io.IOException: io\n\
                \t... 3 more\n\
                2024-02-29 12:00:01.000  INFO 1 --- [main] a.B : ok\n\
                Exception in thread \"main\" java.lang.Error: x\n\
                \tat a.Main.main(Main.java:3)";
    let r = group(Rule::Continue(Regex::new(JAVA_CONTINUATION).unwrap()), text);
    assert_eq!(r.len(), 3, "{r:#?}");
    assert_eq!(r[0].lines().count(), 5);
    assert!(r[1].ends_with(": ok"));
    assert!(r[2].starts_with("Exception in thread"));
}

#[test]
fn python_preset_groups_chained_tracebacks() {
    let text = "ERROR failed\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n\
                KeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\n\
                Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\nmodule.CustomError: bad\n\
                INFO next";
    let r = group(Rule::Continue(Regex::new(PYTHON_CONTINUATION).unwrap()), text);
    assert_eq!(r.len(), 2, "{r:#?}");
    assert!(r[0].ends_with("module.CustomError: bad"));
    assert_eq!(r[1], "INFO next");
}

#[test]
fn start_pattern_limits_and_pending_offsets() {
    let m = Multiline {
        rule: Rule::Start(Regex::new(r"^\d").unwrap()),
        max_lines: 3,
        max_bytes: 4096,
        timeout: Duration::from_millis(100),
    };
    let mut g = Grouper::default();
    let t0 = Instant::now();
    assert_eq!(g.push(&m, "1 first", 0, t0), None);
    assert_eq!(g.push(&m, " a", 8, t0), None);
    assert_eq!(g.push(&m, " b", 11, t0), None);
    // The fourth line exceeds max_lines: the group is cut.
    assert_eq!(g.push(&m, " c", 14, t0).as_deref(), Some("1 first\n a\n b"));
    assert_eq!(g.pending_start(), Some(14));
    assert_eq!(g.flush_stale(&m, t0 + Duration::from_millis(50)), None);
    assert_eq!(g.flush_stale(&m, t0 + Duration::from_millis(150)).as_deref(), Some(" c"));
    assert_eq!(g.pending_start(), None);
}
