//! Tail sampling: whole traces are kept or dropped, never single spans.
//!
//! Spans wait per trace until the trace has been quiet for `decision_wait`; then the trace
//! is kept if any span failed, if any span is slower than its service's threshold, or if a
//! policy (attribute rule) matches; otherwise it is kept with probability `keep_rate`. The
//! decision is remembered for a while so late spans follow their trace. Memory is bounded:
//! past `max_spans` buffered spans, the oldest traces are decided early.
//!
//! With `keep_rate` 1 nothing is buffered: every trace is kept anyway.

use crate::container::hash::FastMap;
use crate::spans::block::value_text;
use signalbox_core::ids::TraceId;
use signalbox_core::span::{Span, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Sampling settings.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    pub decision_wait: Duration,
    pub keep_rate: f64,
    pub slow_default: Option<Duration>,
    pub slow_by_service: HashMap<String, Duration>,
    /// Keep traces with a span whose attribute `key` equals `value`.
    pub policies: Vec<(String, String)>,
    pub max_spans: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            decision_wait: Duration::from_secs(5),
            keep_rate: 1.0,
            slow_default: None,
            slow_by_service: HashMap::new(),
            policies: Vec::new(),
            max_spans: 1_000_000,
        }
    }
}

/// Why a trace was kept or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Error,
    Slow,
    Policy,
    Rate,
    /// Sampling is off (keep rate 1): everything is kept.
    All,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Error => "error",
            Reason::Slow => "slow",
            Reason::Policy => "policy",
            Reason::Rate => "rate",
            Reason::All => "all",
        }
    }
}

/// What came out of the sampler: spans to store (with their WAL segment) and spans dropped.
#[derive(Default)]
pub struct Output {
    pub keep: Vec<(u64, Vec<Span>)>,
    pub drop: Vec<(u64, u64)>,
    /// (kept, reason) per decided trace.
    pub decisions: Vec<(bool, Reason)>,
    /// Barriers to release once `keep` is in the store (see `pipeline::Traces::sync`).
    pub barriers: Vec<tokio::sync::oneshot::Sender<()>>,
}

struct Pending {
    spans: Vec<(u64, Span)>,
    last: Instant,
    first: Instant,
}

/// The sampler's state.
pub struct Sampler {
    cfg: SamplerConfig,
    pending: FastMap<TraceId, Pending>,
    buffered: usize,
    decided: FastMap<TraceId, bool>,
    decided_order: VecDeque<TraceId>,
}

