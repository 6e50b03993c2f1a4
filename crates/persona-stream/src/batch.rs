//! One micro-batch: profiles loaded from the store, changed in memory, written back as one
//! change set. Identity resolution happens here, against the store plus this batch's links.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use persona_core::parallel::{cores, split_work};
use persona_core::profile::{Profile, codec};
use persona_rules::live::{Scope, merged_away, reevaluate};
use persona_rules::{Live, Reason};
use persona_store::{ChangeSet, EventRef, IdentityKey, ProfileId, ProfileStore, StoreError};

/// What the processor keeps between batches: recently touched profiles (decoded) and
/// identities, and the batch's buffers. Keeping them is coherent because the processor is
/// the store's only writer; the processor drops the cache whenever a batch fails, as it may
/// then hold changes the store never got.
pub(crate) struct Cache {
    /// Profile id → profile and the number of the batch that last touched it.
    profiles: HashMap<ProfileId, (Profile, u64)>,
    /// Identity storage key → profile, as stored.
    identities: HashMap<String, ProfileId>,
    /// Most profiles kept between batches.
    capacity: usize,
    /// Most identities kept between batches.
    identity_capacity: usize,
    batch_no: u64,
    /// Profiles changed in the current batch, in the order first touched.
    dirty: Vec<ProfileId>,
    /// Identity links made in the current batch.
    links: HashMap<String, ProfileId>,
    /// Identities a prefetch found not stored, until the batch commits.
    absent: HashSet<String>,
    changes: ChangeSet,
    /// The storage key being looked up, kept to reuse its allocation.
    key: String,
}

impl Cache {
    pub fn new(capacity: usize, identity_capacity: usize) -> Self {
        Cache {
            profiles: HashMap::new(),
            identities: HashMap::new(),
            capacity,
            identity_capacity,
            batch_no: 0,
            dirty: Vec::new(),
            links: HashMap::new(),
            absent: HashSet::new(),
            changes: ChangeSet::default(),
            key: String::new(),
        }
    }

    /// After a commit: this batch's links become stored identities, and the profile cache
    /// is trimmed to the profiles of this batch when it has grown past its capacity.
    fn committed(&mut self) {
        self.absent.clear();
        self.identities.extend(self.links.drain());
        if self.identities.len() > self.identity_capacity {
            self.identities.clear();
        }
        if self.profiles.len() > self.capacity {
            let current = self.batch_no;
            self.profiles.retain(|_, (_, touched)| *touched == current);
            if self.profiles.len() > self.capacity {
                self.profiles.clear();
            }
        }
    }
}

impl Cache {
    /// Reads the identities named by `keys` (storage keys) that the cache does not hold,
    /// and their profiles, in one request each: for a store whose every read crosses a
    /// network ([`ProfileStore::remote`]), where asking for each event's customer in turn
    /// would cost a round trip per event. Keys not stored count as absent until the batch
    /// commits.
    pub fn prefetch(
        &mut self,
        store: &dyn ProfileStore,
        keys: HashSet<String>,
    ) -> Result<(), StoreError> {
        let wanted: Vec<String> = keys
            .iter()
            .filter(|k| !self.identities.contains_key(*k))
            .cloned()
            .collect();
        let found = store.resolve_many(&wanted)?;
        self.absent = wanted.into_iter().collect();
        for (key, id) in found {
            self.absent.remove(&key);
            self.identities.insert(key, id);
        }
        let mut ids: Vec<ProfileId> = keys
            .iter()
            .filter_map(|k| self.identities.get(k).copied())
            .filter(|id| !self.profiles.contains_key(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for (id, profile) in store.get_many(&ids)? {
            self.profiles.insert(id, (profile, 0));
        }
        Ok(())
    }
}

/// What a commit did.
pub(crate) struct Committed {
    /// The next unused profile id.
    pub next_id: ProfileId,
    /// A segment pass: the stored profiles it went over.
    pub passed: u64,
}

/// What one thread of a segment pass found in its id range.
#[derive(Default)]
struct PassPart {
    changes: ChangeSet,
    /// Profiles the processor has cached, left for the cached copy.
    cached: Vec<ProfileId>,
    passed: u64,
}

impl PassPart {
    fn absorb(&mut self, mut other: PassPart) {
        self.changes.absorb(&mut other.changes);
        self.cached.append(&mut other.cached);
        self.passed += other.passed;
    }
}

pub(crate) struct Batch<'s> {
    store: &'s dyn ProfileStore,
    session_gap: i64,
    cache: &'s mut Cache,
    pub merges: u64,
    /// The segments and models in force, evaluated on every changed profile at commit.
    live: Arc<Live>,
    /// Why this batch changes memberships (events, or a back-fill or sweep pass).
    reason: Reason,
    /// The segments and models it evaluates.
    scope: &'s Scope,
    /// A segment pass: the ids it goes over, first and last included.
    pass_range: Option<(ProfileId, ProfileId)>,
}

impl<'s> Batch<'s> {
    pub fn new(
        store: &'s dyn ProfileStore,
        cache: &'s mut Cache,
        next_id: ProfileId,
        session_gap: i64,
        live: Arc<Live>,
        reason: Reason,
        scope: &'s Scope,
    ) -> Self {
        cache.batch_no += 1;
        cache.dirty.clear();
        cache.links.clear();
        cache.changes.clear();
        cache.changes.next_id = next_id;
        Batch {
            store,
            session_gap,
            cache,
            merges: 0,
            live,
            reason,
            scope,
            pass_range: None,
        }
    }

