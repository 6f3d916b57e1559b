//! The service dependency graph, computed as spans arrive (no batch job).
//!
//! A span whose parent belongs to another service is one call `parent.service →
//! span.service`. Children often arrive before their parents (they end first), so children
//! wait for their parent for a while. A client span naming its peer (`peer.service`) whose
//! callee sends no spans of its own (an uninstrumented service, or one behind the gateway)
//! becomes an edge to that peer once no child has shown up for it.
//!
//! Calls are counted per minute with errors and a latency histogram (for p50/p99); closed
//! minutes are appended to `deps.jsonl` so the graph survives restarts.

use crate::container::hash::{FastMap, FastSet};
use serde::{Deserialize, Serialize};
use signalbox_core::ids::SpanId;
use signalbox_core::span::{AttrValue, Span, SpanKind, StatusCode};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A service name, interned: the graph sees the same few names on every span, so it keeps
/// one copy of each and shares it (no allocation per span).
type Name = Arc<str>;

const MINUTE: u64 = 60 * 1_000_000_000;
const RECENT: usize = 500_000;
const WAIT: Duration = Duration::from_secs(15);
/// Latency buckets: 0.1 ms × 1.5^i, up to ~20 min.
const BUCKETS: usize = 48;

fn bucket(nanos: u64) -> usize {
    let ms = nanos as f64 / 1e6;
    if ms <= 0.1 {
        return 0;
    }
    ((ms / 0.1).ln() / 1.5f64.ln()).ceil().min((BUCKETS - 1) as f64) as usize
}

fn bucket_upper_ms(i: usize) -> f64 {
    0.1 * 1.5f64.powi(i as i32)
}

/// Calls on one edge in one minute.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EdgeStats {
    pub calls: u64,
    pub errors: u64,
    pub hist: Vec<u64>,
}

impl EdgeStats {
    fn add(&mut self, nanos: u64, error: bool) {
        if self.hist.len() < BUCKETS {
            self.hist.resize(BUCKETS, 0);
        }
        self.calls += 1;
        self.errors += error as u64;
        self.hist[bucket(nanos)] += 1;
    }
    fn merge(&mut self, o: &EdgeStats) {
        if self.hist.len() < BUCKETS {
            self.hist.resize(BUCKETS, 0);
        }
        self.calls += o.calls;
        self.errors += o.errors;
        for (a, b) in self.hist.iter_mut().zip(o.hist.iter()) {
            *a += b;
        }
    }
    fn quantile_ms(&self, q: f64) -> f64 {
        let target = (self.calls as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= target {
                return bucket_upper_ms(i);
            }
        }
        0.0
    }
}

/// An edge of the graph over a window.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Edge {
    pub caller: String,
    pub callee: String,
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    minute: u64,
    caller: String,
    callee: String,
    stats: EdgeStats,
}

struct Seen {
    service: Name,
    kind: SpanKind,
}

struct Child {
    service: Name,
    start: u64,
    duration: u64,
    error: bool,
    at: Instant,
}

struct Client {
    caller: Name,
    peer: Name,
    start: u64,
    duration: u64,
    error: bool,
    at: Instant,
}

/// The graph builder and store.
pub struct Graph {
    minutes: BTreeMap<u64, FastMap<(Name, Name), EdgeStats>>,
    /// Every service name in use; names nothing else holds are dropped on `tick`.
    names: FastSet<Name>,
    /// Spans seen lately, for children that arrive after their parent: two generations of
    /// up to `RECENT / 2` each; when the newer fills, the older is dropped whole (cheaper
    /// than evicting one span per insert, and it remembers between RECENT/2 and RECENT).
    recent: FastMap<SpanId, Seen>,
    recent_older: FastMap<SpanId, Seen>,
    orphans: FastMap<SpanId, Vec<Child>>,
    /// Parents waited for, oldest first (entries may already be resolved).
    orphans_order: VecDeque<(Instant, SpanId)>,
    clients: FastMap<SpanId, Client>,
    /// Client spans waiting for a child, oldest first (entries may already be resolved).
    clients_order: VecDeque<(Instant, SpanId)>,
    file: Option<PathBuf>,
    flushed_until: u64,
    keep: Duration,
}

fn peer_of(s: &Span) -> Option<&str> {
    s.attributes.iter().find(|kv| kv.key == "peer.service").and_then(|kv| match &kv.value {
        AttrValue::Str(v) if !v.is_empty() => Some(v.as_str()),
        _ => None,
    })
}

fn intern(names: &mut FastSet<Name>, s: &str) -> Name {
    if let Some(n) = names.get(s) {
        return n.clone();
    }
    let n: Name = Arc::from(s);
    names.insert(n.clone());
    n
}

