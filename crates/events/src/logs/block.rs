//! A sealed block of log records: the log schema's block in the container's framing
//! ([`crate::container::block`]), made of pages, each page a set of columns with its own
//! time range and bloom filter, so a search decompresses only the columns it needs of the
//! pages that may match.
//!
//! The file is a container block with magic `SBXLOGB4`. Its header parts are the log
//! schema's metadata:
//!
//! ```text
//! part 0      summary: varint count, min_ts, max_ts, page count;
//!             varint attribute column count, then each column's attribute key;
//!             per page: varint count, min_ts, max_ts
//! part 1      the common bloom (keys found in at least half the pages)
//! part 2 + p  page p's bloom (the other keys of the page)
//! ```
//!
//! and its columns are the pages' columns, page by page: column `c` of page `p` is the
//! container's column `p * columns + c`, each its own zstd frame with a crc32, read on demand
//! through the shared decompressed-column cache ([`crate::container::cache`]). Blocks of
//! the earlier layouts are no longer read (pre-release, not migrated; the store skips them
//! as damaged): `SBXLOGB1` (framed by the log store itself), and the two written while the
//! container and the pages were built apart, `SBXLOGB2` (pages in the log store's own
//! framing) and `SBXLOGB3` (the container's framing, unpaged). The merged layout takes a
//! magic of its own so it can never be mistaken for either.
//!
//! Columns of a page ([`col`]): `time` (delta varints, records sorted by time), `severity`
//! (a byte each), `severity_text`, `service` and `instance` (the container's dictionary
//! columns, [`crate::container::dict`]), `ids` (flags, trace and span ids), `body`
//! (length-prefixed), `rest` (observed time as a zigzag delta, resource attributes, and the
//! record's attribute list where an attribute kept in a column is a reference to it), then
//! one column per frequent attribute key of the block (a dictionary of typed values, then
//! per record a varint: 0 for none, else the value's index + 1; typed and optional, so not
//! the container's string dictionary). A search reads `time` and what its filter names; an
//! aggregation reads `time` and its key's column; a whole record is decoded only for the
//! rows that are returned.
//!
//! The blooms hold the words of every body and `field=value` of every id, service,
//! instance and attribute value (lower-cased). A key in at least half the pages (the
//! frequent words) is kept once in the common bloom instead of in every page's.

use super::codec::{Damaged, Reader, put_attrs, put_str, put_value, put_varint};
use super::eval::words;
use crate::container::block::{self as framing, Framed, OpenBlock};
use crate::container::bloom::{self, Bloom};
use crate::container::dict;
use signalbox_core::log::LogRecord;
use signalbox_core::span::AttrValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SBXLOGB4";
/// Field values longer than this are not put in the bloom filter (they are not ids).
const MAX_BLOOM_VALUE: usize = 256;
/// Most attribute keys that get their own column in a block.
const MAX_ATTR_COLUMNS: usize = 32;

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

/// An attribute column under construction: typed values, each row one of them or none.
#[derive(Default)]
struct ValueColumn {
    dict: HashMap<Vec<u8>, u64>,
    entries: Vec<u8>,
    rows: Vec<u8>,
}

