//! The Redis cache in front of the PostgreSQL store, both real servers
//! (`PERSONA_TEST_REDIS_URL` and `PERSONA_TEST_POSTGRES_URL`, by default the local ones that
//! `scripts/test` makes sure are running): it passes the checks every store passes, serves
//! lookups from Redis, sees every change the stream stage writes through it, and answers
//! from the store while Redis is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use persona_store::conformance::{self, profile};
use persona_store::{ChangeSet, IdentityKey, ProfileStore, StoreError};
use persona_store_postgres::{PostgresConfig, PostgresStore};
use persona_store_redis::{RedisCache, RedisConfig};

fn postgres_url() -> String {
    std::env::var("PERSONA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("PERSONA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A PostgreSQL schema and a Redis namespace of the test's own.
struct Place {
    postgres: PostgresConfig,
    redis: RedisConfig,
}

impl Place {
    fn new(test: &str, redis_url: &str) -> Place {
        static N: AtomicUsize = AtomicUsize::new(0);
        // Short: a schema name has at most 63 characters.
        let tag: String = test.chars().take(24).collect();
        let name = format!(
            "persona_cache_{tag}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let place = Place {
            postgres: PostgresConfig {
                url: postgres_url(),
                schema: name.clone(),
                read_connections: 2,
            },
            redis: RedisConfig {
                url: redis_url.into(),
                ca_file: None,
                ttl: Duration::from_secs(60),
                namespace: name,
            },
        };
        place.drop_schema();
        place
    }

    fn opener(&self) -> impl Fn() -> Result<RedisCache, StoreError> + '_ {
        || {
            let store = PostgresStore::open(&self.postgres)?;
            RedisCache::new(Arc::new(store), &self.redis, Default::default())
        }
    }

    fn drop_schema(&self) {
        let out = std::process::Command::new("psql")
            .args([
                &postgres_url(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.postgres.schema),
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The cache's keys now in Redis.
    fn keys(&self) -> Vec<String> {
        let mut conn = redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap_or_else(|e| panic!("Redis at {} is not answering: {e}", redis_url()));
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.redis.namespace))
            .query(&mut conn)
            .unwrap();
        keys.sort();
        keys
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.drop_schema();
        if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            for key in self.keys() {
                let _: Result<(), _> = redis::cmd("DEL").arg(key).query(&mut conn);
            }
        }
    }
}

persona_store::conformance_tests!(|name| Place::new(name, &redis_url()), |place| place
    .opener());

#[test]
fn lookups_are_served_from_redis_and_see_every_change_written_through() {
    let place = Place::new("served", &redis_url());
    let store = place.opener()().unwrap();
    let counts = store.counts();
    store
        .apply(&ChangeSet {
            profiles: vec![(1, profile("ann", 1)), (2, profile("bob", 1))],
            created: 2,
            links: vec![("u:ann".into(), 1), ("a:anon".into(), 2)],
            next_id: 3,
            ..ChangeSet::default()
        })
        .unwrap();
    // Written through: the profiles and links are in Redis before anyone reads them.
    assert_eq!(place.keys().len(), 4, "{:?}", place.keys());
    let ann = IdentityKey::parse("ann");
    assert_eq!(
        store.lookup(&ann).unwrap().unwrap().1.activity.event_count,
        1
    );
    assert_eq!(counts.hits.get(), 1);
    // The store changed behind the cache's back (what no persona process does): the
    // cached entry still answers, which shows where the answer came from.
    let psql = |sql: &str| {
        std::process::Command::new("psql")
            .args([&postgres_url(), "-qc", sql])
            .output()
            .unwrap()
    };
    psql(&format!("DELETE FROM {}.profiles", place.postgres.schema));
    assert_eq!(
        store.lookup(&ann).unwrap().unwrap().1.activity.event_count,
        1
    );
    // A change set through the cache: merged anon into ann, ann counted again.
    store
        .apply(&ChangeSet {
            profiles: vec![(1, profile("ann", 5))],
            removed: vec![2],
            links: vec![("a:anon".into(), 1)],
            next_id: 3,
            ..ChangeSet::default()
        })
        .unwrap();
    let (id, p) = store
        .lookup(&IdentityKey::Anonymous("anon"))
        .unwrap()
        .unwrap();
    assert_eq!((id, p.activity.event_count), (1, 5));
    assert!(
        store.get(2).unwrap().is_none(),
        "the merged profile left the cache too"
    );
    // A reader that read the merged profile from the store before the merge, filling
    // only now, does not bring it back.
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let tombstone = place
        .keys()
        .into_iter()
        .find(|k| k.ends_with(":p:2"))
        .expect("the merged profile's entry");
    let filled: Option<String> = redis::cmd("SET")
        .arg(&tombstone)
        .arg("stale")
        .arg("NX")
        .query(&mut conn)
        .unwrap();
    assert_eq!(filled, None, "a fill after the merge found the key taken");
    assert!(store.get(2).unwrap().is_none());
    assert_eq!(counts.errors.get(), 0);
}

#[test]
fn a_cache_that_does_not_answer_leaves_the_store_to_answer() {
    // Nothing listens on port 1.
    let place = Place::new("down", "redis://127.0.0.1:1");
    conformance::change_sets_are_stored_and_survive_reopening(&place.opener());
    let store = place.opener()().unwrap();
    assert!(store.lookup(&IdentityKey::parse("u1")).unwrap().is_some());
    assert!(store.counts().errors.get() >= 1);
}

#[test]
fn a_missed_lookup_fills_the_cache() {
    let place = Place::new("fill", &redis_url());
    // Stored by a store without the cache in front.
    {
        let store = PostgresStore::open(&place.postgres).unwrap();
        store
            .apply(&ChangeSet {
                profiles: vec![(1, profile("cy", 3))],
                created: 1,
                links: vec![("u:cy".into(), 1)],
                next_id: 2,
                ..ChangeSet::default()
            })
            .unwrap();
    }
    let store = place.opener()().unwrap();
    assert!(place.keys().is_empty());
    let key = IdentityKey::parse("cy");
    assert_eq!(
        store.lookup(&key).unwrap().unwrap().1.activity.event_count,
        3
    );
    assert_eq!(
        place.keys().len(),
        2,
        "identity and profile: {:?}",
        place.keys()
    );
    assert_eq!(store.lookup(&key).unwrap().unwrap().0, 1);
    let counts = store.counts();
    assert_eq!((counts.misses.get(), counts.hits.get()), (1, 1));
}

/// A Redis of the test's own that speaks only TLS, with a self-signed certificate for
/// localhost; stopped when dropped.
struct TlsRedis {
    server: std::process::Child,
    port: u16,
    certificate: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let persona_test_certs::SelfSigned {
            cert: certificate,
            key,
        } = persona_test_certs::self_signed(dir.path(), "localhost", "DNS:localhost");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&certificate)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&certificate)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let redis = TlsRedis {
            server,
            port,
            certificate,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server with TLS did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// Hits and errors of a cache on this server after a change set and two lookups.
    fn counts(&self, test: &str, url: String, ca_file: Option<&std::path::Path>) -> (u64, u64) {
        let mut place = Place::new(test, &url);
        place.redis.ca_file = ca_file.map(Into::into);
        let store = place.opener()().unwrap();
        store
            .apply(&ChangeSet {
                profiles: vec![(1, profile("dee", 2))],
                created: 1,
                links: vec![("u:dee".into(), 1)],
                next_id: 2,
                ..ChangeSet::default()
            })
            .unwrap();
        for _ in 0..2 {
            let found = store.lookup(&IdentityKey::parse("dee")).unwrap().unwrap();
            assert_eq!(found.1.activity.event_count, 2, "answered either way");
        }
        (store.counts().hits.get(), store.counts().errors.get())
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn a_cache_over_tls_checks_the_servers_certificate() {
    let redis = TlsRedis::start();
    let url = format!("rediss://localhost:{}", redis.port);
    // The server takes nothing but TLS, so a hit is a lookup over TLS.
    let trusted = redis.counts("tls", url.clone(), Some(&redis.certificate));
    assert_eq!(trusted, (2, 0));
    // Self-signed: the system's authorities do not vouch for it, and the store answers.
    let (hits, errors) = redis.counts("tls_untrusted", url.clone(), None);
    assert_eq!(hits, 0);
    assert!(errors >= 1);
    // Unless the URL says to take any certificate, as hosted Redis services may need.
    assert_eq!(
        redis.counts("tls_insecure", format!("{url}/#insecure"), None),
        (2, 0)
    );
    // Plain Redis on a TLS port: no answer, and the store answers.
    let plain = format!("redis://localhost:{}", redis.port);
    assert!(redis.counts("tls_plain", plain.clone(), None).1 >= 1);
    // A CA file for a plain URL is refused when the cache is made.
    let mut place = Place::new("tls_bad", &plain);
    place.redis.ca_file = Some(redis.certificate.clone());
    let refused = place.opener()().err().unwrap().to_string();
    assert!(refused.contains("rediss://"), "{refused}");
    // As is one that holds no certificate, and one beside #insecure.
    let mut place = Place::new("tls_bad", &url);
    place.redis.ca_file = Some(redis.certificate.with_file_name("localhost-key.pem"));
    let refused = place.opener()().err().unwrap().to_string();
    assert!(refused.contains("holds no PEM certificate"), "{refused}");
    let mut place = Place::new("tls_bad", &format!("{url}/#insecure"));
    place.redis.ca_file = Some(redis.certificate.clone());
    let refused = place.opener()().err().unwrap().to_string();
    assert!(refused.contains("#insecure"), "{refused}");
}
