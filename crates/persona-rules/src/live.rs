//! The segments in force: their compiled rules shared between the API (which changes them)
//! and the stream stage (which evaluates them on every profile change), and the evaluation
//! of one profile that yields its entries and exits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use persona_core::profile::Profile;
use persona_store::{ChangeSet, ProfileId, SegmentDef, SegmentId};
use serde::Serialize;

use crate::Rule;

/// A segment with its compiled rule.
#[derive(Debug, Clone)]
pub struct LiveSegment {
    pub def: SegmentDef,
    pub rule: Rule,
}

/// The segments in force. Readers take a snapshot; every change raises the generation, by
/// which the stream stage knows to back-fill.
#[derive(Debug, Default)]
pub struct SegmentRegistry {
    current: RwLock<Arc<Vec<LiveSegment>>>,
    generation: AtomicU64,
}

impl SegmentRegistry {
    /// The registry of stored definitions. A stored rule that no longer compiles (written by
    /// another version) is left out with an error in the log rather than stopping the server.
    pub fn from_defs(defs: Vec<SegmentDef>) -> Self {
        let registry = SegmentRegistry::default();
        registry.replace(defs);
        registry
    }

    pub fn snapshot(&self) -> Arc<Vec<LiveSegment>> {
        self.current.read().expect("not poisoned").clone()
    }

    /// Puts `defs` in force.
    pub fn replace(&self, defs: Vec<SegmentDef>) {
        let live = defs
            .into_iter()
            .filter_map(|def| match Rule::compile(&def.rule) {
                Ok(rule) => Some(LiveSegment { def, rule }),
                Err(e) => {
                    tracing::error!(segment = def.id, error = %e, "a stored segment rule does not compile; leaving it out");
                    None
                }
            })
            .collect();
        *self.current.write().expect("not poisoned") = Arc::new(live);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Raised by every [`Self::replace`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Why a membership changed, as the entry and exit events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The customer's own events changed the profile.
    Event,
    /// A new or changed segment was evaluated over every profile.
    Backfill,
    /// Time passed: a time-relative rule was evaluated again.
    Sweep,
    /// The profile was merged into another (its memberships end; the other's are evaluated).
    Merged,
}

/// One `segment.entered` or `segment.exited` event.
#[derive(Debug, Serialize)]
struct MembershipEvent<'a> {
    event: &'static str,
    profile_id: ProfileId,
    user_id: Option<&'a str>,
    segment_id: SegmentId,
    segment: &'a str,
    at: DateTime<Utc>,
    reason: Reason,
}

fn record(
    changes: &mut ChangeSet,
    profile: (ProfileId, &Profile),
    segment: (SegmentId, &str),
    entered: bool,
    at: DateTime<Utc>,
    reason: Reason,
) {
    changes.memberships.push((segment.0, profile.0, entered));
    let event = MembershipEvent {
        event: if entered {
            "segment.entered"
        } else {
            "segment.exited"
        },
        profile_id: profile.0,
        user_id: profile.1.user_id.as_deref(),
        segment_id: segment.0,
        segment: segment.1,
        at,
        reason,
    };
    changes
        .outbox
        .push((profile.0, serde_json::to_vec(&event).expect("serialises")));
}

/// Evaluates every segment on `profile` as of `at`, records each entry and exit in
/// `changes`, and updates `profile.segments`; true when they changed. Ids of segments no
/// longer in force are dropped silently (deleting a segment removed its members already).
pub fn reevaluate(
    id: ProfileId,
    profile: &mut Profile,
    segments: &[LiveSegment],
    at: DateTime<Utc>,
    reason: Reason,
    changes: &mut ChangeSet,
) -> bool {
    let view = profile.view(at);
    let now: Vec<SegmentId> = segments
        .iter()
        .filter(|s| s.rule.matches(&view))
        .map(|s| s.def.id)
        .collect();
    if now == profile.segments {
        return false;
    }
    let mut next: Vec<u64> = now.clone();
    next.sort_unstable();
    for s in segments {
        let (was, is) = (
            profile.segments.binary_search(&s.def.id).is_ok(),
            next.binary_search(&s.def.id).is_ok(),
        );
        if was != is {
            record(
                changes,
                (id, profile),
                (s.def.id, &s.def.name),
                is,
                at,
                reason,
            );
        }
    }
    profile.segments = next;
    true
}

/// Ends every membership of a profile merged into another.
pub fn merged_away(
    id: ProfileId,
    profile: &Profile,
    segments: &[LiveSegment],
    at: DateTime<Utc>,
    changes: &mut ChangeSet,
) {
    for s in segments {
        if profile.segments.binary_search(&s.def.id).is_ok() {
            record(
                changes,
                (id, profile),
                (s.def.id, &s.def.name),
                false,
                at,
                Reason::Merged,
            );
        }
    }
}
