//! One micro-batch: profiles loaded from the store, changed in memory, written back as one
//! change set. Identity resolution happens here, against the store plus this batch's links.

use std::collections::HashMap;

use persona_core::profile::Profile;
use persona_store::{ChangeSet, EventRef, IdentityKey, ProfileId, ProfileStore, StoreError};

pub(crate) struct Batch<'s> {
    store: &'s dyn ProfileStore,
    session_gap: i64,
    /// Every profile touched in this batch, in its current state.
    profiles: HashMap<ProfileId, Profile>,
    /// Identity links made in this batch (storage key → profile).
    links: HashMap<String, ProfileId>,
    changes: ChangeSet,
    pub merges: u64,
}

impl<'s> Batch<'s> {
    pub fn new(store: &'s dyn ProfileStore, next_id: ProfileId, session_gap: i64) -> Self {
        Batch {
            store,
            session_gap,
            profiles: HashMap::new(),
            links: HashMap::new(),
            changes: ChangeSet {
                next_id,
                ..ChangeSet::default()
            },
            merges: 0,
        }
    }

    fn resolve(&self, key: &IdentityKey<'_>) -> Result<Option<ProfileId>, StoreError> {
        match self.links.get(&key.storage_key()) {
            Some(id) => Ok(Some(*id)),
            None => self.store.resolve(key),
        }
    }

    fn link(&mut self, key: IdentityKey<'_>, id: ProfileId) {
        self.links.insert(key.storage_key(), id);
    }

    /// The profile with id `id`, loaded into the batch.
    pub fn profile(&mut self, id: ProfileId) -> Result<&mut Profile, StoreError> {
        if !self.profiles.contains_key(&id) {
            // A linked id whose profile is gone would be a broken invariant; start afresh
            // rather than stop the stream.
            let p = self.store.get(id)?.unwrap_or_default();
            self.profiles.insert(id, p);
        }
        Ok(self.profiles.get_mut(&id).expect("inserted above"))
    }

    fn create(&mut self, profile: Profile) -> ProfileId {
        let id = self.changes.next_id;
        self.changes.next_id += 1;
        self.changes.created += 1;
        self.profiles.insert(id, profile);
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
        let old = self.profiles.remove(&from).expect("loaded above");
        self.profiles
            .get_mut(&into)
            .expect("loaded above")
            .merge(&old, self.session_gap);
        for anon in &old.anonymous_ids {
            self.link(IdentityKey::Anonymous(anon), into);
        }
        for user in old.user_id.iter().chain(&old.aliases) {
            self.link(IdentityKey::User(user), into);
        }
        self.changes.removed.push(from);
        self.changes.moved_events.push((from, into));
        self.merges += 1;
        Ok(())
    }

    pub fn add_event(&mut self, id: ProfileId, event: EventRef) {
        self.changes.events.push((id, event));
    }

    pub fn set_offset(&mut self, consumer: &str, offset: u64) {
        self.changes.offsets = vec![(consumer.to_owned(), offset)];
    }

    /// Writes the batch atomically; returns the next unused profile id.
    pub fn commit(mut self, durable: bool) -> Result<ProfileId, StoreError> {
        self.changes.durable = durable;
        let next_id = self.changes.next_id;
        self.changes.profiles = self.profiles.into_iter().collect();
        // A profile created and merged away within this batch was never stored.
        self.changes.links = self.links.into_iter().collect();
        self.store.apply(&self.changes)?;
        Ok(next_id)
    }
}
