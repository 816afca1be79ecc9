//! What the router remembers: session pins (`X-Model-Affinity` → the first decision, for
//! `routing.session_ttl_seconds`, at most `routing.session_max_entries`) and the decision cache
//! (a hash of the routes and the selected conversation → the decision, so one turn never asks
//! the router twice). Both are a bounded map whose entries expire; the clock is passed in.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A map of at most `capacity` entries, each living `ttl` from its insertion. When full, the
/// oldest entry makes room.
pub struct Memory<K, V> {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Keys in insertion order, with the generation they were inserted at (a key inserted again
    /// leaves a stale pair behind, skipped when it comes up).
    order: VecDeque<(K, u64)>,
    generation: u64,
}

struct Entry<V> {
    value: V,
    expires: Instant,
    generation: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Memory<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Memory {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                generation: 0,
            }),
        }
    }

    /// The live value for `key`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let inner = self.inner.lock().ok()?;
        let entry = inner.entries.get(key)?;
        (entry.expires > now).then(|| entry.value.clone())
    }

    /// Keeps `value` for `key` from `now` on (replacing what was there).
    pub fn insert(&self, key: K, value: V, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.generation += 1;
        let generation = inner.generation;
        inner.entries.insert(
            key.clone(),
            Entry {
                value,
                expires: now + self.ttl,
                generation,
            },
        );
        inner.order.push_back((key, generation));
        while inner.entries.len() > self.capacity {
            inner.evict_oldest();
        }
        // Stale order pairs (keys inserted again) never outnumber live entries by much.
        if inner.order.len() > 2 * self.capacity {
            inner.compact();
        }
    }

    /// Live entries (for tests and metrics).
    pub fn len(&self, now: Instant) -> usize {
        self.inner.lock().map_or(0, |i| {
            i.entries.values().filter(|e| e.expires > now).count()
        })
    }

    pub fn is_empty(&self, now: Instant) -> bool {
        self.len(now) == 0
    }
}

impl<K: Hash + Eq + Clone, V> Inner<K, V> {
    fn evict_oldest(&mut self) {
        while let Some((key, generation)) = self.order.pop_front() {
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation)
            {
                self.entries.remove(&key);
                return;
            }
        }
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        self.order.retain(|(key, generation)| {
            entries
                .get(key)
                .is_some_and(|e| e.generation == *generation)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(ttl_s: u64, capacity: usize) -> Memory<String, u32> {
        Memory::new(Duration::from_secs(ttl_s), capacity)
    }

    #[test]
    fn an_entry_lives_for_its_ttl() {
        let m = memory(600, 10);
        let t0 = Instant::now();
        m.insert("session-a".into(), 1, t0);
        assert_eq!(
            m.get(&"session-a".into(), t0 + Duration::from_secs(599)),
            Some(1)
        );
        assert_eq!(
            m.get(&"session-a".into(), t0 + Duration::from_secs(600)),
            None
        );
    }

    #[test]
    fn when_full_the_oldest_entry_makes_room() {
        let m = memory(600, 3);
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            m.insert(k.into(), i as u32, t0);
        }
        assert_eq!(m.get(&"a".into(), t0), None);
        assert_eq!(m.get(&"d".into(), t0), Some(3));
        assert_eq!(m.len(t0), 3);
    }

    #[test]
    fn inserting_again_renews_and_the_renewed_entry_is_not_the_oldest() {
        let m = memory(10, 2);
        let t0 = Instant::now();
        m.insert("a".into(), 1, t0);
        m.insert("b".into(), 2, t0);
        m.insert("a".into(), 3, t0 + Duration::from_secs(5));
        m.insert("c".into(), 4, t0 + Duration::from_secs(5));
        assert_eq!(
            m.get(&"b".into(), t0 + Duration::from_secs(5)),
            None,
            "b was oldest"
        );
        assert_eq!(m.get(&"a".into(), t0 + Duration::from_secs(14)), Some(3));
    }

    #[test]
    fn bookkeeping_stays_bounded_under_repeated_inserts() {
        let m = memory(10, 4);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            m.insert(format!("k{}", i % 6), i, t0);
        }
        let inner = m.inner.lock().unwrap();
        assert!(inner.entries.len() <= 4);
        assert!(inner.order.len() <= 8);
    }
}
