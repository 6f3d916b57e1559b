//! Hourly partitions of sealed blocks and retention: a store's blocks live in
//! `<dir>/p-<hour>/b-<name>.blk`, `<hour>` the Unix nanoseconds of the hour every record
//! of the block falls in. Retention deletes whole partitions: those wholly older than the
//! retention age, then the oldest while all blocks take more than the size limit (never the
//! newest partition). What a block is, and how its name is chosen, is the schema's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const HOUR_NANOS: u64 = 3_600 * 1_000_000_000;

/// The start of the hour `nanos` falls in.
pub fn hour_of(nanos: u64) -> u64 {
    nanos / HOUR_NANOS * HOUR_NANOS
}

/// What the container needs to know of a sealed block to retain it.
pub trait Sealed {
    /// Its size on disk.
    fn file_bytes(&self) -> u64;
}

/// A store's blocks by hour.
pub struct Partitions<B> {
    dir: PathBuf,
    hours: BTreeMap<u64, Vec<Arc<B>>>,
}

impl<B: Sealed> Partitions<B> {
    /// Reads `dir`'s partitions, calling `open(path, name)` for every `b-*.blk` file (a block
    /// it cannot read returns `None` and is left alone). Leftovers of block writes a crash
    /// cut short (`*.tmp`) are deleted: their records are still in the write-ahead log.
    pub fn open(dir: &Path, mut open: impl FnMut(&Path, &str) -> Option<B>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hours: BTreeMap<u64, Vec<Arc<B>>> = BTreeMap::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hour) = name.strip_prefix("p-").and_then(|h| h.parse::<u64>().ok()) else { continue };
            let blocks = hours.entry(hour).or_default();
            for b in std::fs::read_dir(e.path())? {
                let b = b?;
                let name = b.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(b.path());
                    continue;
                }
                if name.starts_with("b-")
                    && name.ends_with(".blk")
                    && let Some(block) = open(&b.path(), &name)
                {
                    blocks.push(Arc::new(block));
                }
            }
        }
        Ok(Partitions { dir: dir.to_owned(), hours })
    }

    /// Where block `name` of `hour` goes (the partition's directory is created).
    pub fn path_for(&self, hour: u64, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(format!("p-{hour}"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir.join(name))
    }

    pub fn insert(&mut self, hour: u64, block: Arc<B>) {
        self.hours.entry(hour).or_default().push(block);
    }

    /// The partitions, oldest first.
    pub fn hours(&self) -> &BTreeMap<u64, Vec<Arc<B>>> {
        &self.hours
    }

    /// Mutable access to one partition's blocks (to order them).
    pub fn hours_mut(&mut self) -> impl Iterator<Item = &mut Vec<Arc<B>>> {
        self.hours.values_mut()
    }

    /// Every block.
    pub fn blocks(&self) -> impl Iterator<Item = &Arc<B>> {
        self.hours.values().flatten()
    }

    /// The blocks of the partitions that may hold records in `[start, end]` (nanoseconds);
    /// nothing when `start > end`.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Arc<B>> {
        // A reversed range would panic in `BTreeMap::range`.
        (start <= end).then(|| self.hours.range(hour_of(start)..=end)).into_iter().flatten().flat_map(|(_, b)| b.iter())
    }

    /// The blocks of the partition of `nanos`.
    pub fn at(&self, nanos: u64) -> impl Iterator<Item = &Arc<B>> {
        self.hours.get(&hour_of(nanos)).into_iter().flatten()
    }

    /// Takes out the partitions retention removes at `now_nanos` (see the module doc); the
    /// caller deletes them with [`Partitions::delete`] once no lock is held.
    pub fn expire(&mut self, now_nanos: u64, age: Duration, max_bytes: u64) -> Vec<(u64, Vec<Arc<B>>)> {
        let cutoff = now_nanos.saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX));
        let mut out = Vec::new();
        let old: Vec<u64> = self.hours.keys().copied().filter(|h| h + HOUR_NANOS <= cutoff).collect();
        for h in old {
            if let Some(b) = self.hours.remove(&h) {
                out.push((h, b));
            }
        }
        let mut total: u64 = self.blocks().map(|b| b.file_bytes()).sum();
        while total > max_bytes && self.hours.len() > 1 {
            let Some(b) = self.hours.pop_first() else { break };
            total -= b.1.iter().map(|x| x.file_bytes()).sum::<u64>();
            out.push(b);
        }
        out
    }

    /// Deletes partition `hour`'s directory.
    pub fn delete(&self, hour: u64) {
        let _ = std::fs::remove_dir_all(self.dir.join(format!("p-{hour}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(u64);
    impl Sealed for Fake {
        fn file_bytes(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn blocks_are_found_by_hour_and_retention_drops_whole_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let mut p: Partitions<Fake> = Partitions::open(dir.path(), |_, _| None).unwrap();
        for h in 96..100u64 {
            let path = p.path_for(h * HOUR_NANOS, "b-1.blk").unwrap();
            std::fs::write(&path, vec![0u8; 100]).unwrap();
        }
        std::fs::write(dir.path().join(format!("p-{}", 99 * HOUR_NANOS)).join("b-2.tmp"), b"cut short").unwrap();
        std::fs::write(dir.path().join("stray"), b"not a partition").unwrap();
        let p2: Partitions<Fake> = Partitions::open(dir.path(), |path, name| {
            assert_eq!(name, "b-1.blk");
            Some(Fake(std::fs::metadata(path).unwrap().len()))
        })
        .unwrap();
        assert_eq!(p2.blocks().count(), 4);
        assert!(!dir.path().join(format!("p-{}", 99 * HOUR_NANOS)).join("b-2.tmp").exists());
        assert_eq!(p2.overlapping(97 * HOUR_NANOS + 5, 98 * HOUR_NANOS).count(), 2);
        assert_eq!(p2.overlapping(5, 1).count(), 0, "a reversed window holds nothing");
        assert_eq!(p2.at(99 * HOUR_NANOS + 7).count(), 1);
        p = p2;
        // By age: only partitions wholly older than the cutoff (97h) go.
        let gone = p.expire(100 * HOUR_NANOS, Duration::from_secs(3 * 3600), u64::MAX);
        assert_eq!(gone.iter().map(|g| g.0).collect::<Vec<_>>(), vec![96 * HOUR_NANOS]);
        for (h, _) in gone {
            p.delete(h);
        }
        assert!(!dir.path().join(format!("p-{}", 96 * HOUR_NANOS)).exists());
        // By size: the oldest go until the rest fit, never the newest.
        let gone = p.expire(100 * HOUR_NANOS, Duration::from_secs(3 * 3600), 150);
        assert_eq!(gone.len(), 2);
        assert_eq!(p.hours().keys().copied().collect::<Vec<_>>(), vec![99 * HOUR_NANOS]);
        assert!(p.expire(100 * HOUR_NANOS, Duration::from_secs(3 * 3600), 1).is_empty(), "the newest stays");
    }
}