const REMEMBER: usize = 200_000;

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        Sampler {
            cfg,
            pending: FastMap::default(),
            buffered: 0,
            decided: FastMap::default(),
            decided_order: VecDeque::new(),
        }
    }

    pub fn passthrough(&self) -> bool {
        self.cfg.keep_rate >= 1.0
    }

    pub fn buffered(&self) -> (usize, usize) {
        (self.pending.len(), self.buffered)
    }

    /// Takes a batch from WAL segment `seg`.
    pub fn add(&mut self, seg: u64, spans: Vec<Span>, out: &mut Output) {
        if self.passthrough() {
            out.keep.push((seg, spans));
            return;
        }
        let now = Instant::now();
        let mut late_keep = Vec::new();
        let mut late_drop = 0u64;
        for s in spans {
            match self.decided.get(&s.trace_id) {
                Some(true) => late_keep.push(s),
                Some(false) => late_drop += 1,
                None => {
                    let p = self.pending.entry(s.trace_id).or_insert_with(|| Pending {
                        spans: Vec::new(),
                        last: now,
                        first: now,
                    });
                    p.last = now;
                    p.spans.push((seg, s));
                    self.buffered += 1;
                }
            }
        }
        if !late_keep.is_empty() {
            out.keep.push((seg, late_keep));
        }
        if late_drop > 0 {
            out.drop.push((seg, late_drop));
        }
        if self.buffered > self.cfg.max_spans {
            // Decide the oldest traces early rather than grow without bound.
            let mut oldest: Vec<(Instant, TraceId)> = self.pending.iter().map(|(id, p)| (p.first, *id)).collect();
            oldest.sort();
            for (_, id) in oldest {
                if self.buffered <= self.cfg.max_spans * 9 / 10 {
                    break;
                }
                self.decide(id, out);
            }
        }
    }

    /// Decides every trace quiet for `decision_wait` (or all, when `flush`).
    pub fn tick(&mut self, flush: bool, out: &mut Output) {
        let wait = self.cfg.decision_wait;
        let due: Vec<TraceId> =
            self.pending.iter().filter(|(_, p)| flush || p.last.elapsed() >= wait).map(|(id, _)| *id).collect();
        for id in due {
            self.decide(id, out);
        }
    }

    fn decide(&mut self, id: TraceId, out: &mut Output) {
        let Some(p) = self.pending.remove(&id) else { return };
        self.buffered -= p.spans.len();
        let reason = self.reason(&p.spans);
        let keep = reason.is_some() || fastrand::f64() < self.cfg.keep_rate;
        out.decisions.push((keep, reason.unwrap_or(Reason::Rate)));
        let mut by_seg: HashMap<u64, Vec<Span>> = HashMap::new();
        for (seg, s) in p.spans {
            by_seg.entry(seg).or_default().push(s);
        }
        for (seg, spans) in by_seg {
            if keep {
                out.keep.push((seg, spans));
            } else {
                out.drop.push((seg, spans.len() as u64));
            }
        }
        self.decided.insert(id, keep);
        self.decided_order.push_back(id);
        while self.decided_order.len() > REMEMBER {
            if let Some(old) = self.decided_order.pop_front() {
                self.decided.remove(&old);
            }
        }
    }

    fn reason(&self, spans: &[(u64, Span)]) -> Option<Reason> {
        if spans.iter().any(|(_, s)| s.status == StatusCode::Error) {
            return Some(Reason::Error);
        }
        let slow = spans.iter().any(|(_, s)| {
            let limit = self.cfg.slow_by_service.get(&s.service).copied().or(self.cfg.slow_default);
            limit.is_some_and(|l| s.duration_nanos() > l.as_nanos() as u64)
        });
        if slow {
            return Some(Reason::Slow);
        }
        let policy = spans
            .iter()
            .any(|(_, s)| self.cfg.policies.iter().any(|(k, v)| s.has_attribute(k, |x| value_text(x) == v.as_str())));
        policy.then_some(Reason::Policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_core::ids::SpanId;
    use signalbox_core::span::KeyValue;

    fn span(trace: TraceId, service: &str, ms: u64, error: bool) -> Span {
        Span {
            trace_id: trace,
            span_id: SpanId::random(),
            parent_span_id: None,
            trace_state: String::new(),
            service: service.into(),
            name: "op".into(),
            kind: Default::default(),
            start_unix_nanos: 0,
            end_unix_nanos: ms * 1_000_000,
            status: if error { StatusCode::Error } else { StatusCode::Unset },
            status_message: String::new(),
            attributes: vec![KeyValue::str("route", "/x")],
            ..Default::default()
        }
    }

    #[test]
    fn keeps_whole_error_slow_and_policy_traces_and_drops_the_rest() {
        let mut slow = HashMap::new();
        slow.insert("db".to_string(), Duration::from_millis(50));
        let mut s = Sampler::new(SamplerConfig {
            keep_rate: 0.0,
            slow_by_service: slow,
            decision_wait: Duration::ZERO,
            policies: vec![("route".into(), "/vip".into())],
            ..Default::default()
        });
        let (err, fast, slowt, plain) = (TraceId::random(), TraceId::random(), TraceId::random(), TraceId::random());
        let mut out = Output::default();
        s.add(
            1,
            vec![
                span(err, "a", 1, false),
                span(err, "b", 1, true),
                span(fast, "db", 10, false),
                span(slowt, "db", 80, false),
                span(plain, "a", 1, false),
            ],
            &mut out,
        );
        let mut vip = span(plain, "a", 1, false);
        vip.trace_id = TraceId::random();
        vip.attributes = vec![KeyValue::str("route", "/vip")];
        let vip_id = vip.trace_id;
        s.add(2, vec![vip], &mut out);
        s.tick(false, &mut out);
        let kept: Vec<TraceId> = out.keep.iter().flat_map(|(_, v)| v.iter().map(|s| s.trace_id)).collect();
        assert_eq!(kept.iter().filter(|t| **t == err).count(), 2, "the whole error trace");
        assert!(kept.contains(&slowt) && kept.contains(&vip_id));
        assert!(!kept.contains(&fast) && !kept.contains(&plain));
        assert_eq!(out.drop.iter().map(|(_, n)| n).sum::<u64>(), 2);
        // A late span follows its trace's decision.
        let mut late = Output::default();
        s.add(3, vec![span(err, "c", 1, false), span(plain, "c", 1, false)], &mut late);
        assert_eq!(late.keep.len(), 1);
        assert_eq!(late.drop, vec![(3, 1)]);
    }
}
