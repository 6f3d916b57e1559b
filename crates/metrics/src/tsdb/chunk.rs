//! One series' samples in a compressed chunk: the Gorilla encoding Prometheus also uses.
//!
//! - Timestamps (milliseconds): the first in full (zig-zag varint), the second as a delta
//!   (varint), then the delta of deltas in variable-width buckets: `0` (a regular
//!   interval: one bit), `10` + 14 bits, `110` + 17 bits, `1110` + 20 bits, `1111` + 64 bits.
//! - Values (f64): the first in full, then the XOR with the previous value: `0` when equal
//!   (one bit), else `1` and either `0` + the meaningful bits in the previous window of
//!   leading and trailing zeros, or `1` + 5 bits of leading zeros + 6 bits of length + the
//!   bits.
//!
//! A regular scrape of a slowly changing counter costs about 1 to 2 bits per timestamp and
//! a few bits per value: ~1.3 bytes per sample on Prometheus's own data. Samples must be
//! appended in time order; the head keeps out-of-order samples in chunks of their own.

/// Most samples in one chunk (Prometheus cuts at 120: ~2 hours at 1-minute intervals).
pub const MAX_SAMPLES: usize = 120;

/// A chunk being written, or sealed (its bytes are then immutable).
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    bits: BitWriter,
    count: u16,
    first_t: i64,
    last_t: i64,
    last_v: f64,
    last_delta: i64,
    leading: u8,
    trailing: u8,
}

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("the sample is not newer than the chunk's last one")]
    OutOfOrder,
    #[error("the chunk is full")]
    Full,
}

impl Chunk {
    pub fn new() -> Self {
        Chunk { leading: u8::MAX, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// First and last timestamp (milliseconds), when not empty.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (self.count > 0).then_some((self.first_t, self.last_t))
    }

    /// The encoded bytes (what a block stores).
    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }

    /// Heap bytes the chunk holds (its buffer's capacity).
    pub fn heap_bytes(&self) -> usize {
        self.bits.bytes.capacity()
    }

    /// Gives back spare buffer capacity (a sealed chunk grows no more).
    pub fn shrink_to_fit(&mut self) {
        self.bits.bytes.shrink_to_fit();
    }

    /// Appends a sample (t in milliseconds, strictly after the previous one).
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), AppendError> {
        if self.count as usize >= MAX_SAMPLES {
            return Err(AppendError::Full);
        }
        match self.count {
            0 => {
                self.bits.varint(zigzag(t));
                self.bits.write(v.to_bits(), 64);
                self.first_t = t;
            }
            1 => {
                if t <= self.last_t {
                    return Err(AppendError::OutOfOrder);
                }
                let delta = t - self.last_t;
                self.bits.varint(delta as u64);
                self.xor(v);
                self.last_delta = delta;
            }
            _ => {
                if t <= self.last_t {
                    return Err(AppendError::OutOfOrder);
                }
                let delta = t - self.last_t;
                let dod = delta - self.last_delta;
                match dod {
                    0 => self.bits.bit(false),
                    -8191..=8192 => {
                        self.bits.write(0b10, 2);
                        self.bits.write(dod as u64 & mask(14), 14);
                    }
                    -65535..=65536 => {
                        self.bits.write(0b110, 3);
                        self.bits.write(dod as u64 & mask(17), 17);
                    }
                    -524287..=524288 => {
                        self.bits.write(0b1110, 4);
                        self.bits.write(dod as u64 & mask(20), 20);
                    }
                    _ => {
                        self.bits.write(0b1111, 4);
                        self.bits.write(dod as u64, 64);
                    }
                }
                self.xor(v);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_v = v;
        self.count += 1;
        Ok(())
    }

    fn xor(&mut self, v: f64) {
        let x = v.to_bits() ^ self.last_v.to_bits();
        if x == 0 {
            self.bits.bit(false);
            return;
        }
        self.bits.bit(true);
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.leading != u8::MAX && lead >= self.leading && trail >= self.trailing {
            self.bits.bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.bits.write(x >> self.trailing, sig);
        } else {
            self.leading = lead;
            self.trailing = trail;
            self.bits.bit(true);
            self.bits.write(lead as u64, 5);
            let sig = 64 - lead - trail;
            // 64 significant bits do not fit in 6 bits: 0 stands for 64.
            self.bits.write(if sig == 64 { 0 } else { sig as u64 }, 6);
            self.bits.write(x >> trail, sig);
        }
    }

    /// The samples, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(&self.bits.bytes, self.count)
    }
}

