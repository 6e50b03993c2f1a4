//! What is evaluated on every profile change: the rule segments and the active cluster
//! models, shared between the API (which changes them) and the stream stage (which
//! evaluates them), and the evaluation of one profile that yields its entries and exits.

mod events;
pub mod models;
pub mod rfm;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use persona_core::profile::Profile;
use persona_store::{ChangeSet, ProfileId, SegmentDef, SegmentId};
use serde::Serialize;

use self::events::{Member, record};
pub use self::events::{Who, deleted_exit};
pub use self::models::{LiveModel, ModelDoc, ModelStatus};
pub use self::rfm::RfmFit;
use crate::Rule;

/// A segment with its compiled rule.
#[derive(Debug, Clone)]
pub struct LiveSegment {
    pub def: SegmentDef,
    pub rule: Rule,
}

/// Everything in force at one moment.
#[derive(Debug, Default)]
pub struct Live {
    pub segments: Vec<LiveSegment>,
    /// The active models, by id.
    pub models: Vec<LiveModel>,
}

impl Live {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.models.is_empty()
    }

    /// Whether time alone can change a membership, so a sweep must evaluate again.
    pub fn time_relative(&self) -> bool {
        self.segments.iter().any(|s| s.rule.time_relative())
            || self.models.iter().any(LiveModel::time_relative)
    }

    pub fn model(&self, id: u64) -> Option<&LiveModel> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// The segments and models in force. Readers take a snapshot; every change raises the
/// generation, by which the stream stage knows to back-fill.
#[derive(Debug, Default)]
pub struct SegmentRegistry {
    current: RwLock<Arc<Live>>,
    generation: AtomicU64,
    /// The RFM edges in force. Scores are computed when a profile is read, so a new fit
    /// needs no pass over the profiles.
    rfm: RwLock<Option<Arc<RfmFit>>>,
    /// The generation in which each segment (or model) last changed, to tell whether its
    /// back-fill is done: `(false, segment id)`, `(true, model id)`.
    changed: Mutex<HashMap<(bool, u64), u64>>,
    /// The pass over every profile in progress, as the stream stage reports it.
    pass: Mutex<PassProgress>,
    /// The newest generation whose back-fill pass has finished.
    backfilled: AtomicU64,
    /// The stream stage's batch in progress: 0 when none, [`STARTING`] while it takes its
    /// snapshot, else the registry generation it read before the snapshot, plus one.
    batch: AtomicU64,
}

/// [`SegmentRegistry::batch`] while a batch is taking its snapshot.
const STARTING: u64 = u64::MAX;

/// Marks the stream stage's batch in progress until dropped.
pub struct BatchInProgress<'a>(&'a SegmentRegistry);

impl Drop for BatchInProgress<'_> {
    fn drop(&mut self) {
        self.0.batch.store(0, Ordering::SeqCst);
    }
}

/// How far a pass over every profile has come.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassProgress {
    /// `None` when no pass is running.
    pub reason: Option<Reason>,
    pub generation: u64,
    pub profiles_done: u64,
    pub profiles_total: u64,
    pub started_at: Option<DateTime<Utc>>,
}

/// Where the back-fill of one segment or model stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Backfill {
    /// Waiting for the pass in progress (for an earlier change) to end.
    Queued,
    Running {
        profiles_done: u64,
        profiles_total: u64,
    },
    Done,
}

impl SegmentRegistry {
    /// The registry of stored definitions. A stored rule or model that no longer compiles
    /// (written by another version) is left out with an error in the log rather than
    /// stopping the server.
    pub fn from_stored(defs: Vec<SegmentDef>, models: &[ModelDoc]) -> Self {
        let registry = SegmentRegistry::default();
        registry.replace(Some(defs), Some(models));
        registry
    }

    pub fn snapshot(&self) -> Arc<Live> {
        self.current.read().expect("not poisoned").clone()
    }

    /// Puts these segment definitions in force.
    pub fn replace_segments(&self, defs: Vec<SegmentDef>) {
        self.replace(Some(defs), None);
    }

    /// Puts the active ones of these models in force.
    pub fn replace_models(&self, models: &[ModelDoc]) {
        self.replace(None, Some(models));
    }

