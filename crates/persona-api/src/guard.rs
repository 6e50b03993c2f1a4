//! The over-segmentation guard: a warning on a segment that is tiny, or whose members are
//! mostly in another segment too. Estimated on an even sample of the profiles with the
//! rules themselves, so the warnings are there the moment a segment is created, before
//! its back-fill ends.

use std::collections::HashMap;

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

/// Warnings per segment; segments without any are left out.
pub(crate) fn warnings(
    store: &dyn ProfileStore,
    live: &Live,
) -> Result<HashMap<SegmentId, Vec<String>>, StoreError> {
    let mut out: HashMap<SegmentId, Vec<String>> = HashMap::new();
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
