//! A bounded window of recently seen `messageId`s.

use std::collections::{HashMap, VecDeque};
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

/// The message ids of the last `capacity` log records, whatever became of those records.
///
/// Defined by records, not by accepted events, so that a restarted processor rebuilds
/// exactly the window it had by reading the `capacity` records before its offset. Ids are
/// kept as 64-bit hashes: at half a million ids the chance of any false duplicate is about
/// one in 10⁸.
pub(crate) struct DedupeWindow {
    /// Hash → how many records of the window carry it.
    counts: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    /// One entry per record of the window, oldest first; `None` for records without an id.
    order: VecDeque<Option<u64>>,
    capacity: usize,
}

impl DedupeWindow {
    pub fn new(capacity: usize) -> Self {
        DedupeWindow {
            counts: HashMap::with_capacity_and_hasher(capacity.min(1 << 20), Default::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
            capacity,
        }
    }

    /// Adds the next record's id; true if an earlier record of the window had the same id.
    pub fn record(&mut self, id: Option<&str>) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let hash = id.map(|id| {
            // `DefaultHasher::new` has fixed keys, so a rebuilt window hashes alike.
            let mut h = DefaultHasher::new();
            id.hash(&mut h);
            h.finish()
        });
        let seen = hash.is_some_and(|h| self.counts.contains_key(&h));
        if let Some(h) = hash {
            *self.counts.entry(h).or_default() += 1;
        }
        self.order.push_back(hash);
        if self.order.len() > self.capacity
            && let Some(Some(old)) = self.order.pop_front()
            && let Some(n) = self.counts.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&old);
            }
        }
        seen
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_ids_of_the_last_records() {
        let mut w = DedupeWindow::new(3);
        assert!(!w.record(Some("a")));
        assert!(w.record(Some("a")), "a repeat within the window");
        assert!(!w.record(None));
        assert!(!w.record(Some("b")));
        // The window is now [a, None, b]: one of the two a's has left, the other not.
        assert!(w.record(Some("a")));
        assert!(!w.record(Some("c")));
        assert!(!w.record(Some("d")));
        assert!(!w.record(Some("e")));
        assert!(!w.record(Some("a")), "every a has left the window");
    }
}
