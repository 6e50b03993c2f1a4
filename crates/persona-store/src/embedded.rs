//! The embedded default: one redb file in the data folder.
//!
//! redb commits by writing new B-tree pages and then switching a checksummed root with one
//! `fsync`, so after a crash the file holds exactly the last committed transaction. One
//! [`ChangeSet`] is one transaction.

use std::path::Path;

use persona_core::profile::{Profile, codec};
use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTableMetadata,
    TableDefinition,
};

use crate::{ChangeSet, EventRef, IdentityKey, ProfileId, ProfileStore, StoreError};

/// Profile id → encoded profile.
const PROFILES: TableDefinition<u64, &[u8]> = TableDefinition::new("profiles");
/// Identity storage key (`u:…`, `a:…`) → profile id.
const IDENTITIES: TableDefinition<&str, u64> = TableDefinition::new("identities");
/// (profile id, event time ms, log offset) → byte position in the log segment.
const EVENTS: TableDefinition<(u64, i64, u64), u64> = TableDefinition::new("events");
/// Consumer offsets (`offset:<name>`) and counters.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT_ID: &str = "next_profile_id";

fn offset_key(consumer: &str) -> String {
    format!("offset:{consumer}")
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Profiles in a local redb file.
pub struct EmbeddedStore {
    db: Database,
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`. Fails with [`StoreError::Locked`] when
    /// another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.display().to_string()),
            e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
        })?;
        let txn = db.begin_write().map_err(backend)?;
        {
            // Create every table, so that readers of a fresh store find them.
            txn.open_table(PROFILES).map_err(backend)?;
            txn.open_table(IDENTITIES).map_err(backend)?;
            txn.open_table(EVENTS).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(EmbeddedStore { db })
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(backend)
    }
}

fn decode(id: ProfileId, bytes: &[u8]) -> Result<Profile, StoreError> {
    codec::decode(bytes).map_err(|source| StoreError::Decode { id, source })
}

fn get_in(txn: &ReadTransaction, id: ProfileId) -> Result<Option<Profile>, StoreError> {
    let table = txn.open_table(PROFILES).map_err(backend)?;
    match table.get(id).map_err(backend)? {
        Some(bytes) => Ok(Some(decode(id, bytes.value())?)),
        None => Ok(None),
    }
}

fn resolve_in(
    txn: &ReadTransaction,
    key: &IdentityKey<'_>,
) -> Result<Option<ProfileId>, StoreError> {
    let table = txn.open_table(IDENTITIES).map_err(backend)?;
    Ok(table
        .get(key.storage_key().as_str())
        .map_err(backend)?
        .map(|v| v.value()))
}

impl ProfileStore for EmbeddedStore {
    fn resolve(&self, key: &IdentityKey<'_>) -> Result<Option<ProfileId>, StoreError> {
        resolve_in(&self.read()?, key)
    }

    fn get(&self, id: ProfileId) -> Result<Option<Profile>, StoreError> {
        get_in(&self.read()?, id)
    }

    fn lookup(&self, key: &IdentityKey<'_>) -> Result<Option<(ProfileId, Profile)>, StoreError> {
        let txn = self.read()?;
        let Some(id) = resolve_in(&txn, key)? else {
            return Ok(None);
        };
        Ok(get_in(&txn, id)?.map(|p| (id, p)))
    }

    fn recent_events(&self, id: ProfileId, limit: usize) -> Result<Vec<EventRef>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(EVENTS).map_err(backend)?;
        let range = table
            .range((id, i64::MIN, 0)..=(id, i64::MAX, u64::MAX))
            .map_err(backend)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in range.rev().take(limit) {
            let (k, v) = entry.map_err(backend)?;
            let (_, at, offset) = k.value();
            out.push(EventRef {
                at,
                offset,
                position: v.value(),
            });
        }
        Ok(out)
    }

    fn scan(
        &self,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Profile)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(PROFILES).map_err(backend)?;
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::with_capacity(limit.min(4096));
        if after == Some(u64::MAX) {
            return Ok(out);
        }
        for entry in table.range(start..).map_err(backend)?.take(limit) {
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    fn count(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(PROFILES).map_err(backend)?;
        table.len().map_err(backend)
    }

    fn offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(META).map_err(backend)?;
        Ok(table
            .get(offset_key(consumer).as_str())
            .map_err(backend)?
            .map(|v| v.value()))
    }

    fn next_id(&self) -> Result<ProfileId, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(META).map_err(backend)?;
        Ok(table
            .get(NEXT_ID)
            .map_err(backend)?
            .map_or(1, |v| v.value()))
    }

    fn apply(&self, changes: &ChangeSet) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(Durability::Immediate).map_err(backend)?;
        {
            let mut profiles = txn.open_table(PROFILES).map_err(backend)?;
            let mut buf = Vec::new();
            for (id, profile) in &changes.profiles {
                buf.clear();
                codec::encode_into(profile, &mut buf);
                profiles.insert(*id, buf.as_slice()).map_err(backend)?;
            }
            for id in &changes.removed {
                profiles.remove(*id).map_err(backend)?;
            }
            let mut identities = txn.open_table(IDENTITIES).map_err(backend)?;
            for (key, id) in &changes.links {
                identities.insert(key.as_str(), *id).map_err(backend)?;
            }
            let mut events = txn.open_table(EVENTS).map_err(backend)?;
            for (id, e) in &changes.events {
                events
                    .insert((*id, e.at, e.offset), e.position)
                    .map_err(backend)?;
            }
            for &(from, to) in &changes.moved_events {
                let moved: Vec<((i64, u64), u64)> = events
                    .extract_from_if((from, i64::MIN, 0)..=(from, i64::MAX, u64::MAX), |_, _| {
                        true
                    })
                    .map_err(backend)?
                    .map(|entry| {
                        entry.map(|(k, v)| {
                            let (_, at, offset) = k.value();
                            ((at, offset), v.value())
                        })
                    })
                    .collect::<Result<_, _>>()
                    .map_err(backend)?;
                for ((at, offset), position) in moved {
                    events.insert((to, at, offset), position).map_err(backend)?;
                }
            }
            let mut meta = txn.open_table(META).map_err(backend)?;
            meta.insert(NEXT_ID, changes.next_id).map_err(backend)?;
            for (consumer, offset) in &changes.offsets {
                meta.insert(offset_key(consumer).as_str(), *offset)
                    .map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)
    }
}
