//! The binary form of a span, shared by the write-ahead log and the blocks: little-endian
//! fixed-size ids and times, LEB128 varints for lengths and counts, UTF-8 strings.
//!
//! Resources and scopes are not written with each span: a record (or block) carries each
//! distinct one once ([`Origins`]) and a span names them by index. Format 1 (before
//! resources, scopes, links and flags existed) is still read.

use crate::hash::FastMap;
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{
    AttrValue, KeyValue, Resource, Scope, Span, SpanEvent, SpanFlags, SpanKind, SpanLink, StatusCode,
};
use std::sync::Arc;

/// A decoding failure: the bytes are not a span this version wrote.
#[derive(Debug, thiserror::Error)]
#[error("corrupt or truncated record")]
pub struct Corrupt;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over encoded bytes.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.pos.checked_add(n).ok_or(Corrupt)?;
        let b = self.buf.get(self.pos..end).ok_or(Corrupt)?;
        self.pos = end;
        Ok(b)
    }
    pub fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.bytes(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| Corrupt)?))
    }
    pub fn varint(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Corrupt)
    }
    pub fn length(&mut self) -> Result<usize, Corrupt> {
        let n = self.varint()? as usize;
        // A length can never exceed what is left: refuse before allocating.
        if n > self.buf.len().saturating_sub(self.pos) { Err(Corrupt) } else { Ok(n) }
    }
    pub fn str(&mut self) -> Result<String, Corrupt> {
        let n = self.length()?;
        String::from_utf8(self.bytes(n)?.to_vec()).map_err(|_| Corrupt)
    }
}

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
}
