//! The log store: records are appended to the write-ahead log (group commit, fsync) before
//! the sender is answered, kept in an in-memory head, and sealed into blocks by size or
//! age; blocks live in hourly partitions and go by age and total size. A search reads the
//! head and the blocks whose time range and bloom filter allow a match, newest first, and
//! stops as soon as its limit is met, within a scanned-bytes budget and a deadline.
//!
//! One writer thread owns the log and the head's growth, so sealing never races an append:
//! at a seal every acknowledged record is in the head, and the block records how far into
//! the log it reaches, so a restart replays exactly what no block holds.

use super::block::{self, Block};
use super::codec::{self, Damaged};
use super::eval::{Fields, matches, required_values, required_words};
use super::lang::Expr;
use super::page::{Page, PageRow};
use crate::container::block::write_atomic;
use crate::container::partition::{Partitions, Sealed, hour_of};
use crate::container::wal::{self, Ledger, Writer};
use signalbox_core::log::{LogRecord, LogSink, LogWriteError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// Settings of a log store.
#[derive(Clone, Debug)]
pub struct LogStoreConfig {
    pub dir: PathBuf,
    /// Records per sealed block.
    pub block_records: usize,
    /// Seal the head at least this often.
    pub seal_after: Duration,
    /// Delete blocks whose newest record is older than this.
    pub retention_age: Duration,
    /// Delete the oldest blocks while all of them take more than this.
    pub retention_bytes: u64,
    /// Batches that may wait for the writer before senders are told to back off.
    pub queue_batches: usize,
    /// Most compressed bytes one query may read.
    pub max_query_bytes: u64,
    /// Longest a query may run.
    pub query_timeout: Duration,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        LogStoreConfig {
            dir: PathBuf::from("logs"),
            block_records: 65_536,
            seal_after: Duration::from_secs(10),
            retention_age: Duration::from_secs(7 * 86_400),
            retention_bytes: 10 * 1024 * 1024 * 1024,
            queue_batches: 1024,
            max_query_bytes: 2 * 1024 * 1024 * 1024,
            query_timeout: Duration::from_secs(30),
        }
    }
}

struct Job {
    records: Vec<LogRecord>,
    done: oneshot::Sender<Result<(), String>>,
}

/// What a search returns besides its records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScanStats {
    pub blocks_total: usize,
    pub blocks_skipped: usize,
    pub blocks_read: usize,
    /// Pages of the blocks read whose columns were read (the others were pruned by time,
    /// bloom filter or the limit).
    pub pages_read: usize,
    pub bytes_scanned: u64,
}

/// A record a scan hands over: from the head (a [`LogRecord`]) or a row of a sealed page,
/// whose columns are read only as its fields are asked for.
pub trait LogRow: Fields {
    fn unix_nanos(&self) -> u64;
    /// The whole record (decodes the row's remaining columns).
    fn to_record(&self) -> Result<LogRecord, Damaged>;
}

impl LogRow for LogRecord {
    fn unix_nanos(&self) -> u64 {
        self.unix_nanos
    }
    fn to_record(&self) -> Result<LogRecord, Damaged> {
        Ok(self.clone())
    }
}

/// What a scan hands its matches to.
trait Visit {
    /// A matching record of the head or a page; `false` ends the scan.
    fn row(&mut self, r: &dyn LogRow) -> bool;

    /// The matching rows of a page, newest first, filtered as they are asked for.
    fn page(&mut self, page: &Page<'_>, rows: &mut dyn Iterator<Item = usize>) -> bool {
        for i in rows {
            if !self.row(&page.row(i)) {
                return false;
            }
        }
        true
    }
}

/// A visitor of one row at a time.
struct Rows<F>(F);

impl<F: FnMut(&dyn LogRow) -> bool> Visit for Rows<F> {
    fn row(&mut self, r: &dyn LogRow) -> bool {
        (self.0)(r)
    }
}

