//! Trace queries over the store: a trace by id, and a search by service, operation,
//! attributes, status and duration in a time range, returning trace summaries newest first.
//!
//! Blocks are skipped by their time and duration ranges, their service list and their bloom
//! filters before anything is decompressed. A search visits candidate blocks newest first
//! and stops once no remaining block can hold a trace newer than the ones already found, so
//! asking for the latest 20 matches of a common query reads a few blocks, not all of them.
//! Filters are applied before the limit: a limit never hides a match.

use crate::container::hash::FastMap;
use crate::spans::block::{self, Block, value_text};
use crate::spans::store::SpanStore;
use serde::Serialize;
use signalbox_core::ids::TraceId;
use signalbox_core::span::{Span, StatusCode};
use std::sync::Arc;

/// A search. A trace matches when one of its spans satisfies every given condition (the
/// semantics of Jaeger's search, without its restriction against combining tags and
/// durations).
#[derive(Clone, Debug, Default)]
pub struct Search {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// Attribute `key = value` (values compared as text), of the span or its resource.
    pub tags: Vec<(String, String)>,
    pub errors_only: bool,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub start_nanos: u64,
    pub end_nanos: u64,
    pub limit: usize,
    /// Terms every one of which some span of the trace (of `service`, when given) must
    /// meet, each possibly by another span (Zipkin's `annotationQuery`): `(key, Some(v))` an
    /// attribute `key` with text `v`, `(key, None)` an attribute `key` or an event named
    /// `key`; `error` means the error status (with `v` its message).
    pub terms: Vec<(String, Option<String>)>,
}

impl Search {
    fn matches(&self, s: &Span) -> bool {
        let d = s.duration_nanos();
        s.start_unix_nanos >= self.start_nanos
            && s.start_unix_nanos <= self.end_nanos
            && self.service.as_ref().is_none_or(|x| *x == s.service)
            && self.operation.as_ref().is_none_or(|x| *x == s.name)
            && (!self.errors_only || s.status == StatusCode::Error)
            && self.min_duration_nanos.is_none_or(|m| d >= m)
            && self.max_duration_nanos.is_none_or(|m| d <= m)
            && self.tags.iter().all(|(k, v)| s.has_attribute(k, |x| value_text(x) == v.as_str()))
    }

    /// Whether the spans of a trace meet every term.
    fn terms_match(&self, spans: &[Span]) -> bool {
        let of_service = || spans.iter().filter(|s| self.service.as_ref().is_none_or(|x| *x == s.service));
        self.terms.iter().all(|(k, v)| {
            of_service().any(|s| match (k.as_str(), v) {
                ("error", None) => s.status == StatusCode::Error,
                ("error", Some(v)) => {
                    s.status == StatusCode::Error
                        && (s.status_message == *v || (s.status_message.is_empty() && v == "true"))
                }
                (k, Some(v)) => s.has_attribute(k, |x| value_text(x) == v.as_str()),
                (k, None) => s.has_attribute(k, |_| true) || s.events.iter().any(|e| e.name == k),
            })
        })
    }

    /// Whether a block can hold a matching span, from its header alone.
    fn block_may_match(&self, b: &Block) -> bool {
        let m = &b.meta;
        if m.max_start < self.start_nanos || m.min_start > self.end_nanos {
            return false;
        }
        if self.min_duration_nanos.is_some_and(|d| m.max_duration < d)
            || self.max_duration_nanos.is_some_and(|d| m.min_duration > d)
        {
            return false;
        }
        if self.errors_only && m.errors == 0 {
            return false;
        }
        if let Some(s) = &self.service {
            if !m.services.iter().any(|x| x == s) || !b.tokens.may_contain(&block::token_service(s)) {
                return false;
            }
            if let Some(o) = &self.operation
                && !b.tokens.may_contain(&block::token_operation(s, o))
            {
                return false;
            }
        }
        match &self.service {
            Some(s) => self.tags.iter().all(|(k, v)| b.tokens.may_contain(&block::token_service_attr(s, k, v))),
            None => self.tags.iter().all(|(k, v)| b.tokens.may_contain(&block::token_attr(k, v))),
        }
    }
}

/// A trace in search results.
#[derive(Clone, Debug, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_service: String,
    pub root_operation: String,
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
    pub span_count: usize,
    pub services: Vec<String>,
    /// Spans per service.
    pub service_spans: std::collections::BTreeMap<String, usize>,
    pub error: bool,
    /// Spans with an error status.
    pub error_spans: usize,
}