    fn resolve(&mut self, key: &IdentityKey<'_>) -> Result<Option<ProfileId>, StoreError> {
        key.write_storage_key(&mut self.cache.key);
        let storage_key = self.cache.key.as_str();
        if let Some(id) = self.cache.links.get(storage_key) {
            return Ok(Some(*id));
        }
        if let Some(id) = self.cache.identities.get(storage_key) {
            return Ok(Some(*id));
        }
        if self.cache.absent.contains(storage_key) {
            return Ok(None);
        }
        let found = self.store.resolve(key)?;
        if let Some(id) = found {
            self.cache.identities.insert(self.cache.key.clone(), id);
        }
        Ok(found)
    }

    fn link(&mut self, key: IdentityKey<'_>, id: ProfileId) {
        self.cache.links.insert(key.storage_key(), id);
    }

    /// The profile with id `id`, loaded into the batch and marked changed.
    pub fn profile(&mut self, id: ProfileId) -> Result<&mut Profile, StoreError> {
        let batch_no = self.cache.batch_no;
        if !self.cache.profiles.contains_key(&id) {
            // A linked id whose profile is gone would be a broken invariant; start afresh
            // rather than stop the stream.
            let p = self.store.get(id)?.unwrap_or_default();
            self.cache.profiles.insert(id, (p, 0));
        }
        let (profile, touched) = self.cache.profiles.get_mut(&id).expect("inserted above");
        if *touched != batch_no {
            *touched = batch_no;
            self.cache.dirty.push(id);
        }
        Ok(profile)
    }

    /// Makes this batch a segment pass over the stored profiles with ids from `first` to
    /// `last`.
    pub fn pass_over(&mut self, first: ProfileId, last: ProfileId) {
        self.pass_range = Some((first, last));
    }

    fn create(&mut self, profile: Profile) -> ProfileId {
        let id = self.cache.changes.next_id;
        self.cache.changes.next_id += 1;
        self.cache.changes.created += 1;
        self.cache
            .profiles
            .insert(id, (profile, self.cache.batch_no));
        self.cache.dirty.push(id);
        id
    }

    /// The profile an event from `user_id` / `anonymous_id` belongs to, creating, linking
    /// and merging as the identity rules say:
    /// - a user id names one profile; an anonymous id seen with it joins that profile, and
    ///   the anonymous profile it had so far is merged in;
    /// - an anonymous id already merged into a different known user stays there (a shared
    ///   device does not merge two customers);
    /// - an anonymous id alone names its own profile until it is identified.
    pub fn resolve_event(
        &mut self,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
    ) -> Result<ProfileId, StoreError> {
        let Some(user) = user_id else {
            let anon = anonymous_id.expect("events carry a user or anonymous id");
            return match self.resolve(&IdentityKey::Anonymous(anon))? {
                Some(id) => Ok(id),
                None => {
                    let mut p = Profile::default();
                    p.add_anonymous_id(anon);
                    let id = self.create(p);
                    self.link(IdentityKey::Anonymous(anon), id);
                    Ok(id)
                }
            };
        };
        let target = match self.resolve(&IdentityKey::User(user))? {
            Some(id) => id,
            // A first identify adopts the anonymous profile rather than merging it away.
            None if self.adoptable(anonymous_id)?.is_some() => {
                let id = self.adoptable(anonymous_id)?.expect("checked");
                self.profile(id)?.user_id = Some(user.to_owned());
                self.link(IdentityKey::User(user), id);
                id
            }
            None => {
                let id = self.create(Profile {
                    user_id: Some(user.to_owned()),
                    ..Profile::default()
                });
                self.link(IdentityKey::User(user), id);
                id
            }
        };
        if let Some(anon) = anonymous_id {
            match self.resolve(&IdentityKey::Anonymous(anon))? {
                Some(id) if id == target => {}
                Some(id) => {
                    if self.profile(id)?.user_id.is_none() {
                        self.merge(id, target)?;
                    }
                }
                None => {
                    self.profile(target)?.add_anonymous_id(anon);
                    self.link(IdentityKey::Anonymous(anon), target);
                }
            }
        }
        Ok(target)
    }