/// Groups rows by a field's dictionary code, page by page ([`Logs::scan_groups`]).
struct Groups<'f, F> {
    field: Option<&'f str>,
    f: F,
    /// Per code, the times of this page's rows with it (kept to reuse the allocations).
    times: Vec<Vec<u64>>,
}

impl<F: FnMut(Option<&str>, &[u64]) -> bool> Visit for Groups<'_, F> {
    fn row(&mut self, r: &dyn LogRow) -> bool {
        let t = [r.unix_nanos()];
        match self.field {
            None => (self.f)(None, &t),
            Some(name) => (self.f)(r.field(name).as_deref(), &t),
        }
    }

    fn page(&mut self, page: &Page<'_>, rows: &mut dyn Iterator<Item = usize>) -> bool {
        let times = page.times();
        let Some(name) = self.field else {
            let all: Vec<u64> = rows.map(|i| times[i]).collect();
            return all.is_empty() || (self.f)(None, &all);
        };
        let Some((values, codes)) = page.codes(name) else {
            for i in rows {
                if !self.row(&page.row(i)) {
                    return false;
                }
            }
            return true;
        };
        self.times.resize_with(values.len(), Vec::new);
        for i in rows {
            match codes.get(i) {
                Some(&c) if c != u32::MAX => self.times[c as usize].push(times[i]),
                // Not in the column: the record's resource or another spelling may have it.
                _ => {
                    if !self.row(&page.row(i)) {
                        return false;
                    }
                }
            }
        }
        let mut go_on = true;
        for (v, ts) in values.iter().zip(self.times.iter_mut()) {
            if go_on && !ts.is_empty() {
                go_on = (self.f)(Some(v.as_str()), ts);
            }
            ts.clear();
        }
        go_on
    }
}

impl LogRow for PageRow<'_, '_> {
    fn unix_nanos(&self) -> u64 {
        PageRow::unix_nanos(self)
    }
    fn to_record(&self) -> Result<LogRecord, Damaged> {
        self.record()
    }
}

/// Why a search stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("the query would read more than {0} bytes; narrow the time range or the filter")]
    TooMuchData(u64),
    #[error("the query took longer than {0:?}; narrow the time range or the filter")]
    Timeout(Duration),
    #[error("a block is damaged: {0}")]
    Damaged(String),
}

/// A search: filter, window (Unix nanoseconds, inclusive), order and limits.
#[derive(Debug, Clone)]
pub struct Search {
    pub filter: Expr,
    pub start: u64,
    pub end: u64,
    pub limit: usize,
    /// Oldest first instead of newest first.
    pub forward: bool,
    pub max_bytes: u64,
    pub timeout: Duration,
}

struct BlockMeta {
    path: PathBuf,
    min_ts: u64,
    max_ts: u64,
    bytes: u64,
    count: usize,
    /// The header: page ranges, blooms and the column directory (the columns stay on disk).
    block: Block,
}

impl Sealed for BlockMeta {
    fn file_bytes(&self) -> u64 {
        self.bytes
    }
}

struct Inner {
    cfg: LogStoreConfig,
    head: RwLock<Vec<LogRecord>>,
    blocks: RwLock<Partitions<BlockMeta>>,
    tail: broadcast::Sender<Arc<LogRecord>>,
    /// Exporters' copy of every durable write.
    tee: signalbox_core::export::TeeSlot,
}

