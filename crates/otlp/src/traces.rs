//! OTLP traces: an `ExportTraceServiceRequest` as spans (each invalid span refused on its own,
//! with the reason), and spans as a request (for exporters).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue, any_value};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{
    AttrValue, KeyValue, Resource, Scope, Span, SpanEvent, SpanFlags, SpanKind, SpanLink, StatusCode as SpanStatus,
};
use std::sync::Arc;

/// Most spans in one request.
pub const MAX_SPANS: usize = 100_000;
/// Longest attribute value; a span with a longer one is refused.
pub const MAX_VALUE: usize = 64 * 1024;

/// The outcome of converting a request.
pub struct Converted {
    pub spans: Vec<Span>,
    pub rejected: i64,
    pub error: String,
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => value_json(other).to_string(),
        None => String::new(),
    }
}

fn value_json(v: &any_value::Value) -> serde_json::Value {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => serde_json::Value::String(s.clone()),
        V::BoolValue(b) => serde_json::Value::Bool(*b),
        V::IntValue(i) => serde_json::json!(i),
        V::DoubleValue(d) => serde_json::json!(d),
        V::BytesValue(b) => serde_json::Value::String(signalbox_core::ids::encode_hex(b)),
        V::ArrayValue(a) => {
            serde_json::Value::Array(a.values.iter().filter_map(|x| x.value.as_ref().map(value_json)).collect())
        }
        V::KvlistValue(kv) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(value_json)
                            .unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect(),
        ),
        #[allow(unreachable_patterns)]
        _ => serde_json::Value::Null,
    }
}

fn attr(kv: &PKeyValue) -> Result<KeyValue, String> {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Float(*d),
        Some(_) | None => AttrValue::Str(kv.value.as_ref().map(text).unwrap_or_default()),
    };
    if let AttrValue::Str(s) = &value
        && s.len() > MAX_VALUE
    {
        return Err(format!("attribute `{}` is {} bytes; the limit is {MAX_VALUE}", kv.key, s.len()));
    }
    if kv.key.len() > 1024 {
        return Err("an attribute key is longer than 1024 bytes".into());
    }
    Ok(KeyValue { key: kv.key.clone().into(), value })
}

fn attrs(list: &[PKeyValue]) -> Result<Vec<KeyValue>, String> {
    list.iter().map(attr).collect()
}

/// Turns an OTLP request into spans; invalid spans are counted and described, not fatal.
pub fn convert(req: ExportTraceServiceRequest) -> Converted {
    let mut out = Converted { spans: Vec::new(), rejected: 0, error: String::new() };
    let reject = |out: &mut Converted, why: String| {
        out.rejected += 1;
        if out.error.is_empty() {
            out.error = why;
        }
    };
    for rs in req.resource_spans {
        let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
        let service = resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".into());
        let resource_attrs =
            match attrs(&resource.into_iter().filter(|kv| kv.key != "service.name").collect::<Vec<_>>()) {
                Ok(a) => a,
                Err(e) => {
                    let n: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
                    for _ in 0..n {
                        reject(&mut out, format!("resource: {e}"));
                    }
                    continue;
                }
            };
        // One resource and one scope per batch, shared by its spans (and stored once).
        let resource = Arc::new(Resource { attributes: resource_attrs });
        for ss in rs.scope_spans {
            let scope = match ss.scope {
                Some(s) if !(s.name.is_empty() && s.version.is_empty()) => {
                    Arc::new(Scope { name: s.name, version: s.version })
                }
                _ => Scope::none(),
            };
            for sp in ss.spans {
                let trace_id = <[u8; 16]>::try_from(sp.trace_id.as_slice()).ok().filter(|b| *b != [0; 16]);
                let span_id = <[u8; 8]>::try_from(sp.span_id.as_slice()).ok().filter(|b| *b != [0; 8]);
                let (Some(trace_id), Some(span_id)) = (trace_id, span_id) else {
                    reject(
                        &mut out,
                        "a span has an invalid trace_id (16 bytes, not all zero) or span_id (8 bytes, not all zero)"
                            .into(),
                    );
                    continue;
                };
                let parent = match sp.parent_span_id.len() {
                    0 => None,
                    8 => <[u8; 8]>::try_from(sp.parent_span_id.as_slice()).ok().filter(|b| *b != [0; 8]).map(SpanId),
                    _ => {
                        reject(&mut out, "a span has a parent_span_id that is not 8 bytes".into());
                        continue;
                    }
                };
                if sp.end_time_unix_nano < sp.start_time_unix_nano {
                    reject(&mut out, "a span ends before it starts".into());
                    continue;
                }
                let attributes = match attrs(&sp.attributes) {
                    Ok(a) => a,
                    Err(e) => {
                        reject(&mut out, e);
                        continue;
                    }
                };
                let links = match links(&sp.links) {
                    Ok(l) => l,
                    Err(e) => {
                        reject(&mut out, e);
                        continue;
                    }
                };
                let mut events = Vec::with_capacity(sp.events.len());
                let mut bad = None;
                for e in &sp.events {
                    match attrs(&e.attributes) {
                        Ok(a) => {
                            events.push(SpanEvent { unix_nanos: e.time_unix_nano, name: e.name.clone(), attributes: a })
                        }
                        Err(err) => bad = Some(err),
                    }
                }
                if let Some(e) = bad {
                    reject(&mut out, e);
                    continue;
                }
                let status = sp.status.as_ref();
                out.spans.push(Span {
                    trace_id: TraceId(trace_id),
                    span_id: SpanId(span_id),
                    parent_span_id: parent,
                    trace_state: sp.trace_state,
                    service: service.clone(),
                    name: sp.name,
                    kind: SpanKind::from_code(sp.kind.into()),
                    start_unix_nanos: sp.start_time_unix_nano,
                    end_unix_nanos: sp.end_time_unix_nano,
                    status: SpanStatus::from_code(status.map_or(0, |s| s.code.into())),
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    attributes,
                    events,
                    links,
                    resource: resource.clone(),
                    scope: scope.clone(),
                    flags: SpanFlags::default(),
                });
            }
        }
    }
    out
}

