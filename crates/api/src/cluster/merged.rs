//! Merging what the storage nodes hold: the cluster-wide PromQL queryable, spans of traces,
//! trace searches, log records and stream label sets.

use super::wire::{self, Found, FoundList, LabelSets, RecordList, SeriesList, TraceIds, TraceSearch};
use super::{Cluster, Failure, Partial};
use bytes::Bytes;
use prost::Message;
use signalbox_core::ids::TraceId;
use signalbox_core::log::LogRecord;
use signalbox_core::span::Span;
use signalbox_events::spans::pipeline::Traces;
use signalbox_events::spans::query::Search;
use signalbox_metrics::storage::{Labels, Matcher, Queryable, Series, StorageError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub const METRICS_SELECT: &str = "/internal/cluster/v1/metrics/select";
pub const TRACES_GET: &str = "/internal/cluster/v1/traces/get";
pub const TRACES_SEARCH: &str = "/internal/cluster/v1/traces/search";
pub const TRACES_SERVICES: &str = "/internal/cluster/v1/traces/services";
pub const TRACES_OPERATIONS: &str = "/internal/cluster/v1/traces/operations";
pub const LOGS_RECORDS: &str = "/internal/cluster/v1/logs/records";
pub const LOGS_LABELS: &str = "/internal/cluster/v1/logs/labels";
pub const LOGS_SEARCH: &str = "/internal/cluster/v1/logs/search";

/// Decodes each peer's JSON answer; a peer whose answer does not decode counts as missing.
fn decode<T: serde::de::DeserializeOwned>(
    cluster: &Cluster,
    answers: Vec<(String, Bytes)>,
    partial: &Partial,
) -> Vec<T> {
    let mut out = Vec::new();
    for (node, body) in answers {
        match serde_json::from_slice::<T>(&body) {
            Ok(v) => out.push(v),
            Err(e) => missing(cluster, &node, format!("its answer does not decode: {e}"), partial),
        }
    }
    out
}

fn missing(cluster: &Cluster, node: &str, error: String, partial: &Partial) {
    let n = cluster.peers().into_iter().find(|p| p.node == node);
    partial.add(Failure {
        node: node.to_owned(),
        address: n.as_ref().map(|n| n.address.clone()).unwrap_or_default(),
        partitions: n.map(|n| n.partitions).unwrap_or_default(),
        error,
    });
}

fn body<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Series of several nodes merged: one series per label set, samples in time order, one
/// per timestamp.
pub fn merge_series(all: Vec<Series>) -> Vec<Series> {
    let mut by: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for s in all {
        by.entry(s.labels).or_default().extend(s.samples);
    }
    by.into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|(t, _)| *t);
            samples.dedup_by_key(|(t, _)| *t);
            Series { labels, samples }
        })
        .collect()
}

/// What PromQL and the label APIs read with a cluster: this node's database and every
/// peer's, merged. Runs on a blocking thread; peers are asked through `handle`.
pub struct ClusterQueryable {
    pub local: Arc<dyn signalbox_metrics::service::Db>,
    pub cluster: Arc<Cluster>,
    pub partial: Partial,
    pub handle: tokio::runtime::Handle,
}

impl ClusterQueryable {
    fn remote(&self, matchers: &[Matcher], mint: i64, maxt: i64, labels_only: bool) -> Vec<Series> {
        let req = wire::Select { matchers: matchers.iter().map(wire::matcher_out).collect(), mint, maxt, labels_only };
        let answers = self.handle.block_on(self.cluster.ask_all(METRICS_SELECT, body(&req), &self.partial));
        decode::<SeriesList>(&self.cluster, answers, &self.partial)
            .into_iter()
            .flat_map(|l| l.series)
            .map(Series::from)
            .collect()
    }
}