/// Decodes a sealed chunk's bytes holding `count` samples.
pub fn decode(bytes: &[u8], count: u16) -> Iter<'_> {
    Iter::new(bytes, count)
}

/// An iterator over a chunk's samples. A corrupt chunk ends early (it never panics).
pub struct Iter<'a> {
    r: BitReader<'a>,
    left: u16,
    n: u16,
    t: i64,
    v: f64,
    delta: i64,
    leading: u8,
    trailing: u8,
}

impl<'a> Iter<'a> {
    fn new(bytes: &'a [u8], count: u16) -> Self {
        Iter { r: BitReader { bytes, pos: 0 }, left: count, n: 0, t: 0, v: 0.0, delta: 0, leading: 0, trailing: 0 }
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        match self.n {
            0 => {
                self.t = unzigzag(self.r.varint()?);
                self.v = f64::from_bits(self.r.read(64)?);
            }
            1 => {
                self.delta = self.r.varint()? as i64;
                self.t = self.t.checked_add(self.delta)?;
                self.read_xor()?;
            }
            _ => {
                let mut prefix = 0;
                while prefix < 4 && self.r.bit()? {
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    1 => sign_extend(self.r.read(14)?, 14),
                    2 => sign_extend(self.r.read(17)?, 17),
                    3 => sign_extend(self.r.read(20)?, 20),
                    _ => self.r.read(64)? as i64,
                };
                self.delta = self.delta.checked_add(dod)?;
                self.t = self.t.checked_add(self.delta)?;
                self.read_xor()?;
            }
        }
        self.n += 1;
        Some((self.t, self.v))
    }

    fn read_xor(&mut self) -> Option<()> {
        if !self.r.bit()? {
            return Some(());
        }
        if self.r.bit()? {
            self.leading = self.r.read(5)? as u8;
            let sig = self.r.read(6)? as u8;
            let sig = if sig == 0 { 64 } else { sig };
            self.trailing = 64u8.checked_sub(self.leading)?.checked_sub(sig)?;
        }
        let sig = 64u8.checked_sub(self.leading)?.checked_sub(self.trailing)?;
        if sig == 0 {
            return None;
        }
        let x = self.r.read(sig)? << self.trailing;
        self.v = f64::from_bits(self.v.to_bits() ^ x);
        Some(())
    }
}

impl Iterator for Iter<'_> {
    type Item = (i64, f64);
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let s = self.step();
        if s.is_none() {
            self.left = 0;
        }
        s
    }
}

fn mask(bits: u8) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

fn sign_extend(v: u64, bits: u8) -> i64 {
    let shift = 64 - bits as u32;
    ((v << shift) as i64) >> shift
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// An append-only bit stream, most significant bit first.
#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte.
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, b: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if b && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    fn write(&mut self, v: u64, bits: u8) {
        for i in (0..bits).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            let more = v != 0;
            self.write(u64::from(byte | if more { 0x80 } else { 0 }), 8);
            if !more {
                break;
            }
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let b = byte >> (7 - self.pos % 8) & 1 == 1;
        self.pos += 1;
        Some(b)
    }

    fn read(&mut self, bits: u8) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..bits {
            v = v << 1 | u64::from(self.bit()?);
        }
        Some(v)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let byte = self.read(8)?;
            v |= (byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
