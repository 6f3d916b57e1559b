//! A fast non-cryptographic hash for the event store's hot paths: bloom-filter tokens
//! (fixed seed: filters on disk must read back the same) and in-memory maps keyed by span
//! and trace ids or names (a seed drawn once per process, so crafted ids cannot force
//! collisions across runs).
//!
//! It reads eight bytes at a time, multiplies and rotates per word, and finishes with the
//! murmur3 avalanche. Streaming is exact: hashing parts one after another equals hashing
//! their concatenation, so a token can be hashed without building it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The streaming hasher.
#[derive(Clone)]
pub struct FastHasher {
    h: u64,
    buf: u64,
    nbuf: u32,
    len: u64,
}

impl FastHasher {
    pub fn with_seed(seed: u64) -> Self {
        FastHasher { h: seed ^ K, buf: 0, nbuf: 0, len: 0 }
    }

    #[inline]
    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(K).rotate_left(31);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        while self.nbuf != 0 && !bytes.is_empty() {
            self.buf |= (bytes[0] as u64) << (8 * self.nbuf);
            self.nbuf += 1;
            bytes = &bytes[1..];
            if self.nbuf == 8 {
                let w = self.buf;
                self.mix(w);
                self.buf = 0;
                self.nbuf = 0;
            }
        }
        if bytes.is_empty() {
            return;
        }
        // Here the buffer is empty: whole words go straight in.
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        for (i, b) in chunks.remainder().iter().enumerate() {
            self.buf |= (*b as u64) << (8 * i);
        }
        self.nbuf = chunks.remainder().len() as u32;
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.h;
        if self.nbuf != 0 {
            h = (h ^ self.buf).wrapping_mul(K).rotate_left(31);
        }
        h ^= self.len;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds hashers with this process's random seed.
#[derive(Clone, Copy)]
pub struct ProcessSeed(u64);

static SEED: LazyLock<u64> = LazyLock::new(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64));

impl Default for ProcessSeed {
    fn default() -> Self {
        ProcessSeed(*SEED)
    }
}

impl BuildHasher for ProcessSeed {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher::with_seed(self.0)
    }
}

/// A map with the fast hasher and the process seed.
pub type FastMap<K, V> = HashMap<K, V, ProcessSeed>;
/// A set with the fast hasher and the process seed.
pub type FastSet<T> = HashSet<T, ProcessSeed>;

/// The fixed-seed hash of the concatenation of `parts` (bloom filters on disk).
pub fn stable(parts: &[&[u8]]) -> u64 {
    let mut h = FastHasher::with_seed(0);
    for p in parts {
        h.write(p);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_concatenation_at_every_split() {
        let data: Vec<u8> = (0..40u8).collect();
        let whole = stable(&[&data]);
        for a in 0..data.len() {
            for b in a..data.len() {
                assert_eq!(stable(&[&data[..a], &data[a..b], &data[b..]]), whole, "split at {a}, {b}");
            }
        }
        assert_ne!(stable(&[b"ab"]), stable(&[b"ab\0"]), "length counts");
        assert_ne!(stable(&[b"a:x=1"]), stable(&[b"a:x=2"]));
    }

    #[test]
    fn spreads_similar_keys() {
        let mut buckets = [0u32; 64];
        for i in 0..64_000u32 {
            buckets[(stable(&[format!("tenant-{i}").as_bytes()]) % 64) as usize] += 1;
        }
        assert!(buckets.iter().all(|n| (800..1200).contains(n)), "{buckets:?}");
    }
}