impl Graph {
    /// Loads persisted minutes from `file` (newer than `keep`).
    pub fn open(file: Option<PathBuf>, keep: Duration, now_nanos: u64) -> Self {
        let mut minutes: BTreeMap<u64, FastMap<(Name, Name), EdgeStats>> = BTreeMap::new();
        let mut names = FastSet::default();
        let cutoff = now_nanos.saturating_sub(keep.as_nanos() as u64);
        if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                if let Ok(p) = serde_json::from_str::<Persisted>(line)
                    && p.minute >= cutoff
                {
                    let key = (intern(&mut names, &p.caller), intern(&mut names, &p.callee));
                    minutes.entry(p.minute).or_default().entry(key).or_default().merge(&p.stats);
                }
            }
        }
        let flushed_until = minutes.keys().next_back().map(|m| m + MINUTE).unwrap_or(0);
        Graph {
            minutes,
            names,
            recent: FastMap::default(),
            recent_older: FastMap::default(),
            orphans: FastMap::default(),
            orphans_order: VecDeque::new(),
            clients: FastMap::default(),
            clients_order: VecDeque::new(),
            file,
            flushed_until,
            keep,
        }
    }

    fn edge(&mut self, caller: &Name, callee: &Name, start: u64, duration: u64, error: bool) {
        let minute = start / MINUTE * MINUTE;
        self.minutes
            .entry(minute)
            .or_default()
            .entry((caller.clone(), callee.clone()))
            .or_default()
            .add(duration, error);
    }

    /// Takes one span.
    pub fn observe(&mut self, s: &Span) {
        let error = s.status == StatusCode::Error;
        let service = intern(&mut self.names, &s.service);
        if let Some(parent) = s.parent_span_id {
            match self
                .recent
                .get(&parent)
                .or_else(|| self.recent_older.get(&parent))
                .map(|p| (p.service.clone(), p.kind))
            {
                Some((caller, _)) if caller != service => {
                    self.clients.remove(&parent);
                    self.edge(&caller, &service, s.start_unix_nanos, s.duration_nanos(), error);
                }
                Some(_) => {}
                None => {
                    let at = Instant::now();
                    let waiting = self.orphans.entry(parent).or_default();
                    if waiting.is_empty() {
                        self.orphans_order.push_back((at, parent));
                    }
                    waiting.push(Child {
                        service: service.clone(),
                        start: s.start_unix_nanos,
                        duration: s.duration_nanos(),
                        error,
                        at,
                    })
                }
            }
        }
        let peer = (s.kind == SpanKind::Client).then(|| peer_of(s)).flatten();
        if let Some(children) = self.orphans.remove(&s.span_id) {
            let mut crossed = false;
            for c in children {
                if c.service != service {
                    crossed = true;
                    self.edge(&service, &c.service, c.start, c.duration, c.error);
                }
            }
            if crossed {
                // The callee reported its own span: the peer fallback is not needed.
                self.insert_recent(s.span_id, service, s.kind);
                return;
            }
        }
        if let Some(p) = peer {
            let at = Instant::now();
            let peer = intern(&mut self.names, p);
            self.clients.insert(
                s.span_id,
                Client {
                    caller: service.clone(),
                    peer,
                    start: s.start_unix_nanos,
                    duration: s.duration_nanos(),
                    error,
                    at,
                },
            );
            self.clients_order.push_back((at, s.span_id));
        }
        self.insert_recent(s.span_id, service, s.kind);
    }

    fn insert_recent(&mut self, id: SpanId, service: Name, kind: SpanKind) {
        if self.recent.len() >= RECENT / 2 {
            self.recent_older = std::mem::take(&mut self.recent);
            self.recent.reserve(RECENT / 2);
        }
        self.recent.insert(id, Seen { service, kind });
    }

    /// Resolves what waited long enough, persists closed minutes, forgets old ones.
    pub fn tick(&mut self, now_nanos: u64) {
        // Client spans whose callee never reported: an edge to the named peer. Both queues
        // are in arrival order, so only their expired fronts are visited.
        while let Some((at, id)) = self.clients_order.front().copied() {
            if at.elapsed() < WAIT {
                break;
            }
            self.clients_order.pop_front();
            if let Some(c) = self.clients.remove(&id).filter(|c| c.at == at) {
                self.edge(&c.caller, &c.peer, c.start, c.duration, c.error);
            }
        }
        while let Some((at, parent)) = self.orphans_order.front().copied() {
            if at.elapsed() < WAIT {
                break;
            }
            self.orphans_order.pop_front();
            if let Some(v) = self.orphans.get_mut(&parent) {
                v.retain(|c| c.at.elapsed() < WAIT);
                if v.is_empty() {
                    self.orphans.remove(&parent);
                } else {
                    let first = v[0].at;
                    self.orphans_order.push_back((first, parent));
                }
            }
        }
        // Persist minutes that closed (with a margin for late spans).
        let closed_before = now_nanos.saturating_sub(2 * MINUTE) / MINUTE * MINUTE;
        if let Some(file) = &self.file
            && closed_before > self.flushed_until
        {
            let mut lines = String::new();
            for (m, edges) in self.minutes.range(self.flushed_until..closed_before) {
                for ((caller, callee), stats) in edges {
                    let p = Persisted {
                        minute: *m,
                        caller: caller.to_string(),
                        callee: callee.to_string(),
                        stats: stats.clone(),
                    };
                    if let Ok(l) = serde_json::to_string(&p) {
                        lines.push_str(&l);
                        lines.push('\n');
                    }
                }
            }
            if !lines.is_empty()
                && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file)
            {
                let _ = f.write_all(lines.as_bytes());
            }
            self.flushed_until = closed_before;
        }
        let cutoff = now_nanos.saturating_sub(self.keep.as_nanos() as u64);
        self.minutes.retain(|m, _| *m >= cutoff);
        // Names only the set still holds belong to nothing any more.
        self.names.retain(|n| Arc::strong_count(n) > 1);
    }

    /// Edges with calls in `[start, end]`, busiest first.
    pub fn edges(&self, start: u64, end: u64) -> Vec<Edge> {
        let mut sum: FastMap<(Name, Name), EdgeStats> = FastMap::default();
        let from = start / MINUTE * MINUTE;
        if from > end {
            return Vec::new();
        }
        for (_, edges) in self.minutes.range(from..=end) {
            for (k, v) in edges {
                sum.entry(k.clone()).or_default().merge(v);
            }
        }
        let mut out: Vec<Edge> = sum
            .into_iter()
            .map(|((caller, callee), s)| Edge {
                caller: caller.to_string(),
                callee: callee.to_string(),
                calls: s.calls,
                errors: s.errors,
                p50_ms: s.quantile_ms(0.5),
                p99_ms: s.quantile_ms(0.99),
            })
            .collect();
        out.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.caller.cmp(&b.caller)).then(a.callee.cmp(&b.callee)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_core::ids::TraceId;
    use signalbox_core::span::KeyValue;

    fn span(service: &str, id: SpanId, parent: Option<SpanId>, kind: SpanKind, ms: u64) -> Span {
        Span {
            trace_id: TraceId::random(),
            span_id: id,
            parent_span_id: parent,
            trace_state: String::new(),
            service: service.into(),
            name: "op".into(),
            kind,
            start_unix_nanos: 10 * MINUTE,
            end_unix_nanos: 10 * MINUTE + ms * 1_000_000,
            status: StatusCode::Unset,
            status_message: String::new(),
            attributes: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn edges_from_parents_in_any_order_and_peers() {
        let mut g = Graph::open(None, Duration::from_secs(3600), 11 * MINUTE);
        let (gw_server, gw_client, orders) = (SpanId::random(), SpanId::random(), SpanId::random());
        // Child first, then its parent: still one edge gateway -> orders.
        g.observe(&span("orders", orders, Some(gw_client), SpanKind::Server, 20));
        let mut client = span("gateway", gw_client, Some(gw_server), SpanKind::Client, 22);
        client.attributes.push(KeyValue::str("peer.service", "orders"));
        g.observe(&client);
        g.observe(&span("gateway", gw_server, None, SpanKind::Server, 25));
        let e = g.edges(0, u64::MAX);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].caller.as_str(), e[0].callee.as_str(), e[0].calls), ("gateway", "orders", 1));
        assert!(e[0].p50_ms >= 20.0 && e[0].p50_ms < 35.0, "{e:?}");
        // A client span to an uninstrumented peer becomes an edge once nothing answers.
        let mut lone = span("gateway", SpanId::random(), Some(gw_server), SpanKind::Client, 5);
        lone.attributes.push(KeyValue::str("peer.service", "legacy"));
        g.observe(&lone);
        for c in g.clients.values_mut() {
            c.at -= WAIT;
        }
        for e in g.clients_order.iter_mut() {
            e.0 -= WAIT;
        }
        g.tick(11 * MINUTE);
        let e = g.edges(0, u64::MAX);
        assert!(e.iter().any(|x| x.caller == "gateway" && x.callee == "legacy"), "{e:?}");
        assert!(!e.iter().any(|x| x.callee == "orders" && x.calls > 1), "the answered client span made no second edge");
    }

    #[test]
    fn a_parent_is_remembered_across_a_generation_change() {
        let mut g = Graph::open(None, Duration::from_secs(3600), 11 * MINUTE);
        let parent = SpanId::random();
        g.observe(&span("web", parent, None, SpanKind::Server, 10));
        // Enough other spans to move the parent into the older generation.
        for _ in 0..RECENT / 2 + 10 {
            g.observe(&span("noise", SpanId::random(), None, SpanKind::Internal, 1));
        }
        assert!(g.recent_older.contains_key(&parent), "the parent moved to the older generation");
        g.observe(&span("db", SpanId::random(), Some(parent), SpanKind::Server, 2));
        let e = g.edges(0, u64::MAX);
        assert!(e.iter().any(|x| x.caller == "web" && x.callee == "db"), "{e:?}");
    }
}
