//! The alert state machine's edges: limits, duplicate label sets, resends.

use crate::promql::Sample;
use crate::rules::alert::{AlertState, alerts_to_send, eval_alerts};
use crate::rules::file::parse_rule_file;
use crate::rules::notifier::{Notification, alertmanager_payload, generator_url};
use std::collections::BTreeMap;

fn rule(extra: &str) -> crate::rules::file::RuleDef {
    let src = format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n{extra}");
    parse_rule_file("t.yml", &src).unwrap().remove(0).rules.remove(0)
}

fn sample(instance: &str) -> Sample {
    Sample { labels: vec![("__name__".into(), "up".into()), ("instance".into(), instance.into())], t: 0, v: 0.0 }
}

#[test]
fn more_alerts_than_the_limit_fail_and_clear() {
    let r = rule("");
    let mut active = BTreeMap::new();
    let e = eval_alerts(&r, vec![sample("a"), sample("b")], 1000, "", 1, &mut active).err().unwrap();
    assert_eq!(e, "exceeded limit of 1 with 2 alerts");
    assert!(active.is_empty());
    let ok = eval_alerts(&r, vec![sample("a")], 1000, "", 1, &mut active).unwrap();
    assert_eq!(ok.series.len(), 2, "ALERTS and ALERTS_FOR_STATE");
    assert_eq!(active.values().next().unwrap().state, AlertState::Firing, "no `for`: fires at once");
}

#[test]
fn labels_that_collapse_two_results_are_an_error() {
    let r = rule("        labels:\n          instance: same\n");
    let mut active = BTreeMap::new();
    let e = eval_alerts(&r, vec![sample("a"), sample("b")], 1000, "", 0, &mut active).err().unwrap();
    assert_eq!(e, "vector contains metrics with the same labelset after applying alert labels");
}

#[test]
fn firing_alerts_are_resent_every_resend_delay_and_resolutions_at_once() {
    let r = rule("");
    let mut active = BTreeMap::new();
    eval_alerts(&r, vec![sample("a")], 0, "", 0, &mut active).unwrap();
    let sent = alerts_to_send(&mut active, 0, 60_000, 15_000);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].valid_until, 240_000, "4 x max(resend_delay, interval)");
    assert!(alerts_to_send(&mut active, 30_000, 60_000, 15_000).is_empty());
    assert_eq!(alerts_to_send(&mut active, 60_000, 60_000, 15_000).len(), 1);
    eval_alerts(&r, vec![], 75_000, "", 0, &mut active).unwrap();
    let sent = alerts_to_send(&mut active, 75_000, 60_000, 15_000);
    assert_eq!(sent.len(), 1, "the resolution is sent at once");
    assert_eq!(sent[0].resolved_at, Some(75_000));
    let n = Notification::of(&sent[0], "up == 0", "http://sb");
    assert_eq!(n.ends_at_ms, 75_000);
    assert_eq!(n.starts_at_ms, 0);
    let body = alertmanager_payload(&[n]);
    assert_eq!(body[0]["endsAt"], "1970-01-01T00:01:15.000Z");
    assert_eq!(body[0]["labels"]["alertname"], "A");
    assert_eq!(
        generator_url("http://sb/", "rate(x[5m]) > 0"),
        "http://sb/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+0&g0.tab=1"
    );
    // Kept 15 minutes after resolving, then dropped.
    eval_alerts(&r, vec![], 75_000 + 15 * 60_000, "", 0, &mut active).unwrap();
    assert_eq!(active.len(), 1);
    eval_alerts(&r, vec![], 75_001 + 15 * 60_000, "", 0, &mut active).unwrap();
    assert!(active.is_empty());
}
