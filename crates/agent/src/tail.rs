//! The reader: finds files by glob, follows them across rotation, and turns their lines into
//! records in the open batch.
//!
//! It runs on its own thread because everything it does is file IO, and it is the only
//! writer of batches: when the disk buffer is full it blocks in [`Sink::seal`], which is how
//! reading pauses without dropping anything.
//!
//! Rotation. Files are tracked by (device, inode), so a file renamed away (`app.log` to
//! `app.log.1`) keeps being read from its open descriptor until it has been idle for the
//! source's `close_inactive`; a deleted file is read to its end and closed once it stops
//! growing. A file that shrinks, or whose first bytes change, was truncated in place
//! (copytruncate): it is read again from its start, and its old identity is kept so that the
//! copy, when a glob matches it, is recognised and read from where the original stopped.

use crate::batch::{Noted, Tail};
use crate::compile::Source;
use crate::multiline::Grouper;
use crate::position::{FileKey, FilePosition, Fingerprint, HEAD_BYTES, TAIL_BYTES, read_full_at};
use crate::sink::Sink;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most retired identities kept for recognising rotated copies.
const MAX_RETIRED: usize = 1024;
/// Most directory entries visited by one scan.
const MAX_SCAN_ENTRIES: usize = 100_000;
/// Most bytes read from one file before the others get their turn.
const READ_BUDGET: usize = 4 * 1024 * 1024;
/// How long a file that starts like a known one but is shorter than its position (a copy in
/// progress) is left alone before it is read as a new file.
const COPY_WAIT: Duration = Duration::from_secs(5);

/// A new file recognised as a copy of a known one.
enum CopyMatch {
    /// Of a file no longer followed: read it from `offset`.
    Known(u64),
    /// Of a file still followed: wait for that file to be truncated or done.
    Live(FileKey, u64),
    /// It starts like a known file but is shorter than its position: still being copied.
    Short,
}

/// A file being followed (or known and closed).
pub(crate) struct Tracked {
    source: usize,
    path: PathBuf,
    path_arc: Arc<str>,
    head: Fingerprint,
    /// Offset after the last complete line consumed.
    offset: u64,
    /// The last bytes before `offset`, for its tail fingerprint once the file is gone.
    window: Vec<u8>,
    file: Option<Arc<File>>,
    grouper: Grouper,
    last_growth: Instant,
    /// The path still leads to this file.
    linked: bool,
    size: u64,
    /// The position last noted in a batch.
    pub(crate) noted: Option<(u64, Fingerprint)>,
    /// Discovered and not opened yet.
    fresh: bool,
    /// A copy of this followed file, made before it is truncated (copytruncate): read once
    /// the original is truncated or done, from where the original stopped.
    copy_of: Option<FileKey>,
    /// When it was discovered.
    found: Instant,
}

impl Tracked {
    /// Offset before which every line is in a record already handed to the batch.
    /// What a noted position is compared by.
    pub(crate) fn mark(&self) -> (u64, Fingerprint) {
        (self.committed(), self.head)
    }

    pub(crate) fn committed(&self) -> u64 {
        self.grouper.pending_start().unwrap_or(self.offset)
    }

    fn window_fp(&self) -> Fingerprint {
        Fingerprint { len: self.window.len() as u32, crc: crc32fast::hash(&self.window) }
    }

    pub(crate) fn noted(&self) -> Noted {
        let committed = self.committed();
        let tail = match &self.file {
            Some(f) if committed != self.offset => Tail::File(f.clone()),
            _ => Tail::Known(self.window_fp()),
        };
        Noted { path: self.path_arc.clone(), head: self.head, offset: committed, tail }
    }

    fn consumed(&mut self, bytes: &[u8], end: u64) {
        self.offset = end;
        if bytes.len() >= TAIL_BYTES {
            self.window.clear();
            self.window.extend_from_slice(&bytes[bytes.len() - TAIL_BYTES..]);
        } else {
            self.window.extend_from_slice(bytes);
            let excess = self.window.len().saturating_sub(TAIL_BYTES);
            self.window.drain(..excess);
        }
    }
}