    /// The anonymous-only profile of `anonymous_id`, if there is one.
    fn adoptable(&mut self, anonymous_id: Option<&str>) -> Result<Option<ProfileId>, StoreError> {
        let Some(anon) = anonymous_id else {
            return Ok(None);
        };
        match self.resolve(&IdentityKey::Anonymous(anon))? {
            Some(id) if self.profile(id)?.user_id.is_none() => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// An alias call: `previous` (an anonymous id or an earlier user id) is the same
    /// customer as the profile `target`.
    pub fn alias(&mut self, previous: &str, target: ProfileId) -> Result<(), StoreError> {
        let known = match self.resolve(&IdentityKey::User(previous))? {
            Some(id) => Some(id),
            None => self.resolve(&IdentityKey::Anonymous(previous))?,
        };
        match known {
            Some(id) if id == target => Ok(()),
            Some(id) => self.merge(id, target),
            None => {
                // Not seen yet: taken as an anonymous id, the usual case (analytics.js aliases
                // the anonymous id to the new user id). An earlier *user* id first seen in an
                // alias is not recognised as one: events sent later under it as `userId`
                // start a separate profile.
                self.profile(target)?.add_anonymous_id(previous);
                self.link(IdentityKey::Anonymous(previous), target);
                Ok(())
            }
        }
    }

    /// Merges profile `from` into `into`: state, identities and event index.
    fn merge(&mut self, from: ProfileId, into: ProfileId) -> Result<(), StoreError> {
        self.profile(from)?;
        self.profile(into)?;
        let (old, _) = self.cache.profiles.remove(&from).expect("loaded above");
        merged_away(from, &old, &self.live, Utc::now(), &mut self.cache.changes);
        self.cache
            .profiles
            .get_mut(&into)
            .expect("loaded above")
            .0
            .merge(&old, self.session_gap);
        for anon in &old.anonymous_ids {
            self.link(IdentityKey::Anonymous(anon), into);
        }
        for user in old.user_id.iter().chain(&old.aliases) {
            self.link(IdentityKey::User(user), into);
        }
        self.cache.changes.removed.push(from);
        self.cache.changes.moved_events.push((from, into));
        self.merges += 1;
        Ok(())
    }

    pub fn add_event(&mut self, id: ProfileId, event: EventRef) {
        self.cache.changes.events.push((id, event));
    }

    pub fn set_offset(&mut self, consumer: &str, offset: u64) {
        self.cache.changes.offsets.clear();
        self.cache
            .changes
            .offsets
            .push((consumer.to_owned(), offset));
    }

    /// Writes the batch atomically, with the memberships its changes lead to.
    pub fn commit(self) -> Result<Committed, StoreError> {
        let mut passed = 0;
        let cache = self.cache;
        let now = Utc::now();
        let (live, reason, scope) = (&*self.live, self.reason, self.scope);
        // Evaluates the segments on one profile, recording entries and exits; whether the
        // profile must be written: every one an event changed, and in a back-fill or sweep
        // those whose memberships moved.
        let settle = |id: ProfileId, profile: &mut Profile, out: &mut ChangeSet| {
            let moved =
                (!live.is_empty() || !profile.segments.is_empty() || !profile.clusters.is_empty())
                    && reevaluate(id, profile, live, now, reason, scope, out);
            reason == Reason::Event || moved
        };
        match self.pass_range {
            None => {
                // On one core, in the order the events touched them: splitting an event batch
                // cost replay throughput on two cores, where the store's background work needs
                // the second.
                for id in &cache.dirty {
                    // Absent: merged away within this batch.
                    if let Some((profile, _)) = cache.profiles.get_mut(id)
                        && settle(*id, profile, &mut cache.changes)
                    {
                        cache.changes.profiles.push((*id, codec::encode(profile)));
                    }
                }
            }
            Some((first, last)) => {
                // One part of the id range per core. Each thread reads, decodes, evaluates,
                // writes back (when memberships moved) and drops its profiles: a pass over a
                // million profiles keeps every core busy, never holds more than a chunk, and
                // never churns them through the cache. (Writing one chunk while the next is
                // evaluated measured no faster on two cores: they are busy already.)
                let (store, cached) = (self.store, &cache.profiles);
                let mut ranges = split_range(first, last, cores());
                let parts = split_work(&mut ranges, 1, |ranges| {
                    let mut part = PassPart::default();
                    for &(a, b) in ranges.iter() {
                        part.absorb(pass_range(store, cached, &settle, a, b)?);
                    }
                    Ok::<_, StoreError>(part)
                });
                let mut in_cache = Vec::new();
                for part in parts {
                    let mut part = part?;
                    cache.changes.absorb(&mut part.changes);
                    in_cache.append(&mut part.cached);
                    passed += part.passed;
                }
                // A cached profile is the copy later events change: evaluate that one in place
                // (it holds what the store holds, the processor being the only writer).
                for id in in_cache {
                    let (profile, _) = cache.profiles.get_mut(&id).expect("seen in the cache");
                    if settle(id, profile, &mut cache.changes) {
                        cache.changes.profiles.push((id, codec::encode(profile)));
                    }
                }
            }
        }
        let changes = &mut cache.changes;
        changes
            .links
            .extend(cache.links.iter().map(|(k, id)| (k.clone(), *id)));
        self.store.apply(changes)?;
        let next_id = changes.next_id;
        cache.committed();
        Ok(Committed { next_id, passed })
    }
}

/// Goes over the stored profiles with ids `first..=last` on this thread, settling each
/// with `settle` and writing those it says to (cached ones are left for their cached copy).
fn pass_range(
    store: &dyn ProfileStore,
    cached: &HashMap<ProfileId, (Profile, u64)>,
    settle: &(impl Fn(ProfileId, &mut Profile, &mut ChangeSet) -> bool + Sync),
    first: ProfileId,
    last: ProfileId,
) -> Result<PassPart, StoreError> {
    let mut part = PassPart::default();
    store.visit_encoded(first, last, &mut |id, bytes| {
        part.passed += 1;
        if cached.contains_key(&id) {
            part.cached.push(id);
        } else {
            // Read without the ids no rule reads; written back, when memberships moved, by
            // copying the stored bytes up to the memberships.
            let (mut profile, memberships) = codec::decode_for_pass(bytes)
                .map_err(|source| StoreError::Decode { id, source })?;
            if settle(id, &mut profile, &mut part.changes) {
                let stored = match memberships {
                    Some(m) => codec::reencode_memberships(bytes, m, &profile),
                    None => codec::encode(&profile),
                };
                part.changes.profiles.push((id, stored));
            }
        }
        Ok(())
    })?;
    Ok(part)
}

/// `first..=last` in `parts` contiguous ranges of about equal length (fewer when shorter).
fn split_range(first: ProfileId, last: ProfileId, parts: usize) -> Vec<(ProfileId, ProfileId)> {
    let len = last.saturating_sub(first) + 1;
    let size = len.div_ceil(parts.max(1) as u64);
    (0..parts as u64)
        .map(|i| first + i * size)
        .take_while(|&a| a <= last)
        .map(|a| (a, (a + size - 1).min(last)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::split_range;

    #[test]
    fn id_ranges_split_into_contiguous_parts() {
        assert_eq!(split_range(1, 10, 2), [(1, 5), (6, 10)]);
        assert_eq!(split_range(1, 11, 2), [(1, 6), (7, 11)]);
        assert_eq!(split_range(5, 5, 4), [(5, 5)]);
        assert_eq!(split_range(1, 3, 8), [(1, 1), (2, 2), (3, 3)]);
    }
}
