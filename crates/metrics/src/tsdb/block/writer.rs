//! Writing a block: series arrive in label order with their chunks; chunks stream to the
//! `chunks` file, the index is built in memory and written by [`BlockWriter::finish`], which
//! then renames the temporary directory into place.

use super::{BlockMeta, CHUNKS_MAGIC, ChunkRef, INDEX_MAGIC, META_FILE};
use crate::storage::Labels;
use crate::tsdb::chunk::Chunk;
use crate::tsdb::encoding::{put_str, put_uvarint, put_varint};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A unique block id that sorts by creation time.
fn new_block_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:032x}{:04x}", NEXT_ID.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

/// Writes one block.
pub struct BlockWriter {
    tmp: PathBuf,
    target: PathBuf,
    id: String,
    chunks: BufWriter<File>,
    offset: u64,
    series: Vec<(Labels, Vec<ChunkRef>)>,
    min_time: i64,
    max_time: i64,
    samples: u64,
    level: u32,
    sources: Vec<String>,
}

impl BlockWriter {
    /// Starts a block under `blocks_dir` at compaction `level`; `sources` are the level-1
    /// blocks it replaces (empty for a block cut from the head: it is its own source).
    pub fn new(blocks_dir: &Path, level: u32, sources: Vec<String>) -> std::io::Result<BlockWriter> {
        let id = new_block_id();
        let tmp = blocks_dir.join(format!("{id}.tmp"));
        std::fs::create_dir_all(&tmp)?;
        let mut chunks = BufWriter::with_capacity(1 << 20, File::create(tmp.join("chunks"))?);
        chunks.write_all(CHUNKS_MAGIC)?;
        let sources = if sources.is_empty() { vec![id.clone()] } else { sources };
        Ok(BlockWriter {
            target: blocks_dir.join(&id),
            tmp,
            id,
            chunks,
            offset: CHUNKS_MAGIC.len() as u64,
            series: Vec::new(),
            min_time: i64::MAX,
            max_time: i64::MIN,
            samples: 0,
            level,
            sources,
        })
    }

    /// Adds a series; labels must sort after the previous series'. Empty chunks are skipped,
    /// and a series without samples is left out.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[Chunk]) -> std::io::Result<()> {
        if self.series.last().is_some_and(|(prev, _)| prev >= labels) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "block series out of label order"));
        }
        let mut refs = Vec::with_capacity(chunks.len());
        for c in chunks {
            let Some((min_time, max_time)) = c.time_range() else { continue };
            let bytes = c.bytes();
            self.chunks.write_all(bytes)?;
            self.chunks.write_all(&crc32fast::hash(bytes).to_le_bytes())?;
            refs.push(ChunkRef {
                min_time,
                max_time,
                count: c.len() as u16,
                offset: self.offset,
                len: bytes.len() as u32,
            });
            self.offset += bytes.len() as u64 + 4;
            self.min_time = self.min_time.min(min_time);
            self.max_time = self.max_time.max(max_time);
            self.samples += c.len() as u64;
        }
        if !refs.is_empty() {
            self.series.push((labels.clone(), refs));
        }
        Ok(())
    }

    /// Writes the index and meta, syncs, and moves the block into place; `None` (and nothing
    /// on disk) when no series had samples.
    pub fn finish(mut self) -> std::io::Result<Option<BlockMeta>> {
        if self.series.is_empty() {
            drop(self.chunks);
            std::fs::remove_dir_all(&self.tmp)?;
            return Ok(None);
        }
        self.chunks.flush()?;
        self.chunks.get_ref().sync_all()?;
        let symbols: BTreeSet<&str> =
            self.series.iter().flat_map(|(l, _)| l.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()])).collect();
        let sym_id: BTreeMap<&str, u64> = symbols.iter().enumerate().map(|(i, s)| (*s, i as u64)).collect();
        let mut index = Vec::with_capacity(1 << 16);
        index.extend_from_slice(INDEX_MAGIC);
        put_uvarint(&mut index, symbols.len() as u64);
        for s in &symbols {
            put_str(&mut index, s);
        }
        put_uvarint(&mut index, self.series.len() as u64);
        let mut postings: BTreeMap<(u64, u64), Vec<u32>> = BTreeMap::new();
        let mut chunk_count = 0u64;
        for (id, (labels, refs)) in self.series.iter().enumerate() {
            put_uvarint(&mut index, labels.len() as u64);
            for (k, v) in labels {
                let pair = (sym_id[k.as_str()], sym_id[v.as_str()]);
                put_uvarint(&mut index, pair.0);
                put_uvarint(&mut index, pair.1);
                postings.entry(pair).or_default().push(id as u32);
            }
            put_uvarint(&mut index, refs.len() as u64);
            for c in refs {
                put_varint(&mut index, c.min_time);
                put_varint(&mut index, c.max_time);
                put_uvarint(&mut index, u64::from(c.count));
                put_uvarint(&mut index, c.offset);
                put_uvarint(&mut index, u64::from(c.len));
            }
            chunk_count += refs.len() as u64;
        }
        put_uvarint(&mut index, postings.len() as u64);
        for ((name, value), ids) in &postings {
            put_uvarint(&mut index, *name);
            put_uvarint(&mut index, *value);
            put_uvarint(&mut index, ids.len() as u64);
            let mut prev = 0u32;
            for (i, id) in ids.iter().enumerate() {
                put_uvarint(&mut index, u64::from(if i == 0 { *id } else { id - prev }));
                prev = *id;
            }
        }
        let crc = crc32fast::hash(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        write_synced(&self.tmp.join("index"), &index)?;
        let meta = BlockMeta {
            id: self.id.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            series: self.series.len() as u64,
            samples: self.samples,
            chunks: chunk_count,
            level: self.level,
            sources: std::mem::take(&mut self.sources),
            index_crc32: crc,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
        write_synced(&self.tmp.join(META_FILE), &json)?;
        File::open(&self.tmp)?.sync_all()?;
        std::fs::rename(&self.tmp, &self.target)?;
        if let Some(parent) = self.target.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(Some(meta))
    }

    /// Where the block will be once finished.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
