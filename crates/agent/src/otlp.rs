//! A buffered batch (NDJSON, the native format) re-encoded as an OTLP
//! `ExportLogsServiceRequest` for `POST /v1/logs`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One NDJSON line as the agent writes it.
#[derive(Debug, Deserialize)]
pub struct WireLine {
    pub timestamp: String,
    pub severity: String,
    pub body: String,
    pub service: String,
    pub instance: String,
    pub host: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub span_id: Option<String>,
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

/// The protobuf request for the NDJSON `ndjson`; lines that do not parse are counted in the
/// second value (they cannot occur in batches this agent wrote).
pub fn encode(ndjson: &[u8], observed_ns: u64) -> (Vec<u8>, usize) {
    let mut groups: BTreeMap<(String, String, String), Vec<LogRecord>> = BTreeMap::new();
    let mut bad = 0;
    for line in ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(w) = serde_json::from_slice::<WireLine>(line) else {
            bad += 1;
            continue;
        };
        let time = time::OffsetDateTime::parse(&w.timestamp, &time::format_description::well_known::Rfc3339)
            .ok()
            .and_then(|t| u64::try_from(t.unix_timestamp_nanos()).ok())
            .unwrap_or(observed_ns);
        let id = |s: &Option<String>| s.as_deref().and_then(|h| hex::decode(h).ok()).unwrap_or_default();
        let rec = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: observed_ns,
            severity_number: crate::record::severity_number(&w.severity),
            severity_text: w.severity,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(w.body)) }),
            attributes: w.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
            trace_id: id(&w.trace_id),
            span_id: id(&w.span_id),
            ..Default::default()
        };
        groups.entry((w.service, w.instance, w.host)).or_default().push(rec);
    }
    let resource_logs = groups
        .into_iter()
        .map(|((service, instance, host), log_records)| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", &service),
                    kv("service.instance.id", &instance),
                    kv("host.name", &host),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "signalbox-agent".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    (ExportLogsServiceRequest { resource_logs }.encode_to_vec(), bad)
}