/// A running log store. Cheap to clone; when the last clone goes, the writer seals the head
/// and stops.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
    tx: SyncSender<Job>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Logs {
    /// Opens the store in `cfg.dir`: loads block metadata, replays what no block holds
    /// from the log, and starts the writer thread.
    pub fn open(cfg: LogStoreConfig) -> std::io::Result<Logs> {
        let wal_dir = cfg.dir.join("wal");
        let blocks_dir = cfg.dir.join("blocks");
        std::fs::create_dir_all(&wal_dir)?;
        std::fs::create_dir_all(&blocks_dir)?;
        let mut sealed_upto = (0u64, 0u64);
        let metas = Partitions::open(&blocks_dir, |path, name| {
            let upto = parse_block_name(name)?;
            match Block::read(path) {
                Ok(b) => {
                    sealed_upto = sealed_upto.max(upto);
                    Some(meta(path.to_owned(), b))
                }
                Err(_) => {
                    tracing::error!(path = %path.display(), "a log block is damaged; skipping it");
                    None
                }
            }
        })?;
        let ledger = Ledger::new(&wal_dir);
        let mut head = Vec::new();
        let mut pending: BTreeMap<u64, u64> = BTreeMap::new();
        for seg in wal::segments(&wal_dir)? {
            let mut seen = 0u64;
            let mut kept = 0u64;
            for (count, payload) in wal::read_segment(&wal_dir, seg)? {
                let Ok(records) = codec::decode_batch(&payload) else { break };
                let before = seen;
                seen += count;
                // What a block already holds is skipped: segments before the last sealed
                // one, and the first records of that one.
                if seg < sealed_upto.0 || (seg == sealed_upto.0 && seen <= sealed_upto.1) {
                    continue;
                }
                let skip = if seg == sealed_upto.0 { sealed_upto.1.saturating_sub(before) as usize } else { 0 };
                let fresh: Vec<LogRecord> = records.into_iter().skip(skip).collect();
                kept += fresh.len() as u64;
                head.extend(fresh);
            }
            // Registered even when nothing is kept, so the first seal deletes the segment.
            ledger.add(seg, kept);
            pending.insert(seg, kept);
        }
        let writer = Writer::create(&wal_dir, ledger.clone())?;
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue_batches.max(1));
        let (tail, _) = broadcast::channel(4096);
        let inner =
            Arc::new(Inner { cfg, head: RwLock::new(head), blocks: RwLock::new(metas), tail, tee: Default::default() });
        let w = inner.clone();
        let handle =
            std::thread::Builder::new().name("log-writer".into()).spawn(move || write_loop(&w, rx, writer, pending))?;
        Ok(Logs { inner, tx, writer: Arc::new(Mutex::new(Some(handle))) })
    }

    /// Stops the writer after it seals the head, and waits for it (shutdown).
    pub fn close(self) {
        let writer = self.writer.clone();
        drop(self);
        if Arc::strong_count(&writer) == 1
            && let Some(h) = writer.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            let _ = h.join();
        }
    }

    /// Stores records durably; resolves when they are on disk.
    pub async fn write(&self, records: Vec<LogRecord>) -> Result<(), LogWriteError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        match self.tx.try_send(Job { records, done }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(LogWriteError::Busy { retry_after: Duration::from_secs(1) }),
            Err(TrySendError::Disconnected(_)) => return Err(LogWriteError::Failed("the log store is closed".into())),
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(LogWriteError::Failed(e)),
            Ok(Err(_)) => Err(LogWriteError::Failed("the log writer stopped".into())),
            Err(_) => Err(LogWriteError::Failed("the log write timed out".into())),
        }
    }

    /// Where exporters get a copy of each write once it is durable (set before ingest
    /// starts; records replayed from the log at start-up are not copied again).
    pub fn tee(&self) -> &signalbox_core::export::TeeSlot {
        &self.inner.tee
    }

    /// New records as they are stored (for live tail); a slow reader misses records and is
    /// told how many (broadcast lag), it never slows ingest.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.inner.tail.subscribe()
    }

    /// The per-query limits: (compressed bytes, time).
    pub fn query_limits(&self) -> (u64, Duration) {
        (self.inner.cfg.max_query_bytes, self.inner.cfg.query_timeout)
    }

    /// Records held in memory and sealed blocks, for metrics.
    pub fn sizes(&self) -> (usize, usize, u64) {
        let head = self.inner.head.read().unwrap_or_else(|e| e.into_inner()).len();
        let blocks = self.inner.blocks.read().unwrap_or_else(|e| e.into_inner());
        (head, blocks.blocks().count(), blocks.blocks().map(|b| b.bytes).sum())
    }

    /// Calls `f` with every record in `[start, end]` that matches `filter`, newest blocks
    /// first (the head first of all), until `f` returns false or a limit is hit.
    pub fn scan(
        &self,
        filter: &Expr,
        start: u64,
        end: u64,
        max_bytes: u64,
        timeout: Duration,
        mut f: impl FnMut(&LogRecord) -> bool,
    ) -> Result<ScanStats, SearchError> {
        let mut damaged = false;
        let mut each = Rows(|r: &dyn LogRow| match r.to_record() {
            Ok(r) => f(&r),
            Err(_) => {
                damaged = true;
                false
            }
        });
        let stats = self.scan_until(filter, start, end, max_bytes, timeout, |_| true, &mut each)?;
        if damaged {
            return Err(SearchError::Damaged("a log block".into()));
        }
        Ok(stats)
    }

    /// [`Logs::scan`] handing over rows instead of records: a sealed row decodes only the
    /// columns its filter and `f` read (aggregations read the time and one field).
    pub fn scan_rows(
        &self,
        filter: &Expr,
        start: u64,
        end: u64,
        max_bytes: u64,
        timeout: Duration,
        f: impl FnMut(&dyn LogRow) -> bool,
    ) -> Result<ScanStats, SearchError> {
        self.scan_until(filter, start, end, max_bytes, timeout, |_| true, &mut Rows(f))
    }

    /// The matching records grouped by the value of `field` (`None`: one group, `Some(None)`
    /// keys the records without the field): `f(key, times)` gets each group's timestamps,
    /// several times per key (once per page or head record); `false` ends the scan. Pages
    /// group by their dictionary codes, so a count reads only the time and key columns.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_groups(
        &self,
        filter: &Expr,
        start: u64,
        end: u64,
        field: Option<&str>,
        max_bytes: u64,
        timeout: Duration,
        f: impl FnMut(Option<&str>, &[u64]) -> bool,
    ) -> Result<ScanStats, SearchError> {
        let mut groups = Groups { field, f, times: Vec::new() };
        self.scan_until(filter, start, end, max_bytes, timeout, |_| true, &mut groups)
    }

    /// [`Logs::scan_rows`], asking `more(max_ts)` before each block and each page (newest
    /// first) whether it could still matter; `false` ends the scan.
    #[allow(clippy::too_many_arguments)]
    fn scan_until(
        &self,
        filter: &Expr,
        start: u64,
        end: u64,
        max_bytes: u64,
        timeout: Duration,
        mut more: impl FnMut(u64) -> bool,
        visit: &mut dyn Visit,
    ) -> Result<ScanStats, SearchError> {
        let t0 = Instant::now();
        let mut stats = ScanStats::default();
        if start > end {
            return Ok(stats);
        }
        let keys = block::query_keys(&required_words(filter), &required_values(filter));
        // The block list and the head are read under their locks together (in the order a
        // seal takes them), so a seal between the two cannot show a record twice or hide it.
        let mut blocks: Vec<Arc<BlockMeta>> = {
            let blocks = self.inner.blocks.read().unwrap_or_else(|e| e.into_inner());
            let head = self.inner.head.read().unwrap_or_else(|e| e.into_inner());
            for r in head.iter().rev() {
                if r.unix_nanos >= start && r.unix_nanos <= end && matches(filter, r) && !visit.row(r) {
                    return Ok(stats);
                }
            }
            blocks.overlapping(start, end).filter(|b| b.max_ts >= start && b.min_ts <= end).cloned().collect()
        };
        stats.blocks_total = blocks.len();
        blocks.sort_by_key(|b| std::cmp::Reverse(b.max_ts));
        for b in blocks {
            if !more(b.max_ts) {
                break;
            }
            let block = &b.block;
            let pages: Vec<usize> = (0..block.pages.len())
                .rev()
                .filter(|&p| {
                    let m = &block.pages[p];
                    m.max_ts >= start && m.min_ts <= end && block.page_may_match(p, &keys)
                })
                .collect();
            if pages.is_empty() {
                stats.blocks_skipped += 1;
                continue;
            }
            stats.blocks_read += 1;
            let damaged = || SearchError::Damaged(b.path.display().to_string());
            let file = block.open().map_err(|_| damaged())?;
            for p in pages {
                if !more(block.pages[p].max_ts) {
                    break;
                }
                if t0.elapsed() > timeout {
                    return Err(SearchError::Timeout(timeout));
                }
                stats.pages_read += 1;
                let page = Page::new(block, &file, p);
                let times = page.times();
                // The filter runs as the visitor asks for rows, so a limit met early
                // leaves the rest of the page unread.
                let mut rows = (0..times.len()).rev().filter(|&i| {
                    let t = times[i];
                    t >= start && t <= end && (matches!(filter, Expr::All) || matches(filter, &page.row(i)))
                });
                let stop = !visit.page(&page, &mut rows);
                stats.bytes_scanned += page.bytes_read();
                if page.damaged() {
                    return Err(damaged());
                }
                if stop {
                    return Ok(stats);
                }
                if stats.bytes_scanned > max_bytes {
                    return Err(SearchError::TooMuchData(max_bytes));
                }
            }
        }
        Ok(stats)
    }

    /// The newest (or oldest) `limit` matching records of the window.
    pub fn search(&self, q: &Search) -> Result<(Vec<LogRecord>, ScanStats), SearchError> {
        let limit = q.limit.max(1);
        // Newest first: keep the `limit` newest seen so far (a min-heap on time), and skip
        // every block whose newest record is older than all of them. Late records (old
        // timestamps arriving now) may sit in the head or in any block, so nothing is assumed
        // about where the newest are. Oldest first needs the whole window.
        let mut newest: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>> = Default::default();
        let mut out: Vec<LogRecord> = Vec::new();
        let forward = q.forward;
        let mut damaged = false;
        let kept = std::cell::RefCell::new((&mut newest, &mut out));
        let stats = self.scan_until(
            &q.filter,
            q.start,
            q.end,
            q.max_bytes,
            q.timeout,
            |block_max| {
                let k = kept.borrow();
                forward || k.0.len() < limit || k.0.peek().is_none_or(|std::cmp::Reverse((t, _))| block_max >= *t)
            },
            &mut Rows(|r: &dyn LogRow| {
                let mut k = kept.borrow_mut();
                let (heap, recs) = &mut *k;
                let t = r.unix_nanos();
                let slot = if forward || heap.len() < limit {
                    heap.push(std::cmp::Reverse((t, recs.len())));
                    recs.len()
                } else if heap.peek().is_some_and(|std::cmp::Reverse((old, _))| t > *old)
                    && let Some(std::cmp::Reverse((_, slot))) = heap.pop()
                {
                    heap.push(std::cmp::Reverse((t, slot)));
                    slot
                } else {
                    return true;
                };
                // Only a record that is kept is decoded whole.
                match r.to_record() {
                    Ok(rec) if slot == recs.len() => recs.push(rec),
                    Ok(rec) => recs[slot] = rec,
                    Err(_) => {
                        damaged = true;
                        return false;
                    }
                }
                true
            }),
        )?;
        if damaged {
            return Err(SearchError::Damaged("a log block".into()));
        }
        if forward {
            out.sort_by_key(|r| r.unix_nanos);
        } else {
            out.sort_by_key(|r| std::cmp::Reverse(r.unix_nanos));
        }
        out.truncate(limit);
        Ok((out, stats))
    }

    /// Seals the head now and waits for it (on shutdown; records are safe in the log anyway).
    pub async fn flush(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.try_send(Job { records: Vec::new(), done }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(60), rx).await;
        }
    }
}

