use super::*;

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

#[test]
fn answers_are_classified() {
    let native = OutputKind::Native;
    assert_eq!(classify(native, StatusCode::OK, None, br#"{"accepted":3}"#, 3), Outcome::Ack { rejected: 0 });
    let busy = classify(native, StatusCode::SERVICE_UNAVAILABLE, Some(&hv("7")), b"", 3);
    assert!(matches!(busy, Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(7)));
    let limited = classify(native, StatusCode::TOO_MANY_REQUESTS, None, b"", 3);
    assert!(matches!(limited, Outcome::Retry { after: None, .. }));
    let bad =
        classify(native, StatusCode::BAD_REQUEST, None, br#"{"error":"e","code":"c","field":"lines[1].body"}"#, 3);
    assert!(matches!(bad, Outcome::Invalid { ref lines, .. } if lines == &[1]));
    // A 400 that names no line, or a line past the batch, is retried rather than dropped.
    let unnamed = classify(native, StatusCode::BAD_REQUEST, None, br#"{"error":"e","code":"c","field":"severity"}"#, 3);
    assert!(matches!(unnamed, Outcome::Retry { .. }));
    assert!(invalid_lines(br#"{"invalid_lines":[0,5]}"#, 3).is_empty());
    assert_eq!(invalid_lines(br#"{"field":"lines[2]","invalid_lines":[0,2]}"#, 3), vec![0, 2]);
    // The node's own form: `line N`, counted from 1.
    assert_eq!(
        invalid_lines(br#"{"error":"line 2: not valid JSON","code":"invalid_field","field":"line 2"}"#, 3),
        vec![1]
    );
    assert!(invalid_lines(br#"{"field":"line 0"}"#, 3).is_empty());
    assert_eq!(
        classify(native, StatusCode::OK, None, br#"{"accepted":2,"rejected":[{"line":3,"error":"bad"}]}"#, 3),
        Outcome::Ack { rejected: 1 }
    );
    assert!(matches!(classify(native, StatusCode::UNAUTHORIZED, None, b"no", 3), Outcome::Retry { .. }));
    // OTLP partial success.
    use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
    use prost::Message;
    let resp = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess { rejected_log_records: 2, error_message: "x".into() }),
    };
    assert_eq!(
        classify(OutputKind::Otlp, StatusCode::OK, None, &resp.encode_to_vec(), 3),
        Outcome::Ack { rejected: 2 }
    );
}

#[test]
fn batches_split_and_lines_drop_by_index() {
    assert_eq!(halves(b"a\nb\nc\n"), Some((b"a\n".to_vec(), b"b\nc\n".to_vec())));
    assert_eq!(halves(b"a\nb\n"), Some((b"a\n".to_vec(), b"b\n".to_vec())));
    assert_eq!(halves(b"a\n"), None);
    assert_eq!(without_lines(b"a\nb\nc\n", &[0, 2]), (b"b\n".to_vec(), 2));
    assert_eq!(count_lines(b"a\n\nb\n"), 2);
    assert!(matches!(
        classify(OutputKind::Native, StatusCode::PAYLOAD_TOO_LARGE, None, b"", 3),
        Outcome::TooLarge { .. }
    ));
}

#[test]
fn retry_after_dates_and_backoff_bounds() {
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    let d = parse_retry_after(&hv(&later)).unwrap();
    assert!(d > Duration::from_secs(28) && d <= Duration::from_secs(30), "{d:?}");
    assert_eq!(parse_retry_after(&hv("soon")), None);
    let mut b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), attempt: 0 };
    let first = b.next();
    assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
    let grown: Vec<Duration> = (0..4).map(|_| b.next()).collect();
    assert!(grown[3] >= Duration::from_millis(500), "{grown:?}");
    // Capped at max_backoff, still jittered (half fixed, half random).
    for _ in 0..40 {
        let d = b.next();
        assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1), "{d:?}");
    }
}
