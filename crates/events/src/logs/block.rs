//! A sealed block of log records: an immutable file of pages, each page a set of
//! separately zstd-compressed columns with its own time range and bloom filter, so a search
//! decompresses only the columns it needs of the pages that may match.
//!
//! ```text
//! "SBXLOGB2"  magic
//! u32         header length, then the header:
//!   varint count, min_ts, max_ts, page count
//!   varint attribute column count, then each column's attribute key (length-prefixed)
//!   per page: varint count, min_ts, max_ts, then per column: raw length, compressed length
//!   varint length + bytes of the common bloom (keys found in at least half the pages)
//!   per page: varint length + bytes of the page's bloom (the other keys of the page)
//! u32         crc32 of the header
//! frames      zstd frames with a content checksum, page by page, columns in order
//! ```
//!
//! Columns of a page ([`col`]): `time` (delta varints, records sorted by time), `severity`
//! (a byte each), `severity_text`, `service` and `instance` (a dictionary, then a varint
//! index each), `ids` (flags, trace and span ids), `body` (length-prefixed), `rest`
//! (observed time as a zigzag delta, resource attributes, and the record's attribute list
//! where an attribute kept in a column is a reference to it), then one column per frequent
//! attribute key of the block (a dictionary of values, then per record a varint: 0 for
//! none, else the value's index + 1). A search reads `time` and what its filter names; an
//! aggregation reads `time` and its key's column; a whole record is decoded only for the
//! rows that are returned.
//!
//! The blooms hold the words of every body and `field=value` of every id, service,
//! instance and attribute value (lower-cased). A key in at least half the pages (the
//! frequent words) is kept once in the common bloom instead of in every page's.

use super::codec::{Damaged, Reader, put_attrs, put_str, put_value, put_varint};
use super::eval::words;
use crate::bloom::Bloom;
use signalbox_core::log::LogRecord;
use signalbox_core::span::AttrValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SBXLOGB2";
const ZSTD_LEVEL: i32 = 3;
/// Field values longer than this are not put in the bloom filter (they are not ids).
const MAX_BLOOM_VALUE: usize = 256;
/// Most attribute keys that get their own column in a block.
const MAX_ATTR_COLUMNS: usize = 32;
/// Longest header accepted (a bound on what a damaged length can make us allocate).
const MAX_HEADER: usize = 256 << 20;

/// The fixed columns of every page; attribute columns follow them.
pub mod col {
    pub const TIME: usize = 0;
    pub const SEVERITY: usize = 1;
    pub const SEVERITY_TEXT: usize = 2;
    pub const SERVICE: usize = 3;
    pub const INSTANCE: usize = 4;
    pub const IDS: usize = 5;
    pub const BODY: usize = 6;
    pub const REST: usize = 7;
    pub const FIXED: usize = 8;
}

/// Records per page for a block size: 4,096 at the default 65,536 (16 pages), so a needle
/// decompresses ~1/16 of a block; at least 16 so tiny test blocks still have pages.
pub fn page_records(block_records: usize) -> usize {
    (block_records / 16).clamp(16, 4096)
}

/// The bloom key of a field value: `field=value`, both lower-cased.
pub fn field_key(field: &str, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(field.len() + value.len() + 1);
    push_field_key(&mut k, field, value);
    k
}

fn push_field_key(k: &mut Vec<u8>, field: &str, value: &str) {
    k.clear();
    k.extend(field.bytes().map(|b| b.to_ascii_lowercase()));
    k.push(b'=');
    k.extend(value.bytes().map(|b| b.to_ascii_lowercase()));
}

/// An attribute value as the query language reads it.
pub fn value_text(v: &AttrValue) -> Cow<'_, str> {
    match v {
        AttrValue::Str(s) => Cow::Borrowed(s.as_str()),
        AttrValue::Int(i) => Cow::Owned(i.to_string()),
        AttrValue::Float(f) => Cow::Owned(f.to_string()),
        AttrValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
    }
}

/// The bloom keys a search needs: its required words and `field=value`s.
pub fn query_keys(words: &[String], values: &[(String, String)]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).chain(values.iter().map(|(f, v)| field_key(f, v))).collect()
}