/// The reader's state.
pub struct Reader {
    sink: Sink,
    files: HashMap<FileKey, Tracked>,
    /// Positions from the last run not yet matched to a file.
    restored: HashMap<FileKey, FilePosition>,
    /// Identities no longer followed (truncated, replaced), for recognising their copies.
    retired: VecDeque<FilePosition>,
    first_start: bool,
    scanned: bool,
    buf: Vec<u8>,
    /// Files waiting to be recognised (see [`COPY_WAIT`]), since when.
    deferred: HashMap<FileKey, Instant>,
    /// Where the followed files are published for finding the processes writing them.
    tailed: Option<crate::host::logproc::TailedFiles>,
}

impl Reader {
    pub fn new(sink: Sink, restored: HashMap<FileKey, FilePosition>, first_start: bool) -> Reader {
        let cap = sink.cfg.sources.iter().map(|s| s.max_line_bytes).max().unwrap_or(64 * 1024);
        Reader {
            sink,
            files: HashMap::new(),
            restored,
            retired: VecDeque::new(),
            first_start,
            scanned: false,
            buf: vec![0; cap],
            deferred: HashMap::new(),
            tailed: None,
        }
    }

    /// Publishes the followed files in `tailed` after every scan.
    pub fn publish_to(mut self, tailed: crate::host::logproc::TailedFiles) -> Reader {
        self.tailed = Some(tailed);
        self
    }

    fn publish(&self) {
        let Some(t) = &self.tailed else { return };
        let cfg = &self.sink.cfg;
        t.publish(self.files.iter().map(|(k, f)| (*k, cfg.sources[f.source].labels.clone())).collect());
    }

    /// Reads until `stop` is set, then seals what it has.
    ///
    /// Files give no event when they grow, so they are polled: every `poll_interval` while
    /// anything is in flight (lines read in the last poll, an open batch, a multiline record
    /// pending), and, while every file is idle, at intervals that double up to
    /// [`idle_poll_cap`] (1 s with the default 250 ms). The first line written after an idle
    /// spell is so read within that cap, then sealed within `batch.timeout` and handed to the
    /// sender at once; once data flows, polling is back to `poll_interval`. Globs are still
    /// expanded every `scan_interval`, and a stop wakes the reader at once.
    pub fn run(mut self) {
        let cfg = self.sink.cfg.clone();
        if cfg.sources.is_empty() {
            // An agent for host metrics alone: nothing to read until it stops.
            while !self.sink.stop.wait(Duration::from_secs(3600)) {}
            return;
        }
        let idle_cap = idle_poll_cap(cfg.poll_interval);
        let mut idle_wait = cfg.poll_interval;
        let mut next_scan = Instant::now();
        while !self.sink.stop.is_set() {
            if Instant::now() >= next_scan {
                self.scan();
                self.publish();
                // Before the poll, which may block in a full buffer: the gauges then show
                // the files and the lag reading waits on.
                self.update_gauges();
                next_scan = Instant::now() + cfg.scan_interval;
            }
            let progressed = self.poll();
            if self.sink.batch.is_due(cfg.batch_timeout) {
                self.sink.seal();
            }
            self.update_gauges();
            if progressed {
                idle_wait = cfg.poll_interval;
                continue;
            }
            let in_flight =
                !self.sink.batch.is_idle() || self.files.values().any(|t| t.grouper.pending_start().is_some());
            let wait = if in_flight {
                idle_wait = cfg.poll_interval;
                cfg.poll_interval
            } else {
                let w = idle_wait;
                idle_wait = idle_wait.saturating_mul(2).min(idle_cap);
                w
            };
            let mut until = next_scan.min(Instant::now() + wait);
            if let Some(due) = self.sink.batch.due_at(cfg.batch_timeout) {
                until = until.min(due);
            }
            self.sink.stop.wait(until.saturating_duration_since(Instant::now()));
        }
        self.sink.seal();
    }

    fn update_gauges(&self) {
        let open = self.files.values().filter(|t| t.file.is_some()).count();
        let lag: u64 = self.files.values().map(|t| t.size.saturating_sub(t.offset)).sum();
        self.sink.stats.files_followed.set(open as i64);
        self.sink.stats.lag_bytes.set(lag as i64);
    }

