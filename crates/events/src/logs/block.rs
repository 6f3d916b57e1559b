//! A sealed block of log records: an immutable file of zstd-compressed columns, the
//! block's time range, and a bloom filter of its words and field values, so a search that
//! cannot match a block never decompresses it.
//!
//! The file is framed by the container ([`crate::container::block`]): magic `SBXLOGB3`,
//! header parts the summary (varint count, min_ts, max_ts) and the bloom filter's bytes,
//! then the columns below, each a checksummed zstd frame, read on demand through the shared
//! decompressed-column cache. (`SBXLOGB1` blocks, framed by the log store itself, are no
//! longer read: pre-release, not migrated. `SBXLOGB2` is left to the paged layout being
//! written at the same time, so the two can never be mistaken for each other.)
//!
//! Columns: `time` (delta varints, records sorted by time), `severity` (a byte each),
//! `service` and `instance` (dictionary columns, [`crate::container::dict`]), `ids` (flags, trace
//! and span ids), `body` (length-prefixed), `rest` (observed time, severity text, resource
//! and attributes, as the record codec writes them). The service, instance and severity of
//! every record are readable without touching the bodies.

use super::codec::{Damaged, Reader, put_attrs, put_str, put_varint};
use super::eval::words;
use crate::container::block::{self as framing, Framed};
use crate::container::bloom::Bloom;
use crate::container::dict::{self, Dict};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::AttrValue;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SBXLOGB3";
const COLUMNS: usize = 7;
/// Field values longer than this are not put in the bloom filter (they are not ids).
const MAX_BLOOM_VALUE: usize = 256;

/// The bloom key of a field value: `field=value` lower-cased.
pub fn field_key(field: &str, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(field.len() + value.len() + 1);
    k.extend_from_slice(field.as_bytes());
    k.push(b'=');
    k.extend(value.bytes().map(|b| b.to_ascii_lowercase()));
    k
}

/// Encodes `records` (sorted by time here) as a block file's bytes.
pub fn encode(records: &mut [LogRecord]) -> std::io::Result<Vec<u8>> {
    records.sort_by_key(|r| r.unix_nanos);
    let mut cols: [Vec<u8>; COLUMNS] = Default::default();
    let mut tokens = 0usize;
    let mut prev = 0u64;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for r in records.iter() {
        put_varint(&mut cols[0], r.unix_nanos - prev);
        prev = r.unix_nanos;
        cols[1].push(r.severity.0);
        let flags = u8::from(r.trace_id.is_some()) | u8::from(r.span_id.is_some()) << 1;
        cols[4].push(flags);
        if let Some(t) = &r.trace_id {
            cols[4].extend_from_slice(&t.0);
            keys.push(field_key("trace_id", &t.to_hex()));
        }
        if let Some(s) = &r.span_id {
            cols[4].extend_from_slice(&s.0);
            keys.push(field_key("span_id", &s.to_hex()));
        }
        put_str(&mut cols[5], &r.body);
        put_varint(&mut cols[6], r.observed_unix_nanos);
        put_str(&mut cols[6], &r.severity_text);
        put_attrs(&mut cols[6], &r.resource);
        put_attrs(&mut cols[6], &r.attributes);
        for w in words(&r.body) {
            keys.push(w.as_bytes().to_vec());
            tokens += 1;
        }
        for kv in r.attributes.iter().chain(r.resource.iter()) {
            if let AttrValue::Str(s) = &kv.value
                && s.len() <= MAX_BLOOM_VALUE
            {
                keys.push(field_key(&kv.key, s));
            }
        }
        // Dedup as we go so a block of repetitive lines keeps a small key list.
        if keys.len() > 1 << 20 {
            keys.sort_unstable();
            keys.dedup();
        }
    }
    // Service and instance: the container's dictionary columns.
    let services = dict::encode(records.iter().map(|r| r.service.as_str()), usize::MAX);
    let instances = dict::encode(records.iter().map(|r| r.instance.as_str()), usize::MAX);
    keys.extend(services.distinct.iter().map(|v| field_key("service", v)));
    keys.extend(instances.distinct.iter().map(|v| field_key("instance", v)));
    (cols[2], cols[3]) = (services.bytes, instances.bytes);
    keys.sort_unstable();
    keys.dedup();
    let mut bloom = Bloom::with_capacity(keys.len().max(tokens.min(1)));
    for k in &keys {
        bloom.insert(k);
    }
    let bloom = bloom.to_bytes();
    let mut summary = Vec::new();
    put_varint(&mut summary, records.len() as u64);
    put_varint(&mut summary, records.first().map_or(0, |r| r.unix_nanos));
    put_varint(&mut summary, records.last().map_or(0, |r| r.unix_nanos));
    Ok(framing::encode(MAGIC, &[&summary, &bloom], &cols)?.0)
}

