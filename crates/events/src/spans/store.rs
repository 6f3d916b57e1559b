//! The span store: an in-memory head that takes new spans, sealed into blocks
//! ([`crate::spans::block`]) when it holds enough spans or is old enough, one block per
//! hour of span start in the container's hourly partitions (`p-<hour>/b-<seq>.blk`,
//! [`crate::container::partition`]), whose retention deletes whole partitions by age and by
//! total size. Sealing settles the spans' write-ahead-log segments, which can then go.
//!
//! Queries read the head, the blocks being sealed, and the sealed blocks; see
//! [`crate::spans::query`].

use crate::container::hash::FastMap;
use crate::container::partition::{Partitions, Sealed, hour_of};
use crate::container::wal::Ledger;
use crate::spans::block::{self, Block};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{Span, SpanFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Seal the head into a block at this many spans...
    pub block_spans: usize,
    /// ...or when its oldest span has waited this long.
    pub seal_after: Duration,
    /// Delete partitions older than this.
    pub retention_age: Duration,
    /// Delete the oldest partitions while all blocks take more than this.
    pub retention_bytes: u64,
}

/// The in-memory head.
#[derive(Default)]
pub struct Head {
    pub spans: Vec<Span>,
    /// The last span of each trace in `spans`; [`Head::prev`] chains back to its first.
    /// A chain instead of a `Vec` per trace: no allocation per trace on insert, which runs
    /// for every span the gateway records.
    by_trace: FastMap<TraceId, u32>,
    /// For each span, the trace's span before it in `spans` (`u32::MAX`: none).
    prev: Vec<u32>,
    /// Spans per write-ahead-log segment, settled when sealed.
    segs: HashMap<u64, u64>,
    opened: Option<Instant>,
}

/// Spans being written into blocks: still answered from memory until the blocks are in.
pub struct Sealing {
    pub spans: Vec<Span>,
}

pub(crate) struct State {
    pub partitions: Partitions<Block>,
    pub head: Head,
    pub sealing: Vec<Arc<Sealing>>,
}

/// The store.
pub struct SpanStore {
    pub cfg: StoreConfig,
    pub(crate) state: RwLock<State>,
    ledger: Arc<Ledger>,
    seq: AtomicU64,
    pub stats: Stats,
}

/// Counters for the node's metrics.
#[derive(Default)]
pub struct Stats {
    pub spans_stored: AtomicU64,
    pub blocks_written: AtomicU64,
    pub raw_bytes: AtomicU64,
    pub file_bytes: AtomicU64,
    pub partitions_dropped: AtomicU64,
}

impl Head {
    fn push(&mut self, s: Span) {
        let i = self.spans.len() as u32;
        self.prev.push(self.by_trace.insert(s.trace_id, i).unwrap_or(u32::MAX));
        self.spans.push(s);
    }

    /// The spans of trace `id`, in the order they arrived.
    fn trace(&self, id: &TraceId) -> Vec<Span> {
        let mut out = Vec::new();
        let mut at = self.by_trace.get(id).copied().unwrap_or(u32::MAX);
        while at != u32::MAX {
            out.push(self.spans[at as usize].clone());
            at = self.prev[at as usize];
        }
        out.reverse();
        out
    }
}

impl Sealed for Block {
    fn file_bytes(&self) -> u64 {
        self.meta.file_bytes
    }
}