    /// Expands the globs: new files are opened, renamed ones followed, vanished ones dropped.
    fn scan(&mut self) {
        let cfg = self.sink.cfg.clone();
        let mut found: Vec<(usize, PathBuf)> = Vec::new();
        let mut budget = MAX_SCAN_ENTRIES;
        for (si, src) in cfg.sources.iter().enumerate() {
            for (root, depth) in &src.roots {
                walk(root, *depth, &mut budget, &mut |p: &Path| {
                    if src.include.is_match(p) && !src.exclude.is_match(p) {
                        found.push((si, p.to_path_buf()));
                    }
                });
            }
        }
        let mut seen = HashSet::new();
        for (si, path) in found {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if !meta.is_file() {
                continue;
            }
            let key = (meta.dev(), meta.ino());
            if !seen.insert(key) {
                continue;
            }
            if let Some(t) = self.files.get_mut(&key) {
                if t.path != path {
                    self.sink.stats.rotations.inc();
                    t.path_arc = Arc::from(path.to_string_lossy().as_ref());
                    t.path = path;
                }
                t.linked = true;
                t.size = meta.len();
            } else {
                self.discover(si, path, key, meta.len());
            }
        }
        let mut gone = Vec::new();
        for (key, t) in self.files.iter_mut() {
            if seen.contains(key) {
                continue;
            }
            if t.linked {
                t.linked = false;
                self.sink.stats.rotations.inc();
            }
            if t.file.is_none() {
                gone.push(*key);
            }
        }
        for key in gone {
            if let Some(t) = self.files.remove(&key) {
                self.resolve_copies(key, t.offset, &t.window);
            }
            self.sink.forget(key);
        }
        let wait = cfg.sources.iter().map(|s| s.close_inactive).min().unwrap_or(COPY_WAIT);
        self.expire_copies(wait);
        self.deferred.retain(|k, _| seen.contains(k));
        if !self.scanned {
            self.scanned = true;
            // Files of the last run that are gone: keep their identity for copies, drop them
            // from the checkpoint.
            for (key, pos) in std::mem::take(&mut self.restored) {
                self.sink.forget(key);
                self.retire(pos);
            }
        }
        self.open_waiting();
    }

    fn retire(&mut self, pos: FilePosition) {
        if self.retired.len() >= MAX_RETIRED {
            self.retired.pop_front();
        }
        self.retired.push_back(pos);
    }

    /// A file seen for the first time: where does reading start?
    fn discover(&mut self, si: usize, path: PathBuf, key: FileKey, size: u64) {
        let Ok(file) = File::open(&path) else { return };
        let read_from_end = self.sink.cfg.sources[si].read_from_end;
        let mut start = None;
        let mut head = None;
        if let Some(pos) = self.restored.remove(&key) {
            if pos.head.matches(&file, 0) && pos.offset <= size {
                // The same file as in the last run.
                start = Some(pos.offset);
                head = Some(pos.head);
            } else {
                // Truncated meanwhile (its copy may still be found), or the inode was reused.
                self.retire(pos);
            }
        }
        let mut copy_of = None;
        if start.is_none() {
            match self.copy_of(&file, key, size) {
                Some(CopyMatch::Short) => {
                    let since = *self.deferred.entry(key).or_insert_with(Instant::now);
                    if since.elapsed() < COPY_WAIT {
                        return;
                    }
                }
                Some(CopyMatch::Known(offset)) => {
                    tracing::info!(path = %path.display(), offset, "recognised a rotated copy; reading it from where the original stopped");
                    start = Some(offset);
                }
                Some(CopyMatch::Live(original, offset)) => {
                    tracing::info!(path = %path.display(), "recognised a copy of a followed file; reading it once the original is truncated");
                    start = Some(offset);
                    copy_of = Some(original);
                }
                None => {}
            }
        }
        self.deferred.remove(&key);
        let start = match start {
            Some(s) => s,
            None if self.first_start && !self.scanned && read_from_end => line_start_before(&file, size),
            None => 0,
        };
        let head = match head {
            Some(h) => h,
            None => Fingerprint::read(&file, 0, HEAD_BYTES).unwrap_or_default(),
        };
        let t = Tracked {
            source: si,
            path_arc: Arc::from(path.to_string_lossy().as_ref()),
            path,
            head,
            offset: start,
            window: Vec::new(),
            file: None,
            grouper: Grouper::default(),
            last_growth: Instant::now(),
            linked: true,
            size,
            noted: None,
            fresh: copy_of.is_none(),
            copy_of,
            found: Instant::now(),
        };
        let mut t = t;
        if start > 0 {
            t.window = tail_bytes(&file, start);
        }
        // The start position goes into the checkpoint even if nothing is read.
        self.sink.note(key, &mut t);
        self.files.insert(key, t);
    }

