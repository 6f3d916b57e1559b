//! The processes that write the logs the agent ships: those holding open (a
//! `/proc/PID/fd/N` link) a file the reader follows, reported as `process_*` with that log
//! source's `service` and `instance`, the labels its shipped records carry.
//!
//! The reader publishes the identities (device, inode) of the files it follows in a
//! [`TailedFiles`]; each collection pass asks [`Discovery`] for the processes holding them.
//! Reading every process's descriptors at every pass would cost thousands of readlinks on a
//! busy machine, so a pass examines only what can have changed: every process when the set of
//! followed files changed (and once every [`Discovery::REFRESH_PASSES`] passes, for a process
//! that opened an already followed file late), otherwise only processes that are new since
//! the last pass (re-examined on their next [`Discovery::NEW_RECHECKS`] passes, in case they
//! open their log after starting), plus the processes already found (to notice a closed file
//! or a reused pid). A pass starts on no further process once it examined
//! [`Discovery::MAX_FDS_PER_PASS`] descriptors; what is left waits for the next pass. A process that exits mid-read, or whose
//! descriptors the agent may not read (another user's, without CAP_SYS_PTRACE), is skipped.

use crate::record::Labels;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A file's identity: (device, inode).
pub type FileKey = (u64, u64);

/// The followed files, by identity, with the labels of their source.
pub type FileLabels = HashMap<FileKey, Arc<Labels>>;

/// The files the reader follows, shared with the host collector: the reader replaces the
/// set when it changes, the collector reads it once per pass.
#[derive(Clone, Default)]
pub struct TailedFiles(Arc<Mutex<(u64, Arc<FileLabels>)>>);

impl TailedFiles {
    /// Replaces the set (its generation goes up) if it differs from the current one.
    pub fn publish(&self, files: FileLabels) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let same = g.1.len() == files.len()
            && files
                .iter()
                .all(|(k, l)| g.1.get(k).is_some_and(|m| m.service == l.service && m.instance == l.instance));
        if !same {
            g.0 += 1;
            g.1 = Arc::new(files);
        }
    }

    /// (generation, files).
    pub fn current(&self) -> (u64, Arc<FileLabels>) {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (g.0, g.1.clone())
    }
}

/// Processes found holding a followed file, grouped by their source's labels:
/// (service, instance, pids sorted).
pub type Found = Vec<(String, String, Vec<u32>)>;

/// What discovery keeps between passes.
pub struct Discovery {
    tailed: TailedFiles,
    generation: u64,
    files: Arc<FileLabels>,
    /// Pids present at the last pass, sorted.
    pids: Vec<u32>,
    /// Pids still to examine (a full rescan not yet finished).
    pending: VecDeque<u32>,
    /// New pids not found holding a followed file, with the passes they are still
    /// re-examined on.
    young: HashMap<u32, u8>,
    /// Pid → the labels of the file it holds.
    found: BTreeMap<u32, Arc<Labels>>,
    /// The agent's own pid (it holds every followed file).
    me: u32,
    passes: u64,
}

impl Discovery {
    /// Most descriptors examined in one pass.
    pub const MAX_FDS_PER_PASS: usize = 20_000;
    /// Passes between two full rescans (an hour at 15 s).
    pub const REFRESH_PASSES: u64 = 240;
    /// Passes a new process is re-examined on after it appeared.
    pub const NEW_RECHECKS: u8 = 3;

    pub fn new(tailed: TailedFiles) -> Discovery {
        Discovery {
            tailed,
            generation: 0,
            files: Arc::default(),
            pids: Vec::new(),
            pending: VecDeque::new(),
            young: HashMap::new(),
            found: BTreeMap::new(),
            me: std::process::id(),
            passes: 0,
        }
    }

