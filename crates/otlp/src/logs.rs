//! OTLP logs: an `ExportLogsServiceRequest` as log records. Resource attributes stay the
//! record's resource (`service.name` and `service.instance.id` become its service and
//! instance); scope name and version become `otel.scope.*` attributes.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue, any_value};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::{AttrValue, KeyValue};

struct Out {
    records: Vec<LogRecord>,
    rejected: Vec<(usize, String)>,
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => signalbox_core::ids::encode_hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            format!("[{}]", a.values.iter().map(text).collect::<Vec<_>>().join(", "))
        }
        Some(any_value::Value::KvlistValue(kv)) => format!(
            "{{{}}}",
            kv.values
                .iter()
                .map(|p| format!("{}: {}", p.key, p.value.as_ref().map(text).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

fn attr(kv: &PKeyValue) -> KeyValue {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Float(*d),
        _ => AttrValue::Str(kv.value.as_ref().map(text).unwrap_or_default()),
    };
    KeyValue { key: kv.key.clone().into(), value }
}

/// Converts a request: the records, and the ones refused (index in the request, why) when
/// there are more than `max_records` or a body is longer than `max_body`.
pub fn convert(
    req: ExportLogsServiceRequest,
    now: u64,
    max_records: usize,
    max_body: usize,
) -> (Vec<LogRecord>, Vec<(usize, String)>) {
    let mut out = Out { records: Vec::new(), rejected: Vec::new() };
    let mut index = 0;
    for rl in req.resource_logs {
        let resource_attrs = rl.resource.map(|r| r.attributes).unwrap_or_default();
        let find = |k: &str| resource_attrs.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.as_ref()).map(text);
        let service = find("service.name").unwrap_or_default();
        let instance = find("service.instance.id").unwrap_or_default();
        let resource: Vec<KeyValue> = resource_attrs
            .iter()
            .filter(|kv| kv.key != "service.name" && kv.key != "service.instance.id")
            .map(attr)
            .collect();
        for sl in rl.scope_logs {
            let scope = sl.scope.map(|s| (s.name, s.version));
            for lr in sl.log_records {
                let i = index;
                index += 1;
                if out.records.len() >= max_records {
                    out.rejected.push((i, format!("more than {max_records} records in one request")));
                    continue;
                }
                let body = lr.body.as_ref().map(text).unwrap_or_default();
                if body.len() > max_body {
                    out.rejected.push((i, format!("a body is {} bytes; the limit is {max_body}", body.len())));
                    continue;
                }
                let mut attributes: Vec<KeyValue> = lr.attributes.iter().map(attr).collect();
                if let Some((name, version)) = &scope
                    && !name.is_empty()
                {
                    attributes.push(KeyValue::str("otel.scope.name", name.clone()));
                    if !version.is_empty() {
                        attributes.push(KeyValue::str("otel.scope.version", version.clone()));
                    }
                }
                let severity = if lr.severity_number != 0 {
                    Severity::from_number(lr.severity_number)
                } else {
                    Severity::parse(&lr.severity_text)
                };
                let ts = if lr.time_unix_nano != 0 { lr.time_unix_nano } else { lr.observed_time_unix_nano };
                out.records.push(LogRecord {
                    unix_nanos: if ts != 0 { ts } else { now },
                    observed_unix_nanos: if lr.observed_time_unix_nano != 0 { lr.observed_time_unix_nano } else { now },
                    severity,
                    severity_text: lr.severity_text,
                    body,
                    service: service.clone(),
                    instance: instance.clone(),
                    resource: resource.clone(),
                    attributes,
                    trace_id: <[u8; 16]>::try_from(lr.trace_id.as_slice())
                        .ok()
                        .filter(|b| *b != [0; 16])
                        .map(signalbox_core::ids::TraceId),
                    span_id: <[u8; 8]>::try_from(lr.span_id.as_slice())
                        .ok()
                        .filter(|b| *b != [0; 8])
                        .map(signalbox_core::ids::SpanId),
                });
            }
        }
    }
    (out.records, out.rejected)
}

/// Log records as an OTLP export request, one resource per (service, instance, resource
/// attributes) as [`convert`] reads them back (the node's OTLP exporter).
pub fn to_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord as PLogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let pv = |v: &AttrValue| AnyValue {
        value: Some(match v {
            AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
            AttrValue::Int(i) => any_value::Value::IntValue(*i),
            AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    };
    let pkv = |k: &str, v: &AttrValue| PKeyValue { key: k.to_owned(), value: Some(pv(v)), ..Default::default() };
    let mut out: Vec<ResourceLogs> = Vec::new();
    // Records of one source arrive together: grouping with the previous resource keeps the
    // order and costs one comparison per record.
    let mut last: Option<(String, String, Vec<KeyValue>)> = None;
    for r in records {
        let key = (r.service.clone(), r.instance.clone(), r.resource.clone());
        if last.as_ref() != Some(&key) {
            let mut attributes = Vec::new();
            if !r.service.is_empty() {
                attributes.push(pkv("service.name", &AttrValue::Str(r.service.clone())));
            }
            if !r.instance.is_empty() {
                attributes.push(pkv("service.instance.id", &AttrValue::Str(r.instance.clone())));
            }
            attributes.extend(r.resource.iter().map(|kv| pkv(&kv.key, &kv.value)));
            out.push(ResourceLogs {
                resource: Some(Resource { attributes, dropped_attributes_count: 0, entity_refs: Vec::new() }),
                scope_logs: vec![ScopeLogs::default()],
                schema_url: String::new(),
            });
            last = Some(key);
        }
        let p = PLogRecord {
            time_unix_nano: r.unix_nanos,
            observed_time_unix_nano: r.observed_unix_nanos,
            severity_number: r.severity.0.into(),
            severity_text: r.severity_text,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(r.body)) }),
            attributes: r.attributes.iter().map(|kv| pkv(&kv.key, &kv.value)).collect(),
            trace_id: r.trace_id.map(|t| t.0.to_vec()).unwrap_or_default(),
            span_id: r.span_id.map(|s| s.0.to_vec()).unwrap_or_default(),
            ..Default::default()
        };
        if let Some(rl) = out.last_mut() {
            rl.scope_logs[0].log_records.push(p);
        }
    }
    ExportLogsServiceRequest { resource_logs: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_an_export_request() {
        let rec = LogRecord {
            unix_nanos: 10,
            observed_unix_nanos: 11,
            severity: Severity::ERROR,
            severity_text: "error".into(),
            body: "payment declined".into(),
            service: "billing".into(),
            instance: "billing-1".into(),
            resource: vec![KeyValue::str("host.name", "h1")],
            attributes: vec![KeyValue::int("attempt", 3)],
            trace_id: Some(signalbox_core::ids::TraceId([7; 16])),
            span_id: Some(signalbox_core::ids::SpanId([8; 8])),
        };
        let other = LogRecord { service: "cart".into(), instance: String::new(), resource: vec![], ..rec.clone() };
        let req = to_request(vec![rec.clone(), rec.clone(), other.clone()]);
        assert_eq!(req.resource_logs.len(), 2);
        let (back, rejected) = convert(req, 99, 100, 1 << 20);
        assert!(rejected.is_empty());
        assert_eq!(back, vec![rec.clone(), rec, other]);
    }
}
