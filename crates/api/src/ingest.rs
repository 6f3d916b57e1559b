//! Limits every ingest decoder applies before it builds anything in memory.
//!
//! A few KB of gzip can inflate to megabytes of protobuf, and a megabyte of empty protobuf
//! messages (two bytes each) decodes into millions of structs of ~100 bytes: an unchecked
//! decoder turns a 7.8 KB request into gigabytes. So, in order:
//! 1. the compressed body is bounded by the listener ([`MAX_BODY`]);
//! 2. inflating stops as soon as the output passes [`MAX_INFLATED`] ([`inflate_gzip`]);
//! 3. the decoded size is estimated by a scan that allocates nothing
//!    ([`scan_otlp_traces`] walks the protobuf wire format; [`json_items`] counts JSON
//!    objects and arrays), and a request with too many spans or items is refused;
//! 4. the estimate is reserved from one memory budget shared by every concurrent decode
//!    ([`reserve`]); when it is spent the request is told to retry later (429 /
//!    RESOURCE_EXHAUSTED) instead of the node running out of memory.

use std::io::Read;
use std::sync::OnceLock;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Largest body a receiver reads off the wire (compressed or not).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Largest body after decompression.
pub const MAX_INFLATED: usize = 64 * 1024 * 1024;
/// Most spans in one request.
pub const MAX_SPANS: usize = 100_000;
/// Most decoded messages (spans, attributes, values, events, links...) in one request.
pub const MAX_ITEMS: usize = 4_000_000;
/// Memory all concurrent decodes together may hold, estimated from their scans.
pub const DECODE_BUDGET: usize = 768 * 1024 * 1024;
/// Estimated memory of one decoded message, generous: a prost `KeyValue` with its `AnyValue`
/// is ~100 bytes before its strings.
const BYTES_PER_ITEM: usize = 128;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not valid gzip, or not a valid protobuf encoding of the schema.
    Invalid(String),
    /// Over a limit; the message names it. Must not be retried as is.
    TooLarge(String),
    /// The decode memory budget is spent; retry later.
    Busy,
}

/// Inflates a gzip body, stopping with [`Refused::TooLarge`] as soon as the output passes
/// `limit` (never holding more than `limit` + one buffer).
pub fn inflate_gzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Refused> {
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    let mut d = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    d.read_to_end(&mut out).map_err(|_| Refused::Invalid("the body is not valid gzip".into()))?;
    if out.len() > limit {
        return Err(Refused::TooLarge(format!("the body inflates past the limit of {limit} bytes")));
    }
    Ok(out)
}

fn budget() -> &'static Semaphore {
    static B: OnceLock<Semaphore> = OnceLock::new();
    B.get_or_init(|| Semaphore::new(DECODE_BUDGET / 1024))
}

/// Reserves `bytes` of the decode budget for as long as the permit lives.
pub fn reserve(bytes: usize) -> Result<SemaphorePermit<'static>, Refused> {
    let kib = u32::try_from(bytes.div_ceil(1024).max(1)).map_err(|_| Refused::Busy)?;
    if kib as usize > DECODE_BUDGET / 1024 {
        return Err(Refused::TooLarge(format!("the request would need more than {DECODE_BUDGET} bytes to decode")));
    }
    budget().try_acquire_many(kib).map_err(|_| Refused::Busy)
}

/// The decode memory to reserve for a body of `len` bytes holding `items` messages.
pub fn estimate(len: usize, items: usize) -> usize {
    len + items * BYTES_PER_ITEM
}

/// What a scan of an OTLP trace export found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub spans: usize,
    /// Every message the decoder would build.
    pub items: usize,
}

impl Counts {
    /// Refuses counts over the limits, naming the limit.
    pub fn check(&self) -> Result<(), Refused> {
        if self.spans > MAX_SPANS {
            return Err(Refused::TooLarge(format!(
                "more than {MAX_SPANS} spans (or log records) in one request; send smaller batches"
            )));
        }
        if self.items > MAX_ITEMS {
            return Err(Refused::TooLarge(format!(
                "more than {MAX_ITEMS} attributes, events and values in one request; send smaller batches"
            )));
        }
        Ok(())
    }
}

/// The message types of `ExportTraceServiceRequest` whose fields the scan follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Msg {
    Request,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// A metric's gauge, sum, histogram, exponential histogram or summary.
    MetricData,
    /// A data point of any kind (counted as one record; its fields are not followed, as
    /// their numbers differ between kinds).
    DataPoint,
    /// A message the scan does not look into (unknown fields).
    Opaque,
}

