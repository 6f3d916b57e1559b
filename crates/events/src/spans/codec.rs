//! The binary form of a span, shared by the write-ahead log and the blocks: little-endian
//! fixed-size ids and times, LEB128 varints for lengths and counts, UTF-8 strings.
//!
//! Resources and scopes are not written with each span: a record (or block) carries each
//! distinct one once ([`Origins`]) and a span names them by index. Format 1 (before
//! resources, scopes, links and flags existed) is still read.

use crate::container::hash::FastMap;
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{
    AttrValue, KeyValue, Resource, Scope, Span, SpanEvent, SpanFlags, SpanKind, SpanLink, StatusCode,
};
use std::sync::Arc;

pub use crate::container::encoding::{Corrupt, Reader, put_str, put_varint};

pub fn put_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => {
            out.push(0);
            put_str(out, s);
        }
        AttrValue::Int(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        AttrValue::Float(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_le_bytes());
        }
        AttrValue::Bool(b) => out.push(if *b { 4 } else { 3 }),
    }
}

pub fn get_value(r: &mut Reader) -> Result<AttrValue, Corrupt> {
    Ok(match r.u8()? {
        0 => AttrValue::Str(r.str()?),
        1 => AttrValue::Int(r.u64()? as i64),
        2 => AttrValue::Float(f64::from_bits(r.u64()?)),
        3 => AttrValue::Bool(false),
        4 => AttrValue::Bool(true),
        _ => return Err(Corrupt),
    })
}

pub fn put_attrs(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    put_varint(out, attrs.len() as u64);
    for kv in attrs {
        put_str(out, &kv.key);
        put_value(out, &kv.value);
    }
}

pub fn get_attrs(r: &mut Reader) -> Result<Vec<KeyValue>, Corrupt> {
    let n = r.length()?;
    let mut v = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        v.push(KeyValue { key: r.str()?.into(), value: get_value(r)? });
    }
    Ok(v)
}

pub fn put_events(out: &mut Vec<u8>, events: &[SpanEvent]) {
    put_varint(out, events.len() as u64);
    for e in events {
        out.extend_from_slice(&e.unix_nanos.to_le_bytes());
        put_str(out, &e.name);
        put_attrs(out, &e.attributes);
    }
}

pub fn get_events(r: &mut Reader) -> Result<Vec<SpanEvent>, Corrupt> {
    let n = r.length()?;
    let mut v = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        v.push(SpanEvent { unix_nanos: r.u64()?, name: r.str()?, attributes: get_attrs(r)? });
    }
    Ok(v)
}

/// Skips a string without allocating.
pub fn skip_str(r: &mut Reader) -> Result<(), Corrupt> {
    let n = r.length()?;
    r.bytes(n).map(|_| ())
}

fn skip_value(r: &mut Reader) -> Result<(), Corrupt> {
    match r.u8()? {
        0 => skip_str(r),
        1 | 2 => r.bytes(8).map(|_| ()),
        3 | 4 => Ok(()),
        _ => Err(Corrupt),
    }
}

fn skip_attrs(r: &mut Reader) -> Result<(), Corrupt> {
    for _ in 0..r.length()? {
        skip_str(r)?;
        skip_value(r)?;
    }
    Ok(())
}

/// Skips a span's events without allocating.
pub fn skip_events(r: &mut Reader) -> Result<(), Corrupt> {
    for _ in 0..r.length()? {
        r.bytes(8)?;
        skip_str(r)?;
        skip_attrs(r)?;
    }
    Ok(())
}

pub fn put_links(out: &mut Vec<u8>, links: &[SpanLink]) {
    put_varint(out, links.len() as u64);
    for l in links {
        out.extend_from_slice(&l.trace_id.0);
        out.extend_from_slice(&l.span_id.0);
        put_str(out, &l.trace_state);
        put_attrs(out, &l.attributes);
    }
}

