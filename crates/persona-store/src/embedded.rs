//! The embedded default: an LSM tree (fjall) in a folder of the data directory.
//!
//! A [`ChangeSet`] is one write batch across the keyspaces, which fjall's journal makes
//! atomic: after a crash the store holds a prefix of the batches, each whole. Every batch
//! reaches the OS when applied, so it survives a killed process; a background thread syncs
//! the journal to disk every second, and a batch marked durable is synced before `apply`
//! returns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use persona_core::profile::Profile;

use crate::background;
use crate::{
    ChangeSet, EventRef, IdentityKey, ProfileId, ProfileStore, SegmentDef, SegmentId, StoreError,
    VisitEncoded, decode_profile,
};

const NEXT_ID: &str = "next_profile_id";
const PROFILE_COUNT: &str = "profile_count";
const NEXT_SEGMENT_ID: &str = "next_segment_id";
const NEXT_OUTBOX_SEQ: &str = "next_outbox_seq";

fn member_count_key(segment: SegmentId) -> String {
    format!("members:{segment}")
}

/// Two big-endian numbers: a membership (segment, profile) or a history entry (profile,
/// sequence), sorting by the first and then the second.
fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}
/// Block cache for reads; the OS page cache holds the rest.
const CACHE_BYTES: u64 = 256 << 20;

fn cursor_key(name: &str) -> String {
    format!("cursor:{name}")
}

fn offset_key(consumer: &str) -> String {
    format!("offset:{consumer}")
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn u64_of(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Backend(format!("corrupt number of {} bytes", bytes.len())))
}

/// Event index key: profile, event time, offset, each big-endian so keys sort by them; the
/// time's sign bit is flipped so negative times sort first.
fn event_key(id: ProfileId, at: i64, offset: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..16].copy_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    k[16..].copy_from_slice(&offset.to_be_bytes());
    k
}

fn parse_event_key(k: &[u8]) -> Result<(ProfileId, i64, u64), StoreError> {
    if k.len() != 24 {
        return Err(StoreError::Backend("corrupt event index key".into()));
    }
    Ok((
        u64_of(&k[..8])?,
        (u64_of(&k[8..16])? ^ (1 << 63)) as i64,
        u64_of(&k[16..])?,
    ))
}

/// How often the journal is synced to disk in the background.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the journal's dirty pages are written back between syncs (see
/// [`write_back_journal`]).
const WRITE_BACK_EVERY: Duration = Duration::from_millis(100);

/// The first write failure, once fjall has stopped taking writes after it: fjall then
/// answers every write with `Poisoned`, which says nothing of why.
#[derive(Default)]
struct Stopped(std::sync::OnceLock<String>);

impl Stopped {
    /// A failed write as a [`StoreError`], naming the failure that stopped the store.
    fn write_error(&self, e: fjall::Error) -> StoreError {
        match e {
            fjall::Error::Poisoned => StoreError::Stopped(
                self.0
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "an earlier write failed".into()),
            ),
            e => {
                let why = match &e {
                    // fjall shows an I/O error as Rust's debug form; the error's own text
                    // ("No space left on device (os error 28)") is what a person reads.
                    fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => {
                        io.to_string()
                    }
                    e => e.to_string(),
                };
                let _ = self.0.set(why.clone());
                StoreError::Backend(format!("write failed: {why}"))
            }
        }
    }
}

/// Consumer offsets applied, and those known to be on disk.
#[derive(Default)]
struct Offsets {
    applied: Mutex<HashMap<String, u64>>,
    synced: Mutex<HashMap<String, u64>>,
}