impl ValueColumn {
    /// Adds a row holding `encoded` (the value as [`put_value`] writes it), or none.
    fn push(&mut self, encoded: Option<&[u8]>) {
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
        put_varint(&mut self.rows, id + 1);
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

/// A page encoded: its columns (raw; the container compresses them) and bloom keys.
struct EncodedPage {
    count: usize,
    min_ts: u64,
    max_ts: u64,
    columns: Vec<Vec<u8>>,
    keys: Vec<u64>,
}

fn encode_page(records: &[&LogRecord], attr_cols: &HashMap<&str, usize>, nattr: usize) -> EncodedPage {
    let mut cols: Vec<Vec<u8>> = vec![Vec::new(); col::FIXED];
    let mut attrs: Vec<ValueColumn> = (0..nattr).map(|_| ValueColumn::default()).collect();
    let mut keys: Vec<u64> = Vec::new();
    let mut kbuf = Vec::new();
    let mut vbuf = Vec::new();
    let (mut prev_t, mut prev_obs) = (0u64, 0u64);
    let mut in_col: Vec<Option<usize>> = Vec::new();
    for r in records {
        put_varint(&mut cols[col::TIME], r.unix_nanos - prev_t);
        prev_t = r.unix_nanos;
        cols[col::SEVERITY].push(r.severity.0);
        let flags = u8::from(r.trace_id.is_some()) | u8::from(r.span_id.is_some()) << 1;
        cols[col::IDS].push(flags);
        if let Some(t) = &r.trace_id {
            cols[col::IDS].extend_from_slice(&t.0);
            push_field_key(&mut kbuf, "trace_id", &t.to_hex());
            keys.push(bloom::hash(&kbuf));
        }
        if let Some(s) = &r.span_id {
            cols[col::IDS].extend_from_slice(&s.0);
            push_field_key(&mut kbuf, "span_id", &s.to_hex());
            keys.push(bloom::hash(&kbuf));
        }
        put_str(&mut cols[col::BODY], &r.body);
        for w in words(&r.body) {
            keys.push(bloom::hash(w.as_bytes()));
        }
        put_varint(&mut cols[col::REST], zigzag(r.observed_unix_nanos.wrapping_sub(prev_obs) as i64));
        prev_obs = r.observed_unix_nanos;
        put_attrs(&mut cols[col::REST], &r.resource);
        // The attribute list: a reference to a column (its index + 1) or 0 and the pair.
        in_col.clear();
        in_col.resize(nattr, None);
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
                    c.push(Some(&vbuf));
                }
                None => c.push(None),
            }
        }
        for kv in r.attributes.iter().chain(r.resource.iter()) {
            let v = value_text(&kv.value);
            if v.len() <= MAX_BLOOM_VALUE {
                push_field_key(&mut kbuf, &kv.key, &v);
                keys.push(bloom::hash(&kbuf));
            }
        }
        // Dedup as we go so a page of repetitive lines keeps a small key list.
        if keys.len() > 1 << 20 {
            keys.sort_unstable();
            keys.dedup();
        }
    }
    // Severity text, service and instance: the container's dictionary columns.
    let severity_text = dict::encode(records.iter().map(|r| r.severity_text.as_str()), usize::MAX);
    let services = dict::encode(records.iter().map(|r| r.service.as_str()), usize::MAX);
    let instances = dict::encode(records.iter().map(|r| r.instance.as_str()), usize::MAX);
    for (field, d) in [("service", &services), ("instance", &instances)] {
        for v in &d.distinct {
            push_field_key(&mut kbuf, field, v);
            keys.push(bloom::hash(&kbuf));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    cols[col::SEVERITY_TEXT] = severity_text.bytes;
    cols[col::SERVICE] = services.bytes;
    cols[col::INSTANCE] = instances.bytes;
    cols.extend(attrs.into_iter().map(ValueColumn::finish));
    EncodedPage {
        count: records.len(),
        min_ts: records.first().map_or(0, |r| r.unix_nanos),
        max_ts: records.last().map_or(0, |r| r.unix_nanos),
        columns: cols,
        keys,
    }
}

/// Encodes `records` as a block file's bytes, in time order, `page_records` a page.
pub fn encode<'a>(records: impl IntoIterator<Item = &'a LogRecord>, page_records: usize) -> std::io::Result<Vec<u8>> {
    let mut records: Vec<&LogRecord> = records.into_iter().collect();
    records.sort_by_key(|r| r.unix_nanos);
    let attr_keys = choose_attr_columns(&records);
    let attr_cols: HashMap<&str, usize> = attr_keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let pages: Vec<EncodedPage> =
        records.chunks(page_records.max(1)).map(|p| encode_page(p, &attr_cols, attr_keys.len())).collect();
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
    let mut summary = Vec::new();
    put_varint(&mut summary, records.len() as u64);
    put_varint(&mut summary, records.first().map_or(0, |r| r.unix_nanos));
    put_varint(&mut summary, records.last().map_or(0, |r| r.unix_nanos));
    put_varint(&mut summary, pages.len() as u64);
    put_varint(&mut summary, attr_keys.len() as u64);
    for k in &attr_keys {
        put_str(&mut summary, k);
    }
    for p in &pages {
        put_varint(&mut summary, p.count as u64);
        put_varint(&mut summary, p.min_ts);
        put_varint(&mut summary, p.max_ts);
    }
    // A false "maybe" of the common bloom lets every page of the block through (measured:
    // a rare word read 16 pages instead of 1), so it gets 4× the bits (~4 in a million
    // false positives at 38 bits a key); it holds few keys, ~20 KB a block.
    let common_bloom = bloom_of(&mut common.iter().copied(), common.len() * 4);
    let page_blooms: Vec<Vec<u8>> = pages
        .iter()
        .map(|p| {
            let own: Vec<u64> = p.keys.iter().copied().filter(|h| common.binary_search(h).is_err()).collect();
            bloom_of(&mut own.iter().copied(), own.len())
        })
        .collect();
    let mut parts: Vec<&[u8]> = vec![&summary, &common_bloom];
    parts.extend(page_blooms.iter().map(Vec::as_slice));
    let columns: Vec<Vec<u8>> = pages.into_iter().flat_map(|p| p.columns).collect();
    Ok(framing::encode(MAGIC, &parts, &columns)?.0)
}