impl Queryable for ClusterQueryable {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, StorageError> {
        let mut all = self.local.select(matchers, mint, maxt)?;
        all.extend(self.remote(matchers, mint, maxt, false));
        Ok(merge_series(all))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>, StorageError> {
        let mut names: BTreeSet<String> = self.local.label_names(matchers, mint, maxt)?.into_iter().collect();
        for s in self.remote(matchers, mint, maxt, true) {
            names.extend(s.labels.into_iter().map(|(k, _)| k));
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values: BTreeSet<String> = self.local.label_values(name, matchers, mint, maxt)?.into_iter().collect();
        for s in self.remote(matchers, mint, maxt, true) {
            values.extend(s.labels.into_iter().filter(|(k, _)| k == name).map(|(_, v)| v));
        }
        Ok(values.into_iter().collect())
    }
}

/// Spans of several nodes merged: one copy of each span, in start order.
pub fn merge_spans(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by(|a, b| {
        (a.start_unix_nanos, a.span_id.0, a.parent_span_id.map(|p| p.0)).cmp(&(
            b.start_unix_nanos,
            b.span_id.0,
            b.parent_span_id.map(|p| p.0),
        ))
    });
    spans.dedup_by(|a, b| {
        a.span_id == b.span_id && a.start_unix_nanos == b.start_unix_nanos && a.parent_span_id == b.parent_span_id
    });
    spans
}

/// Every span of `ids` on the peers (this node's are not included).
pub async fn peer_spans(cluster: &Cluster, ids: &[TraceId], partial: &Partial) -> Vec<Span> {
    let req = TraceIds { ids: ids.iter().map(TraceId::to_hex).collect() };
    let answers = cluster.ask_all(TRACES_GET, body(&req), partial).await;
    let mut out = Vec::new();
    for (node, bytes) in answers {
        match opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(bytes) {
            Ok(req) => out.extend(signalbox_otlp::traces::convert(req).spans),
            Err(e) => missing(cluster, &node, format!("its spans do not decode: {e}"), partial),
        }
    }
    out
}

/// Every span of `id` on this node and the peers.
pub async fn trace(cluster: &Cluster, local: &Traces, id: &TraceId, partial: &Partial) -> Vec<Span> {
    let mut spans = local.trace(id);
    spans.extend(peer_spans(cluster, std::slice::from_ref(id), partial).await);
    merge_spans(spans)
}

/// A search over every node: the newest `q.limit` matching traces, each with all its spans
/// from every node, newest first.
pub async fn search(cluster: &Cluster, local: &Traces, q: &Search, partial: &Partial) -> Vec<Vec<Span>> {
    let (t, q2) = (local.clone(), q.clone());
    let mine = tokio::task::spawn_blocking(move || t.search(&q2)).await.unwrap_or_default();
    let mut found: Vec<Found> =
        mine.iter().map(|s| Found { trace_id: s.trace_id.clone(), start_unix_nanos: s.start_unix_nanos }).collect();
    let answers = cluster.ask_all(TRACES_SEARCH, body(&TraceSearch::from(q)), partial).await;
    for l in decode::<FoundList>(cluster, answers, partial) {
        found.extend(l.traces);
    }
    // Newest start of each id, then newest first.
    let mut best: HashMap<String, u64> = HashMap::new();
    for f in found {
        let e = best.entry(f.trace_id).or_insert(0);
        *e = (*e).max(f.start_unix_nanos);
    }
    let mut ids: Vec<(u64, String)> = best.into_iter().map(|(id, t)| (t, id)).collect();
    ids.sort_by(|a, b| b.cmp(a));
    ids.truncate(q.limit.max(1));
    let ids: Vec<TraceId> = ids.iter().filter_map(|(_, id)| TraceId::from_hex(id)).collect();
    let mut by_id: HashMap<TraceId, Vec<Span>> = HashMap::new();
    for s in peer_spans(cluster, &ids, partial).await {
        by_id.entry(s.trace_id).or_default().push(s);
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut spans = local.trace(&id);
        spans.extend(by_id.remove(&id).unwrap_or_default());
        let spans = merge_spans(spans);
        if !spans.is_empty() {
            out.push(spans);
        }
    }
    out
}

/// Service names of every node.
pub async fn services(cluster: &Cluster, local: &Traces, partial: &Partial) -> Vec<String> {
    let mut all: BTreeSet<String> = local.services().into_iter().collect();
    let answers = cluster.ask_all(TRACES_SERVICES, body(&wire::Names::default()), partial).await;
    for n in decode::<wire::Names>(cluster, answers, partial) {
        all.extend(n.names);
    }
    all.into_iter().collect()
}

/// Operations of `service` on every node, with their kinds (bit masks, merged).
pub async fn operations(cluster: &Cluster, local: &Traces, service: &str, partial: &Partial) -> BTreeMap<String, u8> {
    let mut all = local.operation_kinds(service);
    let req = wire::Names { service: Some(service.to_owned()), ..Default::default() };
    let answers = cluster.ask_all(TRACES_OPERATIONS, body(&req), partial).await;
    for n in decode::<wire::Names>(cluster, answers, partial) {
        for (op, mask) in n.kinds {
            *all.entry(op).or_insert(0) |= mask;
        }
    }
    all
}

/// The raw records a LogQL query reads on the peers (blocking: runs on a query thread).
pub fn peer_records(
    cluster: &Cluster,
    handle: &tokio::runtime::Handle,
    query: &str,
    start: u64,
    end: u64,
    cap: usize,
    partial: &Partial,
) -> Vec<LogRecord> {
    let req = wire::LogRecords { query: query.to_owned(), start, end, cap };
    let answers = handle.block_on(cluster.ask_all(LOGS_RECORDS, body(&req), partial));
    decode::<RecordList>(cluster, answers, partial).into_iter().flat_map(|l| l.records).map(LogRecord::from).collect()
}

/// The native log search on the peers (blocking).
pub fn peer_search(
    cluster: &Cluster,
    handle: &tokio::runtime::Handle,
    req: &wire::LogSearch,
    partial: &Partial,
) -> Vec<LogRecord> {
    let answers = handle.block_on(cluster.ask_all(LOGS_SEARCH, body(req), partial));
    decode::<RecordList>(cluster, answers, partial).into_iter().flat_map(|l| l.records).map(LogRecord::from).collect()
}

/// The stream label sets of the peers (blocking).
pub fn peer_label_sets(
    cluster: &Cluster,
    handle: &tokio::runtime::Handle,
    params: &[(String, String)],
    partial: &Partial,
) -> Vec<BTreeMap<String, String>> {
    let req = wire::LogLabels { params: params.to_vec() };
    let answers = handle.block_on(cluster.ask_all(LOGS_LABELS, body(&req), partial));
    decode::<LabelSets>(cluster, answers, partial).into_iter().flat_map(|l| l.sets).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_split_over_two_nodes_merges_in_time_order() {
        let l: Labels = vec![("__name__".into(), "up".into())];
        let a = Series { labels: l.clone(), samples: vec![(1000, 1.0), (3000, 3.0)] };
        let b = Series { labels: l.clone(), samples: vec![(2000, 2.0), (3000, 3.0)] };
        let m = merge_series(vec![a, b]);
        assert_eq!(m, vec![Series { labels: l, samples: vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)] }]);
    }

    #[test]
    fn matchers_survive_the_wire() {
        let m = Matcher::regex("job", "api|web", false).unwrap();
        let back = wire::matcher_in(&wire::matcher_out(&m)).unwrap();
        assert!(back.matches("api") && back.matches("web") && !back.matches("apix"));
        let stale = signalbox_metrics::storage::stale_nan();
        let w = wire::WireSeries::from(&Series { labels: vec![], samples: vec![(1, stale)] });
        let json = serde_json::to_string(&w).unwrap();
        let back: Series = serde_json::from_str::<wire::WireSeries>(&json).unwrap().into();
        assert!(signalbox_metrics::storage::is_stale(back.samples[0].1), "the staleness marker survives");
    }
}
