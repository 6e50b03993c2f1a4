//! A profile's day buckets for rolling windows: a short vector sorted by day.
//!
//! At most [`WINDOW_DAYS`](super::activity::WINDOW_DAYS) entries, so a sorted vector serves
//! every lookup a tree would, and decoding a stored profile builds it without an allocation
//! per day (decoding is most of a segment back-fill's time). Stored as a map of day to
//! counts, exactly as the tree it replaced, so profiles written before read back unchanged.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::activity::DayCounts;

/// Day (days since the Unix epoch, UTC) → counts, oldest first, one entry per day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Days(Vec<(i64, DayCounts)>);

impl Days {
    /// Adds `counts` to the bucket of `day`.
    pub fn add(&mut self, day: i64, counts: DayCounts) {
        let slot = match self.0.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(i) => &mut self.0[i].1,
            Err(i) => {
                self.0.insert(i, (day, DayCounts::default()));
                &mut self.0[i].1
            }
        };
        slot.add(&counts);
    }

    /// Drops the buckets of days before `day`.
    pub fn keep_from(&mut self, day: i64) {
        let first_kept = self.0.partition_point(|(d, _)| *d < day);
        self.0.drain(..first_kept);
    }

    /// The counts of the days from `first` to `last`, both included, summed.
    pub fn sum(&self, first: i64, last: i64) -> DayCounts {
        let from = self.0.partition_point(|(d, _)| *d < first);
        let mut total = DayCounts::default();
        for (_, c) in self.0[from..].iter().take_while(|(d, _)| *d <= last) {
            total.add(c);
        }
        total
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &DayCounts)> {
        self.0.iter().map(|(d, c)| (*d, c))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(d, c)| (d, c)))
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DaysVisitor;

        impl<'de> Visitor<'de> for DaysVisitor {
            type Value = Days;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of day to counts")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Days, A::Error> {
                let mut days = Vec::with_capacity(map.size_hint().unwrap_or(0));
                let mut sorted = true;
                while let Some((day, counts)) = map.next_entry::<i64, DayCounts>()? {
                    sorted &= days.last().is_none_or(|(last, _)| *last < day);
                    days.push((day, counts));
                }
                // Written in order by this type and the tree before it; anything else is
                // put in order rather than refused.
                if !sorted {
                    let mut fixed = Days::default();
                    for (day, counts) in days {
                        fixed.add(day, counts);
                    }
                    return Ok(fixed);
                }
                Ok(Days(days))
            }
        }

        d.deserialize_map(DaysVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn counts(events: u32) -> DayCounts {
        DayCounts {
            events,
            ..DayCounts::default()
        }
    }

    #[test]
    fn reads_the_tree_it_replaced_and_writes_the_same_bytes() {
        let tree: BTreeMap<i64, DayCounts> = [(20_001, counts(2)), (20_003, counts(5))].into();
        let bytes = rmp_serde::to_vec(&tree).unwrap();
        let days: Days = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(
            days.iter().map(|(d, c)| (d, c.events)).collect::<Vec<_>>(),
            [(20_001, 2), (20_003, 5)]
        );
        assert_eq!(rmp_serde::to_vec(&days).unwrap(), bytes);
    }

    #[test]
    fn adds_sums_and_trims_by_day() {
        let mut days = Days::default();
        for (day, n) in [(5, 1), (3, 2), (5, 4), (9, 1)] {
            days.add(day, counts(n));
        }
        assert_eq!(days.sum(3, 5).events, 7);
        assert_eq!(days.sum(4, 8).events, 5);
        assert_eq!(days.sum(10, 20).events, 0);
        days.keep_from(4);
        assert_eq!(days.iter().map(|(d, _)| d).collect::<Vec<_>>(), [5, 9]);
    }
}