impl LogSink for Logs {
    fn write(
        &self,
        records: Vec<LogRecord>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), LogWriteError>> + Send + '_>> {
        Box::pin(Logs::write(self, records))
    }
}

impl signalbox_core::log::LogOffer for Logs {
    fn offer(&self, records: Vec<LogRecord>) -> bool {
        if records.is_empty() {
            return true;
        }
        // Nobody waits for the answer: the records are durable a few milliseconds later.
        let (done, _) = oneshot::channel();
        self.tx.try_send(Job { records, done }).is_ok()
    }
}

fn meta(path: PathBuf, b: Block) -> BlockMeta {
    BlockMeta { path, min_ts: b.min_ts, max_ts: b.max_ts, bytes: b.bytes_on_disk, count: b.count, block: b }
}

/// `b-<segment>-<records into it>-<min ts>.blk`: how far into the log the block reaches.
fn parse_block_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("b-")?.strip_suffix(".blk")?;
    let mut parts = rest.split('-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

const GROUP_BYTES: usize = 16 * 1024 * 1024;

fn write_loop(inner: &Inner, rx: Receiver<Job>, mut writer: Writer, mut pending: BTreeMap<u64, u64>) {
    let mut head_since = Instant::now();
    let mut last_retention = Instant::now();
    // Records of the current segment written so far (the block name records it).
    let mut seg_count: (u64, u64) = (writer.id(), 0);
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(j) => Some(j),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                seal(inner, &mut writer, &mut pending, seg_count);
                return;
            }
        };
        let mut flush_asked = Vec::new();
        if let Some(first) = first {
            let mut jobs = vec![first];
            let mut bytes = 0usize;
            while bytes < GROUP_BYTES {
                match rx.try_recv() {
                    Ok(j) => {
                        bytes += j.records.iter().map(|r| r.body.len() + 64).sum::<usize>();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            let (writes, flushes): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| !j.records.is_empty());
            flush_asked = flushes;
            if !writes.is_empty() {
                let payloads: Vec<(u64, Vec<u8>)> =
                    writes.iter().map(|j| (j.records.len() as u64, codec::encode_batch(&j.records))).collect();
                let refs: Vec<(u64, &[u8])> = payloads.iter().map(|(n, p)| (*n, p.as_slice())).collect();
                let result = writer.append(&refs).and_then(|seg| writer.sync().map(|_| seg));
                match result {
                    Ok(seg) => {
                        let n: u64 = payloads.iter().map(|(n, _)| n).sum();
                        *pending.entry(seg).or_insert(0) += n;
                        seg_count = if seg_count.0 == seg { (seg, seg_count.1 + n) } else { (seg, n) };
                        let mut head = inner.head.write().unwrap_or_else(|e| e.into_inner());
                        if head.is_empty() {
                            head_since = Instant::now();
                        }
                        if let Some(tee) = inner.tee.get() {
                            for j in &writes {
                                tee.logs(&j.records);
                            }
                        }
                        // Copies for live tail only when someone is tailing.
                        let tailing = inner.tail.receiver_count() > 0;
                        for j in writes {
                            for r in j.records.iter().filter(|_| tailing) {
                                let _ = inner.tail.send(Arc::new(r.clone()));
                            }
                            head.extend(j.records);
                            let _ = j.done.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "log write-ahead append failed");
                        for j in writes {
                            let _ = j.done.send(Err(e.to_string()));
                        }
                    }
                }
            }
        }
        let head_len = inner.head.read().unwrap_or_else(|e| e.into_inner()).len();
        let due = head_len > 0 && (head_len >= inner.cfg.block_records || head_since.elapsed() >= inner.cfg.seal_after);
        if due || (!flush_asked.is_empty() && head_len > 0) {
            seal(inner, &mut writer, &mut pending, seg_count);
        }
        for j in flush_asked {
            let _ = j.done.send(Ok(()));
        }
        if last_retention.elapsed() > Duration::from_secs(30) {
            last_retention = Instant::now();
            retention(inner);
        }
    }
}

