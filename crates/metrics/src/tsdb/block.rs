//! Persisted blocks: immutable directories holding every series' samples in one time range,
//! as Prometheus's blocks do.
//!
//! A block directory `<blocks>/<id>/` holds:
//! - `chunks`: the magic `SBXCHK1\n`, then each chunk's encoded bytes ([`super::chunk`]'s
//!   Gorilla encoding) followed by their CRC-32.
//! - `index`: the magic `SBXIDX1\n`; the symbol table (every label string once, sorted);
//!   the series, sorted by labels, each as label pairs of symbol ids and its chunk refs
//!   (first and last time, sample count, offset and length in `chunks`); the postings (per
//!   `name=value` pair, the ascending series ids, delta-encoded); and a CRC-32 of it all.
//! - `meta.json`: id, time range, series/samples/chunks counts, compaction level and source
//!   blocks, and the index checksum.
//!
//! [`BlockWriter`] writes into `<id>.tmp/`, syncs, and renames the directory into place, so
//! a block is either whole or absent. [`Block::open`] verifies the index checksum and holds
//! the index in memory; chunks are read on demand with positioned reads and checked
//! against their CRC.

mod writer;

pub use writer::BlockWriter;

use super::encoding::Reader;
use super::postings::{PostingsIndex, select_ids};
use crate::storage::{Labels, Matcher, Queryable, Series, StorageError};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const CHUNKS_MAGIC: &[u8; 8] = b"SBXCHK1\n";
const INDEX_MAGIC: &[u8; 8] = b"SBXIDX1\n";
pub const META_FILE: &str = "meta.json";

/// What `meta.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockMeta {
    pub id: String,
    /// Oldest and newest sample time (ms, inclusive).
    pub min_time: i64,
    pub max_time: i64,
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
    /// 1 for a block cut from the head; a compacted block is one more than its sources'.
    pub level: u32,
    /// The level-1 blocks whose data this block holds.
    pub sources: Vec<String>,
    pub index_crc32: u32,
}

/// Where one chunk of a series is in `chunks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub min_time: i64,
    pub max_time: i64,
    pub count: u16,
    pub offset: u64,
    pub len: u32,
}

struct BlockSeries {
    labels: Box<[(u32, u32)]>,
    chunks: Box<[ChunkRef]>,
}

/// An open block: the index in memory, chunks read from disk on demand.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    symbols: Vec<Box<str>>,
    series: Vec<BlockSeries>,
    /// Label name symbol → (value symbol, series ids), values ascending.
    postings: Postings,
    chunks: File,
    disk_bytes: u64,
}

fn corrupt(path: &Path, message: impl Into<String>) -> StorageError {
    StorageError::Corrupt { path: path.display().to_string(), message: message.into() }
}

impl Block {
    /// Opens the block in `dir`, reading and verifying its meta and index.
    pub fn open(dir: &Path) -> Result<Block, StorageError> {
        let meta_path = dir.join(META_FILE);
        let meta: BlockMeta = serde_json::from_slice(&std::fs::read(&meta_path)?)
            .map_err(|e| corrupt(&meta_path, format!("meta.json: {e}")))?;
        let index_path = dir.join("index");
        let index = std::fs::read(&index_path)?;
        if index.len() < INDEX_MAGIC.len() + 4 || &index[..8] != INDEX_MAGIC {
            return Err(corrupt(&index_path, "not a block index"));
        }
        let (body, crc) = index.split_at(index.len() - 4);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != crc || crc != meta.index_crc32 {
            return Err(corrupt(&index_path, "index checksum mismatch"));
        }
        let (symbols, series, postings) =
            parse_index(&body[8..]).ok_or_else(|| corrupt(&index_path, "malformed index"))?;
        let chunks_path = dir.join("chunks");
        let chunks = File::open(&chunks_path)?;
        let mut magic = [0u8; 8];
        chunks.read_exact_at(&mut magic, 0).map_err(|_| corrupt(&chunks_path, "truncated chunks file"))?;
        if &magic != CHUNKS_MAGIC {
            return Err(corrupt(&chunks_path, "not a chunks file"));
        }
        let chunks_len = chunks.metadata()?.len();
        let in_file = |c: &ChunkRef| {
            c.offset >= CHUNKS_MAGIC.len() as u64
                && c.offset.checked_add(u64::from(c.len) + 4).is_some_and(|end| end <= chunks_len)
        };
        if !series.iter().all(|s| s.chunks.iter().all(in_file)) {
            return Err(corrupt(&index_path, "a chunk ref points outside the chunks file"));
        }
        let disk_bytes = chunks_len + index.len() as u64 + std::fs::metadata(&meta_path)?.len();
        Ok(Block { dir: dir.to_owned(), meta, symbols, series, postings, chunks, disk_bytes })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of its files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Whether `[mint, maxt]` overlaps the block's time range.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time >= mint
    }

    fn sym(&self, id: u32) -> &str {
        self.symbols.get(id as usize).map(|s| &**s).unwrap_or("")
    }

