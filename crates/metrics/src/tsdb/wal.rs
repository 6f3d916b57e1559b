//! The TSDB's write-ahead log, laid out as Prometheus's is: a series record announces each
//! new series once (its id and labels), then sample records refer to series by id. An
//! append is acknowledged only after the record is `fdatasync`ed.
//!
//! - Segments are files `<dir>/<id:08>` of frames `[len u32 LE][crc32 u32 LE][payload]`;
//!   the payload's first byte is the record type. A new segment starts when the current
//!   one passes its size limit, and on every open (a restart never appends after a torn
//!   tail).
//! - Group commit: appenders write their frames under the writer lock, then wait for a
//!   sync covering their sequence number. The first waiter to find no sync running syncs
//!   the newest segment for everybody (rotation syncs the older one before switching), so
//!   N concurrent appenders share one `fdatasync`; every wait has a deadline.
//! - Replay reads the newest checkpoint, then every segment after it. A torn or damaged
//!   frame ends the replay of its segment only (nothing after it in that segment was
//!   acknowledged); later segments, written after a restart, are still read.
//! - A checkpoint `<dir>/checkpoint.<id:08>` is written when the head is cut into a block:
//!   it holds the series still in the head and their chunks (chunk records: the encoded
//!   bytes as the head holds them), and replaces every segment up
//!   to `<id>` (which are then deleted), so replay needs memory for the head only.

use super::encoding::{Reader, put_str, put_uvarint, put_varint};
use crate::storage::Labels;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Largest frame accepted on replay; a larger length field is damage.
const MAX_FRAME: usize = 64 * 1024 * 1024;
const RECORD_SERIES: u8 = 1;
const RECORD_SAMPLES: u8 = 2;
const RECORD_CHUNK: u8 = 3;

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// New series: (id, labels sorted by name).
    Series(Vec<(u64, Labels)>),
    /// Samples: (series id, time ms, value). Values keep their bit pattern (staleness NaNs).
    Samples(Vec<(u64, i64, f64)>),
    /// A whole encoded chunk of one series (checkpoints store the head's chunks as they are).
    Chunk { series: u64, count: u16, bytes: Vec<u8> },
}

/// Encodes a chunk record into `out` (cleared first).
pub fn encode_chunk(out: &mut Vec<u8>, series: u64, count: u16, bytes: &[u8]) {
    out.clear();
    out.push(RECORD_CHUNK);
    put_uvarint(out, series);
    put_uvarint(out, u64::from(count));
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes a series record into `out` (cleared first).
pub fn encode_series<'a>(out: &mut Vec<u8>, series: impl ExactSizeIterator<Item = (u64, &'a Labels)>) {
    out.clear();
    out.push(RECORD_SERIES);
    put_uvarint(out, series.len() as u64);
    for (id, labels) in series {
        put_uvarint(out, id);
        put_uvarint(out, labels.len() as u64);
        for (k, v) in labels {
            put_str(out, k);
            put_str(out, v);
        }
    }
}

/// Encodes a samples record into `out` (cleared first): times as deltas from the first.
pub fn encode_samples(out: &mut Vec<u8>, samples: &[(u64, i64, f64)]) {
    out.clear();
    out.push(RECORD_SAMPLES);
    put_uvarint(out, samples.len() as u64);
    let base = samples.first().map(|s| s.1).unwrap_or(0);
    put_varint(out, base);
    for (id, t, v) in samples {
        put_uvarint(out, *id);
        put_varint(out, t.wrapping_sub(base));
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// Decodes one record payload; `None` when it is malformed.
pub fn decode(payload: &[u8]) -> Option<Record> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        RECORD_SERIES => {
            let n = r.count()?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.uvarint()?;
                let nl = r.count()?;
                let mut labels = Vec::with_capacity(nl);
                for _ in 0..nl {
                    labels.push((r.str()?.to_owned(), r.str()?.to_owned()));
                }
                out.push((id, labels));
            }
            r.is_empty().then_some(Record::Series(out))
        }
        RECORD_SAMPLES => {
            let n = r.count()?;
            let base = r.varint()?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.uvarint()?;
                let t = base.wrapping_add(r.varint()?);
                out.push((id, t, f64::from_bits(r.u64_le()?)));
            }
            r.is_empty().then_some(Record::Samples(out))
        }
        RECORD_CHUNK => {
            let series = r.uvarint()?;
            let count = u16::try_from(r.uvarint()?).ok()?;
            let n = r.count()?;
            let bytes = r.take(n)?.to_vec();
            r.is_empty().then_some(Record::Chunk { series, count, bytes })
        }
        _ => None,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:08}"))
}