    fn replace(&self, defs: Option<Vec<SegmentDef>>, models: Option<&[ModelDoc]>) {
        let mut current = self.current.write().expect("not poisoned");
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let mut changed = self.changed.lock().expect("not poisoned");
        let segments = match defs {
            None => current.segments.clone(),
            Some(defs) => defs
                .into_iter()
                .filter_map(|def| match Rule::compile(&def.rule) {
                    Ok(rule) => Some(LiveSegment { def, rule }),
                    Err(e) => {
                        tracing::error!(segment = def.id, error = %e, "a stored segment rule does not compile; leaving it out");
                        None
                    }
                })
                .collect(),
        };
        let models = match models {
            None => current.models.clone(),
            Some(docs) => {
                let mut live: Vec<LiveModel> = docs
                    .iter()
                    .filter_map(|doc| match LiveModel::from_doc(doc) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(model = doc.id, error = %e, "a stored model reads an unknown field; leaving it out");
                            None
                        }
                    })
                    .collect();
                live.sort_by_key(|m| m.id);
                live
            }
        };
        for s in &segments {
            let before = current.segments.iter().find(|o| o.def.id == s.def.id);
            if before.is_none_or(|o| o.def.version != s.def.version) {
                changed.insert((false, s.def.id), generation);
            }
        }
        for m in &models {
            if current.model(m.id).is_none() {
                changed.insert((true, m.id), generation);
            }
        }
        *current = Arc::new(Live { segments, models });
        self.generation.store(generation, Ordering::Release);
    }

    /// The stream stage starts a pass over `total` profiles.
    pub fn pass_started(&self, reason: Reason, generation: u64, total: u64) {
        *self.pass.lock().expect("not poisoned") = PassProgress {
            reason: Some(reason),
            generation,
            profiles_done: 0,
            profiles_total: total,
            started_at: Some(Utc::now()),
        };
    }

    /// The pass in progress evaluated `n` more profiles.
    pub fn pass_advanced(&self, n: u64) {
        self.pass.lock().expect("not poisoned").profiles_done += n;
    }

    /// The pass that started at `generation` went over every profile: a back-fill has
    /// brought every change up to that generation into force.
    pub fn pass_finished(&self, reason: Reason, generation: u64) {
        if reason == Reason::Backfill {
            self.backfilled.fetch_max(generation, Ordering::AcqRel);
        }
        *self.pass.lock().expect("not poisoned") = PassProgress::default();
    }

    pub fn pass(&self) -> PassProgress {
        self.pass.lock().expect("not poisoned").clone()
    }

    /// Where the back-fill after the last change of a segment (`model`: false) or model
    /// stands.
    pub fn backfill(&self, model: bool, id: u64) -> Backfill {
        let Some(&changed) = self.changed.lock().expect("not poisoned").get(&(model, id)) else {
            return Backfill::Queued;
        };
        if self.backfilled.load(Ordering::Acquire) >= changed {
            return Backfill::Done;
        }
        let pass = self.pass();
        match pass.reason {
            Some(Reason::Backfill) if pass.generation >= changed => Backfill::Running {
                profiles_done: pass.profiles_done,
                profiles_total: pass.profiles_total,
            },
            _ => Backfill::Queued,
        }
    }

    pub fn rfm(&self) -> Option<Arc<RfmFit>> {
        self.rfm.read().expect("not poisoned").clone()
    }

    /// Puts `fit` in force unless a newer version is already (two fits that overlap end
    /// in either order); whether it was.
    pub fn set_rfm(&self, fit: RfmFit) -> bool {
        let mut slot = self.rfm.write().expect("not poisoned");
        if slot
            .as_ref()
            .is_some_and(|now| now.edges.version > fit.edges.version)
        {
            return false;
        }
        *slot = Some(Arc::new(fit));
        true
    }

    /// What a back-fill must evaluate: the segments and models changed since the last
    /// back-fill finished.
    pub fn backfill_scope(&self) -> Scope {
        let done = self.backfilled.load(Ordering::Acquire);
        let mut segments = HashSet::new();
        let mut models = HashSet::new();
        for (&(model, id), &generation) in self.changed.lock().expect("not poisoned").iter() {
            if generation > done {
                if model {
                    models.insert(id);
                } else {
                    segments.insert(id);
                }
            }
        }
        Scope::Changed { segments, models }
    }

    /// Raised by every change of the segments or models.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The stream stage starts a batch: the snapshot it evaluates with, and a mark that
    /// lasts until the batch is committed (or fails), by which
    /// [`SegmentRegistry::wait_for_older_batches`] knows whether a batch may still write
    /// memberships by an older snapshot.
    pub fn batch_starts(&self) -> (BatchInProgress<'_>, Arc<Live>) {
        self.batch.store(STARTING, Ordering::SeqCst);
        // Read before the snapshot: `replace` stores the generation after the new
        // snapshot, so a snapshot taken after reading generation g is at least g's.
        let generation = self.generation.load(Ordering::SeqCst);
        let live = self.snapshot();
        self.batch.store(generation + 1, Ordering::SeqCst);
        (BatchInProgress(self), live)
    }

    /// Waits until no batch of the stream stage evaluates with a snapshot older than
    /// `generation`, at most `patience`; false when it had to stop waiting.
    pub fn wait_for_older_batches(&self, generation: u64, patience: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let mark = self.batch.load(Ordering::SeqCst);
            let older = mark == STARTING || (mark != 0 && mark - 1 < generation);
            if !older {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Which segments and models an evaluation covers; the others keep the memberships the
/// profile has.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Scope {
    /// Every one: a profile changed.
    #[default]
    All,
    /// A back-fill: those changed since the last back-fill finished (the rest are up to
    /// date, kept so by events and sweeps). With 100 segments in force, a new one costs one
    /// rule per profile, not 101.
    Changed {
        segments: HashSet<SegmentId>,
        models: HashSet<u64>,
    },
    /// A sweep: those that time alone can move.
    TimeRelative,
}

impl Scope {
    /// Whether it covers nothing (a back-fill after a deletion only).
    pub fn is_empty(&self) -> bool {
        matches!(self, Scope::Changed { segments, models } if segments.is_empty() && models.is_empty())
    }

    fn segment(&self, s: &LiveSegment) -> bool {
        match self {
            Scope::All => true,
            Scope::Changed { segments, .. } => segments.contains(&s.def.id),
            Scope::TimeRelative => s.rule.time_relative(),
        }
    }

    fn model(&self, m: &LiveModel) -> bool {
        match self {
            Scope::All => true,
            Scope::Changed { models, .. } => models.contains(&m.id),
            Scope::TimeRelative => m.time_relative(),
        }
    }
}

/// Why a membership changed, as the entry and exit events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The customer's own events changed the profile.
    Event,
    /// A new or changed segment or model was evaluated over every profile.
    Backfill,
    /// Time passed: a time-relative rule or feature was evaluated again.
    Sweep,
    /// The profile was merged into another (its memberships end; the other's are evaluated).
    Merged,
    /// The segment was deleted: each of its members leaves it.
    Deleted,
}

