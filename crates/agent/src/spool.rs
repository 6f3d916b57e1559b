//! The disk buffer of sealed batches, and the checkpoint of acknowledged positions.
//!
//! Every file here is written durably: to a temporary name, fsync, rename, fsync of the
//! directory. A batch enters the buffer before it is sent and leaves it only after the output
//! acknowledged it and the checkpoint holding its positions is on disk; so after a crash
//! every line is either acknowledged, in the buffer, or after the resume position.

use crate::error::AgentError;
use crate::position::{FileKey, FilePosition, PositionUpdate};
use crate::stop::StopSignal;
use serde::{Deserialize, Serialize};
use signalbox_core::metrics::Gauge;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

const MAGIC: &[u8; 4] = b"SBAG";
/// How long a push into a full buffer waits before looking again, if nothing woke it
/// (removals and [`Spool::wake_waiters`] wake it at once).
const FULL_WAIT_RECHECK: Duration = Duration::from_secs(1);
const VERSION: u8 = 1;

/// A sealed batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub header: Header,
    /// gzip-compressed NDJSON, one record a line.
    pub payload: Vec<u8>,
}

/// What a batch carries besides its records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Records (lines) in the payload.
    pub records: u32,
    /// When it was sealed, Unix nanoseconds.
    pub sealed_ns: u64,
    /// Checkpoint changes that take effect once it is acknowledged.
    pub positions: Vec<PositionUpdate>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        encode(&self.header, &self.payload)
    }

    /// A batch file's bytes; `None` if they are not an intact batch.
    pub fn decode(seq: u64, b: &[u8]) -> Option<Entry> {
        let body = b.get(..b.len().checked_sub(4)?)?;
        let crc = u32::from_le_bytes(b.get(b.len() - 4..)?.try_into().ok()?);
        if crc32fast::hash(body) != crc || body.get(..4)? != MAGIC || *body.get(4)? != VERSION {
            return None;
        }
        let hlen = u32::from_le_bytes(body.get(5..9)?.try_into().ok()?) as usize;
        let header: Header = serde_json::from_slice(body.get(9..9 + hlen)?).ok()?;
        let plen_at = 9 + hlen;
        let plen = u32::from_le_bytes(body.get(plen_at..plen_at + 4)?.try_into().ok()?) as usize;
        let payload = body.get(plen_at + 4..plen_at + 4 + plen)?.to_vec();
        Some(Entry { seq, header, payload })
    }
}

fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    // A header of numbers and strings always serialises.
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

/// Writes `bytes` to `dir/name` durably.
pub fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

struct State {
    /// (sequence number, size on disk), oldest first.
    entries: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
}

/// The buffer directory.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    space: Condvar,
    /// Woken when a batch is added.
    pub ready: tokio::sync::Notify,
}

/// What was found on disk at start.
pub struct Recovered {
    /// Acknowledged positions overlaid with those of the buffered batches: where reading resumes.
    pub resume: HashMap<FileKey, FilePosition>,
    /// Acknowledged positions alone.
    pub acked: HashMap<FileKey, FilePosition>,
    /// Whether this is the agent's first start on this data directory.
    pub first_start: bool,
}

const CHECKPOINT: &str = "checkpoint.json";

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<FilePosition>,
}

/// Stores the acknowledged positions durably.
pub fn store_checkpoint(data_dir: &Path, table: &HashMap<FileKey, FilePosition>) -> std::io::Result<()> {
    let mut files: Vec<FilePosition> = table.values().cloned().collect();
    files.sort_by_key(|p| p.key());
    let bytes = serde_json::to_vec_pretty(&CheckpointFile { version: 1, files }).unwrap_or_default();
    write_durable(data_dir, CHECKPOINT, &bytes)
}