    /// Whether a new file is a copy of a known one: same head, and the same bytes just before
    /// the known position.
    fn copy_of(&self, file: &File, key: FileKey, size: u64) -> Option<CopyMatch> {
        let mut short = false;
        let mut check = |head: Fingerprint, offset: u64, tail: Fingerprint| {
            if offset == 0 || head.len == 0 || !head.matches(file, 0) {
                return false;
            }
            if size < offset {
                short = true;
                return false;
            }
            // Positions come from a file on disk: a tail longer than its offset matches nothing.
            offset.checked_sub(u64::from(tail.len)).is_some_and(|at| tail.matches(file, at))
        };
        for p in self.retired.iter().chain(self.restored.values()) {
            if check(p.head, p.offset, p.tail) {
                return Some(CopyMatch::Known(p.offset));
            }
        }
        // Followed files by what was read (their content may already be truncated).
        for (k, t) in &self.files {
            if *k != key && t.copy_of.is_none() && check(t.head, t.offset, t.window_fp()) {
                return Some(CopyMatch::Live(*k, t.offset));
            }
        }
        short.then_some(CopyMatch::Short)
    }

    /// The followed file `original` is truncated or done at `offset`: its copies start there.
    fn resolve_copies(&mut self, original: FileKey, offset: u64, window: &[u8]) {
        let keys: Vec<FileKey> =
            self.files.iter().filter(|(_, t)| t.copy_of == Some(original)).map(|(k, _)| *k).collect();
        for key in keys {
            if let Some(t) = self.files.get_mut(&key) {
                t.copy_of = None;
                t.fresh = true;
                t.offset = offset;
                t.window = window.to_vec();
                self.sink.note(key, t);
            }
        }
    }