pub fn get_links(r: &mut Reader) -> Result<Vec<SpanLink>, Corrupt> {
    let n = r.length()?;
    let mut v = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        v.push(SpanLink {
            trace_id: TraceId(r.bytes(16)?.try_into().map_err(|_| Corrupt)?),
            span_id: SpanId(r.bytes(8)?.try_into().map_err(|_| Corrupt)?),
            trace_state: r.str()?,
            attributes: get_attrs(r)?,
        });
    }
    Ok(v)
}

/// Skips a span's links without allocating.
pub fn skip_links(r: &mut Reader) -> Result<(), Corrupt> {
    for _ in 0..r.length()? {
        r.bytes(24)?;
        skip_str(r)?;
        skip_attrs(r)?;
    }
    Ok(())
}

/// A record's or block's resources and scopes, read back.
pub type Dictionaries = (Vec<Arc<Resource>>, Vec<Arc<Scope>>);

/// The distinct resources and scopes of a record or block, each kept once. The spans of a
/// batch share one `Arc`, so a span is placed by the pointer's hash; a new pointer is
/// compared by value (its encoding), once.
#[derive(Default)]
pub struct Origins {
    pub resources: Vec<Arc<Resource>>,
    pub scopes: Vec<Arc<Scope>>,
    resource_ptrs: FastMap<usize, u32>,
    scope_ptrs: FastMap<usize, u32>,
    by_value: FastMap<Vec<u8>, u32>,
}

impl Origins {
    /// The indexes of `s`'s resource and scope, adding them when new.
    pub fn index(&mut self, s: &Span) -> (u32, u32) {
        let r = match self.resource_ptrs.get(&(Arc::as_ptr(&s.resource) as usize)) {
            Some(i) => *i,
            None => {
                let mut key = vec![b'r'];
                put_attrs(&mut key, &s.resource.attributes);
                let next = self.resources.len() as u32;
                let i = *self.by_value.entry(key).or_insert(next);
                if i == next {
                    self.resources.push(s.resource.clone());
                }
                self.resource_ptrs.insert(Arc::as_ptr(&s.resource) as usize, i);
                i
            }
        };
        let c = match self.scope_ptrs.get(&(Arc::as_ptr(&s.scope) as usize)) {
            Some(i) => *i,
            None => {
                let mut key = vec![b's'];
                put_str(&mut key, &s.scope.name);
                put_str(&mut key, &s.scope.version);
                let next = self.scopes.len() as u32;
                let i = *self.by_value.entry(key).or_insert(next);
                if i == next {
                    self.scopes.push(s.scope.clone());
                }
                self.scope_ptrs.insert(Arc::as_ptr(&s.scope) as usize, i);
                i
            }
        };
        (r, c)
    }

    /// The dictionaries: the resources' attributes, then the scopes' names and versions.
    pub fn put(&self, out: &mut Vec<u8>) {
        put_varint(out, self.resources.len() as u64);
        for r in &self.resources {
            put_attrs(out, &r.attributes);
        }
        put_varint(out, self.scopes.len() as u64);
        for c in &self.scopes {
            put_str(out, &c.name);
            put_str(out, &c.version);
        }
    }

    /// Reads what [`Origins::put`] wrote.
    pub fn get(r: &mut Reader) -> Result<Dictionaries, Corrupt> {
        let n = r.length()?;
        let mut resources = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            resources.push(Arc::new(Resource { attributes: get_attrs(r)? }));
        }
        let n = r.length()?;
        let mut scopes = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            scopes.push(Arc::new(Scope { name: r.str()?, version: r.str()? }));
        }
        Ok((resources, scopes))
    }
}

fn put_head(out: &mut Vec<u8>, s: &Span) {
    out.extend_from_slice(&s.trace_id.0);
    out.extend_from_slice(&s.span_id.0);
    out.extend_from_slice(&s.parent_span_id.map(|p| p.0).unwrap_or([0; 8]));
    out.extend_from_slice(&s.start_unix_nanos.to_le_bytes());
    out.extend_from_slice(&s.end_unix_nanos.to_le_bytes());
    out.push(s.kind.code());
    out.push(s.status.code());
    put_str(out, &s.service);
    put_str(out, &s.name);
    put_str(out, &s.status_message);
    put_str(out, &s.trace_state);
    put_attrs(out, &s.attributes);
    put_events(out, &s.events);
}

