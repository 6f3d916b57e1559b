//! What a record looks like on the wire: multi-line grouping, parsing, filters, labels, OTLP.

use crate::receiver::Receiver;
use crate::support::{config, start};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use signalbox_agent::config::{FilterConfig, MultilineConfig, ParserConfig, SourceConfig};
use signalbox_core::config::Dur;
use signalbox_testkit::eventually;
use std::time::Duration;

const SPRING: &str = "\
2024-02-29 12:34:56.789 ERROR 4242 --- [nio-8080-exec-1] c.e.orders.OrderController : Request failed
java.lang.IllegalStateException: boom
\tat com.example.orders.OrderService.place(OrderService.java:42)
\tat com.example.orders.OrderController.create(OrderController.java:17)
Caused by: java.io.IOException: disk full
\tat com.example.orders.Store.write(Store.java:9)
\t... 2 more
2024-02-29 12:34:57.001  INFO 4242 --- [nio-8080-exec-2] c.e.orders.OrderController : Order 7 placed
";

const PYTHON: &str = "\
2024-02-29 12:34:56,789 ERROR payments: charge failed
Traceback (most recent call last):
  File \"/app/pay.py\", line 10, in charge
    gateway.charge(card)
  File \"/app/gateway.py\", line 3, in charge
    raise ValueError(\"card declined\")
ValueError: card declined

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/app/pay.py\", line 12, in charge
    raise RuntimeError(\"retry failed\")
RuntimeError: retry failed
2024-02-29 12:34:57,000 INFO payments: next charge
";

fn source(include: String, service: &str, parser: ParserConfig) -> SourceConfig {
    SourceConfig { include: vec![include], service: service.into(), parser, ..SourceConfig::default() }
}

fn regex_parser(pattern: &str, ts_format: &str) -> ParserConfig {
    ParserConfig {
        format: "regex".into(),
        pattern: pattern.into(),
        timestamp_format: ts_format.into(),
        ..ParserConfig::default()
    }
}

fn by_service<'a>(lines: &'a [serde_json::Value], service: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["service"] == service).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_python_traces_arrive_as_one_record_each() {
    crate::support::bounded(async {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("data"), &r.url(), &[]);
    let multiline = |preset: &str| MultilineConfig {
        preset: Some(preset.into()),
        timeout: Dur::millis(200),
        ..MultilineConfig::default()
    };
    let mut java = source(
        format!("{}/spring.log", dir.path().display()),
        "orders",
        regex_parser(
            r"^(?P<timestamp>\S+ \S+)\s+(?P<level>[A-Z]+)\s+\d+\s+---\s+\[(?P<thread>[^\]]+)\]\s+(?P<logger>\S+)\s+:\s+(?P<message>.*)$",
            "%Y-%m-%d %H:%M:%S%.3f",
        ),
    );
    java.multiline = Some(multiline("java"));
    let mut python = source(
        format!("{}/worker.log", dir.path().display()),
        "payments",
        regex_parser(
            r"^(?P<timestamp>\S+ \S+) (?P<level>\w+) (?P<logger>\w+): (?P<message>.*)$",
            "%Y-%m-%d %H:%M:%S,%3f",
        ),
    );
    python.multiline = Some(multiline("python"));
    cfg.sources = vec![java, python];
    std::fs::write(dir.path().join("spring.log"), SPRING).unwrap();
    std::fs::write(dir.path().join("worker.log"), PYTHON).unwrap();
    let agent = start(cfg);
    eventually(Duration::from_secs(10), "four records", || async { (r.lines().len() == 4).then_some(()) }).await;
    let lines = r.lines();

    let java = by_service(&lines, "orders");
    assert_eq!(java.len(), 2);
    let trace = java.iter().find(|v| v["severity"] == "ERROR").unwrap();
    let expected_body = SPRING.lines().skip(1).take(6).fold("Request failed".to_owned(), |acc, l| acc + "\n" + l);
    assert_eq!(trace["body"], expected_body.as_str());
    assert_eq!(trace["timestamp"], "2024-02-29T12:34:56.789000000Z");
    assert_eq!(trace["attributes"]["thread"], "nio-8080-exec-1");
    assert_eq!(trace["attributes"]["logger"], "c.e.orders.OrderController");
    let next = java.iter().find(|v| v["severity"] == "INFO").unwrap();
    assert_eq!(next["body"], "Order 7 placed");

    let py = by_service(&lines, "payments");
    assert_eq!(py.len(), 2);
    let tb = py.iter().find(|v| v["severity"] == "ERROR").unwrap();
    let body = tb["body"].as_str().unwrap();
    assert!(body.starts_with("charge failed\nTraceback (most recent call last):\n"), "{body}");
    assert!(body.ends_with("RuntimeError: retry failed"), "{body}");
    assert_eq!(body.lines().count(), 14, "{body}");
    assert_eq!(tb["timestamp"], "2024-02-29T12:34:56.789000000Z");
    let p = agent.progress.snapshot();
    assert_eq!((p.lines_read, p.records_read), (23, 4), "{p}");
    agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logfmt_and_regex_parsing_with_timestamps() {
    crate::support::bounded(async {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut cfg = config(&dir.path().join("data"), &r.url(), &[]);
    let json = ParserConfig { format: "json".into(), timestamp_field: "ts".into(), ..ParserConfig::default() };
    let logfmt = ParserConfig {
        format: "logfmt".into(),
        timestamp_field: "t".into(),
        timestamp_format: "unix_ms".into(),
        ..ParserConfig::default()
    };
    let nginx = regex_parser(
        r#"^(?P<client>\S+) - - \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) \S+" (?P<status>\d+)"#,
        "%d/%b/%Y:%H:%M:%S %z",
    );
    cfg.sources = vec![
        source(format!("{d}/json.log"), "api", json),
        source(format!("{d}/logfmt.log"), "worker", logfmt),
        source(format!("{d}/access.log"), "edge", nginx),
    ];
    std::fs::write(
        dir.path().join("json.log"),
        concat!(
            r#"{"ts":"2024-02-29T12:34:56.123456789+01:00","level":"error","message":"db down","db":{"host":"pg1"},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7"}"#,
            "\n",
            "not json at all\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("logfmt.log"),
        "t=1700000000123 lvl=warn msg=\"queue \\\"jobs\\\" slow\" depth=42\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("access.log"),
        "10.0.0.1 - - [29/Feb/2024:13:34:56 +0100] \"GET /orders/7 HTTP/1.1\" 200 512\n",
    )
    .unwrap();
    let agent = start(cfg);
    eventually(Duration::from_secs(10), "four records", || async { (r.lines().len() == 4).then_some(()) }).await;
    let lines = r.lines();

    let api = by_service(&lines, "api");
    let db = api.iter().find(|v| v["body"] == "db down").unwrap();
    assert_eq!(db["timestamp"], "2024-02-29T11:34:56.123456789Z");
    assert_eq!(db["severity"], "ERROR");
    assert_eq!(db["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(db["span_id"], "00f067aa0ba902b7");
    assert_eq!(db["attributes"]["db.host"], "pg1");
    assert_eq!(db["instance"], "test-host", "the instance defaults to the host name");
    let raw = api.iter().find(|v| v["body"] == "not json at all").unwrap();
    assert_eq!(raw["severity"], "INFO", "a line that does not parse keeps the default severity");

    let w = by_service(&lines, "worker")[0];
    assert_eq!(w["timestamp"], "2023-11-14T22:13:20.123000000Z");
    assert_eq!(w["severity"], "WARN");
    assert_eq!(w["body"], "queue \"jobs\" slow");
    assert_eq!(w["attributes"]["depth"], "42");

    let e = by_service(&lines, "edge")[0];
    assert_eq!(e["timestamp"], "2024-02-29T12:34:56.000000000Z");
    assert_eq!(e["attributes"]["path"], "/orders/7");
    assert_eq!(e["attributes"]["status"], "200");
    assert_eq!(e["body"], "10.0.0.1 - - [29/Feb/2024:13:34:56 +0100] \"GET /orders/7 HTTP/1.1\" 200 512");
    let p = agent.progress.snapshot();
    assert_eq!(p.records_read, 4, "{p}");
    agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_keep_and_drop_by_level_field_and_regex() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        let s = &mut cfg.sources[0];
        s.parser.format = "logfmt".into();
        s.filters = vec![
            FilterConfig { action: "drop".into(), levels: vec!["debug".into()], ..FilterConfig::default() },
            FilterConfig {
                action: "drop".into(),
                field: Some("path".into()),
                regex: Some("^/health".into()),
                ..FilterConfig::default()
            },
            FilterConfig { action: "keep".into(), regex: Some("order".into()), ..FilterConfig::default() },
            FilterConfig {
                action: "keep".into(),
                field: Some("audit".into()),
                equals: Some("yes".into()),
                ..FilterConfig::default()
            },
        ];
        std::fs::write(
            &log,
            "level=debug msg=\"order debug\"\n\
         level=info msg=\"order ok\" path=/api\n\
         level=info msg=\"order probe\" path=/healthz\n\
         level=info msg=\"cache warm\"\n\
         level=warn msg=\"login\" audit=yes\n\
         level=error msg=\"order failed\"\n",
        )
        .unwrap();
        let agent = start(cfg);
        eventually(Duration::from_secs(10), "the filtered lines to be counted", || async {
            let p = agent.progress.snapshot();
            (p.records_read == 6 && p.records_shipped == 3).then_some(())
        })
        .await;
        let bodies: Vec<String> = r.lines().iter().map(|v| v["body"].as_str().unwrap().to_owned()).collect();
        assert_eq!(bodies, ["order ok", "login", "order failed"]);
        assert_eq!(agent.progress.snapshot().records_filtered, 3);
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_contract_headers_and_labels() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s3cret\n").unwrap();
        cfg.output.token_file = token_file.display().to_string();
        std::fs::write(&log, "hello\n").unwrap();
        let agent = start(cfg);
        eventually(Duration::from_secs(10), "the record", || async { (r.lines().len() == 1).then_some(()) }).await;
        let h = &r.headers()[0];
        assert_eq!(h["authorization"], "Bearer s3cret");
        assert_eq!(h["content-type"], "application/x-ndjson");
        assert_eq!(h["content-encoding"], "gzip");
        let v = &r.lines()[0];
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2024-02-29T12:34:56.123456789Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
        assert_eq!(v["severity"], "INFO");
        assert_eq!(v["body"], "hello");
        assert_eq!(
            (v["service"].as_str(), v["instance"].as_str(), v["host"].as_str()),
            (Some("orders"), Some("orders-1"), Some("test-host"))
        );
        assert_eq!(v["attributes"]["team"], "checkout");
        assert_eq!(v["attributes"]["log.file.path"], log.display().to_string().as_str());
        assert!(v.get("trace_id").is_none());
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_output_verifies_the_receiver_certificate() {
    crate::support::bounded(async {
        let r = Receiver::start_tls().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        cfg.output.ca_file = signalbox_testkit::fixture("tls-cert.pem");
        std::fs::write(&log, "over tls\n").unwrap();
        let agent = start(cfg.clone());
        eventually(Duration::from_secs(10), "the record", || async { (r.lines().len() == 1).then_some(()) }).await;
        assert_eq!(r.lines()[0]["body"], "over tls");
        agent.stop().await;

        // Without the CA the certificate is refused and nothing is delivered.
        let r2 = Receiver::start_tls().await;
        let mut cfg = config(&dir.path().join("data2"), &r2.url(), &[log.display().to_string()]);
        cfg.output.ca_file = String::new();
        let agent = start(cfg);
        let p = eventually(Duration::from_secs(10), "a refused handshake", || async {
            let p = agent.progress.snapshot();
            (p.send_failures > 0 && p.last_error.is_some()).then_some(p)
        })
        .await;
        assert!(p.last_error.as_deref().unwrap_or("").contains("certificate"), "{p}");
        assert!(r2.lines().is_empty());
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_output_sends_export_logs_requests() {
    crate::support::bounded(async {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
    cfg.output.kind = "otlp".into();
    cfg.sources[0].parser.format = "json".into();
    std::fs::write(
        &log,
        r#"{"time":"2024-02-29T12:34:56Z","level":"error","msg":"boom","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","user":"ana"}"#.to_owned() + "\n",
    )
    .unwrap();
    let agent = start(cfg);
    eventually(Duration::from_secs(10), "an OTLP request", || async { (!r.otlp().is_empty()).then_some(()) }).await;
    let req = &r.otlp()[0];
    assert_eq!(r.headers()[0]["content-type"], "application/x-protobuf");
    let rl = &req.resource_logs[0];
    let res: Vec<(String, String)> = rl
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let Some(AnyValue::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.clone()) else { panic!() };
            (kv.key.clone(), s)
        })
        .collect();
    assert!(res.contains(&("service.name".into(), "orders".into())), "{res:?}");
    assert!(res.contains(&("host.name".into(), "test-host".into())), "{res:?}");
    let rec = &rl.scope_logs[0].log_records[0];
    assert_eq!(rec.time_unix_nano, 1_709_210_096_000_000_000);
    assert_eq!((rec.severity_number, rec.severity_text.as_str()), (17, "ERROR"));
    assert_eq!(hex::encode(&rec.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    let Some(AnyValue::StringValue(body)) = rec.body.as_ref().and_then(|b| b.value.clone()) else { panic!() };
    assert_eq!(body, "boom");
    assert!(rec.attributes.iter().any(|kv| kv.key == "user"));
    agent.stop().await;
    })
    .await
}