/// Evaluates the segments and active models in `scope` on `profile` as of `at`, records
/// each entry and exit in `changes`, and updates `profile.segments` and `profile.clusters`;
/// true when they changed. Segments and models no longer in force are dropped silently (deleting a
/// segment removed its members already; a model's successor announces its own clusters).
pub fn reevaluate(
    id: ProfileId,
    profile: &mut Profile,
    live: &Live,
    at: DateTime<Utc>,
    reason: Reason,
    scope: &Scope,
    changes: &mut ChangeSet,
) -> bool {
    let view = profile.view(at);
    let was_in = |id: SegmentId| profile.segments.binary_search(&id).is_ok();
    let mut segments: Vec<SegmentId> = live
        .segments
        .iter()
        .filter(|s| {
            if scope.segment(s) {
                s.rule.matches(&view)
            } else {
                was_in(s.def.id)
            }
        })
        .map(|s| s.def.id)
        .collect();
    let clusters: Vec<(u64, u32)> = live
        .models
        .iter()
        .filter_map(|m| {
            let cluster = if scope.model(m) {
                m.assign(&view)
            } else {
                profile.clusters.iter().find(|c| c.0 == m.id).map(|c| c.1)
            };
            cluster.map(|c| (m.id, c))
        })
        .collect();
    drop(view);
    segments.sort_unstable();
    if segments == profile.segments && clusters == profile.clusters {
        return false;
    }
    let who = Who::of(id, profile);
    for s in &live.segments {
        let was = profile.segments.binary_search(&s.def.id).is_ok();
        let is = segments.binary_search(&s.def.id).is_ok();
        if was != is {
            record(
                changes,
                who,
                Member::Rule(s.def.id, &s.def.name),
                is,
                at,
                reason,
            );
        }
    }
    for m in &live.models {
        let cluster_in = |list: &[(u64, u32)]| list.iter().find(|c| c.0 == m.id).map(|c| c.1);
        let (was, is) = (cluster_in(&profile.clusters), cluster_in(&clusters));
        if was != is {
            if let Some(c) = was {
                record(changes, who, Member::Cluster(m, c), false, at, reason);
            }
            if let Some(c) = is {
                record(changes, who, Member::Cluster(m, c), true, at, reason);
            }
        }
    }
    profile.segments = segments;
    profile.clusters = clusters;
    true
}

