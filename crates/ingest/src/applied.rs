//! The batches a storage consumer has already written: a file per consumer, so that a
//! message JetStream delivers again (its acknowledgement was lost, or the node died between
//! writing and acknowledging) is acknowledged without being stored twice.
//!
//! Each line is `<stream sequence> <message id>`, appended and fsync'd after the store has
//! the batch on disk and before the message is acknowledged. Entries at or below the
//! consumer's acknowledgement floor can never be delivered again (the stream deletes a
//! work-queue message once it is acknowledged), so [`Applied::prune`] drops them and
//! rewrites the file (temp file, fsync, rename).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Applied message ids of one consumer.
pub struct Applied {
    path: PathBuf,
    file: File,
    ids: HashMap<String, u64>,
}

impl Applied {
    /// Opens (or creates) the record at `path`. A torn last line (a crash mid-append) is
    /// cut off: its batch was not acknowledged and will be delivered again.
    pub fn open(path: &Path) -> std::io::Result<Applied> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut ids = HashMap::new();
        let text = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        // Only whole lines count; a torn tail is cut off so appends start on a fresh line.
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in String::from_utf8_lossy(&text[..whole]).lines() {
            let Some((seq, id)) = line.split_once(' ') else { continue };
            if let Ok(seq) = seq.parse::<u64>()
                && !id.is_empty()
            {
                ids.insert(id.to_owned(), seq);
            }
        }
        if whole < text.len() {
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(whole as u64)?;
            f.sync_all()?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Applied { path: path.to_owned(), file, ids })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Records `(stream sequence, id)` pairs durably (one write and one fsync).
    pub fn record(&mut self, batch: &[(u64, String)]) -> std::io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = String::new();
        for (seq, id) in batch {
            // Ids are ours (hex and dots); a newline would break the file, so refuse it.
            if id.contains(['\n', ' ']) {
                continue;
            }
            buf.push_str(&format!("{seq} {id}\n"));
        }
        self.file.write_all(buf.as_bytes())?;
        self.file.sync_data()?;
        for (seq, id) in batch {
            self.ids.insert(id.clone(), *seq);
        }
        Ok(())
    }

    /// Forgets ids whose stream sequence is at or below `ack_floor` and compacts the file.
    pub fn prune(&mut self, ack_floor: u64) -> std::io::Result<usize> {
        let before = self.ids.len();
        self.ids.retain(|_, seq| *seq > ack_floor);
        let dropped = before - self.ids.len();
        if dropped == 0 {
            return Ok(0);
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = String::new();
            for (id, seq) in &self.ids {
                buf.push_str(&format!("{seq} {id}\n"));
            }
            f.write_all(buf.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_prunes_below_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("applied").join("traces-3");
        let mut a = Applied::open(&path).unwrap();
        a.record(&[(1, "b1.3".into()), (2, "b2.3".into()), (5, "b5.3".into())]).unwrap();
        drop(a);
        // A torn line from a crash mid-append is ignored.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"7 b7").unwrap();
        let mut a = Applied::open(&path).unwrap();
        assert!(a.contains("b1.3") && a.contains("b5.3"));
        assert_eq!(a.prune(2).unwrap(), 2);
        assert!(!a.contains("b1.3") && !a.contains("b2.3") && a.contains("b5.3"));
        assert!(!a.contains("b7"));
        a.record(&[(9, "b9.3".into())]).unwrap();
        drop(a);
        let a = Applied::open(&path).unwrap();
        assert!(a.contains("b5.3") && a.contains("b9.3") && !a.contains("b2.3"));
    }
}
