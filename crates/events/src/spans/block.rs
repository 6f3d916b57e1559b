//! The span schema's blocks: spans stored by column, with the block's time and duration
//! ranges, the services in it, and two bloom filters (trace ids; search tokens) in a header
//! that is read without the columns.
//!
//! The file is framed by the container ([`crate::container::block`]): magic `SBXSPAN5`,
//! header parts the metadata (JSON), the trace-id bloom filter and the token bloom filter,
//! then the columns below, each a checksummed zstd frame, read on demand through the shared
//! decompressed-column cache. (Format 5; the trace store's own framing of formats 3 and 4,
//! `SBXB`, is no longer read: the store is pre-release and was never migrated.)
//!
//! Rows are sorted by trace id, then start, so a trace's spans sit together: trace ids are
//! stored once per run, parents as row offsets within the run, starts as deltas from the
//! previous span of the trace. Columns:
//! - trace: the runs, `(trace id, span count)`, ascending by id (a trace is found by binary
//!   search);
//! - span: 8-byte span ids;
//! - parent: a varint per row: 0 no parent, 1 a parent outside the block (its id is next in
//!   the parent-ext column), `2 + zigzag(parent row - row)` otherwise;
//! - start: varint, from the block's earliest start for a run's first span, else from the
//!   previous span; duration: varint;
//! - service, name: a dictionary and a varint index per row;
//! - flags: one byte: kind (bits 0-2), Zipkin's shared (bit 3), status (bits 4-5), Zipkin's
//!   debug (bit 6), a 64-bit trace id (bit 7); text: status message and trace state;
//! - attrs: a key dictionary, a value dictionary, and per row its `(key, value)` index pairs,
//!   so repeated keys and values cost a byte or two and searches compare integers;
//! - events;
//! - origin: the block's distinct resources and scopes (each once), then per row
//!   the index of its resource and of its scope;
//! - links: per row, its links (trace id, span id, trace state, attributes);
//! - rows: for every 512th row, where it starts in each variable-length column (and starts
//!   at such rows are stored from the block's earliest start), so one trace is read
//!   without parsing the rows before it.

use crate::container::block::{self as framing, Framed};
use crate::container::bloom::{self, Bloom};
use crate::container::dict::{self, Dict};
use crate::container::hash::FastMap;
use crate::spans::codec::{self, Corrupt, Reader, put_str, put_varint};
use serde::{Deserialize, Serialize};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{AttrValue, KeyValue, Resource, Scope, Span, SpanFlags, SpanKind, StatusCode};
use std::path::Path;
use std::sync::Arc;

/// The span schema's block magic: the schema and its format, 5.
pub const MAGIC: &[u8; 8] = b"SBXSPAN5";

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
    pub const PARENT_EXT: u8 = 11;
    pub const ROWS: u8 = 12;
    pub const ORIGIN: u8 = 13;
    pub const LINKS: u8 = 14;
    pub const COUNT: usize = 15;
    /// Columns whose rows have variable length: the row index records where every
    /// `STRIDE`th row starts in each of them (in this order).
    pub const INDEXED: [u8; 11] =
        [PARENT, PARENT_EXT, START, DURATION, SERVICE, NAME, TEXT, ATTRS, EVENTS, ORIGIN, LINKS];
}

/// Rows between row-index checkpoints: reading one trace parses at most this many rows of
/// a column before its own.
pub const STRIDE: usize = 512;

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
    /// Per operation, the span kinds it was seen with: bit `k` for [`SpanKind::code`] `k`
    /// (absent in blocks written before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operation_kinds: Vec<u8>,
    /// Size of the encoded spans before compression, and of the file.
    pub raw_bytes: u64,
    pub file_bytes: u64,
}

/// A block's header: metadata and filters.
#[derive(Clone, Debug)]
pub struct Block {
    pub meta: BlockMeta,
    pub traces: Bloom,
    pub tokens: Bloom,
    /// Where the columns are, so a load reads no header.
    framed: Framed,
}

impl Block {
    pub fn path(&self) -> &Path {
        &self.framed.path
    }
}

