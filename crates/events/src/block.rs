//! Sealed blocks: immutable files of spans stored by column, each column compressed with
//! zstd, with the block's time and duration ranges, the services in it, and two bloom
//! filters (trace ids; search tokens) in a header that is read without the columns.
//!
//! File layout: `SBXB`, version byte, then length-prefixed: the metadata (JSON), the trace-id
//! bloom filter, the token bloom filter, the column directory, the columns. Rows are sorted
//! by start time. Columns: trace id (16 B), span id (8 B), parent id (8 B, zero for none),
//! start (varint offset from the block's first start), duration (varint), service and name
//! (dictionary + varint index), kind and status (one byte), status message and trace state,
//! attributes, events.

use crate::bloom::Bloom;
use crate::codec::{self, Corrupt, Reader, put_str, put_varint};
use serde::{Deserialize, Serialize};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{AttrValue, Span, StatusCode};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"SBXB";
const VERSION: u8 = 1;
const ZSTD_LEVEL: i32 = 3;

pub mod col {
    pub const TRACE: u8 = 0;
    pub const SPAN: u8 = 1;
    pub const PARENT: u8 = 2;
    pub const START: u8 = 3;
    pub const DURATION: u8 = 4;
    pub const SERVICE: u8 = 5;
    pub const NAME: u8 = 6;
    pub const FLAGS: u8 = 7;
    pub const TEXT: u8 = 8;
    pub const ATTRS: u8 = 9;
    pub const EVENTS: u8 = 10;
    pub const COUNT: usize = 11;
}

/// What a block holds, kept in memory for every block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub spans: u32,
    pub min_start: u64,
    pub max_start: u64,
    pub max_end: u64,
    pub min_duration: u64,
    pub max_duration: u64,
    pub errors: u32,
    pub services: Vec<String>,
    /// (service, operation) pairs.
    pub operations: Vec<(String, String)>,
    /// Size of the encoded spans before compression, and of the file.
    pub raw_bytes: u64,
    pub file_bytes: u64,
}

/// A block's header: metadata and filters.
#[derive(Clone, Debug)]
pub struct Block {
    pub path: PathBuf,
    pub meta: BlockMeta,
    pub traces: Bloom,
    pub tokens: Bloom,
}

/// Search tokens of a span: service, service+operation, attribute `key=value`, errors.
pub fn tokens(s: &Span, out: &mut HashSet<Vec<u8>>) {
    out.insert(token_service(&s.service));
    out.insert(token_operation(&s.service, &s.name));
    for kv in &s.attributes {
        if let Some(v) = value_text(&kv.value) {
            out.insert(token_attr(&kv.key, &v));
        }
    }
    if s.status == StatusCode::Error {
        out.insert(b"e".to_vec());
    }
}

pub fn token_service(s: &str) -> Vec<u8> {
    [b"s:".as_slice(), s.as_bytes()].concat()
}
pub fn token_operation(s: &str, op: &str) -> Vec<u8> {
    [b"o:".as_slice(), s.as_bytes(), b"\0", op.as_bytes()].concat()
}
pub fn token_attr(k: &str, v: &str) -> Vec<u8> {
    [b"a:".as_slice(), k.as_bytes(), b"=", v.as_bytes()].concat()
}

/// How attribute values compare in searches: as their text.
pub fn value_text(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::Str(s) => Some(s.clone()),
        AttrValue::Int(i) => Some(i.to_string()),
        AttrValue::Bool(b) => Some(b.to_string()),
        AttrValue::Float(f) => Some(f.to_string()),
    }
}

fn dict_column(values: impl Iterator<Item = String>, n: usize) -> Vec<u8> {
    let mut dict: HashMap<String, u64> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut idx = Vec::with_capacity(n);
    for v in values {
        let next = dict.len() as u64;
        let i = *dict.entry(v.clone()).or_insert_with(|| {
            order.push(v);
            next
        });
        idx.push(i);
    }
    let mut out = Vec::new();
    put_varint(&mut out, order.len() as u64);
    for s in &order {
        put_str(&mut out, s);
    }
    for i in idx {
        put_varint(&mut out, i);
    }
    out
}

fn read_dict_column(bytes: &[u8], n: usize) -> Result<Vec<String>, Corrupt> {
    let mut r = Reader::new(bytes);
    let d = r.length()?;
    let mut dict = Vec::with_capacity(d.min(1 << 20));
    for _ in 0..d {
        dict.push(r.str()?);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(dict.get(r.varint()? as usize).cloned().ok_or(Corrupt)?);
    }
    Ok(out)
}

