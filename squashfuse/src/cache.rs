//! A small bounded LRU of decompressed blocks keyed by their position in the image.
//! Capacities are a few dozen to a few hundred entries, so eviction scans for the oldest
//! entry instead of keeping a linked list; blocks are shared as `Arc`s so a reply can use
//! one while it is evicted.

use std::collections::HashMap;
use std::sync::Arc;

/// At most `cap` blocks, the least recently used evicted first.
pub struct Lru<V> {
    map: HashMap<u64, (Arc<V>, u64)>,
    tick: u64,
    cap: usize,
}

impl<V> Lru<V> {
    /// An empty cache holding at most `cap` (at least 1) entries.
    pub fn new(cap: usize) -> Lru<V> {
        Lru {
            map: HashMap::with_capacity(cap.max(1)),
            tick: 0,
            cap: cap.max(1),
        }
    }

    /// The cached value for `key`, now the most recently used.
    pub fn get(&mut self, key: u64) -> Option<Arc<V>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(&key).map(|(v, t)| {
            *t = tick;
            Arc::clone(v)
        })
    }

    /// Stores `value` under `key`, evicting the least recently used entry when full.
    pub fn insert(&mut self, key: u64, value: Arc<V>) {
        self.tick += 1;
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key, (value, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_is_evicted() {
        let mut lru = Lru::new(2);
        lru.insert(1, Arc::new("a"));
        lru.insert(2, Arc::new("b"));
        assert_eq!(lru.get(1).as_deref(), Some(&"a"));
        lru.insert(3, Arc::new("c"));
        assert!(lru.get(2).is_none());
        assert_eq!(lru.get(1).as_deref(), Some(&"a"));
        assert_eq!(lru.get(3).as_deref(), Some(&"c"));
    }
}
