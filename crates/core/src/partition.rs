//! How a multi-node deployment splits stored telemetry: every trace, log stream and series
//! belongs to one of a fixed number of partitions, computed the same way on every node and
//! in every build, so that a receiver on any node and the storage node that owns the
//! partition agree without asking each other.
//!
//! - traces by trace id ([`of_trace`]): all spans of a trace land together;
//! - log streams by their label set ([`of_labels`]): a stream's lines stay in order;
//! - series by their label set ([`of_labels`]): a series' samples stay in one head.
//!
//! Which node owns which partition is decided elsewhere (the cluster layer, from the live
//! members recorded in etcd) and handed to consumers as an [`Owned`] watch. A single node
//! owns every partition.

use crate::ids::TraceId;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Partitions when the configuration names no other count. Fixed for the life of a cluster:
/// changing it moves almost every key.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// The partitions a node currently owns; it changes when members join or leave.
pub type Owned = tokio::sync::watch::Receiver<Arc<BTreeSet<u32>>>;

/// A 64-bit hash that never changes between builds, platforms or releases: FNV-1a with
/// splitmix64's finaliser (which spreads FNV's weak low bits).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(bytes);
    h.finish()
}

/// The partition of a trace.
pub fn of_trace(id: &TraceId, partitions: u32) -> u32 {
    (stable_hash(&id.0) % u64::from(partitions.max(1))) as u32
}

/// The partition of a log stream or series, from its labels in name order (the caller's
/// order must be sorted by name; duplicates are not expected).
pub fn of_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>, partitions: u32) -> u32 {
    let mut h = Fnv::default();
    for (name, value) in labels {
        h.write(name.as_bytes());
        h.write(&[0xff]);
        h.write(value.as_bytes());
        h.write(&[0xfe]);
    }
    (h.finish() % u64::from(partitions.max(1))) as u32
}

/// Every partition: what a single node owns.
pub fn all(partitions: u32) -> BTreeSet<u32> {
    (0..partitions.max(1)).collect()
}

/// A watch that always says "every partition" (single node).
pub fn own_all(partitions: u32) -> Owned {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(all(partitions)));
    // The receiver keeps the last value after the sender is gone.
    drop(tx);
    rx
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned_so_nodes_of_different_builds_agree() {
        // Changing these values would move every stored key to another partition.
        assert_eq!(stable_hash(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(stable_hash(b"signalbox"), 0x9e7b_b962_0979_4424);
    }

    #[test]
    fn keys_spread_evenly_over_partitions() {
        let mut counts = [0u32; 16];
        for i in 0u32..16_000 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            counts[of_trace(&TraceId(id), 16) as usize] += 1;
        }
        for (p, n) in counts.iter().enumerate() {
            assert!((800..1200).contains(n), "partition {p} got {n} of 16000 traces");
        }
    }

    #[test]
    fn a_single_node_owns_everything() {
        let owned = own_all(4);
        assert_eq!(**owned.borrow(), BTreeSet::from([0, 1, 2, 3]));
    }
}