/// Profiles in a local LSM tree.
pub struct EmbeddedStore {
    db: Database,
    offsets: Arc<Offsets>,
    stopped: Arc<Stopped>,
    /// Dropping it stops the background syncer.
    _syncer: Syncer,
    /// Profile id → encoded profile.
    profiles: Keyspace,
    /// Identity storage key (`u:…`, `a:…`) → profile id.
    identities: Keyspace,
    /// [`event_key`] → byte position of the event in its log segment.
    events: Keyspace,
    /// Consumer offsets and counters.
    meta: Keyspace,
    /// Segment id → definition (JSON).
    segments: Keyspace,
    /// [`pair_key`] (segment, profile) → nothing: the members of each segment.
    members: Keyspace,
    /// Sequence number → entry or exit event (JSON), for delivery.
    outbox: Keyspace,
    /// [`pair_key`] (profile, sequence) → the same event: each profile's history.
    history: Keyspace,
    /// `kind`, a zero byte and the big-endian id → a document the caller reads.
    documents: Keyspace,
    /// Serialises the handing out of segment and document ids (read, then raise).
    id_counters: Mutex<()>,
    /// Serialises the numbering of outbox entries (read, then raise) between the stream
    /// stage's change sets and a segment's deletion.
    outbox_numbers: Mutex<()>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in folder `path`. Fails with [`StoreError::Locked`] when
    /// another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // fjall creates its folder without syncing the parent: after a power loss the whole
        // store would be gone, and the log it was built from may have been trimmed since.
        persona_core::durable::create_dir_all(path)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let db = Database::builder(path)
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StoreError::Locked(path.display().to_string()),
                e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
            })?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(backend)
        };
        // Whatever an earlier process left in the OS's buffers goes to disk now, so that
        // every offset read at start counts as synced.
        db.persist(PersistMode::SyncData).map_err(backend)?;
        let meta = ks("meta")?;
        let mut stored = HashMap::new();
        for guard in meta.prefix("offset:") {
            let (k, v) = guard.into_inner().map_err(backend)?;
            let consumer = String::from_utf8_lossy(&k["offset:".len()..]).into_owned();
            stored.insert(consumer, u64_of(&v)?);
        }
        let offsets = Arc::new(Offsets {
            applied: Mutex::new(stored.clone()),
            synced: Mutex::new(stored),
        });
        let stopped = Arc::new(Stopped::default());
        let store = EmbeddedStore {
            _syncer: Syncer::start(
                db.clone(),
                path.to_path_buf(),
                offsets.clone(),
                stopped.clone(),
            ),
            offsets,
            stopped,
            profiles: ks("profiles")?,
            identities: ks("identities")?,
            events: ks("events")?,
            segments: ks("segments")?,
            members: ks("members")?,
            outbox: ks("outbox")?,
            history: ks("history")?,
            documents: ks("documents")?,
            id_counters: Mutex::new(()),
            outbox_numbers: Mutex::new(()),
            meta,
            db,
        };
        // fjall syncs each new keyspace's own folder but not the folder that names the
        // keyspaces, so a keyspace created just now would vanish with a power loss.
        let keyspaces = path.join("keyspaces");
        match persona_core::durable::sync_dir(&keyspaces) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Backend(
                format!("cannot sync {}: {e}", keyspaces.display()),
            )),
            _ => Ok(store),
        }
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.meta
            .get(key)
            .map_err(backend)?
            .map(|v| u64_of(&v))
            .transpose()
    }

    /// Flushes the write buffers and merges every level into one, so reads touch one table
    /// per keyspace. Compaction otherwise runs in the background as writes arrive; this is
    /// for maintenance windows and for benchmarks that must not measure a store mid-merge.
    pub fn compact(&self) -> Result<(), StoreError> {
        for ks in [
            &self.profiles,
            &self.identities,
            &self.events,
            &self.meta,
            &self.segments,
            &self.members,
            &self.outbox,
            &self.history,
            &self.documents,
        ] {
            ks.rotate_memtable_and_wait().map_err(backend)?;
            ks.major_compact().map_err(backend)?;
        }
        Ok(())
    }

    /// Adds `entries` to the outbox and to each profile's history under the next sequence
    /// numbers; the guard returned must be held until the batch is committed.
    fn append_outbox(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        entries: &[(ProfileId, Vec<u8>)],
    ) -> Result<Option<std::sync::MutexGuard<'_, ()>>, StoreError> {
        if entries.is_empty() {
            return Ok(None);
        }
        let guard = self.outbox_numbers.lock().expect("not poisoned");
        let mut seq = self.meta_u64(NEXT_OUTBOX_SEQ)?.unwrap_or(1);
        for (profile, event) in entries {
            batch.insert(&self.outbox, seq.to_be_bytes(), event.as_slice());
            batch.insert(&self.history, pair_key(*profile, seq), event.as_slice());
            seq += 1;
        }
        batch.insert(&self.meta, NEXT_OUTBOX_SEQ, seq.to_be_bytes());
        Ok(Some(guard))
    }

    /// Bytes the store takes on disk.
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        self.db.disk_space().map_err(backend)
    }
}

