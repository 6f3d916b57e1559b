//! Block framing: how a sealed block of any schema sits in a file. The schema hands over
//! its header parts (metadata, filters: opaque bytes) and its columns; the container
//! compresses each column into its own zstd frame, checksums everything, and reads columns
//! back one at a time with `pread`, through the decompressed-column cache
//! ([`super::cache`]).
//!
//! ```text
//! magic       8 bytes, the schema's (it names the schema and the format version)
//! u32         header length, then the header:
//!   varint    parts, then per part: varint length, bytes
//!   varint    columns, then per column: varint compressed length, varint raw length,
//!             u32 crc32 of the compressed frame
//! u32         crc32 of the header
//! frames      the columns' zstd frames, in order (an empty column has an empty frame)
//! ```
//!
//! The header is read without the columns; a column's checksum is checked when it is read,
//! its raw length bounds the decompression, so a damaged file is an error, never a panic or
//! an unbounded allocation.

use super::cache;
use super::encoding::{Corrupt, Reader, put_varint};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The zstd level of every column (3: the figures in docs/benchmarks.md were taken at it).
const ZSTD_LEVEL: i32 = 3;
/// The largest column, compressed or not.
const MAX_COLUMN: usize = 1 << 30;
/// The longest header (metadata and filters): bounds what opening a block reads.
const MAX_HEADER: usize = 64 << 20;

/// Where one column's frame is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnEntry {
    /// From the first frame.
    pub offset: usize,
    pub compressed: usize,
    pub raw: usize,
    crc: u32,
}

/// A block file's framing: its header parts and column directory, read without the columns.
#[derive(Clone, Debug)]
pub struct Framed {
    /// Unique within the process: the column cache's key.
    pub id: u64,
    pub path: PathBuf,
    pub columns: Vec<ColumnEntry>,
    /// Where the first frame starts in the file.
    data_start: usize,
    pub file_bytes: u64,
}

static NEXT_BLOCK_ID: AtomicU64 = AtomicU64::new(1);

/// The bytes of a block file: `parts` in the header, each of `columns` compressed. Returns
/// them and the columns' total raw size.
pub fn encode(magic: &[u8; 8], parts: &[&[u8]], columns: &[Vec<u8>]) -> std::io::Result<(Vec<u8>, u64)> {
    // One compressor for every column: a paged block has hundreds of small columns, and a
    // context per column would be set up (and its tables allocated) for each.
    let mut z = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    let mut frames = Vec::with_capacity(columns.len());
    for c in columns {
        frames.push(if c.is_empty() { Vec::new() } else { z.compress(c)? });
    }
    let mut header = Vec::with_capacity(64 + parts.iter().map(|p| p.len() + 5).sum::<usize>());
    put_varint(&mut header, parts.len() as u64);
    for p in parts {
        put_varint(&mut header, p.len() as u64);
        header.extend_from_slice(p);
    }
    put_varint(&mut header, columns.len() as u64);
    for (raw, z) in columns.iter().zip(&frames) {
        put_varint(&mut header, z.len() as u64);
        put_varint(&mut header, raw.len() as u64);
        header.extend_from_slice(&crc32fast::hash(z).to_le_bytes());
    }
    let mut out = Vec::with_capacity(16 + header.len() + frames.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
    for z in &frames {
        out.extend_from_slice(z);
    }
    Ok((out, columns.iter().map(|c| c.len() as u64).sum()))
}

/// Writes a block file so a crash never leaves half of one under its name: a temporary
/// `<name>.tmp` beside it, synced, renamed, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Framed {
    /// Reads the framing of the block file at `path`, which must begin with `magic`, and
    /// the schema's header parts (in the order they were written).
    pub fn open(path: &Path, magic: &[u8; 8]) -> Result<(Framed, Vec<Vec<u8>>), Corrupt> {
        let f = std::fs::File::open(path).map_err(|_| Corrupt)?;
        let size = f.metadata().map_err(|_| Corrupt)?.len() as usize;
        // Read the start of the file, and more when the header is longer.
        let mut want = 4096.min(size);
        loop {
            let mut bytes = vec![0u8; want];
            f.read_exact_at(&mut bytes, 0).map_err(|_| Corrupt)?;
            match Self::parse(path, &bytes, size, magic) {
                Ok(h) => return Ok(h),
                Err(Some(need)) if need <= size.min(MAX_HEADER) && need > want => want = need,
                Err(_) => return Err(Corrupt),
            }
        }
    }

    /// Parses the framing from the first bytes of a file of `size` bytes; `Err(Some(n))`
    /// asks for the first `n` bytes.
    fn parse(path: &Path, bytes: &[u8], size: usize, magic: &[u8; 8]) -> Result<(Framed, Vec<Vec<u8>>), Option<usize>> {
        if bytes.len() < 12 || &bytes[..8] != magic {
            return Err(None);
        }
        let hlen = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| None)?) as usize;
        let end = 12usize.checked_add(hlen).and_then(|e| e.checked_add(4)).ok_or(None)?;
        if end > size {
            return Err(None);
        }
        let Some(header) = bytes.get(12..12 + hlen) else { return Err(Some(end)) };
        let Some(crc) = bytes.get(12 + hlen..end) else { return Err(Some(end)) };
        if crc32fast::hash(header).to_le_bytes() != crc {
            return Err(None);
        }
        let mut r = Reader::new(header);
        let n = r.length().map_err(|_| None)?;
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.length().map_err(|_| None)?;
            parts.push(r.bytes(len).map_err(|_| None)?.to_vec());
        }
        let n = r.length().map_err(|_| None)?;
        let mut columns = Vec::with_capacity(n);
        let mut offset = 0usize;
        for _ in 0..n {
            let compressed = r.varint().map_err(|_| None)? as usize;
            let raw = r.varint().map_err(|_| None)? as usize;
            let crc = u32::from_le_bytes(r.bytes(4).map_err(|_| None)?.try_into().map_err(|_| None)?);
            if compressed > MAX_COLUMN || raw > MAX_COLUMN {
                return Err(None);
            }
            columns.push(ColumnEntry { offset, compressed, raw, crc });
            offset += compressed;
        }
        if end + offset > size {
            return Err(None);
        }
        let id = NEXT_BLOCK_ID.fetch_add(1, Ordering::Relaxed);
        Ok((Framed { id, path: path.to_owned(), columns, data_start: end, file_bytes: size as u64 }, parts))
    }

    /// Opens the file for reading columns.
    pub fn reader(&self) -> Result<OpenBlock, Corrupt> {
        Ok(OpenBlock { framed: self.clone(), file: std::fs::File::open(&self.path).map_err(|_| Corrupt)? })
    }
}

