//! The background work [`Tsdb::maintain`] does, in order:
//!
//! 1. Cut: while the head spans more than 1.5 × `block_range_ms`, the oldest aligned range
//!    is written as a level-1 block. The WAL moves to a new segment and the cut is marked;
//!    the range's samples are copied and written as a block, which is published; only then
//!    are they removed from the head (a query sees them twice for a moment, and the merge
//!    dedups). Appends go on meanwhile; out-of-order samples they store in the range after
//!    the copy are recorded and put back after the removal. The head is snapshotted under
//!    the append lock; the snapshot becomes a WAL checkpoint replacing every segment up to
//!    the one closed at the start. Appends wait only for the rotation, the removal and the
//!    snapshot (a copy of the head's chunks), never for block I/O.
//! 2. Compact: blocks whose time ranges overlap (out-of-order data cut later) are merged;
//!    then blocks sharing an aligned window of 3×, 9×, … the block range (up to
//!    `max_block_range_ms`) are merged once the head has moved past that window.
//! 3. Retention: blocks entirely older than `retention_ms` are deleted, then the oldest
//!    blocks while blocks and WAL exceed `retention_bytes`.
//!
//! A crash at any point leaves a state `open` repairs: a block written but not yet
//! checkpointed only duplicates samples the WAL replays (merged by queries and the next
//! compaction); sources of a compacted block still on disk are deleted at open.

use super::{Tsdb, TsdbError, dedup_by_time, delete_block_dir, io};
use crate::storage::Labels;
use crate::tsdb::block::{Block, BlockWriter};
use crate::tsdb::head::CutSeries;
use crate::tsdb::head::encode_chunks;
use crate::tsdb::wal;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const MAX_CUTS_PER_CALL: usize = 16;

/// A cut between copying the head's old range and removing it.
pub(super) struct CutInProgress {
    before: i64,
    last_segment: u64,
    series: Vec<CutSeries>,
}

/// Samples stored before the cut time while a cut is in progress: (ref, labels, t, v).
pub(super) struct LateSamples {
    pub before: i64,
    pub samples: Vec<(u64, Labels, i64, f64)>,
}

/// What one [`Tsdb::maintain`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintainReport {
    pub blocks_cut: usize,
    pub blocks_compacted: usize,
    pub blocks_deleted: usize,
}

