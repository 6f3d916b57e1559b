//! A bloom filter: "definitely not here" for trace ids and search tokens per block, so a
//! lookup decompresses only the blocks that may hold what it wants.

/// The fixed-seed hash of `bytes`, the hash a filter stores.
pub fn hash(bytes: &[u8]) -> u64 {
    crate::container::hash::stable(&[bytes])
}

/// The hash of the concatenation of `parts` (equal to [`hash`] of the joined bytes).
pub fn hash_parts(parts: &[&[u8]]) -> u64 {
    crate::container::hash::stable(parts)
}

/// A bloom filter with `k` probes derived by double hashing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u64>,
    k: u32,
}

impl Bloom {
    /// Sized for `n` items at about 1% false positives (~9.6 bits per item).
    pub fn with_capacity(n: usize) -> Self {
        let bits = ((n.max(1) as f64) * 9.6).ceil() as usize;
        Bloom { bits: vec![0; bits.div_ceil(64).max(1)], k: 7 }
    }

    fn probes(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        let m = (self.bits.len() * 64) as u64;
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        (0..self.k as u64).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    pub fn insert(&mut self, item: &[u8]) {
        self.insert_hash(hash(item));
    }

    /// Inserts an item by its [`hash`].
    pub fn insert_hash(&mut self, h: u64) {
        let probes: Vec<usize> = self.probes(h).collect();
        for p in probes {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    pub fn may_contain(&self, item: &[u8]) -> bool {
        let h = hash(item);
        self.probes(h).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bits.len() * 8);
        out.extend_from_slice(&self.k.to_le_bytes());
        for w in &self.bits {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 12 || !(b.len() - 4).is_multiple_of(8) {
            return None;
        }
        let k = u32::from_le_bytes(b[..4].try_into().ok()?);
        let bits = b[4..].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        (1..=16).contains(&k).then_some(Bloom { bits, k })
    }

    /// Bytes used.
    pub fn size(&self) -> usize {
        self.bits.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_parts_equals_hashing_their_concatenation() {
        assert_eq!(hash_parts(&[b"a:", b"http.route", b"=", b"/x"]), hash(b"a:http.route=/x"));
        assert_eq!(hash_parts(&[]), hash(b""));
    }

    #[test]
    fn no_false_negatives_few_false_positives() {
        let mut b = Bloom::with_capacity(10_000);
        for i in 0..10_000u32 {
            b.insert(&i.to_le_bytes());
        }
        assert!((0..10_000u32).all(|i| b.may_contain(&i.to_le_bytes())));
        let fp = (10_000..110_000u32).filter(|i| b.may_contain(&i.to_le_bytes())).count();
        assert!(fp < 2_000, "false positive rate {}%", fp as f64 / 1000.0);
        assert_eq!(Bloom::from_bytes(&b.to_bytes()), Some(b));
    }
}
