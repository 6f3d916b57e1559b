//! A write-ahead log of opaque batches: the durable ingest buffer of a store. A batch is
//! appended and `fdatasync`ed before its sender hears "accepted"; on start-up the segments
//! still on disk are replayed. Segments are files `seg-<id>.wal` of records
//! `[len u32][crc32 u32][count varint][payload]`; a torn or damaged record ends the replay
//! of its segment (nothing after it was acknowledged). A [`Ledger`] counts, per segment,
//! the records not yet settled (sealed into a block); a segment no longer written to with
//! nothing unsettled is deleted.

use crate::container::encoding::put_varint;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Records not yet settled, per segment.
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
    pub fn new(dir: &Path) -> Arc<Ledger> {
        Arc::new(Ledger { dir: dir.to_owned(), state: Mutex::new(LedgerState::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, seg: u64, n: u64) {
        *self.lock().pending.entry(seg).or_insert(0) += n;
    }

    /// Marks `n` records of `seg` settled; deletes segments that are done.
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

    /// Segments on disk and their unsettled records.
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
    if !dir.exists() {
        return Ok(ids);
    }
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

/// Every intact batch of a segment: (records in it, payload).
pub fn read_segment(dir: &Path, id: u64) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    let bytes = std::fs::read(segment_path(dir, id))?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
        let Some(record) = bytes.get(pos + 8..pos + 8 + len) else { break };
        if len > MAX_RECORD || crc32fast::hash(record) != crc {
            break;
        }
        let mut r = record;
        let Some(count) = varint(&mut r) else { break };
        out.push((count, r.to_vec()));
        pos += 8 + len;
    }
    Ok(out)
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

/// The append side, owned by one writer thread.
pub struct Writer {
    dir: PathBuf,
    file: File,
    id: u64,
    size: u64,
    pub ledger: Arc<Ledger>,
    buf: Vec<u8>,
}

impl Writer {
    /// Opens a new segment after the highest one in `dir`.
    pub fn create(dir: &Path, ledger: Arc<Ledger>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let id = segments(dir)?.last().map(|l| l + 1).unwrap_or(1);
        let file = OpenOptions::new().create(true).append(true).open(segment_path(dir, id))?;
        File::open(dir)?.sync_all()?;
        ledger.lock().active = id;
        Ok(Writer { dir: dir.to_owned(), file, id, size: 0, ledger, buf: Vec::with_capacity(1 << 20) })
    }

    /// Appends batches `(records, payload)` (not yet synced); returns their segment.
    pub fn append(&mut self, batches: &[(u64, &[u8])]) -> std::io::Result<u64> {
        if self.size >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.buf.clear();
        let mut total = 0;
        for (count, payload) in batches {
            let mut head = Vec::with_capacity(10);
            put_varint(&mut head, *count);
            let len = head.len() + payload.len();
            let mut h = crc32fast::Hasher::new();
            h.update(&head);
            h.update(payload);
            self.buf.extend_from_slice(&(len as u32).to_le_bytes());
            self.buf.extend_from_slice(&h.finalize().to_le_bytes());
            self.buf.extend_from_slice(&head);
            self.buf.extend_from_slice(payload);
            total += count;
        }
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.ledger.add(self.id, total);
        Ok(self.id)
    }

    /// Appends one record per item, each payload written by `write` straight into the
    /// writer's buffer (the same bytes as [`Writer::append`], without a payload buffer per
    /// record to copy from); `count` gives each record's count. Not yet synced; returns the
    /// segment.
    pub fn append_each<T>(
        &mut self,
        items: &[T],
        count: impl Fn(&T) -> u64,
        mut write: impl FnMut(&T, &mut Vec<u8>),
    ) -> std::io::Result<u64> {
        if self.size >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.buf.clear();
        let mut total = 0;
        for item in items {
            let n = count(item);
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0; 8]);
            put_varint(&mut self.buf, n);
            write(item, &mut self.buf);
            let len = self.buf.len() - start - 8;
            let crc = crc32fast::hash(&self.buf[start + 8..]);
            self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
            self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            total += n;
        }
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.ledger.add(self.id, total);
        // A burst's buffer is not kept for ever.
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        Ok(self.id)
    }

    /// The segment being written.
    pub fn id(&self) -> u64 {
        self.id
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
        self.ledger.settle(prev, 0);
        Ok(())
    }

    /// Starts a new segment when the current one holds only settled records, so its file
    /// goes (an idle node keeps no log).
    pub fn rotate_if_settled(&mut self) -> std::io::Result<()> {
        let settled = self.ledger.lock().pending.get(&self.id).is_none_or(|p| *p == 0);
        if self.size > 0 && settled { self.rotate() } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_in_place_are_the_bytes_append_writes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let payloads: Vec<(u64, Vec<u8>)> = vec![(3, b"abc".to_vec()), (0, Vec::new()), (300, vec![7; 70_000])];
        let mut wa = Writer::create(a.path(), Ledger::new(a.path())).unwrap();
        let refs: Vec<(u64, &[u8])> = payloads.iter().map(|(n, p)| (*n, p.as_slice())).collect();
        let seg_a = wa.append(&refs).unwrap();
        let lb = Ledger::new(b.path());
        let mut wb = Writer::create(b.path(), lb.clone()).unwrap();
        let seg_b = wb.append_each(&payloads, |(n, _)| *n, |(_, p), out| out.extend_from_slice(p)).unwrap();
        assert_eq!(
            std::fs::read(segment_path(a.path(), seg_a)).unwrap(),
            std::fs::read(segment_path(b.path(), seg_b)).unwrap()
        );
        assert_eq!(read_segment(b.path(), seg_b).unwrap(), payloads);
        assert_eq!(lb.backlog().1, 303);
    }

    #[test]
    fn batches_replay_stop_at_damage_and_settle() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::new(dir.path());
        let mut w = Writer::create(dir.path(), l.clone()).unwrap();
        let seg = w.append(&[(3, b"abc"), (2, b"de")]).unwrap();
        w.sync().unwrap();
        let back = read_segment(dir.path(), seg).unwrap();
        assert_eq!(back, vec![(3, b"abc".to_vec()), (2, b"de".to_vec())]);
        // A torn tail ends the replay at the last whole record.
        OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), seg))
            .unwrap()
            .write_all(&[9, 0, 0, 0, 1])
            .unwrap();
        assert_eq!(read_segment(dir.path(), seg).unwrap().len(), 2);
        // Damage anywhere yields a prefix, never a panic.
        let good = std::fs::read(segment_path(dir.path(), seg)).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(dir.path().join("seg-0000000000000099.wal"), &bad).unwrap();
            let b = read_segment(dir.path(), 99).unwrap();
            assert!(b.len() <= 2 && b.iter().zip(&back).all(|(x, y)| x == y));
        }
        std::fs::remove_file(dir.path().join("seg-0000000000000099.wal")).unwrap();
        w.rotate().unwrap();
        l.settle(seg, 4);
        assert!(segment_path(dir.path(), seg).exists());
        l.settle(seg, 1);
        assert!(!segment_path(dir.path(), seg).exists(), "settled and inactive: deleted");
        let w2 = Writer::create(dir.path(), Ledger::new(dir.path())).unwrap();
        assert!(w2.id > seg, "a restart opens a new segment");
    }
}
