use super::*;
use crate::config::ExportConfig;
use signalbox_core::config::Problems;

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap() {
    let mut b = Backoff { min: Duration::from_millis(100), max: Duration::from_secs(1), attempt: 0 };
    let d: Vec<Duration> = (0..6).map(|_| b.next()).collect();
    assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100), "{d:?}");
    assert!(d[1] >= Duration::from_millis(100) && d[1] <= Duration::from_millis(200), "{d:?}");
    for x in &d[4..] {
        assert!(*x >= Duration::from_millis(500) && *x <= Duration::from_secs(1), "{d:?}");
    }
}

#[test]
fn answers_are_classified_as_the_spec_says() {
    use crate::send::{Outcome, classify, parse_retry_after};
    use http::StatusCode;
    assert_eq!(classify(StatusCode::NO_CONTENT, None, b""), Outcome::Delivered);
    let after = parse_retry_after(&http::HeaderValue::from_static("7"));
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert!(matches!(
        classify(StatusCode::TOO_MANY_REQUESTS, after, b"slow down"),
        Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    assert!(matches!(classify(StatusCode::BAD_GATEWAY, None, b""), Outcome::Retry { after: None, .. }));
    assert!(
        matches!(classify(StatusCode::BAD_REQUEST, None, b"out of order"), Outcome::Rejected { error } if error.contains("out of order"))
    );
    assert!(matches!(classify(StatusCode::NOT_FOUND, None, b""), Outcome::Rejected { .. }));
}

#[tokio::test]
async fn a_full_hand_off_refuses_new_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let c: ExportConfig =
        toml::from_str("[[loki]]\nurl = \"http://127.0.0.1:9/loki/api/v1/push\"\nbatch_size = 10").unwrap();
    let mut p = Problems::default();
    let cfg = c.compile("export", dir.path(), &mut p).remove(0);
    let reg = Registry::new();
    let (trigger, stop) = signalbox_core::shutdown::channel();
    let (run, tasks) = Running::start(cfg, &reg, stop).unwrap();
    let record = signalbox_core::log::LogRecord {
        unix_nanos: 1,
        observed_unix_nanos: 1,
        severity: Default::default(),
        severity_text: String::new(),
        body: "x".into(),
        service: "s".into(),
        instance: String::new(),
        resource: vec![],
        attributes: vec![],
        trace_id: None,
        span_id: None,
    };
    // More than the hand-off holds at once: refused whole, counted, never copied.
    let many = run.max_pending + 1;
    run.offer(many, || panic!("a refused batch must not be copied"));
    let dropped = r#"signalbox_export_dropped_records_total{exporter="loki-0",reason="handoff_full"}"#;
    assert!(reg.render().contains(&format!("{dropped} {many}")), "{}", reg.render());
    // What fits is queued on disk.
    run.offer(25, || Batch::Logs(vec![record.clone(); 25]));
    let queued = async {
        while run.metrics.queued_records.get() < 25 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), queued).await.expect("records queued");
    assert!(run.queue.usage().0 >= 1);
    trigger.trigger();
    for t in tasks {
        t.await.unwrap();
    }
}