/// Encodes `spans` (any order) into a block file at `path`, written to a temporary file,
/// synced and renamed, so a crash never leaves a half block. Returns its header.
pub fn write(path: &Path, mut spans: Vec<Span>) -> std::io::Result<Block> {
    spans.sort_by_key(|s| s.start_unix_nanos);
    let n = spans.len();
    let min_start = spans.first().map(|s| s.start_unix_nanos).unwrap_or(0);
    let mut traces = Bloom::with_capacity(n);
    let mut token_set = HashSet::new();
    let mut raw_bytes = 0u64;
    let mut cols: Vec<Vec<u8>> = vec![Vec::new(); col::COUNT];
    let mut services: Vec<String> = Vec::new();
    let mut operations: Vec<(String, String)> = Vec::new();
    let mut seen_ops = HashSet::new();
    let mut errors = 0;
    let (mut min_d, mut max_d, mut max_end) = (u64::MAX, 0u64, 0u64);
    for s in &spans {
        traces.insert(&s.trace_id.0);
        tokens(s, &mut token_set);
        cols[col::TRACE as usize].extend_from_slice(&s.trace_id.0);
        cols[col::SPAN as usize].extend_from_slice(&s.span_id.0);
        cols[col::PARENT as usize].extend_from_slice(&s.parent_span_id.map(|p| p.0).unwrap_or([0; 8]));
        put_varint(&mut cols[col::START as usize], s.start_unix_nanos - min_start);
        let d = s.duration_nanos();
        put_varint(&mut cols[col::DURATION as usize], d);
        cols[col::FLAGS as usize].push(codec::kind_code(s.kind) | (codec::status_code(s.status) << 4));
        put_str(&mut cols[col::TEXT as usize], &s.status_message);
        put_str(&mut cols[col::TEXT as usize], &s.trace_state);
        codec::put_attrs(&mut cols[col::ATTRS as usize], &s.attributes);
        codec::put_events(&mut cols[col::EVENTS as usize], &s.events);
        min_d = min_d.min(d);
        max_d = max_d.max(d);
        max_end = max_end.max(s.end_unix_nanos);
        errors += (s.status == StatusCode::Error) as u32;
        if seen_ops.insert((s.service.as_str(), s.name.as_str())) {
            operations.push((s.service.clone(), s.name.clone()));
            if !services.contains(&s.service) {
                services.push(s.service.clone());
            }
        }
    }
    cols[col::SERVICE as usize] = dict_column(spans.iter().map(|s| s.service.clone()), n);
    cols[col::NAME as usize] = dict_column(spans.iter().map(|s| s.name.clone()), n);
    let mut tokens_bloom = Bloom::with_capacity(token_set.len());
    for t in &token_set {
        tokens_bloom.insert(t);
    }
    let mut compressed = Vec::with_capacity(col::COUNT);
    for c in &cols {
        raw_bytes += c.len() as u64;
        compressed.push(zstd::bulk::compress(c, ZSTD_LEVEL)?);
    }
    let mut meta = BlockMeta {
        spans: n as u32,
        min_start,
        max_start: spans.last().map(|s| s.start_unix_nanos).unwrap_or(0),
        max_end,
        min_duration: if n == 0 { 0 } else { min_d },
        max_duration: max_d,
        errors,
        services,
        operations,
        raw_bytes,
        file_bytes: 0,
    };
    let tb = traces.to_bytes();
    let kb = tokens_bloom.to_bytes();
    let dir_len = col::COUNT * (1 + 8 + 4 + 4);
    let head_guess = serde_json::to_vec(&meta)?.len() + 64;
    let total: usize =
        5 + 4 + head_guess + 4 + tb.len() + 4 + kb.len() + 4 + dir_len + compressed.iter().map(Vec::len).sum::<usize>();
    meta.file_bytes = total as u64;
    let meta_json = serde_json::to_vec(&meta)?;
    let mut out = Vec::with_capacity(total + 64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    for part in [&meta_json, &tb, &kb] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&(dir_len as u32).to_le_bytes());
    let mut offset = 0u64;
    for (i, c) in compressed.iter().enumerate() {
        out.push(i as u8);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(&(cols[i].len() as u32).to_le_bytes());
        offset += c.len() as u64;
    }
    for c in &compressed {
        out.extend_from_slice(c);
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    meta.file_bytes = out.len() as u64;
    Ok(Block { path: path.to_owned(), meta, traces, tokens: tokens_bloom })
}

fn take<'a>(b: &'a [u8], pos: &mut usize) -> Result<&'a [u8], Corrupt> {
    let len = u32::from_le_bytes(b.get(*pos..*pos + 4).ok_or(Corrupt)?.try_into().map_err(|_| Corrupt)?) as usize;
    let part = b.get(*pos + 4..*pos + 4 + len).ok_or(Corrupt)?;
    *pos += 4 + len;
    Ok(part)
}

