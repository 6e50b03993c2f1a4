//! The over-segmentation guard: a warning on a segment that is tiny, or whose members are
//! mostly in another segment too. Estimated on an even sample of the profiles with the
//! rules themselves, so the warnings are there the moment a segment is created, before
//! its back-fill ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use persona_rules::Live;
use persona_store::{ProfileStore, SegmentId, StoreError};

/// Profiles sampled, spread evenly over the profile ids.
const SAMPLE: u64 = 10_000;
/// Below this many profiles a share says too little to warn about.
const MIN_SAMPLE: usize = 100;
/// A segment holding less than this share of the customers is tiny.
const TINY_SHARE: f64 = 0.005;
/// Two segments overlap heavily when at least this share of the customers in either is in
/// both (the Jaccard index): near-duplicates, where one segment inside a much larger one
/// (VIPs among buyers) is a hierarchy and not warned about...
const OVERLAP_SHARE: f64 = 0.8;
/// ...when the smaller has this many sampled members, enough for the share to mean something.
const OVERLAP_MIN_MEMBERS: usize = 20;

/// How long warnings computed for one set of segments are served again: the sample takes
/// tens to hundreds of milliseconds, and a dashboard or a script listing segments every few
/// seconds must not pay that on every read. A change of the segments computes them anew.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// Warnings per segment.
type Warnings = HashMap<SegmentId, Vec<String>>;

/// The last warnings computed, with the registry generation and the time they are for.
#[derive(Default)]
pub struct WarningsCache(Mutex<Option<(u64, Instant, Warnings)>>);

impl WarningsCache {
    /// The warnings for `generation`, if computed less than [`FRESH_FOR`] ago.
    pub(crate) fn fresh(&self, generation: u64) -> Option<Warnings> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.as_ref()
            .filter(|(g, at, _)| *g == generation && at.elapsed() < FRESH_FOR)
            .map(|(_, _, w)| w.clone())
    }

    pub(crate) fn keep(&self, generation: u64, warnings: &Warnings) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((generation, Instant::now(), warnings.clone()));
    }
}

/// Warnings per segment; segments without any are left out.
pub(crate) fn warnings(store: &dyn ProfileStore, live: &Live) -> Result<Warnings, StoreError> {
    let mut out = Warnings::new();
    if live.segments.is_empty() {
        return Ok(out);
    }
    let now = Utc::now();
    let last = store.next_id()?.saturating_sub(1);
    let step = (last / SAMPLE).max(1);
    // Per sampled profile, the indices of the segments it matches.
    let mut matched: Vec<Vec<usize>> = Vec::new();
    let mut id = 1;
    while id <= last {
        if let Some(p) = store.get(id)? {
            let view = p.view(now);
            matched.push(
                live.segments
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.rule.matches(&view))
                    .map(|(i, _)| i)
                    .collect(),
            );
        }
        id += step;
    }
    let n = matched.len();
    if n < MIN_SAMPLE {
        return Ok(out);
    }
    let k = live.segments.len();
    let mut sizes = vec![0usize; k];
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    for m in &matched {
        for (x, &a) in m.iter().enumerate() {
            sizes[a] += 1;
            for &b in &m[x + 1..] {
                *pairs.entry((a, b)).or_default() += 1;
            }
        }
    }
    for (i, s) in live.segments.iter().enumerate() {
        let share = sizes[i] as f64 / n as f64;
        if sizes[i] == 0 {
            out.entry(s.def.id).or_default().push(format!(
                "matches none of the {n} customers sampled; check the rule's thresholds"
            ));
        } else if share < TINY_SHARE {
            out.entry(s.def.id).or_default().push(format!(
                "tiny: matches about {:.2}% of customers ({} of {n} sampled); a segment this small is seldom worth acting on",
                share * 100.0,
                sizes[i]
            ));
        }
    }
    let mut overlapping: Vec<_> = pairs.into_iter().collect();
    overlapping.sort_unstable();
    for ((a, b), both) in overlapping {
        // The warning goes on the smaller segment (the newer one when they are equal).
        let (small, other) = if sizes[a] < sizes[b] { (a, b) } else { (b, a) };
        if sizes[small] < OVERLAP_MIN_MEMBERS {
            continue;
        }
        let share = both as f64 / (sizes[a] + sizes[b] - both) as f64;
        if share >= OVERLAP_SHARE {
            let o = &live.segments[other].def;
            out.entry(live.segments[small].def.id)
                .or_default()
                .push(format!(
                    "overlaps heavily with {:?} (segment {}): {:.0}% of the customers in either are in both; merge the two, or make them exclusive with AND NOT",
                    o.name,
                    o.id,
                    share * 100.0
                ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn warnings_are_served_again_only_for_the_same_segments() {
        let cache = WarningsCache::default();
        assert!(cache.fresh(3).is_none());
        let warned = HashMap::from([(1, vec!["tiny".to_string()])]);
        cache.keep(3, &warned);
        assert_eq!(cache.fresh(3), Some(warned));
        assert!(
            cache.fresh(4).is_none(),
            "a change of the segments computes them anew"
        );
    }
}
