//! persona's serving cache in Redis, in front of a profile store on a database server
//! (`persona-store-postgres`): profile lookups are answered from Redis when it holds the
//! customer, and from the store otherwise, which then fills the cache.
//!
//! [`RedisCache`] is itself a [`ProfileStore`]: reads of profiles and identities go through
//! the cache, everything else straight to the store. The stream stage writes through it,
//! so every change set it commits to the store is then written to Redis as well (new
//! profiles and identity links set, merged-away profiles marked gone). A reader that missed
//! fills the cache with `SET NX`, so a value it read from the store just before a change
//! set can never overwrite the newer value that change set wrote.
//!
//! Redis holds no state of its own: entries expire (`ttl`; an entry Redis evicts early
//! under `maxmemory` can let a stale fill back in, for at most a TTL), and every key carries
//! an epoch that is new at each start and raised whenever a write-through fails or is skipped
//! (Redis down), so an entry that might have missed a change is never read again. While
//! Redis does not answer, reads go to the store, and Redis is tried again a second later.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persona_core::profile::{Profile, codec};
use persona_store::{
    ChangeSet, EventRef, IdentityKey, ProfileId, ProfileStore, SegmentDef, SegmentId, StoreError,
    VisitEncoded, decode_profile,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redis::{Connection, IntoConnectionInfo, RedisResult};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How long a Redis call may take before the store answers instead; long enough for the
/// write-through of a large batch.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The value of a profile merged away: no encoded profile is empty.
const TOMBSTONE: &[u8] = b"";

/// How long reads skip Redis after it failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where the cache is and how long it keeps an entry.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS (the server's
    /// certificate checked against the system's authorities, or `ca_file`'s; a URL ending
    /// in `#insecure` takes any certificate, as some hosted Redis services need).
    pub url: String,
    /// Certificate authorities (PEM) to check a `rediss://` server's certificate against,
    /// in place of the system's.
    pub ca_file: Option<PathBuf>,
    /// How long an entry lives after it was last written.
    pub ttl: Duration,
    /// The prefix of every key, so that several deployments can share one Redis.
    pub namespace: String,
}

/// What the cache answered, for the metrics.
#[derive(Debug, Default, Clone)]
pub struct CacheCounts {
    pub hits: Counter,
    pub misses: Counter,
    /// Redis calls that failed (the store answered instead).
    pub errors: Counter,
}

impl CacheCounts {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "persona_profile_cache_hits",
            "Profile reads answered from the Redis cache",
            self.hits.clone(),
        );
        registry.register(
            "persona_profile_cache_misses",
            "Profile reads the Redis cache did not hold, answered by the store",
            self.misses.clone(),
        );
        registry.register(
            "persona_profile_cache_errors",
            "Redis calls that failed or were skipped while Redis was down",
            self.errors.clone(),
        );
    }
}

/// Answers a lookup in one round trip: the identity's profile id, then that profile.
const LOOKUP: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then return false end
return {tonumber(id), redis.call('GET', ARGV[1] .. id)}
";