/// Reads a block's header.
pub fn open(path: &Path) -> Result<Block, Corrupt> {
    let bytes = std::fs::read(path).map_err(|_| Corrupt)?;
    let (block, _) = parse(path, &bytes)?;
    Ok(block)
}

type Directory = Vec<(usize, usize, usize)>;

fn parse(path: &Path, bytes: &[u8]) -> Result<(Block, (Directory, usize)), Corrupt> {
    if bytes.len() < 5 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(Corrupt);
    }
    let mut pos = 5;
    let mut meta: BlockMeta = serde_json::from_slice(take(bytes, &mut pos)?).map_err(|_| Corrupt)?;
    meta.file_bytes = bytes.len() as u64;
    let traces = Bloom::from_bytes(take(bytes, &mut pos)?).ok_or(Corrupt)?;
    let tokens = Bloom::from_bytes(take(bytes, &mut pos)?).ok_or(Corrupt)?;
    let dir = take(bytes, &mut pos)?;
    let mut cols = vec![(0, 0, 0); col::COUNT];
    for e in dir.chunks_exact(17) {
        let i = e[0] as usize;
        let off = u64::from_le_bytes(e[1..9].try_into().map_err(|_| Corrupt)?) as usize;
        let len = u32::from_le_bytes(e[9..13].try_into().map_err(|_| Corrupt)?) as usize;
        let raw = u32::from_le_bytes(e[13..17].try_into().map_err(|_| Corrupt)?) as usize;
        if i < col::COUNT {
            cols[i] = (off, len, raw);
        }
    }
    Ok((Block { path: path.to_owned(), meta, traces, tokens }, (cols, pos)))
}

/// A block read into memory, decompressing columns on demand.
pub struct Loaded {
    bytes: Vec<u8>,
    dir: Directory,
    data_start: usize,
    pub n: usize,
    pub min_start: u64,
}

impl Block {
    pub fn load(&self) -> Result<Loaded, Corrupt> {
        let bytes = std::fs::read(&self.path).map_err(|_| Corrupt)?;
        let (_, (dir, data_start)) = parse(&self.path, &bytes)?;
        Ok(Loaded { bytes, dir, data_start, n: self.meta.spans as usize, min_start: self.meta.min_start })
    }
}

impl Loaded {
    /// (compressed, raw) bytes of each column.
    pub fn sizes(&self) -> Vec<(usize, usize)> {
        self.dir.iter().map(|(_, len, raw)| (*len, *raw)).collect()
    }

    pub fn column(&self, c: u8) -> Result<Vec<u8>, Corrupt> {
        let (off, len, raw) = *self.dir.get(c as usize).ok_or(Corrupt)?;
        let start = self.data_start + off;
        let data = self.bytes.get(start..start + len).ok_or(Corrupt)?;
        // The directory's raw size bounds the allocation: a corrupt block cannot ask for more.
        zstd::bulk::decompress(data, raw.max(1)).map_err(|_| Corrupt)
    }

    pub fn trace_ids(&self) -> Result<Vec<TraceId>, Corrupt> {
        let c = self.column(col::TRACE)?;
        if c.len() != self.n * 16 {
            return Err(Corrupt);
        }
        Ok(c.chunks_exact(16).map(|b| TraceId(b.try_into().unwrap_or([0; 16]))).collect())
    }

    pub fn services(&self) -> Result<Vec<String>, Corrupt> {
        read_dict_column(&self.column(col::SERVICE)?, self.n)
    }

    pub fn names(&self) -> Result<Vec<String>, Corrupt> {
        read_dict_column(&self.column(col::NAME)?, self.n)
    }

    pub fn starts(&self) -> Result<Vec<u64>, Corrupt> {
        let c = self.column(col::START)?;
        let mut r = Reader::new(&c);
        (0..self.n).map(|_| r.varint().map(|v| v + self.min_start)).collect()
    }

    pub fn durations(&self) -> Result<Vec<u64>, Corrupt> {
        let c = self.column(col::DURATION)?;
        let mut r = Reader::new(&c);
        (0..self.n).map(|_| r.varint()).collect()
    }

    pub fn flags(&self) -> Result<Vec<u8>, Corrupt> {
        let c = self.column(col::FLAGS)?;
        if c.len() != self.n {
            return Err(Corrupt);
        }
        Ok(c)
    }

