//! Connection limits every listener applies: a cap on open connections and a cap per client
//! IP address, so that one address flooding a port cannot take every slot (or every file
//! descriptor) and lock out the other clients.
//!
//! The total cap is a semaphore that accept loops wait on before accepting (further
//! connections wait in the kernel's accept queue); the per-address cap is checked right
//! after accepting, and a connection over it is closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const SHARDS: usize = 16;

/// The limits of one listener (or of several that share them). Cheap to clone.
#[derive(Clone)]
pub struct ConnLimits {
    inner: Arc<Inner>,
}

struct Inner {
    total: Arc<Semaphore>,
    max_total: usize,
    per_ip: usize,
    shards: [Mutex<HashMap<IpAddr, u32>>; SHARDS],
    refused_per_ip: AtomicU64,
}

/// Held while a connection is open; releases its slots when dropped.
pub struct ConnPermit {
    _total: OwnedSemaphorePermit,
    ip: Option<(Arc<Inner>, IpAddr)>,
}

impl ConnLimits {
    /// `max_total` connections in all, at most `per_ip` from one address (0: no per-address
    /// cap).
    pub fn new(max_total: usize, per_ip: usize) -> Self {
        let max_total = max_total.max(1);
        ConnLimits {
            inner: Arc::new(Inner {
                total: Arc::new(Semaphore::new(max_total)),
                max_total,
                per_ip,
                shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
                refused_per_ip: AtomicU64::new(0),
            }),
        }
    }

    /// Waits for a free slot under the total cap (call before `accept`).
    pub async fn slot(&self) -> Option<Slot> {
        self.inner.total.clone().acquire_owned().await.ok().map(Slot)
    }

    /// Admits an accepted connection from `ip` into `slot`, or refuses it (the caller closes
    /// it) when that address already holds its share.
    pub fn admit(&self, slot: Slot, ip: IpAddr) -> Option<ConnPermit> {
        let inner = &self.inner;
        if inner.per_ip == 0 {
            return Some(ConnPermit { _total: slot.0, ip: None });
        }
        let mut map = shard(inner, ip).lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n as usize >= inner.per_ip {
            drop(map);
            inner.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(ConnPermit { _total: slot.0, ip: Some((self.inner.clone(), ip)) })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.max_total - self.inner.total.available_permits()
    }

    /// Connections closed at once because their address held its share.
    pub fn refused_per_ip(&self) -> u64 {
        self.inner.refused_per_ip.load(Ordering::Relaxed)
    }

    pub fn max_total(&self) -> usize {
        self.inner.max_total
    }
}

/// A reserved slot under the total cap, not yet tied to a client.
pub struct Slot(OwnedSemaphorePermit);

fn shard(inner: &Inner, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
    let h = match ip {
        IpAddr::V4(a) => u32::from(a) as usize,
        // The interface identifier varies least within one client's /64: hash the prefix.
        IpAddr::V6(a) => (u128::from(a) >> 64) as usize ^ (u128::from(a) as usize),
    };
    &inner.shards[h.wrapping_mul(0x9E37_79B9) >> 7 & (SHARDS - 1)]
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some((inner, ip)) = self.ip.take() {
            let mut map = shard(&inner, ip).lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() {
        let limits = ConnLimits::new(10, 3);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(limits.admit(limits.slot().await.unwrap(), a).expect("within the share"));
        }
        assert!(limits.admit(limits.slot().await.unwrap(), a).is_none(), "a fourth from the same address");
        assert_eq!(limits.refused_per_ip(), 1);
        let other = limits.admit(limits.slot().await.unwrap(), b).expect("another address still gets in");
        assert_eq!(limits.open(), 4);
        held.pop();
        assert!(limits.admit(limits.slot().await.unwrap(), a).is_some(), "a slot freed for the address");
        drop((held, other));
        assert_eq!(limits.open(), 0);
    }
}