/// Ends every membership of a profile merged into another.
pub fn merged_away(
    id: ProfileId,
    profile: &Profile,
    live: &Live,
    at: DateTime<Utc>,
    changes: &mut ChangeSet,
) {
    let who = Who::of(id, profile);
    for s in &live.segments {
        if profile.segments.binary_search(&s.def.id).is_ok() {
            record(
                changes,
                who,
                Member::Rule(s.def.id, &s.def.name),
                false,
                at,
                Reason::Merged,
            );
        }
    }
    for &(model, cluster) in &profile.clusters {
        if let Some(m) = live.model(model) {
            record(
                changes,
                who,
                Member::Cluster(m, cluster),
                false,
                at,
                Reason::Merged,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_waits_for_a_batch_that_took_its_snapshot_before() {
        let registry = SegmentRegistry::default();
        let (in_progress, _) = registry.batch_starts();
        registry.replace_segments(Vec::new());
        let now = registry.generation();
        let short = std::time::Duration::from_millis(20);
        assert!(
            !registry.wait_for_older_batches(now, short),
            "the batch is older"
        );
        drop(in_progress);
        assert!(registry.wait_for_older_batches(now, short), "no batch now");
        let (_newer, _) = registry.batch_starts();
        assert!(
            registry.wait_for_older_batches(now, short),
            "a batch with the new snapshot"
        );
    }

    fn segment(id: SegmentId, rule: &str) -> LiveSegment {
        LiveSegment {
            rule: Rule::compile(rule).unwrap(),
            def: SegmentDef {
                id,
                name: format!("s{id}"),
                rule: rule.into(),
                created_at: 0,
                updated_at: 0,
                version: 1,
            },
        }
    }

    #[test]
    fn a_scoped_evaluation_moves_only_what_it_covers() {
        let live = Live {
            segments: vec![
                segment(1, "computed.frequency >= 1"),
                segment(2, "computed.monetary > 10"),
                segment(3, "computed.recency_days <= 30"),
            ],
            models: vec![],
        };
        let mut p = Profile::default();
        p.activity.purchases = 1;
        p.activity.revenue_micros = 50_000_000;
        p.activity.last_purchase = Some(Utc::now().timestamp_millis());
        let mut changes = ChangeSet::default();
        let at = Utc::now();
        let back_fill = Scope::Changed {
            segments: HashSet::from([2]),
            models: HashSet::new(),
        };
        assert!(reevaluate(
            7,
            &mut p,
            &live,
            at,
            Reason::Backfill,
            &back_fill,
            &mut changes
        ));
        assert_eq!(p.segments, [2]);
        assert_eq!(changes.memberships, [(2, 7, true)]);
        // A sweep evaluates the time-relative rule only.
        changes.clear();
        reevaluate(
            7,
            &mut p,
            &live,
            at,
            Reason::Sweep,
            &Scope::TimeRelative,
            &mut changes,
        );
        assert_eq!(p.segments, [2, 3]);
        // A profile change evaluates all of them.
        reevaluate(
            7,
            &mut p,
            &live,
            at,
            Reason::Event,
            &Scope::All,
            &mut changes,
        );
        assert_eq!(p.segments, [1, 2, 3]);
    }
}
