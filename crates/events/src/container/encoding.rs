//! The byte-level primitives every schema's encodings are built from: LEB128 varints,
//! length-prefixed UTF-8 strings, and a bounds-checked [`Reader`] whose every read is a
//! `Result` (a length can never ask for more than is left).

/// A decoding failure: the bytes are not what this version wrote.
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
