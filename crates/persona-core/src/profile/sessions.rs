//! Sessions as a set of time intervals, kept so that arrival order does not matter.
//!
//! A session is a run of activity with no gap longer than the session gap. Keeping the
//! intervals (not just a running "current session") lets a late event land in the session it
//! belongs to, join two sessions, or start one in the past, and gives the same result as
//! sorting all events and splitting at the gaps.

use serde::{Deserialize, Serialize};

/// Sessions whose intervals are older than this many are folded into totals, which bounds the
/// size of a profile. A late event that falls among folded sessions starts a new one.
pub const MAX_KEPT_SESSIONS: usize = 500;

/// Disjoint, sorted `[start, end]` intervals in Unix milliseconds, more than `gap` apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sessions {
    intervals: Vec<(i64, i64)>,
    /// Sessions folded out of `intervals`, and their summed length in milliseconds.
    folded_count: u64,
    folded_ms: i64,
}

impl Sessions {
    /// Adds activity during `[start, end]`, joining every session within `gap` of it.
    pub fn add(&mut self, start: i64, end: i64, gap: i64) {
        let (mut start, mut end) = (start.min(end), start.max(end));
        // First interval that could touch: its end is at least start - gap.
        let lo = self
            .intervals
            .partition_point(|&(_, e)| e.saturating_add(gap) < start);
        let mut hi = lo;
        while hi < self.intervals.len() && self.intervals[hi].0.saturating_sub(gap) <= end {
            start = start.min(self.intervals[hi].0);
            end = end.max(self.intervals[hi].1);
            hi += 1;
        }
        self.intervals.splice(lo..hi, [(start, end)]);
        if self.intervals.len() > MAX_KEPT_SESSIONS {
            let fold = self.intervals.len() - MAX_KEPT_SESSIONS;
            for (s, e) in self.intervals.drain(..fold) {
                self.folded_count += 1;
                self.folded_ms += e - s;
            }
        }
    }

    /// Adds every session of `other`.
    pub fn merge(&mut self, other: &Sessions, gap: i64) {
        for &(s, e) in &other.intervals {
            self.add(s, e, gap);
        }
        self.folded_count += other.folded_count;
        self.folded_ms += other.folded_ms;
    }

    /// Number of sessions.
    pub fn count(&self) -> u64 {
        self.intervals.len() as u64 + self.folded_count
    }

    /// Summed length of all sessions in milliseconds (a session of one event lasts 0).
    pub fn total_ms(&self) -> i64 {
        self.folded_ms + self.intervals.iter().map(|(s, e)| e - s).sum::<i64>()
    }

    /// The kept intervals, oldest first.
    pub fn intervals(&self) -> &[(i64, i64)] {
        &self.intervals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GAP: i64 = 30 * 60 * 1000;

    /// The batch definition: sort, split where the gap exceeds `GAP`.
    fn batch(mut times: Vec<i64>) -> Vec<(i64, i64)> {
        times.sort();
        let mut out: Vec<(i64, i64)> = Vec::new();
        for t in times {
            match out.last_mut() {
                Some((_, e)) if t - *e <= GAP => *e = t,
                _ => out.push((t, t)),
            }
        }
        out
    }

    #[test]
    fn a_late_event_joins_two_sessions() {
        let mut s = Sessions::default();
        s.add(0, 0, GAP);
        s.add(GAP * 2, GAP * 2, GAP);
        assert_eq!(s.count(), 2);
        s.add(GAP, GAP, GAP);
        assert_eq!(s.intervals(), &[(0, GAP * 2)]);
        assert_eq!(s.total_ms(), GAP * 2);
    }

    proptest! {
        #[test]
        fn any_arrival_order_gives_the_batch_sessions(
            times in prop::collection::vec(0i64..20 * GAP, 0..60),
            split in 0usize..60,
        ) {
            let mut one = Sessions::default();
            for &t in &times {
                one.add(t, t, GAP);
            }
            prop_assert_eq!(one.intervals(), &batch(times.clone())[..]);

            // Two halves folded separately and merged give the same.
            let split = split.min(times.len());
            let (mut a, mut b) = (Sessions::default(), Sessions::default());
            times[..split].iter().for_each(|&t| a.add(t, t, GAP));
            times[split..].iter().for_each(|&t| b.add(t, t, GAP));
            b.merge(&a, GAP);
            prop_assert_eq!(b.intervals(), one.intervals());
        }
    }
}