/// Syncs the journal to disk once a second on its own thread, so writers never wait for
/// the disk: a change set reaches the OS when applied (a killed process loses nothing) and
/// the disk within a second (an OS crash loses at most that second, and only whole change
/// sets, which the stream stage replays from the log).
struct Syncer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(db: Database, dir: PathBuf, offsets: Arc<Offsets>, stopped: Arc<Stopped>) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let store_stopped = stopped;
        let thread = std::thread::Builder::new()
            .name("persona-store-sync".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut stopped = lock.lock().expect("not poisoned");
                let mut synced_at = Instant::now();
                // The last sync's failure, said once rather than every second.
                let mut failed: Option<String> = None;
                while !*stopped {
                    stopped = cv
                        .wait_timeout(stopped, WRITE_BACK_EVERY)
                        .expect("not poisoned")
                        .0;
                    write_back_journal(&dir);
                    if synced_at.elapsed() < SYNC_EVERY && !*stopped {
                        continue;
                    }
                    synced_at = Instant::now();
                    // fjall may start workers after the store opens: checked every sync.
                    background::lower_priority(
                        background::FJALL_WORKERS,
                        persona_core::threads::BACKGROUND_NICE,
                    );
                    // Batches applied before the sync starts are on disk once it returns.
                    let applied = offsets.applied.lock().expect("not poisoned").clone();
                    match db.persist(PersistMode::SyncData) {
                        Ok(()) => {
                            *offsets.synced.lock().expect("not poisoned") = applied;
                            failed = None;
                        }
                        Err(e) => {
                            let e = store_stopped.write_error(e).to_string();
                            if failed.as_ref() != Some(&e) {
                                tracing::error!(error = %e, "cannot sync the profile store to disk");
                            }
                            failed = Some(e);
                        }
                    }
                }
            })
            .ok();
        Syncer { stop, thread }
    }
}

