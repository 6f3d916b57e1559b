//! The batch being filled: records as NDJSON plus the file positions they bring the
//! checkpoint to, sealed by count, bytes or age and compressed with gzip.

use crate::position::{FileKey, FilePosition, Fingerprint, PositionUpdate};
use crate::record::Record;
use crate::spool::Header;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// How the tail fingerprint of a noted position is found at sealing time.
#[derive(Clone, Debug)]
pub enum Tail {
    /// Read from the open file just before the offset.
    File(Arc<File>),
    Known(Fingerprint),
}

/// A position noted while filling the batch.
#[derive(Clone, Debug)]
pub struct Noted {
    pub path: Arc<str>,
    pub head: Fingerprint,
    pub offset: u64,
    pub tail: Tail,
}

/// The open batch.
#[derive(Default)]
pub struct Batch {
    ndjson: Vec<u8>,
    records: u32,
    /// Latest position per file; `None` forgets the file.
    positions: HashMap<FileKey, Option<Noted>>,
    opened: Option<Instant>,
}

impl Batch {
    pub fn push(&mut self, r: &Record) {
        self.opened.get_or_insert_with(Instant::now);
        r.write_ndjson(&mut self.ndjson);
        self.records += 1;
    }

    pub fn note(&mut self, key: FileKey, pos: Option<Noted>) {
        self.opened.get_or_insert_with(Instant::now);
        self.positions.insert(key, pos);
    }

    pub fn records(&self) -> u32 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.positions.is_empty()
    }

    pub fn is_full(&self, max_records: usize, max_bytes: usize) -> bool {
        self.records as usize >= max_records || self.ndjson.len() >= max_bytes
    }

    pub fn is_due(&self, timeout: std::time::Duration) -> bool {
        self.opened.is_some_and(|t| t.elapsed() >= timeout)
    }

    /// When the open batch is due to be sealed; `None` when no batch is open.
    pub fn due_at(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.opened.map(|t| t + timeout)
    }

    /// Whether no batch is open (no record, no position noted since the last seal).
    pub fn is_idle(&self) -> bool {
        self.opened.is_none()
    }

    /// Seals the batch into a header and a gzip payload, leaving an empty batch.
    pub fn seal(&mut self, level: u32, sealed_ns: u64) -> (Header, Vec<u8>) {
        let mut positions: Vec<PositionUpdate> = std::mem::take(&mut self.positions)
            .into_iter()
            .map(|((dev, ino), p)| match p {
                None => PositionUpdate::Forget { dev, ino },
                Some(n) => {
                    let tail = match &n.tail {
                        Tail::Known(fp) => *fp,
                        // A file that cannot be read here was truncated: an unknown tail only
                        // stops a copy from being recognised (its lines are re-read, not lost).
                        Tail::File(f) => Fingerprint::tail(f, n.offset).unwrap_or_default(),
                    };
                    PositionUpdate::Set(FilePosition {
                        dev,
                        ino,
                        head: n.head,
                        offset: n.offset,
                        tail,
                        path: n.path.to_string(),
                    })
                }
            })
            .collect();
        positions.sort_by_key(|p| p.key());
        let header = Header { records: self.records, sealed_ns, positions };
        let payload = gzip(&self.ndjson, level);
        self.ndjson.clear();
        self.records = 0;
        self.opened = None;
        (header, payload)
    }
}

/// gzip of `data` at `level` (0–9).
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::new(level));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// The inflated bytes of a gzip stream; an error if there are more than `limit`.
pub fn gunzip(data: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("inflates to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
