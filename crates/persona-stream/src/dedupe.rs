//! A bounded window of recently seen `messageId`s.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

/// The set's keys are hashes already; hashing them again would only cost time.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in for correctness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Remembers the last `capacity` message ids (as 64-bit hashes: at half a million ids the
/// chance of any false duplicate is about one in 10⁸).
pub(crate) struct DedupeWindow {
    seen: HashSet<u64, BuildHasherDefault<PreHashed>>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl DedupeWindow {
    pub fn new(capacity: usize) -> Self {
        DedupeWindow {
            seen: HashSet::with_capacity_and_hasher(capacity.min(1 << 20), Default::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
            capacity,
        }
    }

    /// Records `id`; false if it is already in the window.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return true;
        }
        // `DefaultHasher::new` has fixed keys, so a rebuilt window hashes alike.
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        let h = h.finish();
        if !self.seen.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_window() {
        let mut w = DedupeWindow::new(2);
        assert!(w.insert("a"));
        assert!(!w.insert("a"));
        assert!(w.insert("b"));
        assert!(w.insert("c"));
        assert!(w.insert("a"), "a left the window");
    }
}