/// The search tokens of a block, as hashes: each service (`s:`), service+operation
/// (`o:`), attribute `key=value` alone (`a:`) and within the service (`A:`), and `e` when a
/// span failed. Each is the [`crate::container::bloom::hash`] of the matching `token_*` bytes,
/// computed without building them, once per distinct value in the block.
fn block_tokens(
    services: &[String],
    operations: &[(String, String)],
    errors: bool,
    attrs: &AttrDicts,
    out: &mut TokenSet,
) {
    for s in services {
        out.insert(bloom::hash_parts(&[b"s:", s.as_bytes()]));
    }
    for (s, o) in operations {
        out.insert(bloom::hash_parts(&[b"o:", s.as_bytes(), b"\0", o.as_bytes()]));
    }
    if errors {
        out.insert(bloom::hash(b"e"));
    }
    let texts: Vec<std::borrow::Cow<str>> = attrs.values.iter().map(|v| value_text(v)).collect();
    let mut pairs: crate::container::hash::FastSet<(u32, u32)> = Default::default();
    for &(svc, k, v) in &attrs.triples {
        let (key, text) = (attrs.keys[k as usize].as_bytes(), texts[v as usize].as_bytes());
        if pairs.insert((k, v)) {
            out.insert(bloom::hash_parts(&[b"a:", key, b"=", text]));
        }
        let svc = attrs.services[svc as usize].as_bytes();
        out.insert(bloom::hash_parts(&[b"A:", svc, b"\0", key, b"=", text]));
    }
}

/// Token hashes (already well mixed, so hashed again by identity).
pub type TokenSet = crate::container::hash::FastSet<u64>;

pub fn token_service(s: &str) -> Vec<u8> {
    [b"s:".as_slice(), s.as_bytes()].concat()
}
pub fn token_operation(s: &str, op: &str) -> Vec<u8> {
    [b"o:".as_slice(), s.as_bytes(), b"\0", op.as_bytes()].concat()
}
pub fn token_attr(k: &str, v: &str) -> Vec<u8> {
    [b"a:".as_slice(), k.as_bytes(), b"=", v.as_bytes()].concat()
}
pub fn token_service_attr(s: &str, k: &str, v: &str) -> Vec<u8> {
    [b"A:".as_slice(), s.as_bytes(), b"\0", k.as_bytes(), b"=", v.as_bytes()].concat()
}

