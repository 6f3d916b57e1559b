//! A bounded on-disk queue of sealed batches, shared by the agent's buffer and the node's
//! exporters: what is pushed survives a crash (kill -9, power loss) until it is removed.
//!
//! Each batch is one file, `<seq>.batch` (a zero-padded sequence number, so names sort in
//! queue order): magic, version, a JSON header of the caller's type, the payload and a
//! CRC32 of all of it. A push writes a temporary name, fsyncs it, renames it and fsyncs the
//! directory, so a batch is either wholly there or absent; a removal deletes the file. The
//! files that remain are the queue, so the read position needs no separate record: it is
//! the oldest file. One file per batch costs an fsync pair per batch, which the callers
//! amortise by sealing batches of thousands of records.

use crate::metrics::Gauge;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

const MAGIC: &[u8; 4] = b"SBAG";
const VERSION: u8 = 1;
/// How long a push into a full queue waits before looking again, if nothing woke it
/// (removals and [`Spool::wake_waiters`] wake it at once).
pub const FULL_WAIT_RECHECK: Duration = Duration::from_secs(1);

/// A sealed batch: its sequence number, the caller's header and the payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<H> {
    pub seq: u64,
    pub header: H,
    pub payload: Vec<u8>,
}

impl<H: Serialize + DeserializeOwned> Entry<H> {
    /// The batch file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.header, &self.payload)
    }

    /// A batch file's bytes; `None` if they are not an intact batch.
    pub fn decode(seq: u64, b: &[u8]) -> Option<Entry<H>> {
        let body = b.get(..b.len().checked_sub(4)?)?;
        let crc = u32::from_le_bytes(b.get(b.len() - 4..)?.try_into().ok()?);
        if crc32fast::hash(body) != crc || body.get(..4)? != MAGIC || *body.get(4)? != VERSION {
            return None;
        }
        let hlen = u32::from_le_bytes(body.get(5..9)?.try_into().ok()?) as usize;
        let header: H = serde_json::from_slice(body.get(9..9 + hlen)?).ok()?;
        let plen_at = 9 + hlen;
        let plen = u32::from_le_bytes(body.get(plen_at..plen_at + 4)?.try_into().ok()?) as usize;
        let payload = body.get(plen_at + 4..plen_at + 4 + plen)?.to_vec();
        Some(Entry { seq, header, payload })
    }
}