    /// Copies whose original was neither truncated nor finished in time are read from where
    /// the original is now.
    fn expire_copies(&mut self, wait: Duration) {
        let expired: Vec<(FileKey, FileKey)> = self
            .files
            .iter()
            .filter_map(|(k, t)| Some((*k, t.copy_of?)))
            .filter(|(k, _)| self.files.get(k).is_some_and(|t| t.found.elapsed() >= wait))
            .collect();
        for (_, original) in expired {
            let (offset, window) = match self.files.get(&original) {
                Some(o) => (o.offset, o.window.clone()),
                None => continue,
            };
            self.resolve_copies(original, offset, &window);
        }
        // Copies of a file that is gone altogether keep their provisional start.
        let orphans: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, t)| t.copy_of.is_some_and(|o| !self.files.contains_key(&o)))
            .map(|(k, _)| *k)
            .collect();
        for key in orphans {
            if let Some(t) = self.files.get_mut(&key) {
                t.copy_of = None;
                t.fresh = true;
            }
        }
    }

    /// Opens known files with unread data, up to `max_open_files`.
    fn open_waiting(&mut self) {
        let max = self.sink.cfg.max_open_files;
        let mut open = self.files.values().filter(|t| t.file.is_some()).count();
        let keys: Vec<FileKey> = self.files.iter().filter(|(_, t)| t.file.is_none()).map(|(k, _)| *k).collect();
        for key in keys {
            if open >= max {
                break;
            }
            let Some(t) = self.files.get_mut(&key) else { continue };
            if t.copy_of.is_some() || (!t.fresh && t.size == t.offset) {
                continue;
            }
            let Ok(f) = File::open(&t.path) else { continue };
            let Ok(meta) = f.metadata() else { continue };
            if (meta.dev(), meta.ino()) != key {
                continue;
            }
            t.file = Some(Arc::new(f));
            t.fresh = false;
            t.last_growth = Instant::now();
            open += 1;
        }
    }

    /// Reads every open file once; true if anything was read.
    fn poll(&mut self) -> bool {
        let cfg = self.sink.cfg.clone();
        let now = Instant::now();
        let mut progressed = false;
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        let mut remove = Vec::new();
        for key in keys {
            let Some(mut t) = self.files.remove(&key) else { continue };
            let src = &cfg.sources[t.source];
            let polled = if t.file.is_some() { Some(self.poll_file(key, &mut t, src, now)) } else { None };
            match polled {
                None => {}
                Some(Ok(Poll { read, deleted })) => {
                    progressed |= read;
                    if read {
                        t.last_growth = now;
                    }
                    let idle = now.duration_since(t.last_growth);
                    if deleted && !read && idle >= cfg.poll_interval {
                        self.finish(key, &mut t, src);
                        remove.push(key);
                    } else if idle >= src.close_inactive {
                        if !t.linked {
                            self.finish(key, &mut t, src);
                        }
                        t.file = None;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "read failed; the file is reopened on the next scan");
                    t.file = None;
                }
            }
            if let Some(m) = &src.multiline
                && let Some(text) = t.grouper.flush_stale(m, now)
            {
                self.sink.emit(src, &t.path_arc, &text);
                self.sink.note(key, &mut t);
            }
            self.files.insert(key, t);
        }
        for key in remove {
            if let Some(t) = self.files.remove(&key) {
                self.resolve_copies(key, t.offset, &t.window);
            }
            self.sink.forget(key);
        }
        progressed
    }

    fn poll_file(&mut self, key: FileKey, t: &mut Tracked, src: &Source, now: Instant) -> std::io::Result<Poll> {
        let Some(file) = t.file.clone() else { return Ok(Poll { read: false, deleted: false }) };
        let meta = file.metadata()?;
        t.size = meta.len();
        if t.size < t.offset || !t.head.matches(&file, 0) {
            self.truncated(key, t, src, &file);
        }
        if (t.head.len as usize) < HEAD_BYTES && t.size > u64::from(t.head.len) {
            t.head = Fingerprint::read(&file, 0, HEAD_BYTES)?;
        }
        let read = self.read_lines(key, t, src, &file, now, false)?;
        Ok(Poll { read, deleted: meta.nlink() == 0 })
    }

    /// Truncated in place: what was read is a retired identity; read again from the start.
    fn truncated(&mut self, key: FileKey, t: &mut Tracked, src: &Source, file: &File) {
        tracing::info!(path = %t.path.display(), offset = t.offset, "file truncated; reading it again from its start");
        self.sink.stats.truncations.inc();
        if let Some(text) = t.grouper.flush() {
            self.sink.emit(src, &t.path_arc, &text);
        }
        self.retire(FilePosition {
            dev: key.0,
            ino: key.1,
            head: t.head,
            offset: t.offset,
            tail: t.window_fp(),
            path: t.path_arc.to_string(),
        });
        let window = std::mem::take(&mut t.window);
        self.resolve_copies(key, t.offset, &window);
        t.offset = 0;
        t.window.clear();
        t.head = Fingerprint::read(file, 0, HEAD_BYTES).unwrap_or_default();
        self.sink.note(key, t);
    }

    /// A file is done (deleted, or renamed away and idle): its last line, even without a
    /// newline, and its pending record go out.
    fn finish(&mut self, key: FileKey, t: &mut Tracked, src: &Source) {
        if let Some(file) = t.file.clone()
            && let Err(e) = self.read_lines(key, t, src, &file, Instant::now(), true)
        {
            tracing::warn!(path = %t.path.display(), error = %e, "final read failed");
        }
        if let Some(text) = t.grouper.flush() {
            self.sink.emit(src, &t.path_arc, &text);
        }
        self.sink.note(key, t);
        t.file = None;
    }

    /// Reads complete lines from `t.offset` (and the final partial line if `at_end`).
    fn read_lines(
        &mut self,
        key: FileKey,
        t: &mut Tracked,
        src: &Source,
        file: &File,
        now: Instant,
        at_end: bool,
    ) -> std::io::Result<bool> {
        let cap = src.max_line_bytes.min(self.buf.len());
        let mut buf = std::mem::take(&mut self.buf);
        let mut total = 0;
        let result = loop {
            let n = match read_full_at(file, &mut buf[..cap], t.offset) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                break Ok(());
            }
            let data = &buf[..n];
            let mut pos = 0;
            while let Some(i) = data[pos..].iter().position(|b| *b == b'\n') {
                let start = t.offset;
                self.line(key, t, src, &data[pos..pos + i], &data[pos..pos + i + 1], start, now);
                pos += i + 1;
            }
            if pos == 0 && (n == cap || at_end) {
                // A line longer than the limit is cut; an unterminated last line of a file
                // that is done is complete.
                let start = t.offset;
                self.line(key, t, src, data, data, start, now);
                pos = n;
            }
            total += pos;
            // At the end of a finished file, read on until nothing is left.
            let more = if at_end { pos < n || n == cap } else { n == cap && total < READ_BUDGET };
            if pos == 0 || !more {
                break Ok(());
            }
        };
        self.buf = buf;
        result?;
        if total > 0 {
            self.sink.note(key, t);
        }
        Ok(total > 0)
    }

    #[allow(clippy::too_many_arguments)] // one line's coordinates; a struct would only rename them
    fn line(&mut self, key: FileKey, t: &mut Tracked, src: &Source, line: &[u8], raw: &[u8], start: u64, now: Instant) {
        t.consumed(raw, start + raw.len() as u64);
        self.sink.stats.lines_read.inc();
        self.sink.stats.bytes_read.add(raw.len() as u64);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        let done = match &src.multiline {
            None => Some(text.into_owned()),
            Some(m) => t.grouper.push(m, &text, start, now),
        };
        if let Some(done) = done {
            self.sink.emit(src, &t.path_arc, &done);
            // The position is noted at the end of each read; before that only when the batch
            // is sealed, so that it carries the position of its last record.
            if self.sink.batch.is_full(self.sink.cfg.batch_max_records, self.sink.cfg.batch_max_bytes) {
                self.sink.note(key, t);
            }
        }
    }
}