impl Tsdb {
    /// Cuts, compacts and applies retention (see the module doc). `now_ms` is the wall
    /// clock retention measures against. Returns at once if another call is running.
    pub fn maintain(&self, now_ms: i64) -> Result<MaintainReport, TsdbError> {
        let _running = match self.maintaining.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(MaintainReport::default()),
        };
        let mut report = MaintainReport::default();
        let range = self.opts.block_range_ms;
        // Out-of-order samples arriving during cuts can keep the head wide: the number of
        // cuts per call is bounded, and the next call carries on.
        for _ in 0..MAX_CUTS_PER_CALL {
            let Some((min, max)) = self.head.time_range() else { break };
            if max.saturating_sub(min) <= range + range / 2 {
                break;
            }
            let Some(before) = min.div_euclid(range).checked_mul(range).and_then(|s| s.checked_add(range)) else {
                break;
            };
            if self.cut_head(before)? {
                report.blocks_cut += 1;
            }
        }
        report.blocks_compacted = self.compact()?;
        report.blocks_deleted = self.apply_retention(now_ms)?;
        Ok(report)
    }

    /// Writes the head's samples before `before` as a block and checkpoints the WAL.
    fn cut_head(&self, before: i64) -> Result<bool, TsdbError> {
        let cut = self.begin_cut(before)?;
        self.finish_cut(cut)
    }

    /// Starts a cut: marks it (so appends record samples they store before `before`), moves
    /// the WAL to a new segment, and copies the head's samples before `before`.
    pub(super) fn begin_cut(&self, before: i64) -> Result<CutInProgress, TsdbError> {
        let last_segment = {
            let mut wal = self.wal_lock();
            let last = wal.rotate().map_err(io("rotating the WAL"))?;
            *self.cutting_lock() = Some(LateSamples { before, samples: Vec::new() });
            last
        };
        let series = self.head.collect_before(before);
        Ok(CutInProgress { before, last_segment, series })
    }

    /// Writes and publishes the block, then (under the append lock) removes the range from
    /// the head, puts back what was appended to it since [`Tsdb::begin_cut`] copied it,
    /// and snapshots the head; the snapshot becomes the checkpoint after the lock is gone.
    pub(super) fn finish_cut(&self, cut: CutInProgress) -> Result<bool, TsdbError> {
        let written = self.write_cut_block(&cut.series);
        drop(cut.series);
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                *self.cutting_lock() = None;
                return Err(e);
            }
        };
        let snapshot = {
            let _wal = self.wal_lock();
            let late = self.cutting_lock().take().map(|l| l.samples).unwrap_or_default();
            self.head.truncate(cut.before);
            let mut refs = HashMap::new();
            for (ref_id, labels, t, v) in late {
                // The series record is in a segment after the cut one, so the ref is kept.
                self.head.replay(wal::Record::Series(vec![(ref_id, labels)]), &mut refs);
                self.head.replay(wal::Record::Samples(vec![(ref_id, t, v)]), &mut refs);
            }
            self.head.snapshot()
        };
        self.write_checkpoint(cut.last_segment, snapshot)?;
        Ok(written)
    }

    fn write_cut_block(&self, series: &[CutSeries]) -> Result<bool, TsdbError> {
        let mut w = BlockWriter::new(&self.dir.join("blocks"), 1, Vec::new()).map_err(io("creating a block"))?;
        for s in series {
            w.add_series(&s.labels, &s.chunks).map_err(io("writing a block"))?;
        }
        let target = w.target().to_owned();
        Ok(match w.finish().map_err(io("finishing a block"))? {
            Some(_) => {
                self.publish(vec![Arc::new(Block::open(&target)?)], &[]);
                true
            }
            None => false,
        })
    }

    fn write_checkpoint(
        &self,
        last_segment: u64,
        snapshot: Vec<crate::tsdb::head::SnapshotSeries>,
    ) -> Result<(), TsdbError> {
        let mut records: Vec<Vec<u8>> = Vec::with_capacity(snapshot.len() * 2);
        for s in &snapshot {
            let mut rec = Vec::new();
            wal::encode_series(&mut rec, std::iter::once((s.ref_id, &s.labels)));
            records.push(rec);
            for (count, bytes) in &s.chunks {
                let mut rec = Vec::new();
                wal::encode_chunk(&mut rec, s.ref_id, *count, bytes);
                records.push(rec);
            }
        }
        drop(snapshot);
        wal::write_checkpoint(&self.dir.join("wal"), last_segment, records.iter().map(Vec::as_slice))
            .map_err(io("writing a WAL checkpoint"))
    }

    /// Adds `new` blocks and drops `old` ones from the list queries read.
    fn publish(&self, new: Vec<Arc<Block>>, old: &[String]) {
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        blocks.retain(|b| !old.contains(&b.meta().id));
        blocks.extend(new);
        blocks.sort_by(|a, b| (a.meta().min_time, &a.meta().id).cmp(&(b.meta().min_time, &b.meta().id)));
    }

    /// Merges blocks until no plan is left; returns how many merged blocks were written.
    fn compact(&self) -> Result<usize, TsdbError> {
        let mut written = 0;
        while let Some(group) = self.plan_compaction() {
            self.merge(&group)?;
            written += 1;
        }
        Ok(written)
    }

    /// The next blocks to merge: overlapping ones first, then a finished aligned window.
    fn plan_compaction(&self) -> Option<Vec<Arc<Block>>> {
        let blocks = self.blocks_snapshot();
        // Overlaps: blocks are sorted by min time, so a block overlapping an earlier one
        // starts before the furthest end seen so far.
        let mut group: Vec<Arc<Block>> = Vec::new();
        let mut end = i64::MIN;
        for b in &blocks {
            let m = b.meta();
            if !group.is_empty() && m.min_time <= end {
                group.push(b.clone());
                end = end.max(m.max_time);
            } else if group.len() >= 2 {
                return Some(group);
            } else {
                group = vec![b.clone()];
                end = m.max_time;
            }
        }
        if group.len() >= 2 {
            return Some(group);
        }
        let horizon = match self.head.time_range() {
            Some((min, _)) => min,
            None => blocks.iter().map(|b| b.meta().max_time).max()?.saturating_add(1),
        };
        let mut r = self.opts.block_range_ms.saturating_mul(3);
        while r <= self.opts.max_block_range_ms {
            let mut windows: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in &blocks {
                let m = b.meta();
                let w = m.min_time.div_euclid(r);
                if m.max_time.div_euclid(r) == w && (w + 1).saturating_mul(r) <= horizon {
                    windows.entry(w).or_default().push(b.clone());
                }
            }
            if let Some((_, g)) = windows.into_iter().find(|(_, g)| g.len() >= 2) {
                return Some(g);
            }
            r = r.saturating_mul(3);
        }
        None
    }

    /// Writes one block holding `group`'s data, publishes it and deletes the sources.
    fn merge(&self, group: &[Arc<Block>]) -> Result<(), TsdbError> {
        let level = group.iter().map(|b| b.meta().level).max().unwrap_or(1) + 1;
        let mut sources: Vec<String> = group.iter().flat_map(|b| b.meta().sources.iter().cloned()).collect();
        sources.sort();
        sources.dedup();
        // Every series once, with where it is in each block (block order: oldest first).
        let mut series: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (bi, b) in group.iter().enumerate() {
            for id in 0..b.series_count() as u32 {
                series.entry(b.labels(id)).or_default().push((bi, id));
            }
        }
        let mut w = BlockWriter::new(&self.dir.join("blocks"), level, sources).map_err(io("creating a block"))?;
        for (labels, at) in &series {
            let mut samples = Vec::new();
            for (bi, id) in at {
                samples.extend(group[*bi].samples(*id, i64::MIN, i64::MAX)?);
            }
            if at.len() > 1 {
                dedup_by_time(&mut samples);
            }
            w.add_series(labels, &encode_chunks(&samples)).map_err(io("writing a block"))?;
        }
        let target = w.target().to_owned();
        let old: Vec<String> = group.iter().map(|b| b.meta().id.clone()).collect();
        let new = match w.finish().map_err(io("finishing a block"))? {
            Some(_) => vec![Arc::new(Block::open(&target)?)],
            None => Vec::new(),
        };
        self.publish(new, &old);
        for b in group {
            delete_block_dir(b.dir()).map_err(io(format!("removing {}", b.dir().display())))?;
        }
        Ok(())
    }

    /// Deletes whole blocks past the time or size retention, oldest first.
    fn apply_retention(&self, now_ms: i64) -> Result<usize, TsdbError> {
        let blocks = self.blocks_snapshot();
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        if self.opts.retention_ms > 0 {
            let cutoff = now_ms.saturating_sub(self.opts.retention_ms);
            doomed.extend(blocks.iter().filter(|b| b.meta().max_time < cutoff).cloned());
        }
        if self.opts.retention_bytes > 0 {
            let mut total: u64 =
                blocks.iter().map(|b| b.disk_bytes()).sum::<u64>() + wal::disk_bytes(&self.dir.join("wal"));
            total -= doomed.iter().map(|b| b.disk_bytes()).sum::<u64>();
            for b in &blocks {
                if total <= self.opts.retention_bytes {
                    break;
                }
                if !doomed.iter().any(|d| Arc::ptr_eq(d, b)) {
                    total -= b.disk_bytes();
                    doomed.push(b.clone());
                }
            }
        }
        let ids: Vec<String> = doomed.iter().map(|b| b.meta().id.clone()).collect();
        self.publish(Vec::new(), &ids);
        for b in &doomed {
            delete_block_dir(b.dir()).map_err(io(format!("removing {}", b.dir().display())))?;
        }
        Ok(doomed.len())
    }
}
