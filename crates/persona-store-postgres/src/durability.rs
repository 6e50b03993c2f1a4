//! Which consumer offsets are on disk at the server.
//!
//! The stream stage's change sets are committed without waiting for PostgreSQL to flush
//! its write-ahead log (`synchronous_commit = off`): a server crash may then undo the last
//! few hundred milliseconds of them, whole and in order, and the stream stage replays them
//! from the event log, which keeps everything after the durable offset. Each such commit's
//! position in the log is noted; its offsets count as durable once the server reports its
//! log flushed past that position.

use std::collections::{HashMap, VecDeque};

/// Offsets applied but not yet known to be flushed, by the WAL position of their commit.
#[derive(Default)]
pub(crate) struct Durability {
    synced: HashMap<String, u64>,
    pending: VecDeque<(i64, Vec<(String, u64)>)>,
}

impl Durability {
    /// Offsets stored at start: what the server has is what a crash leaves.
    pub(crate) fn new(stored: HashMap<String, u64>) -> Self {
        Durability {
            synced: stored,
            pending: VecDeque::new(),
        }
    }

    /// A commit that was not waited for, ending at WAL position `lsn`.
    pub(crate) fn committed_async(&mut self, lsn: i64, offsets: &[(String, u64)]) {
        self.pending.push_back((lsn, offsets.to_vec()));
    }

    /// A commit that was waited for: it and every commit before it are on disk.
    pub(crate) fn committed_durably(&mut self, offsets: &[(String, u64)]) {
        self.flushed_to(i64::MAX);
        for (consumer, offset) in offsets {
            self.synced.insert(consumer.clone(), *offset);
        }
    }

    /// Whether a flush position is worth asking the server for.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The server's WAL is on disk up to `lsn`.
    pub(crate) fn flushed_to(&mut self, lsn: i64) {
        while let Some((at, _)) = self.pending.front() {
            if *at > lsn {
                break;
            }
            let (_, offsets) = self.pending.pop_front().expect("just seen");
            for (consumer, offset) in offsets {
                self.synced.insert(consumer, offset);
            }
        }
    }

    /// Drops every commit awaiting the flush, and holds each durable offset to at most
    /// the one stored now (`stored`, read after the loss).
    pub(crate) fn forget_pending(&mut self, stored: &HashMap<String, u64>) {
        self.pending.clear();
        self.synced
            .retain(|consumer, offset| match stored.get(consumer) {
                Some(now) => {
                    *offset = (*offset).min(*now);
                    true
                }
                None => false,
            });
    }

    pub(crate) fn synced(&self, consumer: &str) -> Option<u64> {
        self.synced.get(consumer).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_durable_in_commit_order() {
        let mut d = Durability::new(HashMap::from([("p".to_string(), 5)]));
        d.committed_async(100, &[("p".into(), 10)]);
        d.committed_async(200, &[("p".into(), 20)]);
        assert_eq!(d.synced("p"), Some(5));
        d.flushed_to(150);
        assert_eq!(d.synced("p"), Some(10));
        assert!(d.has_pending());
        d.committed_durably(&[("q".into(), 1)]);
        assert_eq!((d.synced("p"), d.synced("q")), (Some(20), Some(1)));
        assert!(!d.has_pending());
        // A lost connection: what waited for the flush is forgotten, and a stored offset
        // that went back (a server crash undid commits) is what counts.
        d.committed_async(300, &[("p".into(), 30)]);
        d.forget_pending(&HashMap::from([("p".to_string(), 15)]));
        d.flushed_to(i64::MAX);
        assert_eq!((d.synced("p"), d.synced("q")), (Some(15), None));
    }
}
