//! Profile state: where live profiles, the identity graph and the per-profile event index
//! are kept.
//!
//! [`ProfileStore`] is the one interface the stream stage writes through and the API reads
//! through. The embedded default, [`EmbeddedStore`], is a log-structured merge tree (fjall,
//! pure Rust, in the manner of RocksDB, which Kafka Streams and Flink use for operator state
//! for the same reason: every event rewrites a profile, and an LSM turns those random
//! updates into sequential writes); the PostgreSQL implementation for a server that
//! outgrows one machine (crate `persona-store-postgres`) sits behind the same trait, and
//! both pass the same checks ([`conformance`]). This crate
//! knows nothing about events, HTTP or async runtimes:
//! the stream stage decides what a profile contains, this crate only keeps it.

mod background;
pub mod conformance;
mod embedded;
mod error;
mod identity;

pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use identity::IdentityKey;

use std::collections::HashMap;

use persona_core::parallel::split_work;
use persona_core::profile::{Profile, codec};

/// Profiles one thread decodes at least in a scan, so a thread pays for its start.
const DECODE_PART: usize = 256;

/// A stored profile decoded; an error names the profile.
pub fn decode_profile(id: ProfileId, bytes: &[u8]) -> Result<Profile, StoreError> {
    codec::decode(bytes).map_err(|source| StoreError::Decode { id, source })
}

/// A segment's number.
pub type SegmentId = u64;

/// A segment's definition as stored: its rule as written (the caller compiles and checks
/// it; the store only keeps it). Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentDef {
    pub id: SegmentId,
    pub name: String,
    pub rule: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Raised on every change of the rule.
    pub version: u64,
}

/// What [`ProfileStore::visit_encoded`] hands each stored profile to.
pub type VisitEncoded<'a> = dyn FnMut(ProfileId, &[u8]) -> Result<(), StoreError> + 'a;

/// A profile's internal number. Identities (user and anonymous ids) point to it; merging
/// two profiles re-points identities, so the number of a merged-away profile is retired.
pub type ProfileId = u64;

/// Where one event of a profile is in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef {
    /// Event time, Unix milliseconds: the index is ordered by it.
    pub at: i64,
    pub offset: u64,
    /// Byte position in the log segment, for a direct read.
    pub position: u64,
}

/// Everything one micro-batch of the stream stage changes, applied atomically: either all of
/// it (with the consumer offset) is stored, or none of it. That is what makes replay after a
/// crash exactly-once in effect.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// Profiles written (created or updated), with their full new state, encoded with
    /// `persona_core::profile::codec`.
    pub profiles: Vec<(ProfileId, Vec<u8>)>,
    /// Profiles merged into others, to delete.
    pub removed: Vec<ProfileId>,
    /// How many of `profiles` are new, for the profile count.
    pub created: u64,
    /// Identity keys (as [`IdentityKey::storage_key`]) pointed at a profile.
    pub links: Vec<(String, ProfileId)>,
    /// New entries of the per-profile event index.
    pub events: Vec<(ProfileId, EventRef)>,
    /// Event index entries to move from the first profile to the second, in order, after
    /// `events` are added.
    pub moved_events: Vec<(ProfileId, ProfileId)>,
    /// The next unused profile id.
    pub next_id: ProfileId,
    /// Consumer name and the log offset it has now consumed up to (exclusive).
    pub offsets: Vec<(String, u64)>,
    /// Segment membership changes: (segment, profile, whether it is now a member). Only
    /// real changes belong here: each moves the segment's member count by one.
    pub memberships: Vec<(SegmentId, ProfileId, bool)>,
    /// Entry and exit events, in order, each with the profile it concerns: appended to the
    /// outbox (which the webhook stage delivers from) and to that profile's history.
    pub outbox: Vec<(ProfileId, Vec<u8>)>,
    /// Whether the change must be on disk when `apply` returns. A change applied without
    /// it is visible to readers at once and atomic all the same, but a crash may undo it
    /// together with every later non-durable change (never partly): the stream stage then
    /// replays those events from the log, which is the durable record.
    pub durable: bool,
}

impl ChangeSet {
    /// Empties the change set, keeping its allocations for the next batch.
    pub fn clear(&mut self) {
        self.profiles.clear();
        self.removed.clear();
        self.created = 0;
        self.links.clear();
        self.events.clear();
        self.moved_events.clear();
        self.next_id = 0;
        self.offsets.clear();
        self.memberships.clear();
        self.outbox.clear();
        self.durable = false;
    }