/// A page's metadata: record count, time range and bloom.
pub struct PageMeta {
    pub count: usize,
    pub min_ts: u64,
    pub max_ts: u64,
    bloom: Bloom,
    /// Compressed bytes of all the page's columns.
    bytes: u64,
}

impl PageMeta {
    /// Compressed bytes of all the page's columns.
    pub fn bytes(&self) -> u64 {
        self.bytes
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
    framed: Framed,
}

impl Block {
    /// Reads and checks a block file's header (not its columns).
    pub fn read(path: &Path) -> Result<Block, Damaged> {
        let (framed, parts) = Framed::open(path, MAGIC).map_err(|_| Damaged)?;
        let [summary, common, page_blooms @ ..] = parts.as_slice() else { return Err(Damaged) };
        let mut h = Reader::new(summary);
        let count = h.varint()? as usize;
        let (min_ts, max_ts) = (h.varint()?, h.varint()?);
        let npages = h.varint()? as usize;
        let nattr = h.varint()? as usize;
        if npages != page_blooms.len() || nattr > MAX_ATTR_COLUMNS {
            return Err(Damaged);
        }
        let attr_columns = (0..nattr).map(|_| h.str()).collect::<Result<Vec<_>, _>>()?;
        let ncols = col::FIXED + nattr;
        if npages.checked_mul(ncols) != Some(framed.columns.len()) {
            return Err(Damaged);
        }
        let mut pages = Vec::with_capacity(npages);
        for (p, bloom) in page_blooms.iter().enumerate() {
            let (pc, pmin, pmax) = (h.varint()? as usize, h.varint()?, h.varint()?);
            let columns = &framed.columns[p * ncols..(p + 1) * ncols];
            // Every record takes at least a byte of the time column: bounds what a page
            // reader allocates.
            if pc > columns[col::TIME].raw {
                return Err(Damaged);
            }
            let bloom = Bloom::from_bytes(bloom).ok_or(Damaged)?;
            let bytes = columns.iter().map(|c| c.compressed as u64).sum();
            pages.push(PageMeta { count: pc, min_ts: pmin, max_ts: pmax, bloom, bytes });
        }
        if pages.iter().map(|p| p.count).sum::<usize>() != count {
            return Err(Damaged);
        }
        let common = Bloom::from_bytes(common).ok_or(Damaged)?;
        Ok(Block {
            path: path.to_path_buf(),
            count,
            min_ts,
            max_ts,
            bytes_on_disk: framed.file_bytes,
            attr_columns,
            pages,
            common,
            framed,
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

    /// Opens the block's file for reading pages' columns.
    pub fn open(&self) -> Result<OpenBlock, Damaged> {
        self.framed.reader().map_err(|_| Damaged)
    }

    /// The container column of column `c` of page `p`.
    fn column_index(&self, p: usize, c: usize) -> Result<usize, Damaged> {
        let ncols = col::FIXED + self.attr_columns.len();
        if p >= self.pages.len() || c >= ncols {
            return Err(Damaged);
        }
        Ok(p * ncols + c)
    }

    /// Compressed bytes of column `c` of page `p`.
    pub fn column_bytes(&self, p: usize, c: usize) -> u64 {
        self.column_index(p, c).ok().and_then(|i| self.framed.columns.get(i)).map_or(0, |e| e.compressed as u64)
    }

    /// The decompressed bytes of column `c` of page `p`, read from `file` ([`Block::open`])
    /// or the shared cache.
    pub fn read_column(&self, file: &OpenBlock, p: usize, c: usize) -> Result<Arc<Vec<u8>>, Damaged> {
        file.column(self.column_index(p, c)?).map_err(|_| Damaged)
    }

    /// Every record, in time order (tests and tools; searches read pages column by column).
    pub fn records(&self) -> Result<Vec<LogRecord>, Damaged> {
        let file = self.open()?;
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

#[cfg(test)]
mod tests;