/// Zigzag: small signed deltas as small unsigned varints.
fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A dictionary-encoded column under construction.
#[derive(Default)]
struct DictColumn {
    dict: HashMap<Vec<u8>, u64>,
    entries: Vec<u8>,
    rows: Vec<u8>,
}

impl DictColumn {
    /// Adds a row holding `encoded` (the value as its codec writes it), or none.
    fn push(&mut self, encoded: Option<&[u8]>, one_based: bool) {
        let Some(e) = encoded else {
            put_varint(&mut self.rows, 0);
            return;
        };
        let next = self.dict.len() as u64;
        let id = match self.dict.get(e) {
            Some(id) => *id,
            None => {
                self.entries.extend_from_slice(e);
                self.dict.insert(e.to_vec(), next);
                next
            }
        };
        put_varint(&mut self.rows, id + u64::from(one_based));
    }

    fn finish(self) -> Vec<u8> {
        let mut c = Vec::with_capacity(self.entries.len() + self.rows.len() + 8);
        put_varint(&mut c, self.dict.len() as u64);
        c.extend_from_slice(&self.entries);
        c.extend_from_slice(&self.rows);
        c
    }
}

/// The attribute keys of a block that get their own columns: those on at least 1/8 of the
/// records, most frequent first.
fn choose_attr_columns(records: &[&LogRecord]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in records {
        for (i, kv) in r.attributes.iter().enumerate() {
            // Only a key's first occurrence in a record can live in its column.
            if !r.attributes[..i].iter().any(|o| o.key == kv.key) {
                *counts.entry(&*kv.key).or_insert(0) += 1;
            }
        }
    }
    let mut keys: Vec<(&str, usize)> = counts.into_iter().filter(|(_, n)| n * 8 >= records.len()).collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.into_iter().take(MAX_ATTR_COLUMNS).map(|(k, _)| k.to_owned()).collect()
}

struct EncodedPage {
    count: usize,
    min_ts: u64,
    max_ts: u64,
    /// (raw length, frame).
    frames: Vec<(usize, Vec<u8>)>,
    keys: Vec<u64>,
}