fn encode<H: Serialize>(header: &H, payload: &[u8]) -> Vec<u8> {
    // Headers are plain data (numbers, strings, lists of them): they always serialise.
    let header = serde_json::to_vec(header).unwrap_or_default();
    let mut out = Vec::with_capacity(17 + header.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Writes `bytes` to `dir/name` durably: a temporary name, fsync, rename, fsync of `dir`.
pub fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

struct State {
    /// (sequence number, size on disk), oldest first.
    entries: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
}

/// One queue directory.
pub struct Spool<H> {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    space: Condvar,
    /// Woken when a batch is added.
    pub ready: tokio::sync::Notify,
    header: PhantomData<fn() -> H>,
}

impl<H: Serialize + DeserializeOwned> Spool<H> {
    /// Opens (creating) `dir`, holding at most `max_bytes`, and reads every batch in queue
    /// order: `visit` sees each intact one, and `None` for a damaged one, which is renamed
    /// `.corrupt` and left out of the queue. Leftover temporary files (a push cut short by a
    /// crash, never acknowledged) are deleted.
    pub fn open(dir: &Path, max_bytes: u64, mut visit: impl FnMut(Option<&Entry<H>>)) -> std::io::Result<Spool<H>> {
        std::fs::create_dir_all(dir)?;
        let names: Vec<String> =
            std::fs::read_dir(dir)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        for tmp in names.iter().filter(|n| n.ends_with(".tmp")) {
            let _ = std::fs::remove_file(dir.join(tmp));
        }
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| n.strip_suffix(".batch")?.parse().ok()).collect();
        seqs.sort_unstable();
        let mut entries = VecDeque::new();
        let mut bytes = 0;
        for seq in &seqs {
            let path = dir.join(entry_name(*seq));
            let raw = std::fs::read(&path)?;
            match Entry::<H>::decode(*seq, &raw) {
                Some(e) => {
                    visit(Some(&e));
                    entries.push_back((*seq, raw.len() as u64));
                    bytes += raw.len() as u64;
                }
                None => {
                    tracing::error!(path = %path.display(), "a damaged queued batch is set aside (.corrupt)");
                    std::fs::rename(&path, path.with_extension("corrupt"))?;
                    visit(None);
                }
            }
        }
        let next_seq = seqs.last().map_or(1, |s| s + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State { entries, bytes, next_seq }),
            space: Condvar::new(),
            ready: tokio::sync::Notify::new(),
            header: PhantomData,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain numbers; a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, s: &mut State, bytes: &[u8]) -> std::io::Result<()> {
        let seq = s.next_seq;
        write_durable(&self.dir, &entry_name(seq), bytes)?;
        s.next_seq += 1;
        s.entries.push_back((seq, bytes.len() as u64));
        s.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Adds a batch unless the queue is full (an empty queue takes any batch); `Ok(false)`
    /// when it is. Returns once the batch is on disk.
    pub fn try_push(&self, header: &H, payload: &[u8]) -> std::io::Result<bool> {
        let bytes = encode(header, payload);
        let mut s = self.lock();
        if !s.entries.is_empty() && s.bytes + bytes.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        self.append(&mut s, &bytes)?;
        drop(s);
        self.ready.notify_one();
        Ok(true)
    }

    /// Adds a batch, waiting while the queue is full (an empty queue takes any batch), with
    /// `waiting` set to 1 meanwhile. Returns `false`, writing nothing, once `stopped()` is
    /// true while waiting.
    pub fn push(
        &self,
        header: &H,
        payload: &[u8],
        stopped: impl Fn() -> bool,
        waiting: &Gauge,
    ) -> std::io::Result<bool> {
        let bytes = encode(header, payload);
        let size = bytes.len() as u64;
        let mut s = self.lock();
        while !s.entries.is_empty() && s.bytes + size > self.max_bytes {
            waiting.set(1);
            // `stopped` is read under the state lock that `wake_waiters` takes, so a stop
            // cannot slip in unseen; the timeout is only a safety net.
            if stopped() {
                waiting.set(0);
                return Ok(false);
            }
            s = self.space.wait_timeout(s, FULL_WAIT_RECHECK).map(|r| r.0).unwrap_or_else(|e| e.into_inner().0);
        }
        waiting.set(0);
        self.append(&mut s, &bytes)?;
        drop(s);
        self.ready.notify_one();
        Ok(true)
    }

    /// The oldest queued batch.
    pub fn oldest(&self) -> std::io::Result<Option<Entry<H>>> {
        let Some(&(seq, _)) = self.lock().entries.front() else { return Ok(None) };
        let raw = std::fs::read(self.dir.join(entry_name(seq)))?;
        match Entry::decode(seq, &raw) {
            Some(e) => Ok(Some(e)),
            None => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("queued batch {seq} is corrupt"))),
        }
    }

    /// Removes a delivered batch (or one given up on).
    pub fn remove(&self, seq: u64) -> std::io::Result<()> {
        std::fs::remove_file(self.dir.join(entry_name(seq)))?;
        let mut s = self.lock();
        if let Some(i) = s.entries.iter().position(|(q, _)| *q == seq)
            && let Some((_, size)) = s.entries.remove(i)
        {
            s.bytes -= size;
        }
        drop(s);
        self.space.notify_all();
        Ok(())
    }

    /// Moves a batch that cannot be read back out of the way (`.corrupt`), so later ones go
    /// out; returns its sequence number.
    pub fn set_aside_oldest(&self) -> std::io::Result<Option<u64>> {
        let Some(&(seq, _)) = self.lock().entries.front() else { return Ok(None) };
        let path = self.dir.join(entry_name(seq));
        std::fs::rename(&path, path.with_extension("corrupt"))?;
        let mut s = self.lock();
        if let Some((_, size)) = s.entries.pop_front() {
            s.bytes -= size;
        }
        drop(s);
        self.space.notify_all();
        Ok(Some(seq))
    }

    /// Replaces a batch's content (the agent takes out lines its output refused).
    pub fn rewrite(&self, entry: &Entry<H>) -> std::io::Result<()> {
        let bytes = entry.encode();
        write_durable(&self.dir, &entry_name(entry.seq), &bytes)?;
        let mut s = self.lock();
        let new = bytes.len() as u64;
        if let Some(slot) = s.entries.iter_mut().find(|(q, _)| *q == entry.seq) {
            let old = std::mem::replace(&mut slot.1, new);
            s.bytes = s.bytes - old + new;
        }
        drop(s);
        self.space.notify_all();
        Ok(())
    }

    /// Wakes a push waiting for room, so that it sees a stop set before this call.
    pub fn wake_waiters(&self) {
        let _s = self.lock();
        self.space.notify_all();
    }

    /// (batches, bytes) queued.
    pub fn usage(&self) -> (u64, u64) {
        let s = self.lock();
        (s.entries.len() as u64, s.bytes)
    }
}

/// The file name of batch `seq`.
pub fn entry_name(seq: u64) -> String {
    format!("{seq:020}.batch")
}

#[cfg(test)]
mod tests;
