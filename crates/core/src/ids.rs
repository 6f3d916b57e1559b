//! Trace and span identifiers with the W3C Trace Context sizes: 16 and 8 bytes.

use std::fmt;

/// A 16-byte trace id. All-zero is invalid per W3C Trace Context.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id. All-zero is invalid per W3C Trace Context.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A random, valid (non-zero) trace id.
    pub fn random() -> Self {
        loop {
            let v = fastrand::u128(..).to_be_bytes();
            if v != [0; 16] {
                return TraceId(v);
            }
        }
    }

    /// Parses 32 lowercase or uppercase hex digits; B3's 16-digit form is left-padded.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        match s.len() {
            32 => decode_hex(s.as_bytes(), &mut out)?,
            16 => decode_hex(s.as_bytes(), &mut out[8..])?,
            _ => return None,
        }
        (out != [0; 16]).then_some(TraceId(out))
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }
}

impl SpanId {
    /// A random, valid (non-zero) span id.
    pub fn random() -> Self {
        loop {
            let v = fastrand::u64(..).to_be_bytes();
            if v != [0; 8] {
                return SpanId(v);
            }
        }
    }

    /// Parses 16 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 8];
        if s.len() != 16 {
            return None;
        }
        decode_hex(s.as_bytes(), &mut out)?;
        (out != [0; 8]).then_some(SpanId(out))
    }

    /// 16 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// Writes the lowercase hex of `bytes` into `out`, which must be twice as long.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
}

/// Decodes exactly `out.len() * 2` hex digits from `src` into `out`.
pub fn decode_hex(src: &[u8], out: &mut [u8]) -> Option<()> {
    if src.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in src.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let t = TraceId::random();
        assert_eq!(TraceId::from_hex(&t.to_hex()), Some(t));
        let s = SpanId::random();
        assert_eq!(SpanId::from_hex(&s.to_hex()), Some(s));
        assert_eq!(TraceId::from_hex(&"0".repeat(32)), None);
        assert_eq!(TraceId::from_hex("zz"), None);
        assert_eq!(SpanId::from_hex("00f067aa0ba902bg"), None);
        let short = TraceId::from_hex("463ac35c9f6413ad").unwrap();
        assert_eq!(short.to_hex(), "0000000000000000463ac35c9f6413ad");
    }
}
