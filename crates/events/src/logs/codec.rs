//! The binary form of log records, used by the write-ahead log and inside blocks: varints
//! and length-prefixed strings, no field names. Decoding checks every length and never
//! panics; a damaged record is an error.

use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::log::{LogRecord, Severity};
use signalbox_core::span::{AttrValue, KeyValue};

/// A decoding failure (damaged or truncated bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("damaged log record")]
pub struct Damaged;

pub use crate::container::encoding::{put_str, put_varint};

pub fn put_attrs(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    put_varint(out, attrs.len() as u64);
    for kv in attrs {
        put_str(out, &kv.key);
        put_value(out, &kv.value);
    }
}

/// Appends one attribute value: a type tag, then the value.
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

/// Appends one record.
pub fn put_record(out: &mut Vec<u8>, r: &LogRecord) {
    put_varint(out, r.unix_nanos);
    put_varint(out, r.observed_unix_nanos);
    out.push(r.severity.0);
    put_str(out, &r.severity_text);
    put_str(out, &r.body);
    put_str(out, &r.service);
    put_str(out, &r.instance);
    put_attrs(out, &r.resource);
    put_attrs(out, &r.attributes);
    let flags = u8::from(r.trace_id.is_some()) | u8::from(r.span_id.is_some()) << 1;
    out.push(flags);
    if let Some(t) = &r.trace_id {
        out.extend_from_slice(&t.0);
    }
    if let Some(s) = &r.span_id {
        out.extend_from_slice(&s.0);
    }
}

/// Reads records from a byte slice.
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }

    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.b.len()
    }

    pub fn varint(&mut self) -> Result<u64, Damaged> {
        let mut v = 0u64;
        for i in 0..10 {
            let byte = *self.b.get(i).ok_or(Damaged)?;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.b = &self.b[i + 1..];
                return Ok(v);
            }
        }
        Err(Damaged)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Damaged> {
        let (head, rest) = (self.b.get(..n).ok_or(Damaged)?, self.b.get(n..).ok_or(Damaged)?);
        self.b = rest;
        Ok(head)
    }

    pub fn byte(&mut self) -> Result<u8, Damaged> {
        Ok(self.bytes(1)?[0])
    }

    pub fn str(&mut self) -> Result<String, Damaged> {
        let n = usize::try_from(self.varint()?).map_err(|_| Damaged)?;
        String::from_utf8(self.bytes(n)?.to_vec()).map_err(|_| Damaged)
    }

    pub fn attrs(&mut self) -> Result<Vec<KeyValue>, Damaged> {
        let n = self.varint()? as usize;
        // Each attribute takes at least 2 bytes: a count past what is left is damage.
        if n > self.b.len() / 2 {
            return Err(Damaged);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.str()?;
            let value = self.value()?;
            out.push(KeyValue { key: key.into(), value });
        }
        Ok(out)
    }

    /// One attribute value as [`put_value`] writes it.
    pub fn value(&mut self) -> Result<AttrValue, Damaged> {
        Ok(match self.byte()? {
            0 => AttrValue::Str(self.str()?),
            1 => AttrValue::Int(i64::from_le_bytes(self.bytes(8)?.try_into().map_err(|_| Damaged)?)),
            2 => AttrValue::Float(f64::from_le_bytes(self.bytes(8)?.try_into().map_err(|_| Damaged)?)),
            3 => AttrValue::Bool(false),
            4 => AttrValue::Bool(true),
            _ => return Err(Damaged),
        })
    }

    /// A length-prefixed string without copying it.
    pub fn str_ref(&mut self) -> Result<&'a str, Damaged> {
        let n = usize::try_from(self.varint()?).map_err(|_| Damaged)?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| Damaged)
    }

    pub fn record(&mut self) -> Result<LogRecord, Damaged> {
        let unix_nanos = self.varint()?;
        let observed_unix_nanos = self.varint()?;
        let severity = Severity(self.byte()?.min(24));
        let severity_text = self.str()?;
        let body = self.str()?;
        let service = self.str()?;
        let instance = self.str()?;
        let resource = self.attrs()?;
        let attributes = self.attrs()?;
        let flags = self.byte()?;
        let trace_id =
            if flags & 1 != 0 { Some(TraceId(self.bytes(16)?.try_into().map_err(|_| Damaged)?)) } else { None };
        let span_id = if flags & 2 != 0 { Some(SpanId(self.bytes(8)?.try_into().map_err(|_| Damaged)?)) } else { None };
        Ok(LogRecord {
            unix_nanos,
            observed_unix_nanos,
            severity,
            severity_text,
            body,
            service,
            instance,
            resource,
            attributes,
            trace_id,
            span_id,
        })
    }
}

/// A batch of records as one payload.
pub fn encode_batch(records: &[LogRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.body.len() + 64).sum());
    for r in records {
        put_record(&mut out, r);
    }
    out
}

/// Every record of a payload, or the damage.
pub fn decode_batch(b: &[u8]) -> Result<Vec<LogRecord>, Damaged> {
    let mut r = Reader::new(b);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(r.record()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(i: u64) -> LogRecord {
        LogRecord {
            unix_nanos: 1_796_205_600_000_000_000 + i,
            observed_unix_nanos: 1_796_205_600_000_000_000 + i + 5,
            severity: if i.is_multiple_of(3) { Severity::ERROR } else { Severity::INFO },
            severity_text: "E".into(),
            body: format!("request {i} failed: connection reset ünïcode"),
            service: "checkout".into(),
            instance: format!("checkout-{}", i % 2),
            resource: vec![KeyValue::str("host.name", "node-7")],
            attributes: vec![
                KeyValue::int("status", 500 + i as i64),
                KeyValue { key: "ratio".into(), value: AttrValue::Float(0.25) },
                KeyValue { key: "retry".into(), value: AttrValue::Bool(i.is_multiple_of(2)) },
            ],
            trace_id: (i.is_multiple_of(2)).then(|| TraceId([i as u8 + 1; 16])),
            span_id: i.is_multiple_of(4).then_some(SpanId([7; 8])),
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_an_error() {
        let recs: Vec<LogRecord> = (0..20).map(sample).collect();
        let b = encode_batch(&recs);
        assert_eq!(decode_batch(&b).unwrap(), recs);
        for at in 0..b.len() {
            let mut bad = b.clone();
            bad[at] ^= 0x81;
            let _ = decode_batch(&bad);
            let _ = decode_batch(&b[..at]);
        }
    }
}