/// Summarises a trace's spans.
pub fn summarize(spans: &[Span]) -> Option<TraceSummary> {
    let first = spans.first()?;
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| (s.parent_span_id.is_some(), s.start_unix_nanos))
        .unwrap_or(first);
    let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nanos).max().unwrap_or(start);
    let mut service_spans = std::collections::BTreeMap::new();
    for s in spans {
        *service_spans.entry(s.service.clone()).or_insert(0) += 1;
    }
    let error_spans = spans.iter().filter(|s| s.status == StatusCode::Error).count();
    Some(TraceSummary {
        trace_id: first.trace_id.to_hex(),
        root_service: root.service.clone(),
        root_operation: root.name.clone(),
        start_unix_nanos: start,
        duration_nanos: end - start,
        span_count: spans.len(),
        services: service_spans.keys().cloned().collect(),
        service_spans,
        error: error_spans > 0,
        error_spans,
    })
}

/// Every span of a trace (in memory and in blocks), ordered by start.
pub fn trace(store: &SpanStore, id: &TraceId) -> Vec<Span> {
    let mut spans = store.memory_trace(id);
    for b in store.blocks(0, u64::MAX) {
        if !b.traces.may_contain(&id.0) {
            continue;
        }
        let Ok(l) = b.load() else {
            tracing::error!(path = %b.path().display(), "unreadable block");
            continue;
        };
        let Ok(rows) = l.rows_of(id) else { continue };
        if rows.is_empty() {
            continue;
        }
        if let Ok(found) = l.spans_range(rows) {
            spans.extend(found);
        }
    }
    // A span can be both in a block being written and just sealed: keep one copy (of each
    // half of a Zipkin shared span).
    spans.sort_by(|a, b| a.start_unix_nanos.cmp(&b.start_unix_nanos).then(a.identity().cmp(&b.identity())));
    spans.dedup_by(|a, b| a.identity() == b.identity());
    spans
}