/// Appends one span (format 2): the fields of format 1, then its flags, the indexes of its
/// resource and scope in the record's [`Origins`], and its links.
pub fn put_span(out: &mut Vec<u8>, s: &Span, origin: (u32, u32)) {
    put_head(out, s);
    out.push(s.flags.0);
    put_varint(out, origin.0 as u64);
    put_varint(out, origin.1 as u64);
    put_links(out, &s.links);
}

/// Reads one span of format 2, its resource and scope from the record's dictionaries.
pub fn get_span(r: &mut Reader, resources: &[Arc<Resource>], scopes: &[Arc<Scope>]) -> Result<Span, Corrupt> {
    let mut s = get_span_v1(r)?;
    s.flags = SpanFlags(r.u8()?);
    s.resource = resources.get(r.varint()? as usize).ok_or(Corrupt)?.clone();
    s.scope = scopes.get(r.varint()? as usize).ok_or(Corrupt)?.clone();
    s.links = get_links(r)?;
    Ok(s)
}

/// The write-ahead-log payload of one batch of spans ([`crate::container::wal`] records
/// carry it with the batch's span count): the format byte 2, the batch's resources and
/// scopes once ([`Origins`]), a varint count and the spans ([`put_span`]).
pub fn encode_batch(spans: &[Span]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(spans.len() * 256 + 64);
    encode_batch_into(spans, &mut payload);
    payload
}

/// [`encode_batch`], appended to `out` (the log writer encodes into its own buffer).
pub fn encode_batch_into(spans: &[Span], out: &mut Vec<u8>) {
    // The dictionaries come first but are known only after every span is placed: place
    // them all, then write once (no second buffer to copy the spans from).
    let mut origins = Origins::default();
    let placed: Vec<(u32, u32)> = spans.iter().map(|s| origins.index(s)).collect();
    out.push(2);
    origins.put(out);
    put_varint(out, spans.len() as u64);
    for (s, o) in spans.iter().zip(placed) {
        put_span(out, s, o);
    }
}

/// The spans of a write-ahead-log record: its span `count` and payload.
///
/// Three writers' records read back: this one's ([`encode_batch`] under the span count);
/// the trace store's own log before it moved onto the container (the same payload under a
/// count of 0); and format 1, before resources and links (the count, then the spans). A
/// format-1 payload could begin with the byte 2, so a payload is taken as format 2 only
/// when it parses to its end with exactly `count` spans.
pub fn decode_batch(count: u64, payload: &[u8]) -> Result<Vec<Span>, Corrupt> {
    if payload.is_empty() {
        return if count == 0 { Ok(Vec::new()) } else { Err(Corrupt) };
    }
    match decode_format2(payload) {
        Ok(spans) if count == 0 || spans.len() as u64 == count => Ok(spans),
        _ if count == 0 => Err(Corrupt),
        _ => {
            let mut r = Reader::new(payload);
            let mut spans = Vec::with_capacity((count as usize).min(1 << 16));
            for _ in 0..count {
                spans.push(get_span_v1(&mut r)?);
            }
            if r.done() { Ok(spans) } else { Err(Corrupt) }
        }
    }
}

fn decode_format2(payload: &[u8]) -> Result<Vec<Span>, Corrupt> {
    let mut r = Reader::new(payload);
    if r.u8()? != 2 {
        return Err(Corrupt);
    }
    let (resources, scopes) = Origins::get(&mut r)?;
    let n = r.varint()?;
    let mut spans = Vec::with_capacity((n as usize).min(1 << 16));
    for _ in 0..n {
        spans.push(get_span(&mut r, &resources, &scopes)?);
    }
    if r.done() { Ok(spans) } else { Err(Corrupt) }
}