struct Poll {
    read: bool,
    deleted: bool,
}

/// The longest wait between polls while every file is idle: four poll intervals, at most
/// 1 s, and never less than the poll interval itself.
pub(crate) fn idle_poll_cap(poll_interval: Duration) -> Duration {
    poll_interval.saturating_mul(4).min(Duration::from_secs(1)).max(poll_interval)
}

/// The last bytes before `offset`.
fn tail_bytes(file: &File, offset: u64) -> Vec<u8> {
    let len = offset.min(TAIL_BYTES as u64) as usize;
    let mut b = vec![0; len];
    let n = read_full_at(file, &mut b, offset - len as u64).unwrap_or(0);
    b.truncate(n);
    b
}

/// The start of the line that `size` is in (the end of the last complete line).
fn line_start_before(file: &File, size: u64) -> u64 {
    let back = size.min(64 * 1024);
    let mut b = vec![0; back as usize];
    let n = read_full_at(file, &mut b, size - back).unwrap_or(0);
    match b[..n].iter().rposition(|c| *c == b'\n') {
        Some(i) => size - back + i as u64 + 1,
        None => size,
    }
}

/// Calls `f` for every file under `dir`, at most `depth` levels down.
fn walk(dir: &Path, depth: usize, budget: &mut usize, f: &mut impl FnMut(&Path)) {
    if depth == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = e.path();
        match e.file_type() {
            // Directories are walked without following links, so a link loop cannot trap it.
            Ok(ft) if ft.is_dir() => walk(&path, depth - 1, budget, f),
            Ok(_) => f(&path),
            Err(_) => {}
        }
    }
}