    fn sym_id(&self, s: &str) -> Option<u32> {
        self.symbols.binary_search_by(|x| (**x).cmp(s)).ok().map(|i| i as u32)
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The labels of series `id` (ids follow label order).
    pub fn labels(&self, id: u32) -> Labels {
        self.series.get(id as usize).map_or_else(Vec::new, |s| {
            s.labels.iter().map(|(k, v)| (self.sym(*k).to_owned(), self.sym(*v).to_owned())).collect()
        })
    }

    /// Samples of series `id` in `[mint, maxt]`, in time order.
    pub fn samples(&self, id: u32, mint: i64, maxt: i64) -> Result<Vec<(i64, f64)>, StorageError> {
        let Some(s) = self.series.get(id as usize) else { return Ok(Vec::new()) };
        let wanted: Vec<&ChunkRef> = s.chunks.iter().filter(|c| c.min_time <= maxt && c.max_time >= mint).collect();
        // One read covering the wanted chunks (a series' chunks are contiguous); `open`
        // checked every ref lies inside the file.
        let Some(start) = wanted.iter().map(|c| c.offset).min() else { return Ok(Vec::new()) };
        let end = wanted.iter().map(|c| c.offset + u64::from(c.len) + 4).max().unwrap_or(start);
        let mut buf = vec![0u8; (end - start) as usize];
        let path = || self.dir.join("chunks");
        self.chunks.read_exact_at(&mut buf, start).map_err(|e| corrupt(&path(), format!("reading: {e}")))?;
        let mut out = Vec::new();
        for c in wanted {
            let at = (c.offset - start) as usize;
            let bytes = buf.get(at..at + c.len as usize + 4).ok_or_else(|| corrupt(&path(), "chunk out of range"))?;
            let (data, crc) = bytes.split_at(c.len as usize);
            if crc32fast::hash(data).to_le_bytes() != crc {
                return Err(corrupt(&path(), format!("chunk at {} fails its checksum", c.offset)));
            }
            out.extend(super::chunk::decode(data, c.count).filter(|(t, _)| *t >= mint && *t <= maxt));
        }
        if !out.is_sorted_by_key(|s| s.0) {
            out.sort_by_key(|s| s.0);
        }
        Ok(out)
    }

    /// The labels of the series matching every matcher with a chunk in `[mint, maxt]`
    /// (for the label APIs: no chunk is read).
    pub fn series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        if !self.overlaps(mint, maxt) {
            return Vec::new();
        }
        select_ids(self, matchers)
            .into_iter()
            .filter(|id| self.series[*id as usize].chunks.iter().any(|c| c.min_time <= maxt && c.max_time >= mint))
            .map(|id| self.labels(id))
            .collect()
    }

    /// Ids of the series matching every matcher, ascending (so in label order).
    pub fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        select_ids(self, matchers)
    }
}

impl PostingsIndex for Block {
    fn all_ids(&self) -> Vec<u32> {
        (0..self.series.len() as u32).collect()
    }

    fn postings(&self, name: &str, value: &str) -> Option<&[u32]> {
        let (n, v) = (self.sym_id(name)?, self.sym_id(value)?);
        let values = self.postings.get(&n)?;
        let i = values.binary_search_by_key(&v, |(v, _)| *v).ok()?;
        Some(&values[i].1)
    }

    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str, &[u32])) {
        let Some(values) = self.sym_id(name).and_then(|n| self.postings.get(&n)) else { return };
        for (v, ids) in values {
            f(self.sym(*v), ids);
        }
    }
}

impl Queryable for Block {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, StorageError> {
        let mut out = Vec::new();
        if !self.overlaps(mint, maxt) {
            return Ok(out);
        }
        for id in select_ids(self, matchers) {
            let samples = self.samples(id, mint, maxt)?;
            if !samples.is_empty() {
                out.push(Series { labels: self.labels(id), samples });
            }
        }
        Ok(out)
    }
}

/// Label name symbol → (value symbol, series ids), values ascending.
type Postings = HashMap<u32, Vec<(u32, Box<[u32]>)>>;
type ParsedIndex = (Vec<Box<str>>, Vec<BlockSeries>, Postings);

fn parse_index(bytes: &[u8]) -> Option<ParsedIndex> {
    let mut r = Reader::new(bytes);
    let n = r.count()?;
    let mut symbols = Vec::with_capacity(n);
    for _ in 0..n {
        symbols.push(Box::from(r.str()?));
    }
    let nsym = symbols.len() as u64;
    let sym = |r: &mut Reader| r.uvarint().filter(|s| *s < nsym).map(|s| s as u32);
    let n = r.count()?;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        let nl = r.count()?;
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            labels.push((sym(&mut r)?, sym(&mut r)?));
        }
        let nc = r.count()?;
        let mut chunks = Vec::with_capacity(nc);
        for _ in 0..nc {
            let min_time = r.varint()?;
            let max_time = r.varint()?;
            let count = u16::try_from(r.uvarint()?).ok()?;
            let offset = r.uvarint()?;
            let len = u32::try_from(r.uvarint()?).ok()?;
            chunks.push(ChunkRef { min_time, max_time, count, offset, len });
        }
        series.push(BlockSeries { labels: labels.into(), chunks: chunks.into() });
    }
    let n = r.count()?;
    let mut postings: Postings = HashMap::new();
    for _ in 0..n {
        let (name, value) = (sym(&mut r)?, sym(&mut r)?);
        let k = r.count()?;
        let mut ids = Vec::with_capacity(k);
        let mut prev = 0u64;
        for i in 0..k {
            let d = r.uvarint()?;
            prev = if i == 0 { d } else { prev.checked_add(d)? };
            if prev >= series.len() as u64 {
                return None;
            }
            ids.push(prev as u32);
        }
        postings.entry(name).or_default().push((value, ids.into()));
    }
    for values in postings.values_mut() {
        values.sort_by_key(|(v, _)| *v);
    }
    r.is_empty().then_some((symbols, series, postings))
}

#[cfg(test)]
mod tests;
