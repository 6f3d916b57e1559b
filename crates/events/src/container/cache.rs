//! The decompressed-column cache both schemas' readers go through
//! ([`super::block::OpenBlock::column`]): a process-wide map from (block, column) to the
//! column's bytes, within a byte budget, least recently used first out, so the blocks a busy
//! query touches are decompressed once. A column larger than a quarter of the budget is not
//! kept (one huge scan does not flush everything else).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// (block id, column index).
pub type ColumnKey = (u64, u32);

struct ColumnCache {
    /// key -> (bytes, last use)
    map: HashMap<ColumnKey, (Arc<Vec<u8>>, u64)>,
    bytes: usize,
    tick: u64,
    budget: usize,
}

static CACHE: LazyLock<Mutex<ColumnCache>> =
    LazyLock::new(|| Mutex::new(ColumnCache { map: HashMap::new(), bytes: 0, tick: 0, budget: 256 << 20 }));

fn cache() -> std::sync::MutexGuard<'static, ColumnCache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the cache's budget (bytes; 0 turns it off).
pub fn set_budget(bytes: usize) {
    let mut c = cache();
    c.budget = bytes;
    c.evict();
}

/// A cached column, marked as just used.
pub fn get(key: ColumnKey) -> Option<Arc<Vec<u8>>> {
    cache().get(key)
}

/// Keeps a column, evicting the least recently used when over budget.
pub fn put(key: ColumnKey, v: Arc<Vec<u8>>) {
    cache().put(key, v)
}

impl ColumnCache {
    fn get(&mut self, key: ColumnKey) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(&key).map(|(v, used)| {
            *used = t;
            v.clone()
        })
    }

    fn put(&mut self, key: ColumnKey, v: Arc<Vec<u8>>) {
        if v.len() > self.budget / 4 {
            return;
        }
        self.tick += 1;
        self.bytes += v.len();
        if let Some((old, _)) = self.map.insert(key, (v, self.tick)) {
            self.bytes -= old.len();
        }
        self.evict();
    }

    fn evict(&mut self) {
        if self.bytes <= self.budget {
            return;
        }
        // Drop the least recently used entries until a quarter of the budget is free.
        let mut by_age: Vec<(ColumnKey, u64, usize)> =
            self.map.iter().map(|(k, (v, used))| (*k, *used, v.len())).collect();
        by_age.sort_unstable_by_key(|e| e.1);
        let target = self.budget / 4 * 3;
        for (k, _, len) in by_age {
            if self.bytes <= target {
                break;
            }
            self.map.remove(&k);
            self.bytes -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_within_the_budget() {
        // A private cache: the global one is shared by every test in the process.
        let mut c = ColumnCache { map: HashMap::new(), bytes: 0, tick: 0, budget: 4000 };
        for i in 0..4 {
            c.put((1, i), Arc::new(vec![0; 900]));
        }
        assert_eq!(c.bytes, 3600);
        assert!(c.get((1, 0)).is_some(), "column 0 is now the most recent");
        c.put((2, 0), Arc::new(vec![0; 900]));
        // Over budget: evicted down to three quarters, oldest use first.
        assert!(c.bytes <= 3000);
        assert!(c.get((1, 0)).is_some() && c.get((2, 0)).is_some());
        assert!(c.get((1, 1)).is_none());
        c.put((3, 0), Arc::new(vec![0; 1001]));
        assert!(c.get((3, 0)).is_none(), "larger than a quarter of the budget: not kept");
        c.budget = 0;
        c.evict();
        assert_eq!((c.bytes, c.map.len()), (0, 0));
    }
}