impl SpanStore {
    /// Opens the store in `cfg.dir`, reading every block's header.
    pub fn open(cfg: StoreConfig, ledger: Arc<Ledger>) -> std::io::Result<Self> {
        let mut max_seq = 0;
        let mut partitions = Partitions::open(&cfg.dir, |path, name| {
            let seq = name.strip_prefix("b-")?.strip_suffix(".blk")?.parse::<u64>().ok()?;
            match block::open(path) {
                Ok(block) => {
                    max_seq = max_seq.max(seq);
                    Some(block)
                }
                Err(_) => {
                    tracing::error!(path = %path.display(), "unreadable block skipped");
                    None
                }
            }
        })?;
        for blocks in partitions.hours_mut() {
            blocks.sort_by_key(|b| b.meta.min_start);
        }
        let stats = Stats::default();
        for b in partitions.blocks() {
            stats.spans_stored.fetch_add(b.meta.spans as u64, Ordering::Relaxed);
            stats.raw_bytes.fetch_add(b.meta.raw_bytes, Ordering::Relaxed);
            stats.file_bytes.fetch_add(b.meta.file_bytes, Ordering::Relaxed);
        }
        Ok(SpanStore {
            cfg,
            state: RwLock::new(State { partitions, head: Head::default(), sealing: Vec::new() }),
            ledger,
            seq: AtomicU64::new(max_seq + 1),
            stats,
        })
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds spans from write-ahead-log segment `seg`. Returns whether the head should be
    /// sealed now.
    pub fn insert(&self, seg: u64, spans: Vec<Span>) -> bool {
        if spans.is_empty() {
            return false;
        }
        let mut st = self.write();
        let head = &mut st.head;
        head.opened.get_or_insert_with(Instant::now);
        *head.segs.entry(seg).or_insert(0) += spans.len() as u64;
        for s in spans {
            head.push(s);
        }
        head.spans.len() >= self.cfg.block_spans
    }

    /// Whether the head is due for sealing by age.
    pub fn due(&self) -> bool {
        let st = self.read();
        st.head.opened.is_some_and(|t| t.elapsed() >= self.cfg.seal_after) && !st.head.spans.is_empty()
    }

    /// Seals the head into blocks (one per hour of span start). Blocking: call it off the
    /// async runtime.
    pub fn seal(&self) -> std::io::Result<()> {
        let (sealing, segs) = {
            let mut st = self.write();
            let head = std::mem::take(&mut st.head);
            if head.spans.is_empty() {
                return Ok(());
            }
            let s = Arc::new(Sealing { spans: head.spans });
            st.sealing.push(s.clone());
            (s, head.segs)
        };
        let mut by_hour: BTreeMap<u64, Vec<&Span>> = BTreeMap::new();
        for s in &sealing.spans {
            by_hour.entry(hour_of(s.start_unix_nanos)).or_default().push(s);
        }
        let mut written = Vec::new();
        let result = (|| -> std::io::Result<()> {
            for (hour, spans) in by_hour {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                let path = self.read().partitions.path_for(hour, &format!("b-{seq:010}.blk"))?;
                let b = block::write(&path, spans)?;
                written.push((hour, Arc::new(b)));
            }
            Ok(())
        })();
        let mut st = self.write();
        st.sealing.retain(|x| !Arc::ptr_eq(x, &sealing));
        match result {
            Ok(()) => {
                for (hour, b) in written {
                    self.stats.spans_stored.fetch_add(b.meta.spans as u64, Ordering::Relaxed);
                    self.stats.blocks_written.fetch_add(1, Ordering::Relaxed);
                    self.stats.raw_bytes.fetch_add(b.meta.raw_bytes, Ordering::Relaxed);
                    self.stats.file_bytes.fetch_add(b.meta.file_bytes, Ordering::Relaxed);
                    st.partitions.insert(hour, b);
                }
                drop(st);
                for (seg, n) in segs {
                    self.ledger.settle(seg, n);
                }
                Ok(())
            }
            Err(e) => {
                // Put the spans back so they are neither lost nor settled; the next seal
                // tries again.
                for b in &written {
                    let _ = std::fs::remove_file(b.1.path());
                }
                let spans = Arc::try_unwrap(sealing).map(|s| s.spans).unwrap_or_else(|s| s.spans.clone());
                let head = &mut st.head;
                for s in spans {
                    head.push(s);
                }
                for (seg, n) in segs {
                    *head.segs.entry(seg).or_insert(0) += n;
                }
                head.opened.get_or_insert_with(Instant::now);
                Err(e)
            }
        }
    }

    /// Deletes partitions past the retention age, then the oldest while over the size limit.
    pub fn enforce_retention(&self, now_nanos: u64) {
        let victims = self.write().partitions.expire(now_nanos, self.cfg.retention_age, self.cfg.retention_bytes);
        for (h, blocks) in victims {
            for b in &blocks {
                self.stats.spans_stored.fetch_sub(b.meta.spans as u64, Ordering::Relaxed);
                self.stats.raw_bytes.fetch_sub(b.meta.raw_bytes, Ordering::Relaxed);
                self.stats.file_bytes.fetch_sub(b.meta.file_bytes, Ordering::Relaxed);
            }
            self.stats.partitions_dropped.fetch_add(1, Ordering::Relaxed);
            self.read().partitions.delete(h);
            tracing::info!(partition = h, "trace partition removed by retention");
        }
    }

    /// Blocks overlapping `[start, end]` (nanoseconds), newest first.
    pub fn blocks(&self, start: u64, end: u64) -> Vec<Arc<Block>> {
        let st = self.read();
        let mut v: Vec<Arc<Block>> = st
            .partitions
            .overlapping(start, end)
            .filter(|b| b.meta.max_start >= start && b.meta.min_start <= end)
            .cloned()
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.meta.max_start));
        v
    }

    /// Spans in memory (head and sealing) matching `f`.
    pub fn memory_spans(&self, mut f: impl FnMut(&Span) -> bool) -> Vec<Span> {
        let st = self.read();
        let mut out = Vec::new();
        for s in st.head.spans.iter().chain(st.sealing.iter().flat_map(|x| x.spans.iter())) {
            if f(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// The in-memory spans of one trace.
    pub fn memory_trace(&self, id: &TraceId) -> Vec<Span> {
        let st = self.read();
        let mut out = st.head.trace(id);
        for s in &st.sealing {
            out.extend(s.spans.iter().filter(|x| x.trace_id == *id).cloned());
        }
        out
    }

    /// Services and operations of everything stored.
    pub fn catalog(&self) -> BTreeMap<String, HashSet<String>> {
        let st = self.read();
        let mut m: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        for b in st.partitions.blocks() {
            for (s, o) in &b.meta.operations {
                m.entry(s.clone()).or_default().insert(o.clone());
            }
        }
        for s in st.head.spans.iter().chain(st.sealing.iter().flat_map(|x| x.spans.iter())) {
            m.entry(s.service.clone()).or_default().insert(s.name.clone());
        }
        m
    }

    /// The operations of `service` with the span kinds each was seen with (a bit per
    /// [`signalbox_core::span::SpanKind::code`]; 0 when a block predates kinds).
    pub fn operation_kinds(&self, service: &str) -> BTreeMap<String, u8> {
        let st = self.read();
        let mut m: BTreeMap<String, u8> = BTreeMap::new();
        for b in st.partitions.blocks() {
            for (i, (s, o)) in b.meta.operations.iter().enumerate() {
                if s == service {
                    *m.entry(o.clone()).or_default() |= b.meta.operation_kinds.get(i).copied().unwrap_or(0);
                }
            }
        }
        for s in st.head.spans.iter().chain(st.sealing.iter().flat_map(|x| x.spans.iter())) {
            if s.service == service {
                *m.entry(s.name.clone()).or_default() |= 1 << s.kind.code();
            }
        }
        m
    }

    /// Number of spans in memory.
    pub fn head_len(&self) -> usize {
        let st = self.read();
        st.head.spans.len() + st.sealing.iter().map(|s| s.spans.len()).sum::<usize>()
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }
}

/// During recovery: answers "is this span already in a sealed block?" so replaying the
/// write-ahead log does not store a span twice.
pub struct Dedup<'a> {
    store: &'a SpanStore,
    loaded: HashMap<PathBuf, HashSet<(TraceId, SpanId, bool)>>,
}

impl<'a> Dedup<'a> {
    pub fn new(store: &'a SpanStore) -> Self {
        Dedup { store, loaded: HashMap::new() }
    }

    pub fn stored(&mut self, s: &Span) -> bool {
        let candidates: Vec<Arc<Block>> = {
            let st = self.store.read();
            st.partitions
                .at(s.start_unix_nanos)
                .filter(|b| {
                    b.meta.min_start <= s.start_unix_nanos
                        && s.start_unix_nanos <= b.meta.max_start
                        && b.traces.may_contain(&s.trace_id.0)
                })
                .cloned()
                .collect()
        };
        for b in candidates {
            let ids = self.loaded.entry(b.path().to_owned()).or_insert_with(|| {
                let mut set = HashSet::new();
                if let Ok(l) = b.load()
                    && let (Ok(t), Ok(sp), Ok(f)) = (l.trace_ids(), l.span_ids(), l.flags())
                {
                    let shared = f.iter().map(|b| block::parse_flags(*b).2.has(SpanFlags::SHARED));
                    set.extend(t.into_iter().zip(sp).zip(shared).map(|((t, s), h)| (t, s, h)));
                }
                set
            });
            if ids.contains(&s.identity()) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::partition::HOUR_NANOS;
    use signalbox_core::span::{KeyValue, SpanKind};

    fn span(trace: TraceId, start: u64) -> Span {
        Span {
            trace_id: trace,
            span_id: SpanId::random(),
            parent_span_id: None,
            trace_state: String::new(),
            service: "svc".into(),
            name: "op".into(),
            kind: SpanKind::Server,
            start_unix_nanos: start,
            end_unix_nanos: start + 1_000,
            status: Default::default(),
            status_message: String::new(),
            attributes: vec![KeyValue::str("k", "v".repeat(100))],
            ..Default::default()
        }
    }

    fn store(dir: &Path, age: Duration, bytes: u64) -> SpanStore {
        let cfg = StoreConfig {
            dir: dir.join("blocks"),
            block_spans: 1000,
            seal_after: Duration::from_secs(3600),
            retention_age: age,
            retention_bytes: bytes,
        };
        SpanStore::open(cfg, crate::container::wal::Ledger::new(&dir.join("wal"))).unwrap()
    }

    #[test]
    fn retention_drops_whole_partitions_by_age_then_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let now = 100 * HOUR_NANOS;
        let s = store(dir.path(), Duration::from_secs(3 * 3600), u64::MAX);
        // Four hourly partitions: 96h (too old), 97h, 98h, 99h.
        let traces: Vec<TraceId> = (0..4).map(|_| TraceId::random()).collect();
        for (h, t) in traces.iter().enumerate() {
            let hour = (96 + h as u64) * HOUR_NANOS;
            s.insert(1, (0..50).map(|i| span(*t, hour + i * 1_000_000)).collect());
        }
        s.seal().unwrap();
        assert_eq!(s.read().partitions.hours().len(), 4);
        assert_eq!(s.stats.spans_stored.load(Ordering::Relaxed), 200);
        assert_eq!(crate::spans::query::trace(&s, &traces[0]).len(), 50);

        // By age: only partitions wholly older than the cutoff (97h) go.
        s.enforce_retention(now);
        assert_eq!(
            s.read().partitions.hours().keys().copied().collect::<Vec<_>>(),
            [97, 98, 99].map(|h: u64| h * HOUR_NANOS).to_vec()
        );
        assert!(!s.cfg.dir.join(format!("p-{}", 96 * HOUR_NANOS)).exists());
        assert!(crate::spans::query::trace(&s, &traces[0]).is_empty());
        assert_eq!(s.stats.spans_stored.load(Ordering::Relaxed), 150);

        // By size: the oldest go until the rest fit, never the newest.
        let per = s.stats.file_bytes.load(Ordering::Relaxed) / 3;
        let s2 = SpanStore { cfg: StoreConfig { retention_bytes: per + per / 2, ..s.cfg.clone() }, ..s };
        s2.enforce_retention(now);
        assert_eq!(s2.read().partitions.hours().keys().copied().collect::<Vec<_>>(), vec![99 * HOUR_NANOS]);
        let s3 = SpanStore { cfg: StoreConfig { retention_bytes: 1, ..s2.cfg.clone() }, ..s2 };
        s3.enforce_retention(now);
        assert_eq!(s3.read().partitions.hours().len(), 1, "the newest partition stays");
        assert_eq!(crate::spans::query::trace(&s3, &traces[3]).len(), 50);
    }

    #[test]
    fn sealed_blocks_are_found_again_after_a_restart_and_recovery_skips_them() {
        let dir = tempfile::tempdir().unwrap();
        let t = TraceId::random();
        let spans: Vec<Span> = (0..30).map(|i| span(t, 50 * HOUR_NANOS + i)).collect();
        {
            let s = store(dir.path(), Duration::from_secs(86_400 * 365), u64::MAX);
            s.insert(1, spans.clone());
            s.seal().unwrap();
        }
        let s = store(dir.path(), Duration::from_secs(86_400 * 365), u64::MAX);
        assert_eq!(s.stats.spans_stored.load(Ordering::Relaxed), 30);
        assert_eq!(crate::spans::query::trace(&s, &t).len(), 30);
        let mut dedup = Dedup::new(&s);
        assert!(spans.iter().all(|x| dedup.stored(x)));
        assert!(!dedup.stored(&span(t, 50 * HOUR_NANOS + 5)), "a new span id of the same trace is not stored");
        // The server half of a Zipkin shared span (the same ids) is not the stored client half.
        let mut server_half = spans[3].clone();
        server_half.flags = signalbox_core::span::SpanFlags(signalbox_core::span::SpanFlags::SHARED);
        assert!(!dedup.stored(&server_half), "the other half of a shared span is replayed");
        // A half-written block from a crash is ignored and removed.
        let tmp = s.cfg.dir.join(format!("p-{}", 50 * HOUR_NANOS)).join("b-0000000099.tmp");
        std::fs::write(&tmp, b"partial").unwrap();
        drop(s);
        let s = store(dir.path(), Duration::from_secs(86_400 * 365), u64::MAX);
        assert!(!tmp.exists());
        assert_eq!(crate::spans::query::trace(&s, &t).len(), 30);
    }
}