/// How attribute values compare in searches: as their text.
pub fn value_text(v: &AttrValue) -> std::borrow::Cow<'_, str> {
    match v {
        AttrValue::Str(s) => std::borrow::Cow::Borrowed(s.as_str()),
        AttrValue::Int(i) => i.to_string().into(),
        AttrValue::Bool(b) => b.to_string().into(),
        AttrValue::Float(f) => f.to_string().into(),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A row's flags byte (see the module doc).
fn flags_byte(s: &Span) -> u8 {
    let f = s.flags;
    s.kind.code()
        | (s.status.code() << 4)
        | if f.has(SpanFlags::SHARED) { 0x08 } else { 0 }
        | if f.has(SpanFlags::DEBUG) { 0x40 } else { 0 }
        | if f.has(SpanFlags::TRACE_ID_64) { 0x80 } else { 0 }
}

/// A flags byte's kind, status and span flags.
pub fn parse_flags(b: u8) -> (SpanKind, StatusCode, SpanFlags) {
    let f = SpanFlags::default()
        .with(SpanFlags::SHARED, b & 0x08 != 0)
        .with(SpanFlags::DEBUG, b & 0x40 != 0)
        .with(SpanFlags::TRACE_ID_64, b & 0x80 != 0);
    (SpanKind::from_code((b & 0x07).into()), status_of(b), f)
}

/// The status in a flags byte.
pub fn status_of(b: u8) -> StatusCode {
    StatusCode::from_code(((b >> 4) & 0x03).into())
}

/// The origin column of a block: per row, the index of its resource and scope.
pub struct OriginTable {
    pub resources: Vec<Arc<Resource>>,
    pub scopes: Vec<Arc<Scope>>,
    /// Empty for a version 3 block: every row has the empty resource and scope.
    pub rows: Vec<(u32, u32)>,
}

impl OriginTable {
    /// The column's dictionaries, and its `n` rows when `rows_wanted` says so for them.
    fn read(
        bytes: &[u8],
        n: usize,
        rows_wanted: impl FnOnce(&[Arc<Resource>]) -> bool,
    ) -> Result<OriginTable, Corrupt> {
        if bytes.is_empty() {
            return Ok(OriginTable { resources: Vec::new(), scopes: Vec::new(), rows: Vec::new() });
        }
        let mut r = Reader::new(bytes);
        let (resources, scopes) = codec::Origins::get(&mut r)?;
        if !rows_wanted(&resources) {
            return Ok(OriginTable { resources, scopes, rows: Vec::new() });
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            rows.push(origin_indexes(&mut r, &resources, &scopes)?);
        }
        Ok(OriginTable { resources, scopes, rows })
    }

    pub fn resource(&self, i: usize) -> Arc<Resource> {
        self.rows.get(i).map_or_else(Resource::none, |(r, _)| self.resources[*r as usize].clone())
    }

    pub fn scope(&self, i: usize) -> Arc<Scope> {
        self.rows.get(i).map_or_else(Scope::none, |(_, c)| self.scopes[*c as usize].clone())
    }
}

/// One row's (resource, scope) indexes, checked against the dictionaries.
fn origin_indexes(r: &mut Reader, resources: &[Arc<Resource>], scopes: &[Arc<Scope>]) -> Result<(u32, u32), Corrupt> {
    let (a, b) = (r.varint()?, r.varint()?);
    if a >= resources.len() as u64 || b >= scopes.len() as u64 {
        return Err(Corrupt);
    }
    Ok((a as u32, b as u32))
}

/// The attribute column's key and value dictionaries, and where its per-row pairs begin.
fn attr_prefix(bytes: &[u8]) -> Result<(Vec<String>, Vec<AttrValue>, usize), Corrupt> {
    let mut r = Reader::new(bytes);
    let nk = r.length()?;
    let mut keys = Vec::with_capacity(nk.min(1 << 16));
    for _ in 0..nk {
        keys.push(r.str()?);
    }
    let nv = r.length()?;
    let mut values = Vec::with_capacity(nv.min(1 << 20));
    for _ in 0..nv {
        values.push(codec::get_value(&mut r)?);
    }
    Ok((keys, values, r.pos))
}

/// The attribute column read back: dictionaries and per-row `(key, value)` index pairs.
pub struct AttrTable {
    pub keys: Vec<String>,
    pub values: Vec<AttrValue>,
    /// Row `i`'s pairs are `pairs[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    pairs: Vec<(u32, u32)>,
}

impl AttrTable {
    fn read(bytes: &[u8], n: usize) -> Result<AttrTable, Corrupt> {
        let (keys, values, start) = attr_prefix(bytes)?;
        let (nk, nv) = (keys.len(), values.len());
        let mut r = Reader::new(bytes);
        r.pos = start;
        let mut offsets = Vec::with_capacity(n + 1);
        let mut pairs = Vec::new();
        offsets.push(0);
        for _ in 0..n {
            let c = r.length()?;
            for _ in 0..c {
                let (k, v) = (r.varint()?, r.varint()?);
                if k >= nk as u64 || v >= nv as u64 {
                    return Err(Corrupt);
                }
                pairs.push((k as u32, v as u32));
            }
            offsets.push(u32::try_from(pairs.len()).map_err(|_| Corrupt)?);
        }
        Ok(AttrTable { keys, values, offsets, pairs })
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn row(&self, i: usize) -> &[(u32, u32)] {
        &self.pairs[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub fn key(&self, k: &str) -> Option<u32> {
        self.keys.iter().position(|x| x == k).map(|i| i as u32)
    }

    /// For each value in the dictionary, whether its text is `text`.
    pub fn values_matching(&self, text: &str) -> Vec<bool> {
        self.values.iter().map(|v| value_text(v) == text).collect()
    }

    pub fn attributes(&self, i: usize) -> Vec<KeyValue> {
        self.row(i)
            .iter()
            .map(|(k, v)| KeyValue {
                key: self.keys[*k as usize].clone().into(),
                value: self.values[*v as usize].clone(),
            })
            .collect()
    }
}

/// The attribute column of a block and the dictionaries behind it.
struct AttrDicts<'a> {
    bytes: Vec<u8>,
    /// Where each `STRIDE`th row starts in the per-row part.
    marks: Vec<u32>,
    keys: Vec<&'a str>,
    values: Vec<&'a AttrValue>,
    services: Vec<&'a str>,
    /// Distinct (service, key, value) index triples, for the search tokens.
    triples: crate::container::hash::FastSet<(u32, u32, u32)>,
}

/// The attribute column of `spans` (in row order).
fn attrs_column<'a>(spans: &[&'a Span]) -> AttrDicts<'a> {
    let mut keys: FastMap<&str, u32> = FastMap::default();
    let mut key_order: Vec<&str> = Vec::new();
    let mut values: FastMap<Vec<u8>, u32> = FastMap::default();
    let mut value_order: Vec<Vec<u8>> = Vec::new();
    let mut value_refs: Vec<&AttrValue> = Vec::new();
    let mut services: FastMap<&str, u32> = FastMap::default();
    let mut service_order: Vec<&str> = Vec::new();
    let mut triples: crate::container::hash::FastSet<(u32, u32, u32)> = Default::default();
    let mut rows = Vec::new();
    let mut enc = Vec::new();
    let mut marks = Vec::with_capacity(spans.len() / STRIDE + 1);
    for (row, s) in spans.iter().enumerate() {
        if row % STRIDE == 0 {
            marks.push(rows.len() as u32);
        }
        let next = services.len() as u32;
        let svc = *services.entry(s.service.as_str()).or_insert_with(|| {
            service_order.push(s.service.as_str());
            next
        });
        put_varint(&mut rows, s.attributes.len() as u64);
        for kv in &s.attributes {
            let next = keys.len() as u32;
            let k = *keys.entry(&*kv.key).or_insert_with(|| {
                key_order.push(&*kv.key);
                next
            });
            enc.clear();
            codec::put_value(&mut enc, &kv.value);
            let v = match values.get(&enc) {
                Some(v) => *v,
                None => {
                    let v = values.len() as u32;
                    values.insert(enc.clone(), v);
                    value_order.push(enc.clone());
                    value_refs.push(&kv.value);
                    v
                }
            };
            triples.insert((svc, k, v));
            put_varint(&mut rows, k as u64);
            put_varint(&mut rows, v as u64);
        }
    }
    let mut out = Vec::with_capacity(rows.len() + value_order.iter().map(Vec::len).sum::<usize>() + 64);
    put_varint(&mut out, key_order.len() as u64);
    for k in &key_order {
        put_str(&mut out, k);
    }
    put_varint(&mut out, value_order.len() as u64);
    for v in &value_order {
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&rows);
    AttrDicts { bytes: out, marks, keys: key_order, values: value_refs, services: service_order, triples }
}