/// An open block file whose columns are read and decompressed on demand.
pub struct OpenBlock {
    framed: Framed,
    file: std::fs::File,
}

impl OpenBlock {
    /// Column `c`, decompressed (from the cache when a query read it lately).
    pub fn column(&self, c: usize) -> Result<Arc<Vec<u8>>, Corrupt> {
        read_column(&self.framed, &self.file, c)
    }

    /// (compressed, raw) bytes of each column.
    pub fn sizes(&self) -> Vec<(usize, usize)> {
        self.framed.columns.iter().map(|e| (e.compressed, e.raw)).collect()
    }
}

fn read_column(framed: &Framed, file: &std::fs::File, c: usize) -> Result<Arc<Vec<u8>>, Corrupt> {
    let key = (framed.id, c as u32);
    if let Some(v) = cache::get(key) {
        return Ok(v);
    }
    let e = *framed.columns.get(c).ok_or(Corrupt)?;
    if e.raw == 0 {
        return if e.compressed == 0 { Ok(Arc::new(Vec::new())) } else { Err(Corrupt) };
    }
    let mut data = vec![0u8; e.compressed];
    file.read_exact_at(&mut data, (framed.data_start + e.offset) as u64).map_err(|_| Corrupt)?;
    if crc32fast::hash(&data) != e.crc {
        return Err(Corrupt);
    }
    // The directory's raw size bounds the allocation: a damaged block cannot ask for more.
    if zstd::zstd_safe::get_frame_content_size(&data).ok().flatten() != Some(e.raw as u64) {
        return Err(Corrupt);
    }
    let v = Arc::new(zstd::bulk::decompress(&data, e.raw).map_err(|_| Corrupt)?);
    if v.len() != e.raw {
        return Err(Corrupt);
    }
    cache::put(key, v.clone());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_damage_anywhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.blk");
        let cols =
            vec![b"hello hello hello".to_vec(), Vec::new(), (0..5000u32).flat_map(|i| i.to_le_bytes()).collect()];
        let (bytes, raw) = encode(b"TESTBLK1", &[b"meta", b""], &cols).unwrap();
        assert_eq!(raw, 17 + 20_000);
        write_atomic(&path, &bytes).unwrap();
        assert!(!path.with_extension("tmp").exists());
        let (f, parts) = Framed::open(&path, b"TESTBLK1").unwrap();
        assert_eq!(parts, vec![b"meta".to_vec(), Vec::new()]);
        let r = f.reader().unwrap();
        for (i, c) in cols.iter().enumerate() {
            assert_eq!(*r.column(i).unwrap(), *c);
        }
        assert!(r.column(3).is_err());
        assert!(Framed::open(&path, b"OTHERBLK").is_err(), "another schema's magic");
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let p = dir.path().join("bad.blk");
            std::fs::write(&p, &bad).unwrap();
            if let Ok((f, _)) = Framed::open(&p, b"TESTBLK1") {
                // Damage in a frame: the header reads, that column is refused.
                let r = f.reader().unwrap();
                let read: Vec<_> = (0..3).map(|i| r.column(i)).collect();
                assert!(read.iter().any(|c| c.is_err()), "a flipped bit at {at} went unseen");
                assert!(read.iter().zip(&cols).all(|(got, want)| got.as_ref().map_or(true, |g| **g == *want)));
            }
        }
        for cut in 0..bytes.len() {
            let p = dir.path().join("cut.blk");
            std::fs::write(&p, &bytes[..cut]).unwrap();
            if let Ok((f, _)) = Framed::open(&p, b"TESTBLK1") {
                assert!(f.reader().unwrap().column(2).is_err(), "cut at {cut}");
            }
        }
    }
}
