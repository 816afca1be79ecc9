//! A bounded map whose entries expire, for what one process remembers: the router's session
//! pins and decision cache (router::recall), and Responses conversations when no shared store
//! keeps them (conversations). Bounded by count and, when asked, by bytes; the clock is passed in.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A map of at most `capacity` entries (and `max_bytes` of their sizes), each living `ttl` from
/// its insertion. When full, the oldest entries make room.
pub struct Memory<K, V> {
    ttl: Duration,
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Keys in insertion order, with the generation they were inserted at (a key inserted again
    /// leaves a stale pair behind, skipped when it comes up).
    order: VecDeque<(K, u64)>,
    generation: u64,
    /// The sizes of the live entries, summed.
    bytes: usize,
}

struct Entry<V> {
    value: V,
    expires: Instant,
    generation: u64,
    bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Memory<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Memory {
            ttl,
            capacity: capacity.max(1),
            max_bytes: usize::MAX,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                generation: 0,
                bytes: 0,
            }),
        }
    }

    /// The same map, also bounded by the sizes given to [`Memory::insert_sized`].
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The live value for `key`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let inner = self.inner.lock().ok()?;
        let entry = inner.entries.get(key)?;
        (entry.expires > now).then(|| entry.value.clone())
    }

    /// Keeps `value` for `key` from `now` on (replacing what was there).
    pub fn insert(&self, key: K, value: V, now: Instant) {
        self.insert_sized(key, value, 0, now);
    }

    /// Keeps `value`, of size `bytes`, for `key` from `now` on (replacing what was there).
    /// Returns whether it was kept: a value larger than the whole budget is not.
    pub fn insert_sized(&self, key: K, value: V, bytes: usize, now: Instant) -> bool {
        if bytes > self.max_bytes {
            return false;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        inner.generation += 1;
        let generation = inner.generation;
        let old = inner.entries.insert(
            key.clone(),
            Entry {
                value,
                expires: now + self.ttl,
                generation,
                bytes,
            },
        );
        inner.bytes = inner.bytes - old.map_or(0, |e| e.bytes) + bytes;
        inner.order.push_back((key, generation));
        while inner.entries.len() > self.capacity || inner.bytes > self.max_bytes {
            inner.evict_oldest();
        }
        // Stale order pairs (keys inserted again) never outnumber live entries by much.
        if inner.order.len() > 2 * self.capacity {
            inner.compact();
        }
        true
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
                if let Some(e) = self.entries.remove(&key) {
                    self.bytes -= e.bytes;
                }
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
    fn a_byte_budget_evicts_the_oldest_and_refuses_what_cannot_fit() {
        let m = memory(600, 100).with_max_bytes(100);
        let t0 = Instant::now();
        assert!(m.insert_sized("a".into(), 1, 40, t0));
        assert!(m.insert_sized("b".into(), 2, 40, t0));
        assert!(m.insert_sized("c".into(), 3, 40, t0));
        assert_eq!(m.get(&"a".into(), t0), None, "a made room for c");
        assert_eq!(m.get(&"b".into(), t0), Some(2));
        // Replacing an entry counts its new size, not both.
        assert!(m.insert_sized("c".into(), 4, 60, t0));
        assert_eq!(m.get(&"b".into(), t0), Some(2));
        assert!(!m.insert_sized("huge".into(), 5, 101, t0));
        assert_eq!(m.get(&"huge".into(), t0), None);
        assert_eq!(m.inner.lock().unwrap().bytes, 100);
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