fn checkpoint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("checkpoint.{id:08}"))
}

/// Segment ids in `dir`, ascending.
pub fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    list(dir, |name| if name.bytes().all(|b| b.is_ascii_digit()) { name.parse().ok() } else { None })
}

/// Checkpoint ids in `dir`, ascending.
pub fn checkpoints(dir: &Path) -> std::io::Result<Vec<u64>> {
    list(dir, |name| name.strip_prefix("checkpoint.").and_then(|n| n.parse().ok()))
}

fn list(dir: &Path, parse: impl Fn(&str) -> Option<u64>) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir)? {
        if let Some(id) = parse(&e?.file_name().to_string_lossy()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Bytes of segments and checkpoints in `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

/// How a file's replay ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadEnd {
    pub records: u64,
    /// Bytes of whole, valid frames.
    pub valid_bytes: u64,
    /// Whether the file ended on a frame boundary (false: a torn or damaged tail was skipped).
    pub clean: bool,
}

/// Reads the frames of one file in order, handing each decoded record to `f`, until the end
/// or the first torn, damaged or undecodable frame.
pub fn read_file(path: &Path, mut f: impl FnMut(Record)) -> std::io::Result<ReadEnd> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut end = ReadEnd::default();
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 8];
        match read_full(&mut r, &mut head)? {
            0 => {
                end.clean = true;
                return Ok(end);
            }
            8 => {}
            _ => return Ok(end),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME {
            return Ok(end);
        }
        payload.resize(len, 0);
        if read_full(&mut r, &mut payload)? != len || crc32fast::hash(&payload) != crc {
            return Ok(end);
        }
        let Some(rec) = decode(&payload) else { return Ok(end) };
        f(rec);
        end.records += 1;
        end.valid_bytes += 8 + len as u64;
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What a replay read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub checkpoint: Option<u64>,
    pub segments: u64,
    pub records: u64,
    /// Files whose tail was torn or damaged (normal for the last segment after a crash).
    pub damaged_files: u64,
}

/// Replays the newest checkpoint, then the segments after it, in order.
pub fn replay(dir: &Path, mut f: impl FnMut(Record)) -> std::io::Result<Replayed> {
    let mut out = Replayed::default();
    if !dir.exists() {
        return Ok(out);
    }
    let cp = checkpoints(dir)?.last().copied();
    if let Some(cp) = cp {
        let end = read_file(&checkpoint_path(dir, cp), &mut f)?;
        out.records += end.records;
        out.damaged_files += u64::from(!end.clean);
        out.checkpoint = Some(cp);
    }
    for id in segments(dir)? {
        if cp.is_some_and(|cp| id <= cp) {
            continue;
        }
        let end = read_file(&segment_path(dir, id), &mut f)?;
        out.segments += 1;
        out.records += end.records;
        out.damaged_files += u64::from(!end.clean);
    }
    Ok(out)
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `records` as checkpoint `id` (temp file, fsync, rename), then deletes every
/// segment `<= id` and every older checkpoint.
pub fn write_checkpoint<'a>(dir: &Path, id: u64, records: impl Iterator<Item = &'a [u8]>) -> std::io::Result<()> {
    let tmp = dir.join(format!("checkpoint.{id:08}.tmp"));
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut buf = Vec::new();
        for payload in records {
            buf.clear();
            frame(&mut buf, payload);
            w.write_all(&buf)?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, checkpoint_path(dir, id))?;
    sync_dir(dir)?;
    for s in segments(dir)? {
        if s <= id {
            std::fs::remove_file(segment_path(dir, s))?;
        }
    }
    for c in checkpoints(dir)? {
        if c < id {
            std::fs::remove_file(checkpoint_path(dir, c))?;
        }
    }
    Ok(())
}

/// Removes checkpoint temp files a crash left behind.
pub fn remove_leftovers(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// The append side. Callers serialize on it (the TSDB's append lock).
pub struct WalWriter {
    dir: PathBuf,
    file: Arc<File>,
    id: u64,
    size: u64,
    segment_bytes: u64,
    /// Frames written so far (the sequence number group commit waits for).
    written: u64,
    buf: Vec<u8>,
}

impl WalWriter {
    /// Starts a new segment after the highest segment or checkpoint in `dir`.
    pub fn open(dir: &Path, segment_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        remove_leftovers(dir)?;
        let last = segments(dir)?.last().copied().max(checkpoints(dir)?.last().copied()).unwrap_or(0);
        let id = last + 1;
        let file = Arc::new(OpenOptions::new().create(true).append(true).open(segment_path(dir, id))?);
        sync_dir(dir)?;
        Ok(WalWriter { dir: dir.to_owned(), file, id, size: 0, segment_bytes, written: 0, buf: Vec::new() })
    }

    /// The segment being written.
    pub fn segment(&self) -> u64 {
        self.id
    }

    /// Writes record payloads (not yet synced); returns the sequence number to wait for.
    pub fn write(&mut self, payloads: &[&[u8]]) -> std::io::Result<u64> {
        if self.size >= self.segment_bytes {
            self.rotate()?;
        }
        self.buf.clear();
        for p in payloads {
            frame(&mut self.buf, p);
        }
        (&*self.file).write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.written += payloads.len() as u64;
        Ok(self.written)
    }

    /// What a group-commit leader syncs: everything written so far is in this file or in
    /// older segments, which rotation already synced.
    pub fn sync_target(&self) -> (u64, Arc<File>) {
        (self.written, self.file.clone())
    }

    /// Syncs the current segment and starts the next; returns the id of the last segment
    /// that holds records written so far.
    pub fn rotate(&mut self) -> std::io::Result<u64> {
        self.file.sync_data()?;
        let prev = self.id;
        let next = prev + 1;
        self.file = Arc::new(OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, next))?);
        sync_dir(&self.dir)?;
        self.id = next;
        self.size = 0;
        Ok(prev)
    }
}

/// Why a commit did not become durable.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("syncing the write-ahead log: {0}")]
    Io(#[from] std::io::Error),
    #[error("the write-ahead log sync did not finish within {0:?}")]
    Timeout(Duration),
}

/// Shares `fdatasync` calls among concurrent appenders.
#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
}

#[derive(Default)]
struct CommitState {
    synced: u64,
    syncing: bool,
    syncs: u64,
}

impl GroupCommit {
    /// Returns once every frame up to `seq` is durable. `target` is called (under the
    /// caller's writer lock) by whoever leads a sync, to learn what to sync.
    pub fn wait(&self, seq: u64, target: impl Fn() -> (u64, Arc<File>), timeout: Duration) -> Result<(), CommitError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.synced >= seq {
                return Ok(());
            }
            if !st.syncing {
                st.syncing = true;
                drop(st);
                let (upto, file) = target();
                let res = file.sync_data();
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.syncing = false;
                if res.is_ok() {
                    st.synced = st.synced.max(upto);
                    st.syncs += 1;
                }
                self.done.notify_all();
                res?;
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CommitError::Timeout(timeout));
            }
            st = self.done.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// `fdatasync` calls made so far.
    pub fn syncs(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).syncs
    }
}

#[cfg(test)]
mod tests;