/// Encodes `spans` (any order) into a block file at `path`, written to a temporary file,
/// synced and renamed, so a crash never leaves a half block. Returns its header.
pub fn write(path: &Path, mut spans: Vec<&Span>) -> std::io::Result<Block> {
    spans.sort_by(|a, b| {
        a.trace_id.cmp(&b.trace_id).then(a.start_unix_nanos.cmp(&b.start_unix_nanos)).then(a.span_id.cmp(&b.span_id))
    });
    let n = spans.len();
    let min_start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let mut traces = Bloom::with_capacity(n / 4 + 1);
    let mut token_set = TokenSet::default();
    let mut cols: Vec<Vec<u8>> = vec![Vec::new(); col::COUNT];
    let mut services: Vec<String> = Vec::new();
    let mut operations: Vec<(String, String)> = Vec::new();
    let mut seen_ops: FastMap<(&str, &str), usize> = FastMap::default();
    let mut operation_kinds: Vec<u8> = Vec::new();
    let mut errors = 0;
    let (mut min_d, mut max_d, mut max_end, mut max_start) = (u64::MAX, 0u64, 0u64, 0u64);
    // Runs of one trace.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match runs.last_mut() {
            Some((start, len)) if spans[*start].trace_id == s.trace_id => *len += 1,
            _ => runs.push((i, 1)),
        }
    }
    put_varint(&mut cols[col::TRACE as usize], runs.len() as u64);
    let mut plain_marks: Vec<Vec<u32>> = vec![Vec::new(); col::COUNT];
    let mut row_of: FastMap<SpanId, usize> = FastMap::default();
    for &(first, len) in &runs {
        let t = &spans[first].trace_id;
        traces.insert(&t.0);
        cols[col::TRACE as usize].extend_from_slice(&t.0);
        put_varint(&mut cols[col::TRACE as usize], len as u64);
        row_of.clear();
        for (i, s) in spans.iter().enumerate().skip(first).take(len) {
            row_of.insert(s.span_id, i);
        }
        for (i, s) in spans.iter().enumerate().skip(first).take(len) {
            if i % STRIDE == 0 {
                for c in [col::PARENT, col::PARENT_EXT, col::START, col::DURATION, col::TEXT, col::EVENTS, col::LINKS] {
                    plain_marks[c as usize].push(cols[c as usize].len() as u32);
                }
            }
            cols[col::SPAN as usize].extend_from_slice(&s.span_id.0);
            match s.parent_span_id {
                None => put_varint(&mut cols[col::PARENT as usize], 0),
                Some(p) => match row_of.get(&p) {
                    Some(&r) => put_varint(&mut cols[col::PARENT as usize], 2 + zigzag(r as i64 - i as i64)),
                    None => {
                        put_varint(&mut cols[col::PARENT as usize], 1);
                        cols[col::PARENT_EXT as usize].extend_from_slice(&p.0);
                    }
                },
            }
            let from = if i == first || i % STRIDE == 0 { min_start } else { spans[i - 1].start_unix_nanos };
            put_varint(&mut cols[col::START as usize], s.start_unix_nanos - from);
            let d = s.duration_nanos();
            put_varint(&mut cols[col::DURATION as usize], d);
            cols[col::FLAGS as usize].push(flags_byte(s));
            put_str(&mut cols[col::TEXT as usize], &s.status_message);
            put_str(&mut cols[col::TEXT as usize], &s.trace_state);
            codec::put_events(&mut cols[col::EVENTS as usize], &s.events);
            codec::put_links(&mut cols[col::LINKS as usize], &s.links);
            min_d = min_d.min(d);
            max_d = max_d.max(d);
            max_end = max_end.max(s.end_unix_nanos);
            max_start = max_start.max(s.start_unix_nanos);
            errors += (s.status == StatusCode::Error) as u32;
            let next = operations.len();
            let op = *seen_ops.entry((s.service.as_str(), s.name.as_str())).or_insert(next);
            if op == next {
                operation_kinds.push(0);
                operations.push((s.service.clone(), s.name.clone()));
                if !services.contains(&s.service) {
                    services.push(s.service.clone());
                }
            }
            operation_kinds[op] |= 1 << s.kind.code();
        }
    }
    let services_col = dict::encode(spans.iter().map(|s| s.service.as_str()), STRIDE);
    let names_col = dict::encode(spans.iter().map(|s| s.name.as_str()), STRIDE);
    cols[col::SERVICE as usize] = services_col.bytes;
    cols[col::NAME as usize] = names_col.bytes;
    plain_marks[col::SERVICE as usize] = services_col.marks;
    plain_marks[col::NAME as usize] = names_col.marks;
    let attrs = attrs_column(&spans);
    block_tokens(&services, &operations, errors > 0, &attrs, &mut token_set);
    let (origin_col, origin_marks) = origin_column(&spans, &mut token_set);
    cols[col::ORIGIN as usize] = origin_col;
    plain_marks[col::ORIGIN as usize] = origin_marks;
    cols[col::ATTRS as usize] = attrs.bytes;
    plain_marks[col::ATTRS as usize] = attrs.marks;
    // The row index: per checkpoint, the offsets of the indexed columns.
    for k in 0..n.div_ceil(STRIDE) {
        for c in col::INDEXED {
            let at = plain_marks[c as usize].get(k).copied().unwrap_or(0);
            cols[col::ROWS as usize].extend_from_slice(&at.to_le_bytes());
        }
    }
    let mut tokens_bloom = Bloom::with_capacity(token_set.len());
    for t in &token_set {
        tokens_bloom.insert_hash(*t);
    }
    let raw_bytes = cols.iter().map(|c| c.len() as u64).sum();
    let mut meta = BlockMeta {
        spans: n as u32,
        min_start,
        max_start,
        max_end,
        min_duration: if n == 0 { 0 } else { min_d },
        max_duration: max_d,
        errors,
        services,
        operations,
        operation_kinds,
        raw_bytes,
        file_bytes: 0,
    };
    let meta_json = serde_json::to_vec(&meta)?;
    let (out, _) = framing::encode(MAGIC, &[&meta_json, &traces.to_bytes(), &tokens_bloom.to_bytes()], &cols)?;
    framing::write_atomic(path, &out)?;
    let (framed, _) = Framed::open(path, MAGIC)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a block just written does not read back"))?;
    meta.file_bytes = out.len() as u64;
    Ok(Block { meta, traces, tokens: tokens_bloom, framed })
}

