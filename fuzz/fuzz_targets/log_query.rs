//! The log search language and LogQL: parsing never panics, and evaluating what parses
//! against a record never panics either.
#![no_main]
use signalbox_core::log::{LogRecord, Severity};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let r = LogRecord {
        unix_nanos: 1,
        observed_unix_nanos: 1,
        severity: Severity::ERROR,
        severity_text: "E".into(),
        body: "level=error msg=\"x y\" {\"a\":1}".into(),
        service: "s".into(),
        instance: "i".into(),
        resource: vec![],
        attributes: vec![],
        trace_id: None,
        span_id: None,
    };
    if let Ok(q) = signalbox_events::logs::lang::parse(s) {
        let _ = signalbox_events::logs::eval::matches(&q.filter, &r);
    }
    if let Ok(e) = signalbox_events::logs::logql::parse(s) {
        match e {
            signalbox_events::logs::logql::Expr::Log(q) => {
                let _ = signalbox_events::logs::logql_eval::run_pipeline(&q, &r);
            }
            signalbox_events::logs::logql::Expr::Metric(m) => {
                let _ = signalbox_events::logs::logql_eval::metric_series(&m, std::slice::from_ref(&r), 0, 10, 1);
            }
        }
    }
});