impl Spool {
    /// Opens (creating) `data_dir/buffer` and reads the checkpoint and every buffered batch.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<(Spool, Recovered), AgentError> {
        let dir = data_dir.join("buffer");
        std::fs::create_dir_all(&dir).map_err(AgentError::io("create", &dir))?;
        let cp_path = data_dir.join(CHECKPOINT);
        let mut acked = HashMap::new();
        let first_start = match std::fs::read(&cp_path) {
            Ok(b) => {
                match serde_json::from_slice::<CheckpointFile>(&b) {
                    Ok(cp) => acked.extend(cp.files.into_iter().map(|p| (p.key(), p))),
                    Err(e) => {
                        // Reading from the start of every file re-sends lines but loses none.
                        tracing::error!(path = %cp_path.display(), error = %e, "unreadable checkpoint; files are read again from their start");
                    }
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(AgentError::io("read", &cp_path)(e)),
        };
        let names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(AgentError::io("list", &dir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        for tmp in names.iter().filter(|n| n.ends_with(".tmp")) {
            // A write cut short by a crash; the batch it was becoming was never acknowledged
            // nor counted, so its lines are still after the resume position.
            let _ = std::fs::remove_file(dir.join(tmp));
        }
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| n.strip_suffix(".batch")?.parse().ok()).collect();
        seqs.sort_unstable();
        let mut resume = acked.clone();
        let mut entries = VecDeque::new();
        let mut bytes = 0;
        let mut intact = true;
        for seq in &seqs {
            let path = dir.join(entry_name(*seq));
            let raw = std::fs::read(&path).map_err(AgentError::io("read", &path))?;
            match Entry::decode(*seq, &raw) {
                Some(e) => {
                    if intact {
                        crate::position::apply(&mut resume, &e.header.positions);
                    }
                    entries.push_back((*seq, raw.len() as u64));
                    bytes += raw.len() as u64;
                }
                None => {
                    // Later batches still go out; reading resumes before this one, so its
                    // lines are read again rather than lost.
                    intact = false;
                    let aside = path.with_extension("corrupt");
                    tracing::error!(path = %path.display(), "corrupt buffered batch set aside; its lines are read again");
                    std::fs::rename(&path, &aside).map_err(AgentError::io("rename", &path))?;
                }
            }
        }
        let next_seq = seqs.last().map_or(1, |s| s + 1);
        let spool = Spool {
            dir,
            max_bytes,
            state: Mutex::new(State { entries, bytes, next_seq }),
            space: Condvar::new(),
            ready: tokio::sync::Notify::new(),
        };
        Ok((spool, Recovered { resume, acked, first_start }))
    }

    /// Opens (creating) a buffer directory of its own, with no checkpoint: the host metrics'
    /// buffer, whose batches carry no file positions. Damaged batches are set aside.
    pub fn open_plain(dir: &Path, max_bytes: u64) -> Result<Spool, AgentError> {
        std::fs::create_dir_all(dir).map_err(AgentError::io("create", dir))?;
        let names: Vec<String> = std::fs::read_dir(dir)
            .map_err(AgentError::io("list", dir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        for tmp in names.iter().filter(|n| n.ends_with(".tmp")) {
            let _ = std::fs::remove_file(dir.join(tmp));
        }
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| n.strip_suffix(".batch")?.parse().ok()).collect();
        seqs.sort_unstable();
        let mut entries = VecDeque::new();
        let mut bytes = 0;
        for seq in &seqs {
            let path = dir.join(entry_name(*seq));
            let raw = std::fs::read(&path).map_err(AgentError::io("read", &path))?;
            if Entry::decode(*seq, &raw).is_some() {
                entries.push_back((*seq, raw.len() as u64));
                bytes += raw.len() as u64;
            } else {
                tracing::error!(path = %path.display(), "corrupt buffered batch set aside");
                std::fs::rename(&path, path.with_extension("corrupt")).map_err(AgentError::io("rename", &path))?;
            }
        }
        let next_seq = seqs.last().map_or(1, |s| s + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State { entries, bytes, next_seq }),
            space: Condvar::new(),
            ready: tokio::sync::Notify::new(),
        })
    }

    /// Adds a batch unless the buffer is full (an empty buffer takes any batch); `Ok(false)`
    /// when it is.
    pub fn try_push(&self, header: &Header, payload: &[u8]) -> std::io::Result<bool> {
        let bytes = encode(header, payload);
        let size = bytes.len() as u64;
        let mut s = self.lock();
        if !s.entries.is_empty() && s.bytes + size > self.max_bytes {
            return Ok(false);
        }
        let seq = s.next_seq;
        write_durable(&self.dir, &entry_name(seq), &bytes)?;
        s.next_seq += 1;
        s.entries.push_back((seq, size));
        s.bytes += size;
        drop(s);
        self.ready.notify_one();
        Ok(true)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain numbers; a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a batch, waiting while the buffer is full (an empty buffer takes any batch), with
    /// `waiting` set to 1 meanwhile. Returns `false`, writing nothing, if `stop` is set while
    /// waiting.
    pub fn push(&self, header: &Header, payload: &[u8], stop: &StopSignal, waiting: &Gauge) -> std::io::Result<bool> {
        let bytes = encode(header, payload);
        let size = bytes.len() as u64;
        let mut s = self.lock();
        while !s.entries.is_empty() && s.bytes + size > self.max_bytes {
            waiting.set(1);
            // `stop` is read under the state lock that `wake_waiters` takes, so a stop cannot
            // slip in unseen; the timeout is only a safety net.
            if stop.is_set() {
                waiting.set(0);
                return Ok(false);
            }
            s = self.space.wait_timeout(s, FULL_WAIT_RECHECK).map(|r| r.0).unwrap_or_else(|e| e.into_inner().0);
        }
        waiting.set(0);
        let seq = s.next_seq;
        write_durable(&self.dir, &entry_name(seq), &bytes)?;
        s.next_seq += 1;
        s.entries.push_back((seq, size));
        s.bytes += size;
        drop(s);
        self.ready.notify_one();
        Ok(true)
    }

    /// The oldest buffered batch.
    pub fn oldest(&self) -> std::io::Result<Option<Entry>> {
        let Some(&(seq, _)) = self.lock().entries.front() else { return Ok(None) };
        let raw = std::fs::read(self.dir.join(entry_name(seq)))?;
        match Entry::decode(seq, &raw) {
            Some(e) => Ok(Some(e)),
            None => {
                Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("buffered batch {seq} is corrupt")))
            }
        }
    }

    /// Removes an acknowledged batch.
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

    /// Replaces a batch's content (after invalid lines were taken out).
    pub fn rewrite(&self, entry: &Entry) -> std::io::Result<()> {
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

    /// Wakes a push waiting for room, so that it sees a stop signal set before this call.
    pub fn wake_waiters(&self) {
        let _s = self.lock();
        self.space.notify_all();
    }

    /// (batches, bytes) buffered.
    pub fn usage(&self) -> (u64, u64) {
        let s = self.lock();
        (s.entries.len() as u64, s.bytes)
    }
}

fn entry_name(seq: u64) -> String {
    format!("{seq:020}.batch")
}

#[cfg(test)]
mod tests;