    /// Moves the profile, identity, event, membership and outbox writes of `other` into
    /// this change set (not its id counter, offsets or durability, which are this one's).
    pub fn absorb(&mut self, other: &mut ChangeSet) {
        self.profiles.append(&mut other.profiles);
        self.removed.append(&mut other.removed);
        self.created += std::mem::take(&mut other.created);
        self.links.append(&mut other.links);
        self.events.append(&mut other.events);
        self.moved_events.append(&mut other.moved_events);
        self.memberships.append(&mut other.memberships);
        self.outbox.append(&mut other.outbox);
    }

    /// Writes in the change set, for sizing a write batch.
    pub fn len(&self) -> usize {
        self.profiles.len()
            + self.removed.len()
            + self.links.len()
            + self.events.len()
            + self.offsets.len()
            + self.memberships.len()
            + 2 * self.outbox.len()
            + 3
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 3 && self.moved_events.is_empty()
    }

    /// Where each merged-away profile's events go, following chains (a → b, then b → c
    /// sends a's events to c too): what every store does with `moved_events`.
    pub fn event_moves(&self) -> HashMap<ProfileId, ProfileId> {
        let mut moved: HashMap<ProfileId, ProfileId> = HashMap::new();
        for &(from, to) in &self.moved_events {
            for target in moved.values_mut() {
                if *target == from {
                    *target = to;
                }
            }
            moved.insert(from, to);
        }
        moved
    }
}

/// Walks every profile in id order, a page of at most `page` at a time, handing each page
/// to `visit`; an error from either ends the walk. For exports, fits and training runs.
pub fn for_each_page<E: From<StoreError>>(
    store: &dyn ProfileStore,
    page: usize,
    mut visit: impl FnMut(&[(ProfileId, Profile)]) -> Result<(), E>,
) -> Result<(), E> {
    let mut after = None;
    loop {
        let chunk = store.scan(after, page)?;
        let Some(&(last, _)) = chunk.last() else {
            return Ok(());
        };
        after = Some(last);
        visit(&chunk)?;
    }
}

/// Walks every profile in id order on the calling thread alone, reading `page` ids at a
/// time: for background jobs (the scheduled RFM fit) that should leave the other cores to
/// the stream stage rather than finish sooner.
pub fn for_each_profile_on_one_core(
    store: &dyn ProfileStore,
    page: u64,
    mut visit: impl FnMut(ProfileId, &Profile),
) -> Result<(), StoreError> {
    let end = store.next_id()?;
    let mut first = 0;
    while first < end {
        let last = first.saturating_add(page.max(1) - 1).min(end - 1);
        store.visit_encoded(first, last, &mut |id, bytes| {
            visit(id, &decode_profile(id, bytes)?);
            Ok(())
        })?;
        first = last + 1;
    }
    Ok(())
}