/// Which message a length-delimited field of `m` holds (None: a string or bytes field).
fn child(m: Msg, field: u64) -> Option<Msg> {
    use Msg::*;
    Some(match (m, field) {
        (Request, 1) => ResourceSpans,
        (LogsRequest, 1) => ResourceLogs,
        (ResourceLogs, 1) => Resource,
        (ResourceLogs, 2) => ScopeLogs,
        (ScopeLogs, 1) => Scope,
        // A log record counts as a span does: one record of the request.
        (ScopeLogs, 2) => LogRecord,
        (LogRecord, 5) => AnyValue,
        (LogRecord, 6) => KeyValue,
        (MetricsRequest, 1) => ResourceMetrics,
        (ResourceMetrics, 1) => Resource,
        (ResourceMetrics, 2) => ScopeMetrics,
        (ScopeMetrics, 1) => Scope,
        (ScopeMetrics, 2) => Metric,
        (Metric, 5 | 7 | 9 | 10 | 11) => MetricData,
        (Metric, 12) => KeyValue,
        (MetricData, 1) => DataPoint,
        (ResourceSpans, 1) => Resource,
        (ResourceSpans, 2) => ScopeSpans,
        (Resource, 1) | (Scope, 3) | (Span, 9) | (Event, 3) | (Link, 4) | (KeyValueList, 1) => KeyValue,
        (ScopeSpans, 1) => Scope,
        (ScopeSpans, 2) => Span,
        (Span, 11) => Event,
        (Span, 13) => Link,
        (Span, 15) => Status,
        (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
        (AnyValue, 5) => ArrayValue,
        (AnyValue, 6) => KeyValueList,
        // Strings and bytes of the known messages.
        (
            Request | LogsRequest | MetricsRequest | ResourceMetrics | ScopeMetrics | Metric | MetricData
            | ResourceLogs | ScopeLogs | LogRecord | ResourceSpans | ScopeSpans | Scope | Span | Event | Link | Status
            | KeyValue | AnyValue,
            _,
        ) => {
            return None;
        }
        _ => Opaque,
    })
}

/// Deepest nesting the scan accepts (AnyValue arrays within arrays...); prost stops at 100.
const MAX_DEPTH: usize = 64;

/// Counts the spans and messages of a protobuf `ExportTraceServiceRequest` without decoding
/// it, so an oversized request is refused before anything is allocated.
pub fn scan_otlp_traces(buf: &[u8]) -> Result<Counts, Refused> {
    let mut c = Counts::default();
    scan(buf, Msg::Request, 0, &mut c)?;
    Ok(c)
}

/// The same for an OTLP `ExportMetricsServiceRequest`: `spans` counts data points.
pub fn scan_otlp_metrics(buf: &[u8]) -> Result<Counts, Refused> {
    let mut c = Counts::default();
    scan(buf, Msg::MetricsRequest, 0, &mut c)?;
    Ok(c)
}

/// The same for an OTLP `ExportLogsServiceRequest`: `spans` counts log records.
pub fn scan_otlp_logs(buf: &[u8]) -> Result<Counts, Refused> {
    let mut c = Counts::default();
    scan(buf, Msg::LogsRequest, 0, &mut c)?;
    Ok(c)
}

fn scan(mut b: &[u8], m: Msg, depth: usize, c: &mut Counts) -> Result<(), Refused> {
    let bad = || Refused::Invalid("invalid OTLP protobuf: malformed wire format".into());
    if depth > MAX_DEPTH {
        return Err(Refused::Invalid("invalid OTLP protobuf: values nested too deeply".into()));
    }
    while !b.is_empty() {
        let key = varint(&mut b).ok_or_else(bad)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut b).ok_or_else(bad)?;
            }
            1 => b = b.get(8..).ok_or_else(bad)?,
            5 => b = b.get(4..).ok_or_else(bad)?,
            2 => {
                let len = usize::try_from(varint(&mut b).ok_or_else(bad)?).map_err(|_| bad())?;
                let body = b.get(..len).ok_or_else(bad)?;
                b = &b[len..];
                if let Some(sub) = child(m, field) {
                    c.items += 1;
                    if sub == Msg::Span || sub == Msg::LogRecord || sub == Msg::DataPoint {
                        c.spans += 1;
                    }
                    if c.items > MAX_ITEMS || c.spans > MAX_SPANS {
                        // Stop early: the request is refused whatever the rest holds.
                        return Ok(());
                    }
                    if sub != Msg::Opaque {
                        scan(body, sub, depth + 1, c)?;
                    }
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(i)?;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *b = &b[i + 1..];
            return Some(v);
        }
    }
    None
}

/// Objects and arrays in a JSON document (outside strings): an upper bound on the messages
/// a JSON decoder builds, found without parsing.
pub fn json_items(b: &[u8]) -> usize {
    let (mut n, mut in_str, mut esc) = (0usize, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else if c == b'{' || c == b'[' {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests;
