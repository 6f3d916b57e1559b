//! The write-ahead log: the durable ingest buffer. Every accepted batch of spans is
//! appended and `fdatasync`ed before the sender is told "accepted"; only then do the spans
//! move on to sampling and the store. On start-up the segments still on disk are replayed.
//!
//! Segments are files `seg-<id>.wal` of records `[len u32][crc32 u32][payload]`, the payload
//! a varint 0, the format byte 2, the batch's resources and scopes ([`crate::codec::Origins`]),
//! a varint count of spans and the spans ([`crate::codec`]). Format 1 payloads (a non-zero
//! count and the spans) from before resources and links are still replayed. A [`Ledger`] counts, per
//! segment, the spans not yet settled (sealed into a block, or dropped by sampling); a
//! segment that is no longer written to and has nothing unsettled is deleted.
//!
//! Appends are grouped: the writer takes every batch waiting in its queue, writes them, and
//! syncs once, so the cost of a sync is shared by all concurrent senders (group commit).

use crate::codec::{Origins, Reader, get_span, get_span_v1, put_span, put_varint};
use signalbox_core::span::Span;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const MAX_RECORD: usize = 256 * 1024 * 1024;
const GROUP_BYTES: usize = 16 * 1024 * 1024;

/// Spans not yet settled, per segment.
#[derive(Default)]
pub struct Ledger {
    dir: PathBuf,
    state: Mutex<LedgerState>,
}

#[derive(Default)]
struct LedgerState {
    pending: BTreeMap<u64, u64>,
    active: u64,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, seg: u64, n: u64) {
        *self.lock().pending.entry(seg).or_insert(0) += n;
    }

    /// Marks `n` spans of `seg` settled; deletes segments that are done.
    pub fn settle(&self, seg: u64, n: u64) {
        let done: Vec<u64> = {
            let mut st = self.lock();
            if let Some(p) = st.pending.get_mut(&seg) {
                *p = p.saturating_sub(n);
            }
            let active = st.active;
            let done: Vec<u64> = st.pending.iter().filter(|(s, p)| **p == 0 && **s < active).map(|(s, _)| *s).collect();
            for s in &done {
                st.pending.remove(s);
            }
            done
        };
        for s in done {
            let _ = std::fs::remove_file(segment_path(&self.dir, s));
        }
    }

    /// Segments still on disk and their unsettled spans (for metrics).
    pub fn backlog(&self) -> (usize, u64) {
        let st = self.lock();
        (st.pending.len(), st.pending.values().sum())
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:016}.wal"))
}

/// Segment ids present in `dir`, ascending.
pub fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".wal")).and_then(|n| n.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads every intact record of a segment. A torn record at the end (a crash mid-write)
/// ends the segment; nothing after it was acknowledged.
pub fn read_segment(path: &Path) -> std::io::Result<Vec<Vec<Span>>> {
    let bytes = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or([0; 4])) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or([0; 4]));
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else { break };
        if len > MAX_RECORD || crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(spans) = read_record(payload) else { break };
        out.push(spans);
        pos += 8 + len;
    }
    Ok(out)
}

/// The spans of one record's payload, of either format.
fn read_record(payload: &[u8]) -> Result<Vec<Span>, crate::codec::Corrupt> {
    let mut r = Reader::new(payload);
    let n = r.varint()?;
    if n > 0 {
        let mut spans = Vec::with_capacity((n as usize).min(1 << 16));
        for _ in 0..n {
            spans.push(get_span_v1(&mut r)?);
        }
        return Ok(spans);
    }
    if r.done() {
        return Ok(Vec::new());
    }
    if r.u8()? != 2 {
        return Err(crate::codec::Corrupt);
    }
    let (resources, scopes) = Origins::get(&mut r)?;
    let n = r.varint()?;
    let mut spans = Vec::with_capacity((n as usize).min(1 << 16));
    for _ in 0..n {
        spans.push(get_span(&mut r, &resources, &scopes)?);
    }
    Ok(spans)
}

/// The append side of the log, used by one writer thread.
pub struct Writer {
    dir: PathBuf,
    file: File,
    id: u64,
    size: u64,
    pub ledger: Arc<Ledger>,
    buf: Vec<u8>,
}

impl Writer {
    /// Opens a new segment after `last` (the highest id found at start-up).
    pub fn create(dir: &Path, last: Option<u64>, ledger: Arc<Ledger>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let id = last.map(|l| l + 1).unwrap_or(1);
        let file = OpenOptions::new().create(true).append(true).open(segment_path(dir, id))?;
        File::open(dir)?.sync_all()?;
        ledger.lock().active = id;
        Ok(Writer { dir: dir.to_owned(), file, id, size: 0, ledger, buf: Vec::with_capacity(1 << 20) })
    }