fn seal(inner: &Inner, writer: &mut Writer, pending: &mut BTreeMap<u64, u64>, upto: (u64, u64)) {
    // Only this thread changes the head, so it is encoded in place under the read lock
    // (searches read on meanwhile): one block per hour of record time, for the container's
    // hourly partitions. Every block of a seal is named after how far into the log the seal
    // reaches.
    let (n, encoded) = {
        let head = inner.head.read().unwrap_or_else(|e| e.into_inner());
        let mut by_hour: BTreeMap<u64, Vec<&LogRecord>> = BTreeMap::new();
        for r in head.iter() {
            by_hour.entry(hour_of(r.unix_nanos)).or_default().push(r);
        }
        let page = block::page_records(inner.cfg.block_records);
        let encoded: std::io::Result<Vec<(u64, u64, Vec<u8>)>> = by_hour
            .into_iter()
            .map(|(hour, records)| {
                let min_ts = records.iter().map(|r| r.unix_nanos).min().unwrap_or(0);
                block::encode(records, page).map(|bytes| (hour, min_ts, bytes))
            })
            .collect();
        (head.len(), encoded)
    };
    if n == 0 {
        return;
    }
    let encoded = match encoded {
        Ok(e) => e,
        Err(e) => return tracing::error!(error = %e, "cannot encode a log block"),
    };
    let mut written: Vec<(u64, BlockMeta)> = Vec::with_capacity(encoded.len());
    for (hour, min_ts, bytes) in encoded {
        match seal_block(inner, hour, min_ts, &bytes, upto) {
            Ok(b) => written.push((hour, b)),
            Err(e) => {
                for (_, b) in &written {
                    let _ = std::fs::remove_file(&b.path);
                }
                return tracing::error!(error = %e, "cannot write a log block; the head stays in memory and in the log");
            }
        }
    }
    {
        // The blocks become visible and the head empties under both locks, so a search
        // never sees a record twice or misses it.
        let mut blocks = inner.blocks.write().unwrap_or_else(|e| e.into_inner());
        let mut head = inner.head.write().unwrap_or_else(|e| e.into_inner());
        for (hour, b) in written {
            blocks.insert(hour, Arc::new(b));
        }
        head.drain(..n);
    }
    for (seg, count) in std::mem::take(pending) {
        writer.ledger.settle(seg, count);
    }
    let _ = writer.rotate_if_settled();
}