/// Reads one span of format 1 (no resource, scope, links or flags).
pub fn get_span_v1(r: &mut Reader) -> Result<Span, Corrupt> {
    let trace_id = TraceId(r.bytes(16)?.try_into().map_err(|_| Corrupt)?);
    let span_id = SpanId(r.bytes(8)?.try_into().map_err(|_| Corrupt)?);
    let parent: [u8; 8] = r.bytes(8)?.try_into().map_err(|_| Corrupt)?;
    let start = r.u64()?;
    let end = r.u64()?;
    let kind = SpanKind::from_code(r.u8()?.into());
    let status = StatusCode::from_code(r.u8()?.into());
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id: (parent != [0; 8]).then_some(SpanId(parent)),
        start_unix_nanos: start,
        end_unix_nanos: end,
        kind,
        status,
        service: r.str()?,
        name: r.str()?,
        status_message: r.str()?,
        trace_state: r.str()?,
        attributes: get_attrs(r)?,
        events: get_events(r)?,
        links: Vec::new(),
        resource: Resource::none(),
        scope: Scope::none(),
        flags: SpanFlags::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::wal;

    pub fn sample() -> Span {
        Span {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_span_id: Some(SpanId::random()),
            trace_state: "k=v".into(),
            service: "orders".into(),
            name: "GET /orders".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_250_000_000,
            status: StatusCode::Error,
            status_message: "boom".into(),
            attributes: vec![
                KeyValue::str("http.route", "/orders"),
                KeyValue::int("http.status_code", 500),
                KeyValue { key: "f".into(), value: AttrValue::Float(1.5) },
                KeyValue { key: "b".into(), value: AttrValue::Bool(true) },
            ],
            events: vec![SpanEvent {
                unix_nanos: 5,
                name: "exception".into(),
                attributes: vec![KeyValue::str("exception.message", "x")],
            }],
            links: vec![SpanLink {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                trace_state: "a=b".into(),
                attributes: vec![KeyValue::str("link.kind", "batch")],
            }],
            resource: Arc::new(Resource { attributes: vec![KeyValue::str("host.name", "h1")] }),
            scope: Arc::new(Scope { name: "lib".into(), version: "1.0".into() }),
            flags: SpanFlags(SpanFlags::SHARED | SpanFlags::DEBUG),
        }
    }

    #[test]
    fn spans_round_trip_and_garbage_is_refused() {
        let s = sample();
        let mut other = sample();
        other.resource = Arc::new(Resource { attributes: vec![KeyValue::str("host.name", "h2")] });
        // An equal resource behind another pointer is the same dictionary entry.
        let mut same = sample();
        same.resource = Arc::new((*s.resource).clone());
        let mut origins = Origins::default();
        let (a, b, c) = (origins.index(&s), origins.index(&other), origins.index(&same));
        assert_eq!((a, b, c), ((0, 0), (1, 0), (0, 0)));
        let mut dict = Vec::new();
        origins.put(&mut dict);
        let (resources, scopes) = Origins::get(&mut Reader::new(&dict)).unwrap();
        let mut buf = Vec::new();
        put_span(&mut buf, &other, b);
        assert_eq!(get_span(&mut Reader::new(&buf), &resources, &scopes).unwrap(), other);
        for cut in [0, 10, 40, buf.len() - 1] {
            assert!(get_span(&mut Reader::new(&buf[..cut]), &resources, &scopes).is_err(), "truncated at {cut}");
        }
        assert!(get_span(&mut Reader::new(&buf), &resources[..1], &scopes).is_err(), "an index out of range");
        let mut huge = vec![0u8; 50];
        huge.extend_from_slice(&[0xff; 10]);
        assert!(get_span(&mut Reader::new(&huge), &resources, &scopes).is_err());
    }

    /// Every span batch a container log segment holds, decoded (what the pipeline replays).
    fn replay(dir: &std::path::Path, seg: u64) -> Vec<Vec<Span>> {
        let mut out = Vec::new();
        for (count, payload) in wal::read_segment(dir, seg).unwrap() {
            let Ok(spans) = decode_batch(count, &payload) else { break };
            out.push(spans);
        }
        out
    }

    fn plain(i: u64) -> Span {
        Span {
            service: "s".into(),
            name: format!("op{i}"),
            start_unix_nanos: i,
            end_unix_nanos: i + 1,
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            ..Default::default()
        }
    }

    fn append(w: &mut wal::Writer, batches: &[Vec<Span>]) -> u64 {
        let payloads: Vec<(u64, Vec<u8>)> = batches.iter().map(|b| (b.len() as u64, encode_batch(b))).collect();
        let refs: Vec<(u64, &[u8])> = payloads.iter().map(|(n, p)| (*n, p.as_slice())).collect();
        let seg = w.append(&refs).unwrap();
        w.sync().unwrap();
        seg
    }

    #[test]
    fn corrupt_log_segments_end_the_replay_and_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = wal::Writer::create(dir.path(), wal::Ledger::new(dir.path())).unwrap();
        let batches: Vec<Vec<Span>> = (0..5).map(|b| (0..4).map(|i| plain(b * 10 + i)).collect()).collect();
        let seg = append(&mut w, &batches);
        assert_eq!(replay(dir.path(), seg), batches);
        let good = std::fs::read(dir.path().join(format!("seg-{seg:016}.wal"))).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = good.clone();
            let at = (seed as usize) % bad.len();
            bad[at] ^= 1 << (seed >> 61);
            std::fs::write(dir.path().join("seg-0000000000000099.wal"), &bad).unwrap();
            let back = replay(dir.path(), 99);
            // The checksum stops the replay at the damaged record: what comes back is a prefix.
            assert!(back.len() < batches.len());
            assert_eq!(back[..], batches[..back.len()]);
        }
    }

    #[test]
    fn resources_links_and_flags_survive_the_log_and_old_segments_replay() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut w = wal::Writer::create(dir.path(), wal::Ledger::new(dir.path())).unwrap();
        let res = Arc::new(Resource { attributes: vec![KeyValue::str("host.name", "h1")] });
        let scope = Arc::new(Scope { name: "lib".into(), version: "2".into() });
        let batch: Vec<Span> = (0..3)
            .map(|i| {
                let mut s = plain(i);
                s.resource = res.clone();
                s.scope = scope.clone();
                s.flags = SpanFlags(SpanFlags::SHARED);
                s.links = vec![SpanLink {
                    trace_id: TraceId::random(),
                    span_id: SpanId::random(),
                    trace_state: String::new(),
                    attributes: vec![KeyValue::int("i", i as i64)],
                }];
                s
            })
            .collect();
        let seg = append(&mut w, std::slice::from_ref(&batch));
        let back = replay(dir.path(), seg);
        assert_eq!(back, vec![batch.clone()]);
        assert!(Arc::ptr_eq(&back[0][0].resource, &back[0][2].resource), "one resource per record");
        let raw = std::fs::read(dir.path().join(format!("seg-{seg:016}.wal"))).unwrap();
        assert_eq!(raw.windows(7).filter(|w| w == b"host.na").count(), 1, "the resource is written once");

        // A record of the trace store's own log before the container (count 0, then the
        // same payload) and a format-1 segment (two spans, resource attributes merged).
        let payload = encode_batch(&batch);
        let mut old = vec![0u8];
        old.extend_from_slice(&payload);
        let mut f = std::fs::File::create(dir.path().join("seg-0000000000000050.wal")).unwrap();
        f.write_all(&(old.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&crc32fast::hash(&old).to_le_bytes()).unwrap();
        f.write_all(&old).unwrap();
        drop(f);
        assert_eq!(replay(dir.path(), 50), vec![batch]);
        let v1 = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/src/fixtures/v1.wal")).unwrap();
        std::fs::write(dir.path().join("seg-0000000000000051.wal"), v1).unwrap();
        let old = replay(dir.path(), 51);
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].len(), 2);
        assert_eq!(old[0][1].status_message, "boom");
        assert_eq!(old[0][1].events[0].name, "retry");
        assert!(old[0][0].resource.attributes.is_empty() && old[0][0].links.is_empty());
        assert!(decode_batch(3, &[]).is_err() && decode_batch(0, &[2, 0]).is_err(), "damage is an error");
    }
}
