//! Aggregations and binary operators with vector matching.

use super::*;

/// `req` for two jobs with two instances each (1, 2 for api; 3, 4 for web), `limit` per
/// job, and `info` mapping jobs to teams.
fn jobs() -> MemStorage {
    let mut db = MemStorage::default();
    for (job, instance, v) in [("api", "a", 1.0), ("api", "b", 2.0), ("web", "a", 3.0), ("web", "b", 4.0)] {
        load_values(&mut db, &format!(r#"req{{job="{job}",instance="{instance}"}}"#), 0, 10, &[v]);
    }
    load_values(&mut db, r#"limit{job="api"}"#, 0, 10, &[10.0]);
    load_values(&mut db, r#"limit{job="web"}"#, 0, 10, &[20.0]);
    load_values(&mut db, r#"info{job="api",team="core"}"#, 0, 10, &[1.0]);
    db
}

#[test]
fn sum_avg_min_max_count_group() {
    let db = jobs();
    let v = |q: &str| vector(&db, q, 0);
    assert_vector(v("sum by (job) (req)"), &[(r#"{job="api"}"#, 3.0), (r#"{job="web"}"#, 7.0)]);
    assert_vector(v("sum(req) by (job)"), &[(r#"{job="api"}"#, 3.0), (r#"{job="web"}"#, 7.0)]);
    assert_vector(v("sum(req)"), &[("{}", 10.0)]);
    assert_vector(v("sum without (instance) (req)"), &[(r#"{job="api"}"#, 3.0), (r#"{job="web"}"#, 7.0)]);
    // by a label nobody has: one group without labels.
    assert_vector(v("sum by (zone) (req)"), &[("{}", 10.0)]);
    // by __name__ keeps the name.
    assert_vector(v("max by (__name__) (req)"), &[("req{}", 4.0)]);
    assert_vector(v("avg by (job) (req)"), &[(r#"{job="api"}"#, 1.5), (r#"{job="web"}"#, 3.5)]);
    assert_vector(v("min by (instance) (req)"), &[(r#"{instance="a"}"#, 1.0), (r#"{instance="b"}"#, 2.0)]);
    assert_vector(v("max by (instance) (req)"), &[(r#"{instance="a"}"#, 3.0), (r#"{instance="b"}"#, 4.0)]);
    assert_vector(v("count by (job) (req)"), &[(r#"{job="api"}"#, 2.0), (r#"{job="web"}"#, 2.0)]);
    assert_vector(v("group by (job) (req)"), &[(r#"{job="api"}"#, 1.0), (r#"{job="web"}"#, 1.0)]);
    assert_vector(v("stdvar by (job) (req)"), &[(r#"{job="api"}"#, 0.25), (r#"{job="web"}"#, 0.25)]);
    assert_vector(v("stddev(req)"), &[("{}", 1.25f64.sqrt())]);
    assert_vector(v("quantile(0.5, req)"), &[("{}", 2.5)]);
    assert_vector(v("quantile by (job) (0.25, req)"), &[(r#"{job="api"}"#, 1.25), (r#"{job="web"}"#, 3.25)]);
}

#[test]
fn topk_and_bottomk_keep_labels_and_order() {
    let db = jobs();
    assert_vector(
        vector(&db, "topk(3, req)", 0),
        &[
            (r#"req{instance="b",job="web"}"#, 4.0),
            (r#"req{instance="a",job="web"}"#, 3.0),
            (r#"req{instance="b",job="api"}"#, 2.0),
        ],
    );
    assert_vector(
        vector(&db, "bottomk(1, req) by (job)", 0),
        &[(r#"req{instance="a",job="api"}"#, 1.0), (r#"req{instance="a",job="web"}"#, 3.0)],
    );
    assert_vector(vector(&db, "topk(0, req)", 0), &[]);
    assert_eq!(vector(&db, "topk(10, req)", 0).len(), 4);
    // In a range query topk picks per step.
    let m = range(&db, "topk(1, req)", 0, 10, 10);
    assert_eq!(m, vec![(r#"req{instance="b",job="web"}"#.to_string(), vec![(0, 4.0), (10, 4.0)])]);
}

#[test]
fn count_values_counts_each_value() {
    let mut db = jobs();
    load_values(&mut db, r#"req{job="db",instance="a"}"#, 0, 10, &[1.5]);
    load_values(&mut db, r#"req{job="db",instance="b"}"#, 0, 10, &[1.5]);
    assert_vector(
        vector(&db, r#"count_values("value", req)"#, 0),
        &[
            (r#"{value="1"}"#, 1.0),
            (r#"{value="1.5"}"#, 2.0),
            (r#"{value="2"}"#, 1.0),
            (r#"{value="3"}"#, 1.0),
            (r#"{value="4"}"#, 1.0),
        ],
    );
    assert_vector(vector(&db, r#"count_values by (job) ("v", req{job="db"})"#, 0), &[(r#"{job="db",v="1.5"}"#, 2.0)]);
    assert_eq!(error(&db, r#"count_values("1bad", req)"#, 0).error_type(), "execution");
}

#[test]
fn arithmetic_with_scalars_drops_the_name() {
    let db = jobs();
    let api_a = r#"req{job="api",instance="a"}"#;
    assert_vector(vector(&db, &format!("{api_a} * 2"), 0), &[(r#"{instance="a",job="api"}"#, 2.0)]);
    assert_close(single(&db, &format!("10 - {api_a}"), 0), 9.0);
    assert_close(single(&db, &format!("{api_a} / 4"), 0), 0.25);
    assert_close(single(&db, &format!("7 % ({api_a} + 2)"), 0), 1.0);
    assert_close(single(&db, &format!("-7 % ({api_a} + 2)"), 0), -1.0);
    assert_close(single(&db, &format!("({api_a} + 1) ^ 3"), 0), 8.0);
    assert_close(single(&db, &format!("{api_a} atan2 1"), 0), 1f64.atan2(1.0));
    assert_close(scalar(&db, "1 / 0", 0), f64::INFINITY);
    assert_close(scalar(&db, "2 > bool 1", 0), 1.0);
    assert_close(scalar(&db, "2 == bool 1", 0), 0.0);
}

#[test]
fn comparisons_filter_or_return_bool() {
    let db = jobs();
    // A filter keeps the sample's value and its name, whichever side the scalar is on.
    assert_vector(
        vector(&db, "req > 2", 0),
        &[(r#"req{instance="a",job="web"}"#, 3.0), (r#"req{instance="b",job="web"}"#, 4.0)],
    );
    assert_vector(
        vector(&db, "2 < req", 0),
        &[(r#"req{instance="a",job="web"}"#, 3.0), (r#"req{instance="b",job="web"}"#, 4.0)],
    );
    assert_vector(
        vector(&db, r#"req{job="api"} >= bool 2"#, 0),
        &[(r#"{instance="a",job="api"}"#, 0.0), (r#"{instance="b",job="api"}"#, 1.0)],
    );
    assert_vector(vector(&db, r#"req{job="api"} != 1"#, 0), &[(r#"req{instance="b",job="api"}"#, 2.0)]);
    // Vector to vector: one-to-one on all labels but the name.
    assert_vector(
        vector(&db, r#"req > bool on(job, instance) (req - 1.5)"#, 0),
        &[
            (r#"{instance="a",job="api"}"#, 1.0),
            (r#"{instance="a",job="web"}"#, 1.0),
            (r#"{instance="b",job="api"}"#, 1.0),
            (r#"{instance="b",job="web"}"#, 1.0),
        ],
    );
}

#[test]
fn one_to_one_matching_with_on_and_ignoring() {
    let db = jobs();
    assert_vector(
        vector(&db, r#"sum by (job) (req) / on(job) limit"#, 0),
        &[(r#"{job="api"}"#, 0.3), (r#"{job="web"}"#, 0.35)],
    );
    assert_vector(
        vector(&db, r#"req{instance="a"} / ignoring(instance) limit"#, 0),
        &[(r#"{job="api"}"#, 0.1), (r#"{job="web"}"#, 0.15)],
    );
    // Without a clause all labels but the name must match: nothing does here.
    assert_vector(vector(&db, "req / limit", 0), &[]);
}

#[test]
fn group_left_and_group_right() {
    let db = jobs();
    assert_vector(
        vector(&db, "req / on(job) group_left limit", 0),
        &[
            (r#"{instance="a",job="api"}"#, 0.1),
            (r#"{instance="a",job="web"}"#, 0.15),
            (r#"{instance="b",job="api"}"#, 0.2),
            (r#"{instance="b",job="web"}"#, 0.2),
        ],
    );
    assert_vector(
        vector(&db, "limit / on(job) group_right req", 0),
        &[
            (r#"{instance="a",job="api"}"#, 10.0),
            (r#"{instance="a",job="web"}"#, 20.0 / 3.0),
            (r#"{instance="b",job="api"}"#, 5.0),
            (r#"{instance="b",job="web"}"#, 5.0),
        ],
    );
    // Extra labels come from the "one" side.
    assert_vector(
        vector(&db, "req * on(job) group_left(team) info", 0),
        &[(r#"{instance="a",job="api",team="core"}"#, 1.0), (r#"{instance="b",job="api",team="core"}"#, 2.0)],
    );
    // Comparisons keep the name of the "many" side.
    assert_vector(
        vector(&db, "req > on(job) group_left limit / 10", 0),
        &[
            (r#"req{instance="a",job="web"}"#, 3.0),
            (r#"req{instance="b",job="api"}"#, 2.0),
            (r#"req{instance="b",job="web"}"#, 4.0),
        ],
    );
}

#[test]
fn many_to_many_matching_is_an_error() {
    let db = jobs();
    let e = error(&db, "limit / on(job) req", 0);
    assert_eq!(e.error_type(), "execution");
    assert!(
        e.to_string().contains("found duplicate series for the match group {job=\"api\"} on the right hand-side"),
        "{e}"
    );
    let e = error(&db, "req / on(job) limit", 0);
    assert!(e.to_string().contains("many-to-one matching must be explicit"), "{e}");
    let e = error(&db, "req / on(job) group_right limit", 0);
    assert!(e.to_string().contains("on the left hand-side"), "{e}");
    // group_left whose results collide once arithmetic drops the names.
    let mut db = jobs();
    load_values(&mut db, r#"req2{job="api",instance="a"}"#, 0, 10, &[5.0]);
    let e = error(&db, r#"{__name__=~"req|req2",instance="a"} + on(job) group_left limit"#, 0);
    assert!(e.to_string().contains("grouping labels must ensure unique matches"), "{e}");
}

#[test]
fn set_operators() {
    let db = jobs();
    let keys = |q: &str| vector(&db, q, 0).into_iter().map(|(l, v)| format!("{l} {v}")).collect::<Vec<_>>();
    assert_eq!(
        keys(r#"req and on(job) limit{job="api"}"#),
        [r#"req{instance="a",job="api"} 1"#, r#"req{instance="b",job="api"} 2"#]
    );
    assert_eq!(
        keys(r#"req unless on(job) limit{job="api"}"#),
        [r#"req{instance="a",job="web"} 3"#, r#"req{instance="b",job="web"} 4"#]
    );
    assert_eq!(keys(r#"req{instance="a"} and req > 2"#), [r#"req{instance="a",job="web"} 3"#]);
    assert_eq!(keys(r#"limit or on(job) req{job=~"api|db"}"#), [r#"limit{job="api"} 10"#, r#"limit{job="web"} 20"#]);
    assert_eq!(
        keys(r#"req{instance="a"} or req{job="api"}"#),
        [r#"req{instance="a",job="api"} 1"#, r#"req{instance="a",job="web"} 3"#, r#"req{instance="b",job="api"} 2"#]
    );
    assert!(keys("req and nope").is_empty());
    assert_eq!(keys("nope or limit").len(), 2);
}