/// Writes the active journal's dirty pages to disk through a descriptor of our own.
///
/// fjall syncs the journal while holding its lock, which every write needs: in `persist`,
/// and when a full journal is sealed (every few seconds under heavy ingest). With up to a
/// second of changes outstanding (tens of MB) each such sync held the stream stage for
/// 50-100 ms, and with it the freshness of every profile. Syncing the same file here,
/// without the lock and every 100 ms, leaves those syncs only what was written since. A
/// failure here changes nothing: `persist` still syncs everything and reports its errors.
fn write_back_journal(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // Journals are `<n>.jnl`; writes go to the highest-numbered one.
    let active = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n: u64 = name.to_str()?.strip_suffix(".jnl")?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n);
    if let Some((_, path)) = active
        && let Ok(file) = std::fs::File::open(path)
    {
        let _ = file.sync_data();
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().expect("not poisoned") = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ProfileStore for EmbeddedStore {
    fn resolve(&self, key: &IdentityKey<'_>) -> Result<Option<ProfileId>, StoreError> {
        self.identities
            .get(key.storage_key())
            .map_err(backend)?
            .map(|v| u64_of(&v))
            .transpose()
    }

    fn get(&self, id: ProfileId) -> Result<Option<Profile>, StoreError> {
        self.profiles
            .get(id.to_be_bytes())
            .map_err(backend)?
            .map(|v| decode_profile(id, &v))
            .transpose()
    }

    fn lookup(&self, key: &IdentityKey<'_>) -> Result<Option<(ProfileId, Profile)>, StoreError> {
        let snap = self.db.snapshot();
        let Some(id) = snap
            .get(&self.identities, key.storage_key())
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let id = u64_of(&id)?;
        Ok(snap
            .get(&self.profiles, id.to_be_bytes())
            .map_err(backend)?
            .map(|v| decode_profile(id, &v))
            .transpose()?
            .map(|p| (id, p)))
    }

    fn recent_events(&self, id: ProfileId, limit: usize) -> Result<Vec<EventRef>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for guard in self.events.prefix(id.to_be_bytes()).rev().take(limit) {
            let (k, v) = guard.into_inner().map_err(backend)?;
            let (_, at, offset) = parse_event_key(&k)?;
            out.push(EventRef {
                at,
                offset,
                position: u64_of(&v)?,
            });
        }
        Ok(out)
    }

    fn scan_encoded(
        &self,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(a) => a + 1,
            None => 0,
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        for guard in self.profiles.range(start.to_be_bytes()..).take(limit) {
            let (k, v) = guard.into_inner().map_err(backend)?;
            out.push((u64_of(&k)?, v.to_vec()));
        }
        Ok(out)
    }

    fn visit_encoded(
        &self,
        first: ProfileId,
        last: ProfileId,
        visit: &mut VisitEncoded<'_>,
    ) -> Result<(), StoreError> {
        for guard in self
            .profiles
            .range(first.to_be_bytes()..=last.to_be_bytes())
        {
            let (k, v) = guard.into_inner().map_err(backend)?;
            visit(u64_of(&k)?, &v)?;
        }
        Ok(())
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.meta_u64(PROFILE_COUNT)?.unwrap_or(0))
    }

    fn offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.meta_u64(&offset_key(consumer))
    }

    fn warm_cache(&self) -> Result<u64, StoreError> {
        // Keys and values as read, which is about what their blocks take in the cache; the
        // rest of the cache is left for the event index and for writes.
        let budget = CACHE_BYTES * 3 / 4;
        let mut read = 0;
        for keyspace in [&self.identities, &self.profiles] {
            for guard in keyspace.iter() {
                let (k, v) = guard.into_inner().map_err(backend)?;
                read += (k.len() + v.len()) as u64;
                if read >= budget {
                    return Ok(read);
                }
            }
        }
        Ok(read)
    }

    fn durable_offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .offsets
            .synced
            .lock()
            .expect("not poisoned")
            .get(consumer)
            .copied())
    }

    fn next_id(&self) -> Result<ProfileId, StoreError> {
        Ok(self.meta_u64(NEXT_ID)?.unwrap_or(1))
    }

    fn apply(&self, changes: &ChangeSet) -> Result<(), StoreError> {
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), changes.len())
            .durability(Some(if changes.durable {
                PersistMode::SyncData
            } else {
                PersistMode::Buffer
            }));
        for (id, profile) in &changes.profiles {
            batch.insert(&self.profiles, id.to_be_bytes(), profile.as_slice());
        }
        for id in &changes.removed {
            batch.remove(&self.profiles, id.to_be_bytes());
        }
        for (key, id) in &changes.links {
            batch.insert(&self.identities, key.as_str(), id.to_be_bytes());
        }
        let moved = changes.event_moves();
        for (id, e) in &changes.events {
            let id = moved.get(id).copied().unwrap_or(*id);
            batch.insert(
                &self.events,
                event_key(id, e.at, e.offset),
                e.position.to_be_bytes(),
            );
        }
        for (&from, &to) in &moved {
            for guard in self.events.prefix(from.to_be_bytes()) {
                let (k, v) = guard.into_inner().map_err(backend)?;
                let (_, at, offset) = parse_event_key(&k)?;
                batch.insert(&self.events, event_key(to, at, offset), v);
                batch.remove(&self.events, k);
            }
        }
        let count = (self.count()? + changes.created).saturating_sub(changes.removed.len() as u64);
        batch.insert(&self.meta, PROFILE_COUNT, count.to_be_bytes());
        batch.insert(&self.meta, NEXT_ID, changes.next_id.to_be_bytes());
        for (consumer, offset) in &changes.offsets {
            batch.insert(&self.meta, offset_key(consumer), offset.to_be_bytes());
        }
        let mut counts: HashMap<SegmentId, i64> = HashMap::new();
        for &(segment, profile, member) in &changes.memberships {
            let key = pair_key(segment, profile);
            if member {
                batch.insert(&self.members, key, []);
            } else {
                batch.remove(&self.members, key);
            }
            *counts.entry(segment).or_default() += if member { 1 } else { -1 };
        }
        for (segment, delta) in counts {
            let now = self.member_count(segment)? as i64 + delta;
            batch.insert(
                &self.meta,
                member_count_key(segment),
                (now.max(0) as u64).to_be_bytes(),
            );
        }
        // Held until the commit when there are entries, so that numbers are never shared.
        let _numbering = self.append_outbox(&mut batch, &changes.outbox)?;
        batch.commit().map_err(|e| self.stopped.write_error(e))?;
        let mut applied = self.offsets.applied.lock().expect("not poisoned");
        for (consumer, offset) in &changes.offsets {
            applied.insert(consumer.clone(), *offset);
        }
        if changes.durable {
            // Synced with every batch before it: the durable offset is this one now, not
            // after the next background sync (an offset moved back must not linger there).
            let mut synced = self.offsets.synced.lock().expect("not poisoned");
            for (consumer, offset) in &changes.offsets {
                synced.insert(consumer.clone(), *offset);
            }
        }
        Ok(())
    }

    fn create_segment(&self, name: &str, rule: &str, at: i64) -> Result<SegmentDef, StoreError> {
        let _one_at_a_time = self.id_counters.lock().expect("not poisoned");
        let id = self.meta_u64(NEXT_SEGMENT_ID)?.unwrap_or(1);
        let def = SegmentDef {
            id,
            name: name.to_owned(),
            rule: rule.to_owned(),
            created_at: at,
            updated_at: at,
            version: 1,
        };
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 2)
            .durability(Some(PersistMode::SyncData));
        batch.insert(&self.segments, id.to_be_bytes(), encode_segment(&def)?);
        batch.insert(&self.meta, NEXT_SEGMENT_ID, (id + 1).to_be_bytes());
        batch.commit().map_err(|e| self.stopped.write_error(e))?;
        Ok(def)
    }

    fn update_segment(&self, def: &SegmentDef) -> Result<(), StoreError> {
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 1)
            .durability(Some(PersistMode::SyncData));
        batch.insert(&self.segments, def.id.to_be_bytes(), encode_segment(def)?);
        batch.commit().map_err(|e| self.stopped.write_error(e))
    }

    fn next_document_id(&self, kind: &str) -> Result<u64, StoreError> {
        let _one_at_a_time = self.id_counters.lock().expect("not poisoned");
        let key = format!("next_document_id:{kind}");
        let id = self.meta_u64(&key)?.unwrap_or(1);
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 1)
            .durability(Some(PersistMode::SyncData));
        batch.insert(&self.meta, key, (id + 1).to_be_bytes());
        batch.commit().map_err(|e| self.stopped.write_error(e))?;
        Ok(id)
    }

    fn put_document(&self, kind: &str, id: u64, body: &[u8]) -> Result<(), StoreError> {
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 1)
            .durability(Some(PersistMode::SyncData));
        batch.insert(&self.documents, document_key(kind, id), body);
        batch.commit().map_err(|e| self.stopped.write_error(e))
    }

    fn delete_document(&self, kind: &str, id: u64) -> Result<(), StoreError> {
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 1)
            .durability(Some(PersistMode::SyncData));
        batch.remove(&self.documents, document_key(kind, id));
        batch.commit().map_err(|e| self.stopped.write_error(e))
    }

    fn documents(&self, kind: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let prefix = document_key(kind, 0);
        self.documents
            .prefix(&prefix[..prefix.len() - 8])
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(backend)?;
                Ok((u64_of(&k[k.len() - 8..])?, v.to_vec()))
            })
            .collect()
    }

    fn delete_segment(
        &self,
        id: SegmentId,
        exits: &[(ProfileId, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 2)
            .durability(Some(PersistMode::SyncData));
        batch.remove(&self.segments, id.to_be_bytes());
        batch.remove(&self.meta, member_count_key(id));
        for guard in self.members.prefix(id.to_be_bytes()) {
            batch.remove(&self.members, guard.key().map_err(backend)?);
        }
        // Last, so that the stream stage's commits wait only for this one's.
        let _numbering = self.append_outbox(&mut batch, exits)?;
        batch.commit().map_err(|e| self.stopped.write_error(e))
    }

    fn segments(&self) -> Result<Vec<SegmentDef>, StoreError> {
        self.segments
            .iter()
            .map(|guard| {
                let v = guard.value().map_err(backend)?;
                serde_json::from_slice(&v).map_err(backend)
            })
            .collect()
    }

    fn members(
        &self,
        segment: SegmentId,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(a) => a + 1,
            None => 0,
        };
        let end = pair_key(segment, u64::MAX);
        let mut out = Vec::with_capacity(limit.min(4096));
        for guard in self
            .members
            .range(pair_key(segment, start)..=end)
            .take(limit)
        {
            out.push(u64_of(&guard.key().map_err(backend)?[8..])?);
        }
        Ok(out)
    }

    fn member_count(&self, segment: SegmentId) -> Result<u64, StoreError> {
        Ok(self.meta_u64(&member_count_key(segment))?.unwrap_or(0))
    }

    fn outbox(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        self.outbox
            .range(start.to_be_bytes()..)
            .take(limit)
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(backend)?;
                Ok((u64_of(&k)?, v.to_vec()))
            })
            .collect()
    }

    fn outbox_end(&self) -> Result<u64, StoreError> {
        Ok(self.meta_u64(NEXT_OUTBOX_SEQ)?.unwrap_or(1))
    }

    fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.meta_u64(&cursor_key(name))
    }

    fn set_cursor(&self, name: &str, position: Option<u64>) -> Result<(), StoreError> {
        // Synced by the background syncer within a second, like the processor's offsets.
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 1);
        match position {
            Some(p) => batch.insert(&self.meta, cursor_key(name), p.to_be_bytes()),
            None => batch.remove(&self.meta, cursor_key(name)),
        }
        batch.commit().map_err(|e| self.stopped.write_error(e))
    }

    fn history(&self, profile: ProfileId, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.history
            .prefix(profile.to_be_bytes())
            .rev()
            .take(limit)
            .map(|guard| Ok(guard.value().map_err(backend)?.to_vec()))
            .collect()
    }
}

fn document_key(kind: &str, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + 9);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn encode_segment(def: &SegmentDef) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(def).map_err(backend)
}