/// The client `config` asks for; the error names what is wrong, never the password.
fn client(config: &RedisConfig) -> Result<redis::Client, StoreError> {
    let info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| StoreError::Backend(format!("not a Redis URL: {e}")))?;
    let Some(path) = &config.ca_file else {
        return redis::Client::open(info)
            .map_err(|e| StoreError::Backend(format!("not a Redis URL: {e}")));
    };
    if let redis::ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
        return Err(StoreError::Backend(format!(
            "the CA file {} is for checking the server's certificate, and the URL's \
             #insecure says to take any",
            path.display()
        )));
    }
    let pem = std::fs::read(path).map_err(|e| {
        StoreError::Backend(format!("cannot read the CA file {}: {e}", path.display()))
    })?;
    // Else every connection would fail, and the cache would quietly go unused.
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .filter(Result::is_ok)
        .count();
    if certificates == 0 {
        return Err(StoreError::Backend(format!(
            "the CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    redis::Client::build_with_tls(info, certs)
        .map_err(|e| StoreError::Backend(format!("the CA file {}: {e}", path.display())))
}

/// A [`ProfileStore`] whose profile reads are served from Redis when it can.
pub struct RedisCache {
    inner: Arc<dyn ProfileStore>,
    client: redis::Client,
    idle: Mutex<Vec<Connection>>,
    namespace: String,
    epoch: AtomicU64,
    ttl_seconds: u64,
    down_until: Mutex<Option<Instant>>,
    lookup: redis::Script,
    counts: CacheCounts,
}

impl RedisCache {
    /// A cache in front of `inner`, counting into `counts`. Redis need not be up: the store
    /// answers until it is.
    pub fn new(
        inner: Arc<dyn ProfileStore>,
        config: &RedisConfig,
        counts: CacheCounts,
    ) -> Result<Self, StoreError> {
        let client = client(config)?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(RedisCache {
            inner,
            client,
            idle: Mutex::new(Vec::new()),
            namespace: config.namespace.clone(),
            // New at each start: entries an earlier process left are never read.
            epoch: AtomicU64::new(started.as_micros() as u64),
            ttl_seconds: config.ttl.as_secs().max(1),
            down_until: Mutex::new(None),
            lookup: redis::Script::new(LOOKUP),
            counts,
        })
    }

    /// Hits, misses and errors so far.
    pub fn counts(&self) -> &CacheCounts {
        &self.counts
    }

    /// The entry of an identity, by its storage key ([`IdentityKey::storage_key`]).
    fn identity_entry(&self, epoch: u64, storage_key: &str) -> String {
        format!("{}:{epoch}:i:{storage_key}", self.namespace)
    }

    /// Profile entries are this and the id.
    fn profile_prefix(&self, epoch: u64) -> String {
        format!("{}:{epoch}:p:", self.namespace)
    }

    fn profile_entry(&self, epoch: u64, id: ProfileId) -> String {
        format!("{}{id}", self.profile_prefix(epoch))
    }

    /// Runs `f` on a pooled connection; `None` when Redis is down or the call fails, which
    /// is logged when Redis goes from up to down.
    fn with_redis<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Option<T> {
        if let Some(until) = *self.down_until.lock().expect("not poisoned")
            && Instant::now() < until
        {
            return None;
        }
        let pooled = self.idle.lock().expect("not poisoned").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => return self.failed(e),
            },
        };
        match f(&mut conn) {
            Ok(v) => {
                let mut down = self.down_until.lock().expect("not poisoned");
                if down.take().is_some() {
                    tracing::info!("the Redis profile cache answers again");
                }
                drop(down);
                self.idle.lock().expect("not poisoned").push(conn);
                Some(v)
            }
            Err(e) => self.failed(e),
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let conn = self.client.get_connection_with_timeout(TIMEOUT)?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.set_write_timeout(Some(TIMEOUT))?;
        Ok(conn)
    }

    fn failed<T>(&self, e: redis::RedisError) -> Option<T> {
        self.counts.errors.inc();
        let mut down = self.down_until.lock().expect("not poisoned");
        if down.is_none() {
            tracing::warn!(error = %e, "the Redis profile cache does not answer; profiles are read from the store");
        }
        *down = Some(Instant::now() + RETRY_AFTER);
        None
    }

    /// Writes a value read from the store, unless a newer one is there.
    fn fill(&self, epoch: u64, key: Option<&IdentityKey<'_>>, id: ProfileId, profile: &Profile) {
        let ttl = self.ttl_seconds;
        let mut pipe = redis::pipe();
        if let Some(key) = key {
            pipe.cmd("SET")
                .arg(self.identity_entry(epoch, &key.storage_key()))
                .arg(id)
                .arg("NX")
                .arg("EX")
                .arg(ttl)
                .ignore();
        }
        pipe.cmd("SET")
            .arg(self.profile_entry(epoch, id))
            .arg(codec::encode(profile))
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            .ignore();
        self.with_redis(|c| pipe.query::<()>(c));
    }

    /// Writes what a committed change set changed; when that fails, no entry written
    /// before is trusted again.
    fn write_through(&self, changes: &ChangeSet) {
        if changes.profiles.is_empty() && changes.removed.is_empty() && changes.links.is_empty() {
            return;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let (prefix, ttl) = (self.profile_prefix(epoch), self.ttl_seconds);
        let mut pipe = redis::pipe();
        // In the store's order: a profile written and removed in one change set is gone.
        for (id, body) in &changes.profiles {
            pipe.cmd("SET")
                .arg(format!("{prefix}{id}"))
                .arg(body.as_slice())
                .arg("EX")
                .arg(ttl)
                .ignore();
        }
        // A merged-away profile leaves a tombstone rather than nothing: a reader that read
        // it just before the merge would otherwise fill it back in (its `SET NX` finds the
        // key free), and it would be served for a whole TTL.
        for id in &changes.removed {
            pipe.cmd("SET")
                .arg(format!("{prefix}{id}"))
                .arg(TOMBSTONE)
                .arg("EX")
                .arg(ttl)
                .ignore();
        }
        for (key, id) in &changes.links {
            pipe.cmd("SET")
                .arg(self.identity_entry(epoch, key))
                .arg(*id)
                .arg("EX")
                .arg(ttl)
                .ignore();
        }
        if self.with_redis(|c| pipe.query::<()>(c)).is_none() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ProfileStore for RedisCache {
    fn resolve(&self, key: &IdentityKey<'_>) -> Result<Option<ProfileId>, StoreError> {
        self.inner.resolve(key)
    }

    fn get(&self, id: ProfileId) -> Result<Option<Profile>, StoreError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let key = self.profile_entry(epoch, id);
        if let Some(Some(body)) =
            self.with_redis(|c| redis::cmd("GET").arg(&key).query::<Option<Vec<u8>>>(c))
        {
            self.counts.hits.inc();
            if body == TOMBSTONE {
                return Ok(None);
            }
            return decode_profile(id, &body).map(Some);
        }
        self.counts.misses.inc();
        let found = self.inner.get(id)?;
        if let Some(profile) = &found {
            self.fill(epoch, None, id, profile);
        }
        Ok(found)
    }

    fn lookup(&self, key: &IdentityKey<'_>) -> Result<Option<(ProfileId, Profile)>, StoreError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let cached = self.with_redis(|c| {
            self.lookup
                .key(self.identity_entry(epoch, &key.storage_key()))
                .arg(self.profile_prefix(epoch))
                .invoke::<Option<(u64, Option<Vec<u8>>)>>(c)
        });
        // An identity pointing at a tombstone is older than the merge: asked of the store.
        if let Some(Some((id, Some(body)))) = cached
            && body != TOMBSTONE
        {
            self.counts.hits.inc();
            return Ok(Some((id, decode_profile(id, &body)?)));
        }
        self.counts.misses.inc();
        let found = self.inner.lookup(key)?;
        if let Some((id, profile)) = &found {
            self.fill(epoch, Some(key), *id, profile);
        }
        Ok(found)
    }

    fn apply(&self, changes: &ChangeSet) -> Result<(), StoreError> {
        if let Err(e) = self.inner.apply(changes) {
            // The store may have lost commits the cache was written with (a database crash
            // under commits that did not wait for its disk): start the cache afresh.
            self.epoch.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
        self.write_through(changes);
        Ok(())
    }

    fn remote(&self) -> bool {
        self.inner.remote()
    }

    fn resolve_many(&self, keys: &[String]) -> Result<Vec<(String, ProfileId)>, StoreError> {
        self.inner.resolve_many(keys)
    }

    fn get_many(&self, ids: &[ProfileId]) -> Result<Vec<(ProfileId, Profile)>, StoreError> {
        self.inner.get_many(ids)
    }

    fn recent_events(&self, id: ProfileId, limit: usize) -> Result<Vec<EventRef>, StoreError> {
        self.inner.recent_events(id, limit)
    }

    fn scan_encoded(
        &self,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        self.inner.scan_encoded(after, limit)
    }

    fn visit_encoded(
        &self,
        first: ProfileId,
        last: ProfileId,
        visit: &mut VisitEncoded<'_>,
    ) -> Result<(), StoreError> {
        self.inner.visit_encoded(first, last, visit)
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.inner.count()
    }

    fn warm_cache(&self) -> Result<u64, StoreError> {
        self.inner.warm_cache()
    }

    fn offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.inner.offset(consumer)
    }

    fn durable_offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.inner.durable_offset(consumer)
    }

    fn next_id(&self) -> Result<ProfileId, StoreError> {
        self.inner.next_id()
    }

    fn create_segment(&self, name: &str, rule: &str, at: i64) -> Result<SegmentDef, StoreError> {
        self.inner.create_segment(name, rule, at)
    }

    fn update_segment(&self, def: &SegmentDef) -> Result<(), StoreError> {
        self.inner.update_segment(def)
    }

    fn delete_segment(
        &self,
        id: SegmentId,
        exits: &[(ProfileId, Vec<u8>)],
    ) -> Result<(), StoreError> {
        self.inner.delete_segment(id, exits)
    }

    fn segments(&self) -> Result<Vec<SegmentDef>, StoreError> {
        self.inner.segments()
    }

    fn members(
        &self,
        segment: SegmentId,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.inner.members(segment, after, limit)
    }

    fn member_count(&self, segment: SegmentId) -> Result<u64, StoreError> {
        self.inner.member_count(segment)
    }

    fn outbox(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.outbox(after, limit)
    }

    fn outbox_end(&self) -> Result<u64, StoreError> {
        self.inner.outbox_end()
    }

    fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.inner.cursor(name)
    }

    fn set_cursor(&self, name: &str, position: Option<u64>) -> Result<(), StoreError> {
        self.inner.set_cursor(name, position)
    }

    fn history(&self, profile: ProfileId, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.history(profile, limit)
    }

    fn next_document_id(&self, kind: &str) -> Result<u64, StoreError> {
        self.inner.next_document_id(kind)
    }

    fn put_document(&self, kind: &str, id: u64, body: &[u8]) -> Result<(), StoreError> {
        self.inner.put_document(kind, id, body)
    }

    fn delete_document(&self, kind: &str, id: u64) -> Result<(), StoreError> {
        self.inner.delete_document(kind, id)
    }

    fn documents(&self, kind: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.documents(kind)
    }
}
