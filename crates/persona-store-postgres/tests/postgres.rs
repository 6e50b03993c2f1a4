//! The PostgreSQL store against a real server (`PERSONA_TEST_POSTGRES_URL`, by default the
//! local one that `scripts/test` makes sure is running): the checks every store passes, and
//! what only this one has to show (its lock, its durable offset, tables a BI tool can read,
//! a connection the server closed, clear errors). Each test works in a schema of its own,
//! dropped at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use persona_store::conformance::profile;
use persona_store::{ChangeSet, IdentityKey, ProfileStore, StoreError};
use persona_store_postgres::{PostgresConfig, PostgresStore};

fn server_url() -> String {
    std::env::var("PERSONA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of the test's own, dropped (with everything in it) when the test ends.
struct Schema {
    config: PostgresConfig,
}

impl Schema {
    fn new(test: &str) -> Schema {
        static N: AtomicUsize = AtomicUsize::new(0);
        // Short: a schema name has at most 63 characters.
        let test: String = test.chars().take(24).collect();
        let name = format!(
            "persona_test_{test}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let schema = Schema {
            config: PostgresConfig {
                url: server_url(),
                schema: name,
                read_connections: 2,
            },
        };
        schema.sql(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schema.config.schema
        ));
        schema
    }

    fn opener(&self) -> impl Fn() -> Result<PostgresStore, StoreError> + '_ {
        || PostgresStore::open(&self.config)
    }

    /// Runs `sql` on a connection of the test's own and returns the rows as text.
    fn sql(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {} is not answering: {e}", server_url())
                    });
            tokio::spawn(connection);
            let messages = client.simple_query(sql).await.unwrap();
            messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        self.sql(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.config.schema
        ));
    }
}

persona_store::conformance_tests!(|name| Schema::new(name), |schema| schema.opener());

#[test]
fn segments_and_members_are_tables_a_bi_tool_can_join() {
    let schema = Schema::new("bi");
    let store = schema.opener()().unwrap();
    let vip = store
        .create_segment("vip", "computed.monetary > 500", 1)
        .unwrap();
    store
        .apply(&ChangeSet {
            profiles: vec![(1, profile("ann", 4)), (2, profile("bob", 1))],
            created: 2,
            links: vec![("u:ann".into(), 1), ("u:bob".into(), 2)],
            memberships: vec![(vip.id, 1, true)],
            next_id: 3,
            ..ChangeSet::default()
        })
        .unwrap();
    let s = &schema.config.schema;
    let rows = schema.sql(&format!(
        "SELECT s.name, substr(i.key, 3) FROM {s}.members m \
         JOIN {s}.segments s ON s.id = m.segment \
         JOIN {s}.identities i ON i.profile = m.profile ORDER BY 2"
    ));
    assert_eq!(rows, [[Some("vip".to_string()), Some("ann".to_string())]]);
    assert_eq!(
        schema.sql(&format!("SELECT count(*) FROM {s}.profiles")),
        [[Some("2".to_string())]]
    );
}

#[test]
fn a_connection_the_server_closed_is_opened_again() {
    let mut schema = Schema::new("reconnect");
    let tag = format!("{}_app", schema.config.schema);
    let url = server_url();
    schema.config.url = if url.contains("://") {
        let join = if url.contains('?') { '&' } else { '?' };
        format!("{url}{join}application_name={tag}")
    } else {
        format!("{url} application_name={tag}")
    };
    let store = schema.opener()().unwrap();
    store
        .apply(&ChangeSet {
            profiles: vec![(1, profile("ann", 4))],
            created: 1,
            links: vec![("u:ann".into(), 1)],
            next_id: 2,
            ..ChangeSet::default()
        })
        .unwrap();
    // What a server restart or a failover does to every connection.
    let killed = schema.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{tag}'"
    ));
    assert_eq!(killed.len(), 3, "two readers and the writer");
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        match store.lookup(&IdentityKey::parse("ann")) {
            Ok(found) => break found,
            Err(e) => {
                assert!(Instant::now() < deadline, "never reconnected: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(found.unwrap().1.activity.event_count, 4);
    // The writer reconnects too, with the lock taken again; but commits not yet flushed
    // may have gone with the old connection, so the first change set after it is refused
    // (the stream stage then goes back to the stored offset) and the next one is taken.
    let change = ChangeSet {
        next_id: 2,
        offsets: vec![("processor".into(), 7)],
        ..ChangeSet::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = Vec::new();
    while let Err(e) = store.apply(&change) {
        assert!(
            Instant::now() < deadline,
            "the writer never reconnected: {e}"
        );
        refused.push(e.to_string());
    }
    assert!(
        refused.iter().any(|e| e.contains("lost and opened again")),
        "{refused:?}"
    );
    assert_eq!(store.offset("processor").unwrap(), Some(7));
    assert!(matches!(schema.opener()(), Err(StoreError::Locked(_))));
}

/// Why opening a store on `url` and `schema` fails.
fn refusal(url: &str, schema: &str) -> String {
    PostgresStore::open(&PostgresConfig {
        url: url.into(),
        schema: schema.into(),
        read_connections: 1,
    })
    .err()
    .unwrap()
    .to_string()
}

#[test]
fn bad_settings_and_an_unreachable_server_are_named() {
    let bad_name = refusal(&server_url(), "Robert'); DROP TABLE x;--");
    assert!(bad_name.contains("not a plain schema name"), "{bad_name}");
    let bad_url = refusal("postgres://[::1", "persona");
    assert!(
        bad_url.contains("not a PostgreSQL connection string"),
        "{bad_url}"
    );
    // Nothing listens on port 1.
    let down = refusal("postgres://postgres@127.0.0.1:1/test", "persona");
    assert!(
        down.contains("cannot connect to schema persona of PostgreSQL 127.0.0.1:1/test"),
        "{down}"
    );
    assert!(
        !down.contains("postgres@"),
        "no credentials in messages: {down}"
    );
}