fn encode_page(
    records: &[&LogRecord],
    attr_cols: &HashMap<&str, usize>,
    ncols: usize,
    z: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<EncodedPage> {
    let mut cols: Vec<Vec<u8>> = vec![Vec::new(); col::FIXED];
    let mut sev_text = DictColumn::default();
    let mut service = DictColumn::default();
    let mut instance = DictColumn::default();
    let mut attrs: Vec<DictColumn> = (0..ncols - col::FIXED).map(|_| DictColumn::default()).collect();
    let mut keys: Vec<u64> = Vec::new();
    let mut kbuf = Vec::new();
    let mut vbuf = Vec::new();
    let (mut prev_t, mut prev_obs) = (0u64, 0u64);
    let mut in_col: Vec<Option<usize>> = Vec::new();
    for r in records {
        put_varint(&mut cols[col::TIME], r.unix_nanos - prev_t);
        prev_t = r.unix_nanos;
        cols[col::SEVERITY].push(r.severity.0);
        for (c, v) in [(&mut sev_text, &r.severity_text), (&mut service, &r.service), (&mut instance, &r.instance)] {
            vbuf.clear();
            put_str(&mut vbuf, v);
            c.push(Some(&vbuf), false);
        }
        let flags = u8::from(r.trace_id.is_some()) | u8::from(r.span_id.is_some()) << 1;
        cols[col::IDS].push(flags);
        if let Some(t) = &r.trace_id {
            cols[col::IDS].extend_from_slice(&t.0);
            push_field_key(&mut kbuf, "trace_id", &t.to_hex());
            keys.push(crate::bloom::hash(&kbuf));
        }
        if let Some(s) = &r.span_id {
            cols[col::IDS].extend_from_slice(&s.0);
            push_field_key(&mut kbuf, "span_id", &s.to_hex());
            keys.push(crate::bloom::hash(&kbuf));
        }
        put_str(&mut cols[col::BODY], &r.body);
        for w in words(&r.body) {
            keys.push(crate::bloom::hash(w.as_bytes()));
        }
        put_varint(&mut cols[col::REST], zigzag(r.observed_unix_nanos.wrapping_sub(prev_obs) as i64));
        prev_obs = r.observed_unix_nanos;
        put_attrs(&mut cols[col::REST], &r.resource);
        // The attribute list: a reference to a column (its index + 1) or 0 and the pair.
        in_col.clear();
        in_col.resize(ncols - col::FIXED, None);
        put_varint(&mut cols[col::REST], r.attributes.len() as u64);
        for (i, kv) in r.attributes.iter().enumerate() {
            match attr_cols.get(&*kv.key) {
                Some(&c) if in_col[c].is_none() => {
                    in_col[c] = Some(i);
                    put_varint(&mut cols[col::REST], c as u64 + 1);
                }
                _ => {
                    put_varint(&mut cols[col::REST], 0);
                    put_str(&mut cols[col::REST], &kv.key);
                    put_value(&mut cols[col::REST], &kv.value);
                }
            }
        }
        for (c, at) in attrs.iter_mut().zip(&in_col) {
            match at {
                Some(i) => {
                    vbuf.clear();
                    put_value(&mut vbuf, &r.attributes[*i].value);
                    c.push(Some(&vbuf), true);
                }
                None => c.push(None, true),
            }
        }
        for kv in r.attributes.iter().chain(r.resource.iter()) {
            let v = value_text(&kv.value);
            if v.len() <= MAX_BLOOM_VALUE {
                push_field_key(&mut kbuf, &kv.key, &v);
                keys.push(crate::bloom::hash(&kbuf));
            }
        }
        // Dedup as we go so a page of repetitive lines keeps a small key list.
        if keys.len() > 1 << 20 {
            keys.sort_unstable();
            keys.dedup();
        }
    }
    for (field, d) in [("service", &service), ("instance", &instance)] {
        let mut r = Reader::new(&d.entries);
        while let Ok(v) = r.str_ref() {
            push_field_key(&mut kbuf, field, v);
            keys.push(crate::bloom::hash(&kbuf));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    cols[col::SEVERITY_TEXT] = sev_text.finish();
    cols[col::SERVICE] = service.finish();
    cols[col::INSTANCE] = instance.finish();
    cols.extend(attrs.into_iter().map(DictColumn::finish));
    let frames = cols
        .into_iter()
        .map(|c| if c.is_empty() { Ok((0, Vec::new())) } else { z.compress(&c).map(|f| (c.len(), f)) })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(EncodedPage {
        count: records.len(),
        min_ts: records.first().map_or(0, |r| r.unix_nanos),
        max_ts: records.last().map_or(0, |r| r.unix_nanos),
        frames,
        keys,
    })
}

/// Encodes `records` as a block file's bytes, in time order, `page_records` a page.
pub fn encode(records: &[LogRecord], page_records: usize) -> std::io::Result<Vec<u8>> {
    let mut records: Vec<&LogRecord> = records.iter().collect();
    records.sort_by_key(|r| r.unix_nanos);
    let attr_keys = choose_attr_columns(&records);
    let attr_cols: HashMap<&str, usize> = attr_keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let ncols = col::FIXED + attr_keys.len();
    let mut z = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    let pages = records
        .chunks(page_records.max(1))
        .map(|p| encode_page(p, &attr_cols, ncols, &mut z))
        .collect::<std::io::Result<Vec<_>>>()?;
    // Keys in at least half the pages go to the common bloom, once.
    let mut all: Vec<u64> = pages.iter().flat_map(|p| p.keys.iter().copied()).collect();
    all.sort_unstable();
    let mut common: Vec<u64> = Vec::new();
    if pages.len() >= 2 {
        for run in all.chunk_by(|a, b| a == b) {
            if run.len() * 2 >= pages.len() {
                common.push(run[0]);
            }
        }
    }
    let bloom_of = |keys: &mut dyn Iterator<Item = u64>, n: usize| {
        let mut b = Bloom::with_capacity(n);
        keys.for_each(|h| b.insert_hash(h));
        b.to_bytes()
    };
    let mut header = Vec::new();
    put_varint(&mut header, records.len() as u64);
    put_varint(&mut header, records.first().map_or(0, |r| r.unix_nanos));
    put_varint(&mut header, records.last().map_or(0, |r| r.unix_nanos));
    put_varint(&mut header, pages.len() as u64);
    put_varint(&mut header, attr_keys.len() as u64);
    for k in &attr_keys {
        put_str(&mut header, k);
    }
    for p in &pages {
        put_varint(&mut header, p.count as u64);
        put_varint(&mut header, p.min_ts);
        put_varint(&mut header, p.max_ts);
        for (raw, f) in &p.frames {
            put_varint(&mut header, *raw as u64);
            put_varint(&mut header, f.len() as u64);
        }
    }
    // A false "maybe" of the common bloom lets every page of the block through (measured:
    // a rare word read 16 pages instead of 1), so it gets 4× the bits (~4 in a million
    // false positives at 38 bits a key); it holds few keys, ~20 KB a block.
    let cb = bloom_of(&mut common.iter().copied(), common.len() * 4);
    put_varint(&mut header, cb.len() as u64);
    header.extend_from_slice(&cb);
    for p in &pages {
        let own: Vec<u64> = p.keys.iter().copied().filter(|h| common.binary_search(h).is_err()).collect();
        let b = bloom_of(&mut own.iter().copied(), own.len());
        put_varint(&mut header, b.len() as u64);
        header.extend_from_slice(&b);
    }
    let frames_len: usize = pages.iter().flat_map(|p| p.frames.iter().map(|f| f.1.len())).sum();
    let mut out = Vec::with_capacity(16 + header.len() + frames_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
    for p in &pages {
        for (_, f) in &p.frames {
            out.extend_from_slice(f);
        }
    }
    Ok(out)
}

/// Where one column of one page lies in the file.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub offset: u64,
    pub raw: usize,
    pub len: usize,
}

/// A page's metadata: record count, time range, bloom and frames.
pub struct PageMeta {
    pub count: usize,
    pub min_ts: u64,
    pub max_ts: u64,
    bloom: Bloom,
    pub frames: Vec<Frame>,
}

impl PageMeta {
    /// Compressed bytes of all the page's columns.
    pub fn bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.len as u64).sum()
    }
}

/// A block's header read back: metadata and blooms. The columns stay on disk until a page
/// asks for them.
pub struct Block {
    pub path: PathBuf,
    pub count: usize,
    pub min_ts: u64,
    pub max_ts: u64,
    pub bytes_on_disk: u64,
    /// Keys of the attribute columns, in column order (column `col::FIXED + i`).
    pub attr_columns: Vec<String>,
    pub pages: Vec<PageMeta>,
    common: Bloom,
}

impl Block {
    /// Reads and checks a block file's header.
    pub fn read(path: &Path) -> Result<Block, Damaged> {
        let f = std::fs::File::open(path).map_err(|_| Damaged)?;
        let len = f.metadata().map_err(|_| Damaged)?.len();
        let mut head = [0u8; 12];
        f.read_exact_at(&mut head, 0).map_err(|_| Damaged)?;
        if &head[..8] != MAGIC {
            return Err(Damaged);
        }
        let hlen = u32::from_le_bytes(head[8..12].try_into().map_err(|_| Damaged)?) as usize;
        if hlen > MAX_HEADER || (12 + hlen + 4) as u64 > len {
            return Err(Damaged);
        }
        let mut buf = vec![0u8; 12 + hlen + 4];
        f.read_exact_at(&mut buf, 0).map_err(|_| Damaged)?;
        Self::parse(&buf, len, path)
    }

    /// Parses a header from the start of a block file of `file_len` bytes.
    pub fn parse(b: &[u8], file_len: u64, path: &Path) -> Result<Block, Damaged> {
        if b.len() < 16 || &b[..8] != MAGIC {
            return Err(Damaged);
        }
        let hlen = u32::from_le_bytes(b[8..12].try_into().map_err(|_| Damaged)?) as usize;
        let header = b.get(12..12 + hlen).ok_or(Damaged)?;
        let hcrc = b.get(12 + hlen..16 + hlen).ok_or(Damaged)?;
        if crc32fast::hash(header).to_le_bytes() != hcrc {
            return Err(Damaged);
        }
        let mut h = Reader::new(header);
        let count = h.varint()? as usize;
        let (min_ts, max_ts) = (h.varint()?, h.varint()?);
        let npages = h.varint()? as usize;
        let nattr = h.varint()? as usize;
        if npages > hlen || nattr > MAX_ATTR_COLUMNS {
            return Err(Damaged);
        }
        let attr_columns = (0..nattr).map(|_| h.str()).collect::<Result<Vec<_>, _>>()?;
        let ncols = col::FIXED + nattr;
        let mut offset = (16 + hlen) as u64;
        let mut pages = Vec::with_capacity(npages);
        for _ in 0..npages {
            let (pc, pmin, pmax) = (h.varint()? as usize, h.varint()?, h.varint()?);
            let mut frames = Vec::with_capacity(ncols);
            for _ in 0..ncols {
                let (raw, len) = (h.varint()? as usize, h.varint()? as usize);
                frames.push(Frame { offset, raw, len });
                offset = offset.checked_add(len as u64).ok_or(Damaged)?;
            }
            pages.push(PageMeta { count: pc, min_ts: pmin, max_ts: pmax, bloom: Bloom::with_capacity(0), frames });
        }
        if offset != file_len || pages.iter().map(|p| p.count).sum::<usize>() != count {
            return Err(Damaged);
        }
        let bloom = |h: &mut Reader<'_>| -> Result<Bloom, Damaged> {
            let n = h.varint()? as usize;
            Bloom::from_bytes(h.bytes(n)?).ok_or(Damaged)
        };
        let common = bloom(&mut h)?;
        for p in &mut pages {
            p.bloom = bloom(&mut h)?;
        }
        Ok(Block {
            path: path.to_path_buf(),
            count,
            min_ts,
            max_ts,
            bytes_on_disk: file_len,
            attr_columns,
            pages,
            common,
        })
    }

    /// Whether page `p` may hold every one of these bloom keys ([`query_keys`]).
    pub fn page_may_match(&self, p: usize, keys: &[Vec<u8>]) -> bool {
        let page = &self.pages[p];
        keys.iter().all(|k| self.common.may_contain(k) || page.bloom.may_contain(k))
    }

    /// Whether any page may hold every one of these bloom keys.
    pub fn may_match(&self, keys: &[Vec<u8>]) -> bool {
        (0..self.pages.len()).any(|p| self.page_may_match(p, keys))
    }

    /// The decompressed bytes of column `c` of page `p`, read from `file`.
    pub fn read_column(&self, file: &std::fs::File, p: usize, c: usize) -> Result<Vec<u8>, Damaged> {
        let fr = *self.pages.get(p).and_then(|pg| pg.frames.get(c)).ok_or(Damaged)?;
        if fr.raw == 0 {
            return Ok(Vec::new());
        }
        let mut z = vec![0u8; fr.len];
        file.read_exact_at(&mut z, fr.offset).map_err(|_| Damaged)?;
        let out = zstd::bulk::decompress(&z, fr.raw).map_err(|_| Damaged)?;
        if out.len() != fr.raw {
            return Err(Damaged);
        }
        Ok(out)
    }

    /// Every record, in time order (tests and tools; searches read pages column by column).
    pub fn records(&self) -> Result<Vec<LogRecord>, Damaged> {
        let file = std::fs::File::open(&self.path).map_err(|_| Damaged)?;
        let mut out = Vec::with_capacity(self.count);
        for p in 0..self.pages.len() {
            let page = super::page::Page::new(self, &file, p);
            for i in 0..page.len() {
                out.push(page.record(i)?);
            }
        }
        Ok(out)
    }
}

/// Writes a block file atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests;