    pub fn attributes(&self) -> Result<Vec<Vec<signalbox_core::span::KeyValue>>, Corrupt> {
        let c = self.column(col::ATTRS)?;
        let mut r = Reader::new(&c);
        (0..self.n).map(|_| codec::get_attrs(&mut r)).collect()
    }

    /// Every span of the rows in `rows` (ascending).
    pub fn spans(&self, rows: &[usize]) -> Result<Vec<Span>, Corrupt> {
        let trace = self.column(col::TRACE)?;
        let span = self.column(col::SPAN)?;
        let parent = self.column(col::PARENT)?;
        let (starts, durations, flags) = (self.starts()?, self.durations()?, self.flags()?);
        let (services, names) = (self.services()?, self.names()?);
        let text = self.column(col::TEXT)?;
        let attrs = self.column(col::ATTRS)?;
        let events = self.column(col::EVENTS)?;
        let (mut rt, mut ra, mut re) = (Reader::new(&text), Reader::new(&attrs), Reader::new(&events));
        let wanted: HashSet<usize> = rows.iter().copied().collect();
        let mut out = Vec::with_capacity(rows.len());
        for i in 0..self.n {
            let (msg, state) = (rt.str()?, rt.str()?);
            let a = codec::get_attrs(&mut ra)?;
            let e = codec::get_events(&mut re)?;
            if !wanted.contains(&i) {
                continue;
            }
            let p: [u8; 8] = parent.get(i * 8..i * 8 + 8).ok_or(Corrupt)?.try_into().map_err(|_| Corrupt)?;
            out.push(Span {
                trace_id: TraceId(trace.get(i * 16..i * 16 + 16).ok_or(Corrupt)?.try_into().map_err(|_| Corrupt)?),
                span_id: SpanId(span.get(i * 8..i * 8 + 8).ok_or(Corrupt)?.try_into().map_err(|_| Corrupt)?),
                parent_span_id: (p != [0; 8]).then_some(SpanId(p)),
                trace_state: state,
                service: services[i].clone(),
                name: names[i].clone(),
                kind: codec::kind_of(flags[i] & 0x0f),
                start_unix_nanos: starts[i],
                end_unix_nanos: starts[i] + durations[i],
                status: codec::status_of(flags[i] >> 4),
                status_message: msg,
                attributes: a,
                events: e,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_core::span::{KeyValue, SpanKind};

    fn span(i: u64, trace: TraceId) -> Span {
        Span {
            trace_id: trace,
            span_id: SpanId::random(),
            parent_span_id: i.is_multiple_of(2).then(SpanId::random),
            trace_state: String::new(),
            service: format!("svc-{}", i % 3),
            name: format!("op-{}", i % 5),
            kind: SpanKind::Server,
            start_unix_nanos: 1_000_000 + i * 10,
            end_unix_nanos: 1_000_000 + i * 10 + i,
            status: if i == 7 { StatusCode::Error } else { StatusCode::Unset },
            status_message: String::new(),
            attributes: vec![KeyValue::str("user", format!("u{i}")), KeyValue::int("n", i as i64)],
            events: Vec::new(),
        }
    }

    #[test]
    fn blocks_round_trip_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let t = TraceId::random();
        let spans: Vec<Span> = (0..100).rev().map(|i| span(i, if i < 10 { t } else { TraceId::random() })).collect();
        let path = dir.path().join("b.blk");
        let b = write(&path, spans.clone()).unwrap();
        assert_eq!(b.meta.spans, 100);
        assert_eq!(b.meta.errors, 1);
        assert_eq!(b.meta.services.len(), 3);
        assert!(b.traces.may_contain(&t.0));
        assert!(b.tokens.may_contain(&token_attr("user", "u42")));
        assert!(b.tokens.may_contain(&token_attr("n", "7")));
        assert!(!b.tokens.may_contain(&token_attr("user", "nobody")));
        let reopened = open(&path).unwrap();
        assert_eq!(reopened.meta, b.meta);
        let loaded = reopened.load().unwrap();
        let ids = loaded.trace_ids().unwrap();
        let rows: Vec<usize> = (0..100).filter(|i| ids[*i] == t).collect();
        assert_eq!(rows.len(), 10);
        let mut got = loaded.spans(&rows).unwrap();
        got.sort_by_key(|s| s.start_unix_nanos);
        let mut want: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == t).collect();
        want.sort_by_key(|s| s.start_unix_nanos);
        assert_eq!(got, want);
        std::fs::write(&path, b"SBXB\x01garbage").unwrap();
        assert!(open(&path).is_err());
    }
}