fn links(list: &[opentelemetry_proto::tonic::trace::v1::span::Link]) -> Result<Vec<SpanLink>, String> {
    let mut out = Vec::with_capacity(list.len());
    for l in list {
        let trace_id = <[u8; 16]>::try_from(l.trace_id.as_slice()).ok().filter(|b| *b != [0; 16]);
        let span_id = <[u8; 8]>::try_from(l.span_id.as_slice()).ok().filter(|b| *b != [0; 8]);
        let (Some(t), Some(s)) = (trace_id, span_id) else {
            return Err("a span link has an invalid trace_id (16 bytes) or span_id (8 bytes)".into());
        };
        out.push(SpanLink {
            trace_id: TraceId(t),
            span_id: SpanId(s),
            trace_state: l.trace_state.clone(),
            attributes: attrs(&l.attributes)?,
        });
    }
    Ok(out)
}

pub fn count_spans(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans.iter().flat_map(|r| r.scope_spans.iter()).map(|s| s.spans.len()).sum()
}

/// Spans as an OTLP export request, grouped by service (for the standalone gateway's
/// exporter).
pub fn to_request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan, Status, span::Event};
    let pv = |v: &AttrValue| AnyValue {
        value: Some(match v {
            AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
            AttrValue::Int(i) => any_value::Value::IntValue(*i),
            AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    };
    let pkv = |kv: &KeyValue| PKeyValue { key: kv.key.to_string(), value: Some(pv(&kv.value)), ..Default::default() };
    let mut by_service: std::collections::BTreeMap<String, Vec<PSpan>> = std::collections::BTreeMap::new();
    for s in spans {
        let p = PSpan {
            trace_id: s.trace_id.0.to_vec(),
            span_id: s.span_id.0.to_vec(),
            trace_state: s.trace_state.clone(),
            parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
            flags: 0,
            name: s.name.clone(),
            kind: s.kind.code().into(),
            start_time_unix_nano: s.start_unix_nanos,
            end_time_unix_nano: s.end_unix_nanos,
            attributes: s.attributes.iter().map(pkv).collect(),
            dropped_attributes_count: 0,
            events: s
                .events
                .iter()
                .map(|e| Event {
                    time_unix_nano: e.unix_nanos,
                    name: e.name.clone(),
                    attributes: e.attributes.iter().map(pkv).collect(),
                    dropped_attributes_count: 0,
                })
                .collect(),
            dropped_events_count: 0,
            links: s
                .links
                .iter()
                .map(|l| opentelemetry_proto::tonic::trace::v1::span::Link {
                    trace_id: l.trace_id.0.to_vec(),
                    span_id: l.span_id.0.to_vec(),
                    trace_state: l.trace_state.clone(),
                    attributes: l.attributes.iter().map(pkv).collect(),
                    ..Default::default()
                })
                .collect(),
            dropped_links_count: 0,
            status: Some(Status {
                message: s.status_message.clone(),
                code: match s.status {
                    SpanStatus::Unset => 0,
                    SpanStatus::Ok => 1,
                    SpanStatus::Error => 2,
                },
            }),
        };
        by_service.entry(s.service).or_default().push(p);
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![PKeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue { value: Some(any_value::Value::StringValue(service)) }),
                        ..Default::default()
                    }],
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_spans: vec![ScopeSpans { scope: None, spans, schema_url: String::new() }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_trip_through_an_export_request() {
        let span = Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_span_id: Some(SpanId([3; 8])),
            service: "checkout".into(),
            name: "GET /cart".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            status: SpanStatus::Error,
            status_message: "boom".into(),
            attributes: vec![KeyValue::str("http.route", "/cart"), KeyValue::int("http.status_code", 500)],
            events: vec![SpanEvent { unix_nanos: 15, name: "retry".into(), attributes: vec![] }],
            ..Default::default()
        };
        let back = convert(to_request(vec![span.clone()]));
        assert_eq!(back.rejected, 0, "{}", back.error);
        let got = &back.spans[0];
        assert_eq!((got.trace_id, got.span_id, got.parent_span_id), (span.trace_id, span.span_id, span.parent_span_id));
        assert_eq!(
            (got.service.as_str(), got.name.as_str(), got.kind, got.status),
            ("checkout", "GET /cart", SpanKind::Server, SpanStatus::Error)
        );
        assert_eq!(got.attributes, span.attributes);
        assert_eq!(got.events, span.events);
        assert_eq!(count_spans(&to_request(vec![span.clone(), span])), 2);
    }
}