    /// Pids still waiting to be examined (a rescan spread over several passes).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// One pass with at most `budget` descriptors examined: the processes holding a followed
    /// file now.
    pub fn pass(&mut self, proc_path: &Path, budget: usize) -> Found {
        let mut budget = budget;
        let (generation, files) = self.tailed.current();
        let now = list_pids(proc_path);
        let refresh = self.passes.is_multiple_of(Self::REFRESH_PASSES);
        self.passes += 1;
        if files.is_empty() {
            self.files = files;
            self.generation = generation;
            self.pending.clear();
            self.young.clear();
            self.found.clear();
            self.pids = now;
            return Vec::new();
        }
        let mut new: Vec<u32> = Vec::new();
        if generation != self.generation || refresh {
            self.generation = generation;
            self.files = files;
            self.pending = now.iter().copied().filter(|p| *p != self.me).collect();
            self.young.clear();
        } else {
            new = now.iter().copied().filter(|p| *p != self.me && self.pids.binary_search(p).is_err()).collect();
        }
        let alive: HashSet<u32> = now.iter().copied().collect();
        self.found.retain(|p, _| alive.contains(p));
        self.young.retain(|p, _| alive.contains(p));
        self.pids = now;

        // The processes found before: do they still hold a followed file?
        let known: Vec<u32> = self.found.keys().copied().collect();
        for pid in known {
            match holder(proc_path, pid, &self.files, &mut budget) {
                Ok(Some(l)) => {
                    self.found.insert(pid, l);
                }
                Ok(None) => {
                    self.found.remove(&pid);
                }
                // Kept as it was until a pass has the budget.
                Err(OutOfBudget) => {}
            }
        }
        // New processes, and young ones once more.
        for pid in new {
            self.young.insert(pid, Self::NEW_RECHECKS + 1);
        }
        let young: Vec<u32> = self.young.keys().copied().collect();
        for pid in young {
            match holder(proc_path, pid, &self.files, &mut budget) {
                Ok(Some(l)) => {
                    self.found.insert(pid, l);
                    self.young.remove(&pid);
                }
                Ok(None) => {
                    if let Some(left) = self.young.get_mut(&pid) {
                        *left -= 1;
                        if *left == 0 {
                            self.young.remove(&pid);
                        }
                    }
                }
                Err(OutOfBudget) => break,
            }
        }
        // The rest of a rescan, as far as the budget goes.
        while let Some(pid) = self.pending.pop_front() {
            if !alive.contains(&pid) || self.found.contains_key(&pid) {
                continue;
            }
            match holder(proc_path, pid, &self.files, &mut budget) {
                Ok(Some(l)) => {
                    self.found.insert(pid, l);
                }
                Ok(None) => {}
                Err(OutOfBudget) => {
                    self.pending.push_front(pid);
                    break;
                }
            }
        }
        let mut groups: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for (pid, l) in &self.found {
            groups.entry((l.service.clone(), l.instance.clone())).or_default().push(*pid);
        }
        groups.into_iter().map(|((s, i), pids)| (s, i, pids)).collect()
    }
}

/// The numeric entries of procfs, sorted.
fn list_pids(proc_path: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_path) else { return Vec::new() };
    let mut pids: Vec<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).collect();
    pids.sort_unstable();
    pids
}

/// The budget ran out before a process's descriptors were all examined.
struct OutOfBudget;

/// The labels of the first followed file (by descriptor order) `pid` holds open, if any;
/// each descriptor looked at costs one unit of `budget`, and none is looked at once it is
/// spent. A vanished process, an unreadable
/// descriptor table or a descriptor closed meanwhile is no match.
fn holder(
    proc_path: &Path,
    pid: u32,
    files: &FileLabels,
    budget: &mut usize,
) -> Result<Option<Arc<Labels>>, OutOfBudget> {
    if *budget == 0 {
        return Err(OutOfBudget);
    }
    let dir = proc_path.join(pid.to_string()).join("fd");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(None) };
    let mut fds: Vec<(u32, std::path::PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path()))
        })
        .collect();
    fds.sort_unstable_by_key(|f| f.0);
    for (_, link) in fds {
        // A process started is examined to its end (a pass may overrun the budget by one
        // process's descriptors), so a process with more than the budget is still examined.
        *budget = budget.saturating_sub(1);
        // Sockets, pipes and anonymous inodes read as `socket:[N]`: only paths can be files.
        let Ok(target) = std::fs::read_link(&link) else { continue };
        if !target.as_os_str().as_encoded_bytes().starts_with(b"/") {
            continue;
        }
        // The link resolves to the open file itself, even renamed or deleted.
        let Ok(meta) = std::fs::metadata(&link) else { continue };
        if let Some(l) = files.get(&(meta.dev(), meta.ino())) {
            return Ok(Some(l.clone()));
        }
    }
    Ok(None)
}