/// Matching spans of one block: (trace id, span start).
fn block_matches(b: &Arc<Block>, q: &Search) -> Vec<(TraceId, u64)> {
    let Ok(l) = b.load() else { return Vec::new() };
    let res = (|| -> Result<Vec<(TraceId, u64)>, crate::spans::codec::Corrupt> {
        // Conditions on dictionary columns become integer comparisons; a value that is not
        // in the block's dictionary means no row can match.
        let services = match &q.service {
            Some(w) => {
                let d = l.services()?;
                let Some(i) = d.find(w) else { return Ok(Vec::new()) };
                Some((d, i))
            }
            None => None,
        };
        let names = match &q.operation {
            Some(w) => {
                let d = l.names()?;
                let Some(i) = d.find(w) else { return Ok(Vec::new()) };
                Some((d, i))
            }
            None => None,
        };
        let attrs = if q.tags.is_empty() { None } else { Some(l.attributes()?) };
        let resource_has = |r: &signalbox_core::span::Resource, k: &str, v: &str| {
            r.attributes.iter().any(|kv| kv.key == k && value_text(&kv.value) == v)
        };
        let origins = if q.tags.is_empty() {
            None
        } else {
            Some(l.origins_if(|res| res.iter().any(|r| q.tags.iter().any(|(k, v)| resource_has(r, k, v))))?)
        };
        // Per tag: its key's index and which values match (in the span attributes), and
        // which resources have it.
        let mut wanted_tags = Vec::new();
        if let (Some(a), Some(o)) = (&attrs, &origins) {
            for (k, v) in &q.tags {
                let kid = a.key(k);
                let ok = a.values_matching(v);
                let res: Vec<bool> = o.resources.iter().map(|r| resource_has(r, k, v)).collect();
                if (kid.is_none() || !ok.contains(&true)) && !res.contains(&true) {
                    return Ok(Vec::new());
                }
                wanted_tags.push((kid, ok, res));
            }
        }
        let starts = l.starts()?;
        let durations =
            if q.min_duration_nanos.is_some() || q.max_duration_nanos.is_some() { Some(l.durations()?) } else { None };
        let flags = if q.errors_only { Some(l.flags()?) } else { None };
        let mut rows = Vec::new();
        for (i, &s) in starts.iter().enumerate() {
            if s < q.start_nanos || s > q.end_nanos {
                continue;
            }
            if let Some((d, w)) = &services
                && d.rows[i] != *w
            {
                continue;
            }
            if let Some((d, w)) = &names
                && d.rows[i] != *w
            {
                continue;
            }
            if let Some(d) = &durations
                && (q.min_duration_nanos.is_some_and(|m| d[i] < m) || q.max_duration_nanos.is_some_and(|m| d[i] > m))
            {
                continue;
            }
            if let Some(f) = &flags
                && block::status_of(f[i]) != StatusCode::Error
            {
                continue;
            }
            if let (Some(a), Some(o)) = (&attrs, &origins)
                && !wanted_tags.iter().all(|(kid, ok, res)| {
                    a.row(i).iter().any(|(k, v)| Some(*k) == *kid && ok[*v as usize])
                        || o.rows.get(i).is_some_and(|(r, _)| res[*r as usize])
                })
            {
                continue;
            }
            rows.push(i);
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids = l.trace_ids()?;
        Ok(rows.into_iter().map(|i| (ids[i], starts[i])).collect())
    })();
    res.unwrap_or_default()
}

/// Trace summaries matching `q`, newest first, at most `q.limit`.
pub fn search(store: &SpanStore, q: &Search) -> Vec<TraceSummary> {
    let limit = q.limit.max(1);
    // trace id -> newest matching span start
    let mut found: FastMap<TraceId, u64> = FastMap::default();
    for s in store.memory_spans(|s| q.matches(s)) {
        let e = found.entry(s.trace_id).or_insert(0);
        *e = (*e).max(s.start_unix_nanos);
    }
    for b in store.blocks(q.start_nanos, q.end_nanos) {
        if !q.block_may_match(&b) {
            continue;
        }
        // Stop once no span in this block (or any older one) can beat the limit-th newest
        // match found so far (trace-level terms are checked later: no early stop then).
        if found.len() >= limit && q.terms.is_empty() {
            let mut starts: Vec<u64> = found.values().copied().collect();
            starts.sort_unstable_by(|a, b| b.cmp(a));
            if b.meta.max_start < starts[limit - 1] {
                break;
            }
        }
        for (id, start) in block_matches(&b, q) {
            let e = found.entry(id).or_insert(0);
            *e = (*e).max(start);
        }
    }
    let mut ranked: Vec<(TraceId, u64)> = found.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out: Vec<TraceSummary> = Vec::with_capacity(limit);
    for (id, _) in ranked {
        if out.len() >= limit {
            break;
        }
        let spans = trace(store, &id);
        if q.terms_match(&spans)
            && let Some(s) = summarize(&spans)
        {
            out.push(s);
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.start_unix_nanos));
    out
}

/// Blocks of `[start, end]`, newest first, at most `n` (what the suggestion lists read).
fn recent_blocks(store: &SpanStore, start: u64, end: u64, n: usize) -> Vec<Arc<Block>> {
    let mut blocks = store.blocks(start, end);
    blocks.sort_by_key(|b| std::cmp::Reverse(b.meta.max_start));
    blocks.truncate(n);
    blocks
}

/// Attribute keys of spans in `[start, end]`, sorted, at most `limit` (from memory and the
/// newest 8 blocks' dictionaries).
pub fn tag_keys(store: &SpanStore, start: u64, end: u64, limit: usize) -> Vec<String> {
    let mut keys = std::collections::BTreeSet::new();
    for s in store.memory_spans(|s| s.start_unix_nanos >= start && s.start_unix_nanos <= end) {
        keys.extend(s.attributes.iter().map(|kv| kv.key.to_string()));
    }
    for b in recent_blocks(store, start, end, 8) {
        if let Ok(a) = b.load().and_then(|l| l.attributes()) {
            keys.extend(a.keys);
        }
    }
    keys.into_iter().take(limit).collect()
}

/// Values (as text) of attribute `key` in spans in `[start, end]`, sorted, at most `limit`.
pub fn tag_values(store: &SpanStore, key: &str, start: u64, end: u64, limit: usize) -> Vec<String> {
    let mut values = std::collections::BTreeSet::new();
    for s in store.memory_spans(|s| s.start_unix_nanos >= start && s.start_unix_nanos <= end) {
        values.extend(s.attributes.iter().filter(|kv| kv.key == key).map(|kv| value_text(&kv.value).into_owned()));
    }
    for b in recent_blocks(store, start, end, 8) {
        let Ok(a) = b.load().and_then(|l| l.attributes()) else { continue };
        let Some(k) = a.key(key) else { continue };
        let mut used = vec![false; a.values.len()];
        for row in 0..a.rows() {
            for (kk, v) in a.row(row) {
                if *kk == k {
                    used[*v as usize] = true;
                }
            }
        }
        values.extend(a.values.iter().zip(used).filter(|(_, u)| *u).map(|(v, _)| value_text(v).into_owned()));
    }
    values.into_iter().take(limit).collect()
}