/// Writes and reads back the block of one hour's records (`min_ts` the oldest's time).
fn seal_block(inner: &Inner, hour: u64, min_ts: u64, bytes: &[u8], upto: (u64, u64)) -> std::io::Result<BlockMeta> {
    let name = format!("b-{:016}-{:012}-{min_ts}.blk", upto.0, upto.1);
    let path = inner.blocks.read().unwrap_or_else(|e| e.into_inner()).path_for(hour, &name)?;
    write_atomic(&path, bytes)?;
    let b = Block::read(&path).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "a log block just written does not read back")
    })?;
    Ok(meta(path, b))
}

/// Deletes whole hourly partitions: those past the retention age, then the oldest while all
/// blocks take more than the size limit (never the newest).
fn retention(inner: &Inner) {
    let now = signalbox_core::time::unix_nanos();
    let gone = inner.blocks.write().unwrap_or_else(|e| e.into_inner()).expire(
        now,
        inner.cfg.retention_age,
        inner.cfg.retention_bytes,
    );
    let blocks = inner.blocks.read().unwrap_or_else(|e| e.into_inner());
    for (hour, dropped) in gone {
        blocks.delete(hour);
        let records: usize = dropped.iter().map(|b| b.count).sum();
        tracing::info!(partition = hour, records, "log partition removed by retention");
    }
}

/// A record as [`Fields`] for the query language, re-exported for callers that evaluate
/// filters themselves (the API's aggregations).
pub fn record_matches(filter: &Expr, r: &LogRecord) -> bool {
    matches(filter, r as &dyn Fields)
}

#[cfg(test)]
mod tests;
