//! What the internal endpoints carry, as JSON (spans as OTLP protobuf, which keeps every
//! field). Sample values travel as their IEEE bit patterns, so NaNs and staleness markers
//! arrive unchanged.

use serde::{Deserialize, Serialize};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::KeyValue;
use signalbox_metrics::storage::{Matcher, Series};

/// `metrics/select`: the raw series one selector picks in a range.
#[derive(Debug, Serialize, Deserialize)]
pub struct Select {
    /// `(name, op, value)` with op `=`, `!=`, `=~`, `!~` (regexes unanchored, as written).
    pub matchers: Vec<(String, String, String)>,
    pub mint: i64,
    pub maxt: i64,
    /// Labels only, no samples (the label APIs).
    #[serde(default)]
    pub labels_only: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SeriesList {
    pub series: Vec<WireSeries>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireSeries {
    pub labels: Vec<(String, String)>,
    /// `(time ms, f64 bits)`.
    pub samples: Vec<(i64, u64)>,
}

impl From<&Series> for WireSeries {
    fn from(s: &Series) -> Self {
        WireSeries { labels: s.labels.clone(), samples: s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect() }
    }
}

impl From<WireSeries> for Series {
    fn from(s: WireSeries) -> Self {
        Series { labels: s.labels, samples: s.samples.into_iter().map(|(t, v)| (t, f64::from_bits(v))).collect() }
    }
}

const ANCHOR_OPEN: &str = "^(?s:";
const ANCHOR_CLOSE: &str = ")$";

pub fn matcher_out(m: &Matcher) -> (String, String, String) {
    let unanchor =
        |s: &str| s.strip_prefix(ANCHOR_OPEN).and_then(|x| x.strip_suffix(ANCHOR_CLOSE)).unwrap_or(s).to_owned();
    match m {
        Matcher::Equal(n, v) => (n.clone(), "=".into(), v.clone()),
        Matcher::NotEqual(n, v) => (n.clone(), "!=".into(), v.clone()),
        Matcher::Regex(n, r) => (n.clone(), "=~".into(), unanchor(r.as_str())),
        Matcher::NotRegex(n, r) => (n.clone(), "!~".into(), unanchor(r.as_str())),
    }
}

pub fn matcher_in((name, op, value): &(String, String, String)) -> Result<Matcher, String> {
    match op.as_str() {
        "=" => Ok(Matcher::Equal(name.clone(), value.clone())),
        "!=" => Ok(Matcher::NotEqual(name.clone(), value.clone())),
        "=~" | "!~" => Matcher::regex(name, value, op == "!~").map_err(|e| format!("matcher `{name}`: {e}")),
        other => Err(format!("matcher `{name}`: unknown operator `{other}`")),
    }
}

/// `traces/get`: every span of these traces (answered as an OTLP `ExportTraceServiceRequest`).
#[derive(Debug, Serialize, Deserialize)]
pub struct TraceIds {
    pub ids: Vec<String>,
}

/// `traces/search`: the ids of matching traces.
#[derive(Debug, Serialize, Deserialize)]
pub struct TraceSearch {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub tags: Vec<(String, String)>,
    pub errors_only: bool,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub start_nanos: u64,
    pub end_nanos: u64,
    pub limit: usize,
    pub terms: Vec<(String, Option<String>)>,
}

impl From<&signalbox_events::spans::query::Search> for TraceSearch {
    fn from(q: &signalbox_events::spans::query::Search) -> Self {
        TraceSearch {
            service: q.service.clone(),
            operation: q.operation.clone(),
            tags: q.tags.clone(),
            errors_only: q.errors_only,
            min_duration_nanos: q.min_duration_nanos,
            max_duration_nanos: q.max_duration_nanos,
            start_nanos: q.start_nanos,
            end_nanos: q.end_nanos,
            limit: q.limit,
            terms: q.terms.clone(),
        }
    }
}

impl From<TraceSearch> for signalbox_events::spans::query::Search {
    fn from(q: TraceSearch) -> Self {
        signalbox_events::spans::query::Search {
            service: q.service,
            operation: q.operation,
            tags: q.tags,
            errors_only: q.errors_only,
            min_duration_nanos: q.min_duration_nanos,
            max_duration_nanos: q.max_duration_nanos,
            start_nanos: q.start_nanos,
            end_nanos: q.end_nanos,
            limit: q.limit,
            terms: q.terms,
        }
    }
}

/// A found trace: its id and start (to order the merged list).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Found {
    pub trace_id: String,
    pub start_unix_nanos: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FoundList {
    pub traces: Vec<Found>,
}

/// `traces/services` and `traces/operations`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Names {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub names: Vec<String>,
    /// Operation name → kinds bit mask (`operations` only).
    #[serde(default)]
    pub kinds: std::collections::BTreeMap<String, u8>,
}

/// `logs/records`: the raw records a LogQL query reads in a window.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogRecords {
    pub query: String,
    pub start: u64,
    pub end: u64,
    pub cap: usize,
}

/// `logs/search`: the native log search's newest (or oldest) `limit` records.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogSearch {
    pub query: String,
    pub start: u64,
    pub end: u64,
    pub limit: usize,
    pub forward: bool,
}

/// `logs/labels`: the stream label sets of a window (the Loki label APIs' parameters).
#[derive(Debug, Serialize, Deserialize)]
pub struct LogLabels {
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LabelSets {
    pub sets: Vec<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RecordList {
    pub records: Vec<WireRecord>,
}

/// A log record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRecord {
    pub t: u64,
    pub observed: u64,
    pub severity: u8,
    pub severity_text: String,
    pub body: String,
    pub service: String,
    pub instance: String,
    pub resource: Vec<KeyValue>,
    pub attributes: Vec<KeyValue>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

impl From<&LogRecord> for WireRecord {
    fn from(r: &LogRecord) -> Self {
        WireRecord {
            t: r.unix_nanos,
            observed: r.observed_unix_nanos,
            severity: r.severity.0,
            severity_text: r.severity_text.clone(),
            body: r.body.clone(),
            service: r.service.clone(),
            instance: r.instance.clone(),
            resource: r.resource.clone(),
            attributes: r.attributes.clone(),
            trace_id: r.trace_id.map(|t| t.to_hex()),
            span_id: r.span_id.map(|s| s.to_hex()),
        }
    }
}

impl From<WireRecord> for LogRecord {
    fn from(r: WireRecord) -> Self {
        LogRecord {
            unix_nanos: r.t,
            observed_unix_nanos: r.observed,
            severity: Severity(r.severity),
            severity_text: r.severity_text,
            body: r.body,
            service: r.service,
            instance: r.instance,
            resource: r.resource,
            attributes: r.attributes,
            trace_id: r.trace_id.as_deref().and_then(TraceId::from_hex),
            span_id: r.span_id.as_deref().and_then(SpanId::from_hex),
        }
    }
}
