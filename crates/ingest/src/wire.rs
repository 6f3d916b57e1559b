//! What one NATS message carries: the part of a received batch that falls in one partition,
//! encoded with the codecs the stores already use for their write-ahead logs (spans and log
//! records) and Prometheus remote_write's snappy protobuf (samples).
//!
//! Every payload starts with a format byte so a later release can change the encoding
//! while old messages still wait in the stream.

use signalbox_core::log::LogRecord;
use signalbox_core::partition;
use signalbox_core::span::Span;
use signalbox_metrics::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use signalbox_metrics::storage::Labels;
use std::collections::BTreeMap;

/// The three signals, each on its own subjects and consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }
}

const FORMAT_SPANS: u8 = 1;
const FORMAT_LOGS: u8 = 1;
const FORMAT_SAMPLES: u8 = 1;

/// A payload that does not decode (a newer release's format, or damage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable(pub String);

/// Spans by partition of their trace.
pub fn split_spans(spans: Vec<Span>, partitions: u32) -> BTreeMap<u32, Vec<Span>> {
    let mut out: BTreeMap<u32, Vec<Span>> = BTreeMap::new();
    for s in spans {
        out.entry(partition::of_trace(&s.trace_id, partitions)).or_default().push(s);
    }
    out
}

/// The partition of a log record: its stream, named by service and instance.
pub fn log_partition(r: &LogRecord, partitions: u32) -> u32 {
    partition::of_labels([("instance", r.instance.as_str()), ("service", r.service.as_str())], partitions)
}

/// Log records by partition of their stream.
pub fn split_logs(records: Vec<LogRecord>, partitions: u32) -> BTreeMap<u32, Vec<LogRecord>> {
    let mut out: BTreeMap<u32, Vec<LogRecord>> = BTreeMap::new();
    for r in records {
        out.entry(log_partition(&r, partitions)).or_default().push(r);
    }
    out
}

/// The partition of a series, from its labels in name order.
pub fn series_partition(labels: &Labels, partitions: u32) -> u32 {
    let mut sorted: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    partition::of_labels(sorted, partitions)
}

/// Samples by partition of their series.
pub fn split_samples(samples: Vec<(Labels, i64, f64)>, partitions: u32) -> BTreeMap<u32, Vec<(Labels, i64, f64)>> {
    let mut out: BTreeMap<u32, Vec<(Labels, i64, f64)>> = BTreeMap::new();
    for s in samples {
        out.entry(series_partition(&s.0, partitions)).or_default().push(s);
    }
    out
}

pub fn encode_spans(spans: &[Span]) -> Vec<u8> {
    let mut out = vec![FORMAT_SPANS];
    signalbox_events::spans::codec::encode_batch_into(spans, &mut out);
    out
}

pub fn decode_spans(b: &[u8]) -> Result<Vec<Span>, Undecodable> {
    match b.split_first() {
        Some((&FORMAT_SPANS, rest)) => signalbox_events::spans::codec::decode_batch(0, rest)
            .map_err(|_| Undecodable("a damaged span batch".into())),
        _ => Err(Undecodable("an unknown span batch format".into())),
    }
}

pub fn encode_logs(records: &[LogRecord]) -> Vec<u8> {
    let mut out = vec![FORMAT_LOGS];
    out.extend_from_slice(&signalbox_events::logs::codec::encode_batch(records));
    out
}

pub fn decode_logs(b: &[u8]) -> Result<Vec<LogRecord>, Undecodable> {
    match b.split_first() {
        Some((&FORMAT_LOGS, rest)) => {
            signalbox_events::logs::codec::decode_batch(rest).map_err(|_| Undecodable("a damaged log batch".into()))
        }
        _ => Err(Undecodable("an unknown log batch format".into())),
    }
}

/// Samples as a remote_write request (one series per sample run with the same labels).
pub fn encode_samples(samples: &[(Labels, i64, f64)]) -> Vec<u8> {
    let mut req = WriteRequest::default();
    let mut last: Option<&Labels> = None;
    for (labels, t, v) in samples {
        if last != Some(labels) {
            req.timeseries.push(TimeSeries {
                labels: labels.iter().map(|(n, v)| Label { name: n.clone(), value: v.clone() }).collect(),
                samples: Vec::new(),
                exemplars: Vec::new(),
            });
            last = Some(labels);
        }
        if let Some(ts) = req.timeseries.last_mut() {
            ts.samples.push(Sample { value: *v, timestamp: *t });
        }
    }
    let mut out = vec![FORMAT_SAMPLES];
    out.extend_from_slice(&signalbox_metrics::remote_write::encode(&req));
    out
}

pub fn decode_samples(b: &[u8]) -> Result<Vec<(Labels, i64, f64)>, Undecodable> {
    match b.split_first() {
        Some((&FORMAT_SAMPLES, rest)) => signalbox_metrics::remote_write::decode(rest)
            .map(|d| d.samples)
            .map_err(|e| Undecodable(format!("a damaged sample batch: {}", e.0))),
        _ => Err(Undecodable("an unknown sample batch format".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip_and_split_by_series() {
        let l = |v: &str| vec![("__name__".to_owned(), "up".to_owned()), ("job".to_owned(), v.to_owned())];
        let samples: Vec<(Labels, i64, f64)> =
            (0..40).map(|i| (l(&format!("j{}", i % 8)), 1_000 + i as i64, i as f64)).collect();
        let parts = split_samples(samples.clone(), 4);
        let mut back = Vec::new();
        for (p, part) in &parts {
            for s in part {
                assert_eq!(series_partition(&s.0, 4), *p);
            }
            back.extend(decode_samples(&encode_samples(part)).unwrap());
        }
        back.sort_by_key(|s| s.1);
        assert_eq!(back, samples);
        assert!(decode_samples(&[9, 1, 2]).is_err());
    }

    #[test]
    fn logs_round_trip() {
        let r = LogRecord {
            unix_nanos: 5,
            observed_unix_nanos: 6,
            severity: signalbox_core::log::Severity(9),
            severity_text: "INFO".into(),
            body: "hello".into(),
            service: "api".into(),
            instance: "a-1".into(),
            resource: Vec::new(),
            attributes: Vec::new(),
            trace_id: None,
            span_id: None,
        };
        let b = encode_logs(std::slice::from_ref(&r));
        assert_eq!(decode_logs(&b).unwrap(), vec![r]);
        assert!(decode_logs(&[]).is_err());
    }
}
