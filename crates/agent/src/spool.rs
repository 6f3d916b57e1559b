//! The agent's disk buffer of sealed batches (the shared queue of
//! [`signalbox_core::spool`], with batches that carry file positions), and the checkpoint of
//! acknowledged positions.
//!
//! Every file here is written durably: to a temporary name, fsync, rename, fsync of the
//! directory. A batch enters the buffer before it is sent and leaves it only after the output
//! acknowledged it and the checkpoint holding its positions is on disk; so after a crash
//! every line is either acknowledged, in the buffer, or after the resume position.

use crate::error::AgentError;
use crate::position::{FileKey, FilePosition, PositionUpdate};
use serde::{Deserialize, Serialize};
pub use signalbox_core::spool::write_durable;
use std::collections::HashMap;
use std::path::Path;

/// The buffer: sealed batches of gzip-compressed NDJSON, one record a line.
pub type Spool = signalbox_core::spool::Spool<Header>;
/// A sealed batch.
pub type Entry = signalbox_core::spool::Entry<Header>;

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

/// Opens (creating) `data_dir/buffer` and reads the checkpoint and every buffered batch.
pub fn open(data_dir: &Path, max_bytes: u64) -> Result<(Spool, Recovered), AgentError> {
    let dir = data_dir.join("buffer");
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
    let mut resume = acked.clone();
    let mut intact = true;
    let spool = Spool::open(&dir, max_bytes, |e| match e {
        Some(e) if intact => crate::position::apply(&mut resume, &e.header.positions),
        Some(_) => {}
        // Later batches still go out; reading resumes before this one, so its lines are
        // read again rather than lost.
        None => intact = false,
    })
    .map_err(AgentError::io("open the buffer", &dir))?;
    Ok((spool, Recovered { resume, acked, first_start }))
}

/// Opens (creating) a buffer directory of its own, with no checkpoint: the host metrics'
/// buffer, whose batches carry no file positions. Damaged batches are set aside.
pub fn open_plain(dir: &Path, max_bytes: u64) -> Result<Spool, AgentError> {
    Spool::open(dir, max_bytes, |_| {}).map_err(AgentError::io("open the buffer", dir))
}

#[cfg(test)]
mod tests;