/// The origin column of `spans` (in row order), and where each `STRIDE`th row starts in its
/// per-row part. Adds the search tokens of the resources' attributes (alone and within each
/// service that has them), once per distinct (service, resource).
fn origin_column(spans: &[&Span], tokens: &mut TokenSet) -> (Vec<u8>, Vec<u32>) {
    let mut origins = codec::Origins::default();
    let mut rows = Vec::with_capacity(spans.len() * 2);
    let mut marks = Vec::with_capacity(spans.len() / STRIDE + 1);
    let mut seen: crate::container::hash::FastSet<(&str, u32)> = Default::default();
    for (row, s) in spans.iter().enumerate() {
        if row % STRIDE == 0 {
            marks.push(rows.len() as u32);
        }
        let (r, c) = origins.index(s);
        put_varint(&mut rows, r as u64);
        put_varint(&mut rows, c as u64);
        if !s.resource.attributes.is_empty() && seen.insert((s.service.as_str(), r)) {
            for kv in &s.resource.attributes {
                let (key, text) = (kv.key.as_bytes(), value_text(&kv.value));
                tokens.insert(bloom::hash_parts(&[b"a:", key, b"=", text.as_bytes()]));
                tokens.insert(bloom::hash_parts(&[b"A:", s.service.as_bytes(), b"\0", key, b"=", text.as_bytes()]));
            }
        }
    }
    let mut out = Vec::with_capacity(rows.len() + 256);
    origins.put(&mut out);
    let prefix = out.len() as u32;
    out.extend_from_slice(&rows);
    (out, marks.into_iter().map(|m| m + prefix).collect())
}

/// The most spans a block may hold (the store seals at most a million).
const MAX_SPANS: usize = 16 << 20;

/// Reads a block's header (not its columns).
pub fn open(path: &Path) -> Result<Block, Corrupt> {
    let (framed, parts) = Framed::open(path, MAGIC)?;
    let [meta, traces, tokens] = parts.as_slice() else { return Err(Corrupt) };
    if framed.columns.len() != col::COUNT {
        return Err(Corrupt);
    }
    let mut meta: BlockMeta = serde_json::from_slice(meta).map_err(|_| Corrupt)?;
    if meta.spans as usize > MAX_SPANS {
        return Err(Corrupt);
    }
    meta.file_bytes = framed.file_bytes;
    let traces = Bloom::from_bytes(traces).ok_or(Corrupt)?;
    let tokens = Bloom::from_bytes(tokens).ok_or(Corrupt)?;
    Ok(Block { meta, traces, tokens, framed })
}

mod read;
pub use read::Loaded;

#[cfg(test)]
mod tests;