/// A block read back: its metadata and filter, the columns read on demand.
pub struct Block {
    pub count: usize,
    pub min_ts: u64,
    pub max_ts: u64,
    pub bytes_on_disk: u64,
    bloom: Bloom,
    framed: Framed,
}

impl Block {
    /// Reads a block file's header (not its columns) and checks it.
    pub fn read(path: &Path) -> Result<Block, Damaged> {
        let (framed, parts) = Framed::open(path, MAGIC).map_err(|_| Damaged)?;
        let [summary, bloom] = parts.as_slice() else { return Err(Damaged) };
        if framed.columns.len() != COLUMNS {
            return Err(Damaged);
        }
        let mut h = Reader::new(summary);
        let count = h.varint()? as usize;
        let (min_ts, max_ts) = (h.varint()?, h.varint()?);
        // Every record takes at least a byte of the time column: bounds what readers allocate.
        if count > framed.columns[0].raw {
            return Err(Damaged);
        }
        let bloom = Bloom::from_bytes(bloom).ok_or(Damaged)?;
        Ok(Block { count, min_ts, max_ts, bytes_on_disk: framed.file_bytes, bloom, framed })
    }

    /// Whether the block may hold every one of these words and field values.
    pub fn may_match(&self, words: &[String], values: &[(String, String)]) -> bool {
        words.iter().all(|w| self.bloom.may_contain(w.as_bytes()))
            && values.iter().all(|(f, v)| self.bloom.may_contain(&field_key(f, v)))
    }

    fn column(&self, i: usize) -> Result<Arc<Vec<u8>>, Damaged> {
        self.framed.reader().and_then(|r| r.column(i)).map_err(|_| Damaged)
    }

    /// Timestamps of every record, in order.
    pub fn times(&self) -> Result<Vec<u64>, Damaged> {
        let c = self.column(0)?;
        let mut r = Reader::new(&c);
        let mut out = Vec::with_capacity(self.count);
        let mut t = 0u64;
        for _ in 0..self.count {
            t = t.checked_add(r.varint()?).ok_or(Damaged)?;
            out.push(t);
        }
        Ok(out)
    }

    /// Every record, in time order.
    pub fn records(&self) -> Result<Vec<LogRecord>, Damaged> {
        let times = self.times()?;
        let sev = self.column(1)?;
        if sev.len() != self.count {
            return Err(Damaged);
        }
        let services = Dict::read(&self.column(2)?, self.count).map_err(|_| Damaged)?;
        let instances = Dict::read(&self.column(3)?, self.count).map_err(|_| Damaged)?;
        let (ids, bodies, rest) = (self.column(4)?, self.column(5)?, self.column(6)?);
        let (mut idr, mut br, mut rr) = (&ids[..], Reader::new(&bodies), Reader::new(&rest));
        let mut out = Vec::with_capacity(self.count);
        for (k, t) in times.into_iter().enumerate() {
            let (service, instance) = (services.get(k).to_owned(), instances.get(k).to_owned());
            let flags = *idr.first().ok_or(Damaged)?;
            idr = &idr[1..];
            let trace_id = if flags & 1 != 0 {
                let (a, b) = idr.split_at_checked(16).ok_or(Damaged)?;
                idr = b;
                Some(TraceId(a.try_into().map_err(|_| Damaged)?))
            } else {
                None
            };
            let span_id = if flags & 2 != 0 {
                let (a, b) = idr.split_at_checked(8).ok_or(Damaged)?;
                idr = b;
                Some(SpanId(a.try_into().map_err(|_| Damaged)?))
            } else {
                None
            };
            let body = br.str()?;
            let observed = rr.varint()?;
            let severity_text = rr.str()?;
            let resource = rr.attrs()?;
            let attributes = rr.attrs()?;
            out.push(LogRecord {
                unix_nanos: t,
                observed_unix_nanos: observed,
                severity: Severity(sev[k].min(24)),
                severity_text,
                body,
                service,
                instance,
                resource,
                attributes,
                trace_id,
                span_id,
            });
        }
        Ok(out)
    }
}
