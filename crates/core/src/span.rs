//! The span model: one timed operation of one service, shaped after OpenTelemetry's span so
//! OTLP, Zipkin and the gateway's own spans all decode into it without loss of meaning.

use crate::ids::{SpanId, TraceId};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

/// What role a span plays in a call, as OpenTelemetry's `SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// OTLP's number for the kind (the event store encodes kinds with it too).
    pub fn code(self) -> u8 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// The kind with OTLP's number `c`; unknown numbers are `Unspecified`.
    pub fn from_code(c: i64) -> SpanKind {
        match c {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// Outcome of a span, as OpenTelemetry's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    /// OTLP's number for the status (the event store encodes statuses with it too).
    pub fn code(self) -> u8 {
        match self {
            StatusCode::Unset => 0,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        }
    }

    /// The status with OTLP's number `c`; unknown numbers are `Unset`.
    pub fn from_code(c: i64) -> StatusCode {
        match c {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}

/// An attribute value. Arrays and maps are flattened to their JSON text by receivers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// One attribute. The key borrows when it is a constant (the gateway's attribute names), so
/// building a span does not allocate for its keys; decoded keys are owned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Cow<'static, str>,
    pub value: AttrValue,
}

impl KeyValue {
    pub fn str(key: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        KeyValue { key: key.into(), value: AttrValue::Str(value.into()) }
    }
    pub fn int(key: impl Into<Cow<'static, str>>, value: i64) -> Self {
        KeyValue { key: key.into(), value: AttrValue::Int(value) }
    }
}

/// A timestamped annotation inside a span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub unix_nanos: u64,
    pub name: String,
    pub attributes: Vec<KeyValue>,
}

/// The entity that produced spans (OpenTelemetry's resource: host, process, SDK, ...),
/// without `service.name`, which is [`Span::service`]. One value is shared by every span of
/// a batch, and the event store keeps each distinct resource once per block.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
}

static NO_RESOURCE: LazyLock<Arc<Resource>> = LazyLock::new(Arc::default);
static NO_SCOPE: LazyLock<Arc<Scope>> = LazyLock::new(Arc::default);

impl Resource {
    /// The empty resource, shared (cloning it allocates nothing).
    pub fn none() -> Arc<Resource> {
        NO_RESOURCE.clone()
    }
}

/// The instrumentation scope (the library) that recorded a span, as OpenTelemetry's
/// `InstrumentationScope`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
}

impl Scope {
    /// The empty scope, shared.
    pub fn none() -> Arc<Scope> {
        NO_SCOPE.clone()
    }
}

/// A link from a span to another span (of this or another trace): a batch member, a
/// message's producer, a retried attempt. Jaeger shows links as `FOLLOWS_FROM` references.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Vec<KeyValue>,
}

/// Markers a span keeps from Zipkin so Zipkin reads answer what was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SpanFlags(pub u8);

impl SpanFlags {
    /// Zipkin's `shared`: the server half of a span whose id the client half also has.
    pub const SHARED: u8 = 1;
    /// Zipkin's `debug`: the caller forced the trace to be recorded.
    pub const DEBUG: u8 = 2;
    /// The trace id arrived as 64 bits (16 hex digits), and is answered that way.
    pub const TRACE_ID_64: u8 = 4;

    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    pub fn with(self, flag: u8, on: bool) -> SpanFlags {
        SpanFlags(if on { self.0 | flag } else { self.0 & !flag })
    }
}

/// One span.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// W3C `tracestate`, kept as received.
    pub trace_state: String,
    /// The `service.name` of the emitting resource.
    pub service: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub status: StatusCode,
    pub status_message: String,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    /// What produced the span, shared with the other spans of its batch.
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
    pub flags: SpanFlags,
}

impl Span {
    /// Duration in nanoseconds (zero if the clock went backwards).
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    /// The value of attribute `key`, if present.
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
    }

    /// Whether the span or its resource has attribute `key` with a value `matches` accepts
    /// (searches and sampling policies look at both).
    pub fn has_attribute(&self, key: &str, matches: impl Fn(&AttrValue) -> bool) -> bool {
        self.attributes.iter().chain(&self.resource.attributes).any(|kv| kv.key == key && matches(&kv.value))
    }

    /// What identifies a stored span: its ids, and for Zipkin's shared spans which half it
    /// is (the client and server halves share the span id and are both kept).
    pub fn identity(&self) -> (TraceId, SpanId, bool) {
        (self.trace_id, self.span_id, self.flags.has(SpanFlags::SHARED))
    }
}