/// Storage of profiles. Reads may run concurrently with each other and with `apply`.
pub trait ProfileStore: Send + Sync + 'static {
    /// The profile an identity belongs to.
    fn resolve(&self, key: &IdentityKey<'_>) -> Result<Option<ProfileId>, StoreError>;

    /// A profile by id.
    fn get(&self, id: ProfileId) -> Result<Option<Profile>, StoreError>;

    /// Whether every read crosses a network, so that a caller with many to make (the
    /// stream stage, for a batch's customers) gathers them into [`ProfileStore::resolve_many`]
    /// and [`ProfileStore::get_many`].
    fn remote(&self) -> bool {
        false
    }

    /// The profiles of identities given by storage key ([`IdentityKey::storage_key`]), in
    /// no particular order; keys not stored are left out.
    fn resolve_many(&self, keys: &[String]) -> Result<Vec<(String, ProfileId)>, StoreError> {
        let mut out = Vec::new();
        for k in keys {
            if let Some(key) = IdentityKey::from_storage_key(k)
                && let Some(id) = self.resolve(&key)?
            {
                out.push((k.clone(), id));
            }
        }
        Ok(out)
    }

    /// Profiles by id, in no particular order; ids not stored are left out.
    fn get_many(&self, ids: &[ProfileId]) -> Result<Vec<(ProfileId, Profile)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(p) = self.get(id)? {
                out.push((id, p));
            }
        }
        Ok(out)
    }

    /// The profile an identity belongs to, with its id, as of one consistent snapshot.
    fn lookup(&self, key: &IdentityKey<'_>) -> Result<Option<(ProfileId, Profile)>, StoreError>;

    /// The most recent `limit` events of a profile, newest first.
    fn recent_events(&self, id: ProfileId, limit: usize) -> Result<Vec<EventRef>, StoreError>;

    /// Profiles in id order after `after`, at most `limit`, decoded: for exports, fits
    /// and training runs.
    fn scan(
        &self,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Profile)>, StoreError> {
        let mut raw = self.scan_encoded(after, limit)?;
        let mut out = Vec::with_capacity(raw.len());
        // Decoding is most of a scan's time, and each profile decodes on its own.
        for part in split_work(&mut raw, DECODE_PART, |part| {
            part.iter()
                .map(|(id, bytes)| Ok((*id, decode_profile(*id, bytes)?)))
                .collect::<Result<Vec<_>, StoreError>>()
        }) {
            out.append(&mut part?);
        }
        Ok(out)
    }

    /// Profiles in id order after `after`, at most `limit`, as stored (see
    /// `persona_core::profile::codec`).
    fn scan_encoded(
        &self,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError>;

    /// Hands every profile with an id from `first` to `last` (both included) to `visit`
    /// as stored, in id order; an error from `visit` ends the walk. For a segment pass,
    /// which walks several id ranges at once, each on a thread that reads, decodes,
    /// evaluates and drops its profiles.
    fn visit_encoded(
        &self,
        first: ProfileId,
        last: ProfileId,
        visit: &mut VisitEncoded<'_>,
    ) -> Result<(), StoreError>;

    /// How many profiles there are.
    fn count(&self) -> Result<u64, StoreError>;

    /// Reads what profile lookups need (identities, then profiles) into the store's own
    /// cache, up to what the cache holds, so that reads after a start do not each wait for
    /// the disk; returns the bytes read. Stores without a cache of their own do nothing.
    fn warm_cache(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The log offset a consumer has applied up to (exclusive), if it ever committed.
    fn offset(&self, consumer: &str) -> Result<Option<u64>, StoreError>;

    /// The part of `offset` that is on disk: what a consumer would resume from after an
    /// OS crash. The log must keep everything after it.
    fn durable_offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.offset(consumer)
    }

    /// The next unused profile id.
    fn next_id(&self) -> Result<ProfileId, StoreError>;

    /// Applies a change set atomically and durably.
    fn apply(&self, changes: &ChangeSet) -> Result<(), StoreError>;

    /// Stores a new segment under the next unused id and returns it.
    fn create_segment(&self, name: &str, rule: &str, at: i64) -> Result<SegmentDef, StoreError>;

    /// Replaces a segment's definition (its name or rule).
    fn update_segment(&self, def: &SegmentDef) -> Result<(), StoreError>;

    /// Deletes a segment with its membership, appending `exits` (each member's exit
    /// event, with its profile) to the outbox and the histories in the same atomic write.
    fn delete_segment(
        &self,
        id: SegmentId,
        exits: &[(ProfileId, Vec<u8>)],
    ) -> Result<(), StoreError>;

    /// Every segment, by id.
    fn segments(&self) -> Result<Vec<SegmentDef>, StoreError>;

    /// Members of a segment in profile id order after `after`, at most `limit`.
    fn members(
        &self,
        segment: SegmentId,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError>;

    /// How many members a segment has.
    fn member_count(&self, segment: SegmentId) -> Result<u64, StoreError>;

    /// Outbox entries after sequence number `after` (all when `None`), at most `limit`, in
    /// order, with their sequence numbers.
    fn outbox(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The sequence number the next outbox entry will get (entries start at 1): where a
    /// reader that wants only what comes from now on starts.
    fn outbox_end(&self) -> Result<u64, StoreError>;

    /// A reader's position by name (a webhook's last delivered outbox entry), if set.
    fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError>;

    /// Sets (or with `None` removes) a named position. Not synced at once: a crash may
    /// take it back by up to a second, so a reader must tolerate doing that second again.
    fn set_cursor(&self, name: &str, position: Option<u64>) -> Result<(), StoreError>;

    /// A profile's most recent `limit` membership events, newest first.
    fn history(&self, profile: ProfileId, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;

    /// A new number for a document of `kind`, never handed out before.
    fn next_document_id(&self, kind: &str) -> Result<u64, StoreError>;

    /// Stores a document (a trained model, a set of RFM edges) of `kind` under `id`,
    /// replacing any, durably. The store does not read it.
    fn put_document(&self, kind: &str, id: u64, body: &[u8]) -> Result<(), StoreError>;

    /// Deletes the document of `kind` under `id`, if any, durably.
    fn delete_document(&self, kind: &str, id: u64) -> Result<(), StoreError>;

    /// Every document of `kind`, by id.
    fn documents(&self, kind: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
}
