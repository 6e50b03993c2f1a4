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
        Schema::with_url(test, server_url())
    }

    /// A schema of the test's own on the server, reached through `url`.
    fn with_url(test: &str, url: String) -> Schema {
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
                url,
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

/// The test server's URL, naming the server `host` (what a certificate is checked
/// against) while connecting to its address (`hostaddr`), with TLS settings after `&`.
fn tls_url(host: &str, settings: &str) -> String {
    let (config, address) = server_address();
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!(
        "postgres://{}{password}@{host}:{}/{}?hostaddr={address}&{settings}",
        config.get_user().unwrap_or("postgres"),
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or("test"),
    )
}

/// The test server's settings, and its address (an IP address or a name).
fn server_address() -> (tokio_postgres::Config, String) {
    let config: tokio_postgres::Config = server_url().parse().unwrap();
    let address = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => panic!("the TLS tests need the server on TCP, not {}", server_url()),
    };
    (config, address)
}

/// The certificate the test server presents, to serve as its own authority, and the
/// host name it is for: `scripts/test` checks that the server has TLS on (Debian's
/// packages set it up with a self-signed certificate for the machine's name).
fn server_certificate() -> (String, String) {
    let schema = Schema::new("cert");
    let rows = schema.sql("SELECT current_setting('ssl'), current_setting('ssl_cert_file')");
    assert_eq!(
        rows[0][0].as_deref(),
        Some("on"),
        "the test server has TLS off"
    );
    let file = rows[0][1].clone().unwrap();
    // Relative to the server's data folder when not absolute.
    assert!(
        file.starts_with('/'),
        "ssl_cert_file {file} is not a full path"
    );
    let names = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in", &file])
        .output()
        .expect("openssl runs");
    let names = String::from_utf8_lossy(&names.stdout);
    let name = names
        .split([',', ' ', '\n'])
        .find_map(|n| n.trim().strip_prefix("DNS:"))
        .unwrap_or_else(|| panic!("the server's certificate {file} names no host: {names}"));
    (file, name.to_string())
}

/// How the store's connections to `url` are protected, as the server reports it.
fn encryption(test: &str, url: String) -> Option<String> {
    let schema = Schema::with_url(test, url);
    let store = schema.opener()().unwrap_or_else(|e| panic!("{test}: {e}"));
    store.encryption().unwrap()
}

#[test]
fn tls_follows_libpqs_sslmode() {
    let (cert, name) = server_certificate();
    let tls = |test: &str, host: &str, settings: &str| {
        let e = encryption(test, tls_url(host, settings));
        assert!(
            e.as_deref().is_some_and(|e| e.starts_with("TLSv1.")),
            "{test}: {e:?}"
        );
    };
    // As psql: TLS when the server offers it, whatever its certificate, unless disabled.
    tls("prefer", "127.0.0.1", "");
    assert_eq!(
        encryption("disable", tls_url("127.0.0.1", "sslmode=disable")),
        None
    );
    tls("require", "127.0.0.1", "sslmode=require");
    // Checked against the named authority: the whole certificate, or only its chain.
    tls(
        "full",
        &name,
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    );
    tls(
        "ca",
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={cert}"),
    );
    // The same as a key=value string, with the value quoted.
    let (config, address) = server_address();
    let keywords = format!(
        "host={name} hostaddr={address} port={} user={} dbname={} sslmode=verify-full \
         sslrootcert='{cert}'",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres"),
        config.get_dbname().unwrap_or("test"),
    );
    assert!(encryption("kv", keywords).is_some());
    // An address alone: the certificate is checked against it, and the address named.
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("test");
    let address_only = format!("hostaddr={address} port={port} user={user} dbname={db}");
    assert!(encryption("addr", format!("{address_only} sslmode=require")).is_some());
    let wrong_name = refusal(
        &format!("{address_only} sslmode=verify-full sslrootcert='{cert}'"),
        "persona",
    );
    assert!(
        wrong_name.contains(&format!("PostgreSQL {address}:{port}/{db}"))
            && wrong_name.contains("not valid for name"),
        "{wrong_name}"
    );
}

#[test]
fn certificates_that_do_not_check_out_are_refused_and_named() {
    let (cert, name) = server_certificate();
    let wrong_name = refusal(
        &tls_url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={cert}"),
        ),
        "persona",
    );
    assert!(
        wrong_name.contains("TLS") && wrong_name.contains("not valid for name"),
        "{wrong_name}"
    );
    // An authority that did not sign the server's certificate (not the system's: this
    // machine's trusts the self-signed one, as Debian links it among its authorities).
    let dir = tempfile::tempdir().unwrap();
    let other = persona_test_certs::self_signed(dir.path(), "other-authority", "DNS:other.invalid");
    let other = other.cert.display();
    let unknown = refusal(
        &tls_url(&name, &format!("sslmode=verify-full&sslrootcert={other}")),
        "persona",
    );
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    // As libpq: require with a named authority checks the chain.
    let unknown = refusal(
        &tls_url(&name, &format!("sslmode=require&sslrootcert={other}")),
        "persona",
    );
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    let missing = refusal(
        &tls_url(&name, "sslmode=verify-ca&sslrootcert=/nowhere/ca.pem"),
        "persona",
    );
    assert!(missing.contains("sslrootcert /nowhere/ca.pem"), "{missing}");
    let client_cert = refusal(&tls_url(&name, "sslcert=/c.pem"), "persona");
    assert!(
        client_cert.contains("sslcert is not supported"),
        "{client_cert}"
    );
}