    /// Appends batches (not yet synced); returns the segment they went to.
    pub fn append(&mut self, batches: &[&[Span]]) -> std::io::Result<u64> {
        if self.size >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.buf.clear();
        let mut total = 0u64;
        for spans in batches {
            let mut origins = Origins::default();
            let mut body = Vec::with_capacity(spans.len() * 256);
            for s in spans.iter() {
                let o = origins.index(s);
                put_span(&mut body, s, o);
            }
            let mut payload = Vec::with_capacity(body.len() + 64);
            payload.extend_from_slice(&[0, 2]);
            origins.put(&mut payload);
            put_varint(&mut payload, spans.len() as u64);
            payload.extend_from_slice(&body);
            self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            self.buf.extend_from_slice(&payload);
            total += spans.len() as u64;
        }
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.ledger.add(self.id, total);
        Ok(self.id)
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let next = self.id + 1;
        self.file = OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, next))?;
        File::open(&self.dir)?.sync_all()?;
        let prev = self.id;
        self.id = next;
        self.size = 0;
        self.ledger.lock().active = next;
        // The previous segment may already be fully settled.
        self.ledger.settle(prev, 0);
        Ok(())
    }

    /// Starts a new segment when the current one holds only settled spans, so its file is
    /// deleted (an idle node keeps no log).
    pub fn rotate_if_settled(&mut self) -> std::io::Result<()> {
        let settled = self.ledger.lock().pending.get(&self.id).is_none_or(|p| *p == 0);
        if self.size > 0 && settled { self.rotate() } else { Ok(()) }
    }

    /// The most a group commit should gather before writing.
    pub fn group_bytes() -> usize {
        GROUP_BYTES
    }
}

/// A ledger for `dir` (shared by the writer and whoever settles spans).
pub fn ledger(dir: &Path) -> Arc<Ledger> {
    Arc::new(Ledger { dir: dir.to_owned(), state: Mutex::new(LedgerState::default()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_core::ids::{SpanId, TraceId};

    fn span(i: u64) -> Span {
        Span {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_span_id: None,
            trace_state: String::new(),
            service: "s".into(),
            name: format!("op{i}"),
            kind: Default::default(),
            start_unix_nanos: i,
            end_unix_nanos: i + 1,
            status: Default::default(),
            status_message: String::new(),
            attributes: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn corrupt_segments_end_the_replay_and_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let mut w = Writer::create(dir.path(), None, l).unwrap();
        let batches: Vec<Vec<Span>> = (0..5).map(|b| (0..4).map(|i| span(b * 10 + i)).collect()).collect();
        let refs: Vec<&[Span]> = batches.iter().map(|b| b.as_slice()).collect();
        let seg = w.append(&refs).unwrap();
        w.sync().unwrap();
        let path = segment_path(dir.path(), seg);
        let good = std::fs::read(&path).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = good.clone();
            let at = (seed as usize) % bad.len();
            bad[at] ^= 1 << (seed >> 61);
            let p = dir.path().join("mutated.wal");
            std::fs::write(&p, &bad).unwrap();
            let back = read_segment(&p).unwrap();
            // The checksum stops the replay at the damaged record: what comes back is a prefix.
            assert!(back.len() < batches.len());
            assert_eq!(back[..], batches[..back.len()]);
        }
    }

    #[test]
    fn appends_replay_torn_tails_and_settles() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let mut w = Writer::create(dir.path(), None, l.clone()).unwrap();
        let a: Vec<Span> = (0..3).map(span).collect();
        let b: Vec<Span> = (3..5).map(span).collect();
        let seg = w.append(&[&a, &b]).unwrap();
        w.sync().unwrap();
        let path = segment_path(dir.path(), seg);
        // A torn write after the synced records.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let back = read_segment(&path).unwrap();
        assert_eq!(back, vec![a, b]);
        assert_eq!(segments(dir.path()).unwrap(), vec![seg]);
        w.rotate().unwrap();
        l.settle(seg, 4);
        assert!(path.exists(), "one span still unsettled");
        l.settle(seg, 1);
        assert!(!path.exists(), "settled and inactive: deleted");
    }

    #[test]
    fn resources_links_and_flags_survive_and_old_segments_replay() {
        use signalbox_core::span::{KeyValue, Resource, Scope, SpanFlags, SpanLink};
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), None, ledger(dir.path())).unwrap();
        let res = Arc::new(Resource { attributes: vec![KeyValue::str("host.name", "h1")] });
        let scope = Arc::new(Scope { name: "lib".into(), version: "2".into() });
        let batch: Vec<Span> = (0..3)
            .map(|i| {
                let mut s = span(i);
                s.resource = res.clone();
                s.scope = scope.clone();
                s.flags = SpanFlags(SpanFlags::SHARED);
                s.links = vec![SpanLink {
                    trace_id: TraceId::random(),
                    span_id: SpanId::random(),
                    trace_state: String::new(),
                    attributes: vec![KeyValue::int("i", i as i64)],
                }];
                s
            })
            .collect();
        let seg = w.append(&[&batch]).unwrap();
        w.sync().unwrap();
        let path = segment_path(dir.path(), seg);
        let back = read_segment(&path).unwrap();
        assert_eq!(back, vec![batch]);
        assert!(Arc::ptr_eq(&back[0][0].resource, &back[0][2].resource), "one resource per record");
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.windows(7).filter(|w| w == b"host.na").count(), 1, "the resource is written once");
        // A segment written before format 2 (two spans, with resource attributes merged).
        let old = read_segment(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/fixtures/v1.wal"))).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].len(), 2);
        assert_eq!(old[0][1].status_message, "boom");
        assert_eq!(old[0][1].events[0].name, "retry");
        assert!(old[0][0].resource.attributes.is_empty() && old[0][0].links.is_empty());
    }
}
