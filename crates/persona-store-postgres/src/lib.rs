//! persona's profile store on PostgreSQL: profiles, the identity graph, the per-profile
//! event index, segments and their members, the webhook outbox and the stored models, in
//! one schema of a PostgreSQL database, for a deployment whose profile state should live
//! on a database server (backed up, replicated, read by BI tools) rather than in the
//! server's data folder.
//!
//! It implements [`ProfileStore`] as the embedded store does and passes the same checks
//! (`persona_store::conformance`): each change set is one transaction, so replay after a
//! crash stays exactly-once in effect. One process writes a schema at a time (a session
//! advisory lock, like the embedded store's folder lock); reads run on a few shared
//! connections, writes on one.

mod apply;
mod connection;
mod conninfo;
mod durability;
mod schema;
mod store;
mod tls;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use persona_store::StoreError;
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

pub use connection::ConnectionSettings;
use connection::{Conn, Connector, Prepared, ReadSlot, pg_error, wait};
use durability::Durability;

pub use schema::check_name as check_schema_name;

/// Where the store lives.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A libpq connection string or URL, e.g. `postgres://persona@db:5432/persona`, with
    /// libpq's TLS settings: `sslmode` (`disable`, `prefer` by default, `require`,
    /// `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file, or `system`).
    pub url: String,
    /// The schema holding the store's tables, created when missing.
    pub schema: String,
    /// Connections shared by readers (profile lookups, segment pages, exports).
    pub read_connections: usize,
}

impl PostgresConfig {
    /// `url` as connection settings; the error says what is wrong with it. Without a
    /// connect timeout of its own, one of 10 seconds is set, so that a wrong host fails
    /// the start rather than hanging it.
    pub fn connection(&self) -> Result<ConnectionSettings, String> {
        let (mut config, tls) = self.parsed()?;
        // tokio-postgres checks a certificate against `host`: with only `hostaddr` given,
        // the address is the name (libpq refuses verify-full without a host name instead).
        if config.get_hosts().is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        #[cfg(unix)]
        let sockets_only = config.get_hostaddrs().is_empty()
            && !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        #[cfg(not(unix))]
        let sockets_only = false;
        config.ssl_mode(match tls.mode {
            // As libpq: sslmode does not apply to a Unix socket, which has no TLS (with a
            // hostaddr, the connection is TCP to it whatever the host).
            _ if sockets_only => SslMode::Disable,
            conninfo::SslMode::Disable => SslMode::Disable,
            conninfo::SslMode::Prefer => SslMode::Prefer,
            conninfo::SslMode::Require
            | conninfo::SslMode::VerifyCa
            | conninfo::SslMode::VerifyFull => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("persona");
        }
        // A server gone without a word (a partition, a failover) is noticed within a minute
        // by both ends, rather than after the two hours of the systems' defaults: this side
        // fails its calls, and the server ends the old session and frees its lock.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(20));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(4);
        #[cfg(target_os = "linux")]
        config.tcp_user_timeout(Duration::from_secs(40));
        if config.get_options().is_none() {
            config.options(
                "-c tcp_keepalives_idle=20 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=4",
            );
        }
        Ok(ConnectionSettings {
            config,
            tls: tls::MakeRustls::new(&tls)?,
        })
    }

    /// `url` read: tokio-postgres's settings, and the TLS settings it leaves to persona.
    fn parsed(&self) -> Result<(tokio_postgres::Config, conninfo::TlsSettings), String> {
        let not_conninfo =
            |e: &dyn std::fmt::Display| format!("not a PostgreSQL connection string: {e}");
        let (rest, tls) = conninfo::split_tls(&self.url).map_err(|e| not_conninfo(&e))?;
        Ok((rest.parse().map_err(|e| not_conninfo(&e))?, tls))
    }

    /// Where the store is, for messages: host, port and database, never the password.
    pub fn describe(&self) -> String {
        match self.parsed().map(|(c, _)| c) {
            Ok(c) => {
                let host = match (c.get_hosts().first(), c.get_hostaddrs().first()) {
                    (Some(tokio_postgres::config::Host::Tcp(h)), _) => h.clone(),
                    (_, Some(addr)) => addr.to_string(),
                    #[cfg(unix)]
                    (Some(tokio_postgres::config::Host::Unix(p)), None) => p.display().to_string(),
                    (None, None) => "localhost".into(),
                };
                let port = c.get_ports().first().copied().unwrap_or(5432);
                let db = c.get_dbname().unwrap_or("(default database)");
                format!("schema {} of PostgreSQL {host}:{port}/{db}", self.schema)
            }
            Err(_) => format!("schema {} of PostgreSQL", self.schema),
        }
    }
}

/// How long an open waits for another process's lock to go: one that just stopped may
/// still be closing its connection at the server.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Profiles in a PostgreSQL schema.
pub struct PostgresStore {
    connector: Connector,
    /// The schema's name as written, for its lock.
    name: String,
    /// The schema's name quoted, as it goes into SQL.
    schema: Arc<str>,
    where_: String,
    readers: Vec<ReadSlot>,
    next_reader: AtomicUsize,
    /// The one writing connection, which also holds the schema's lock.
    writer: Mutex<Option<Conn>>,
    /// Set when the writing connection was lost and opened again: commits not yet flushed
    /// may be gone with the old one (a server crash), so the next change set is refused
    /// and the stream stage goes back to the stored offset.
    lost_writer: AtomicBool,
    durability: Mutex<Durability>,
}

impl PostgresStore {
    /// Connects, takes the schema's lock (refused with [`StoreError::Locked`] when another
    /// process holds it) and creates the tables where missing.
    pub fn open(config: &PostgresConfig) -> Result<Self, StoreError> {
        schema::check_name(&config.schema).map_err(StoreError::Backend)?;
        let connection = config.connection().map_err(StoreError::Backend)?;
        let schema: Arc<str> = format!("\"{}\"", config.schema).into();
        let where_ = config.describe();
        let connector = Connector::new(connection, where_.clone())?;
        let writer = connector.connect()?;
        take_lock(&writer, &config.schema, &where_)?;
        create_tables(&writer, &config.schema, &schema)?;
        let mut readers = Vec::new();
        for _ in 0..config.read_connections.max(1) {
            readers.push(ReadSlot::new(Conn {
                client: connector.connect()?,
                prepared: Prepared::new(schema.clone()),
            }));
        }
        let store = PostgresStore {
            connector,
            writer: Mutex::new(Some(Conn {
                client: writer,
                prepared: Prepared::new(schema.clone()),
            })),
            name: config.schema.clone(),
            schema,
            where_,
            readers,
            next_reader: AtomicUsize::new(0),
            lost_writer: AtomicBool::new(false),
            durability: Mutex::new(Durability::default()),
        };
        schema::check_version(store.meta("schema_version")?.unwrap_or(0) as i64)?;
        // What an earlier process committed without waiting may not be on disk yet: a
        // write that waits for the flush makes it so, before its offsets count as durable.
        store.write(
            "UPDATE {s}.meta SET value = value WHERE key = 'schema_version'",
            &[],
        )?;
        *store.durability.lock().expect("not poisoned") = Durability::new(store.offsets()?);
        // As the server saw it (behind a pooler, the pooler's connection to it).
        match store.encryption() {
            Ok(Some(tls)) => {
                tracing::info!(store = %store.where_, %tls, "profile store connected over TLS")
            }
            Ok(None) => {
                tracing::info!(store = %store.where_, "profile store connected without TLS")
            }
            Err(e) => {
                tracing::warn!(store = %store.where_, error = %e, "cannot tell whether the profile store's connection is encrypted")
            }
        }
        Ok(store)
    }

    /// A reading connection's slot, round robin.
    fn reader_slot(&self) -> &ReadSlot {
        &self.readers[self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len()]
    }

    /// The writing connection, opened again (and the lock taken again) when the server has
    /// closed it.
    fn writer(&self) -> Result<MutexGuard<'_, Option<Conn>>, StoreError> {
        let mut slot = self.writer.lock().expect("not poisoned");
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            if slot.take().is_some() {
                self.lost_writer.store(true, Ordering::SeqCst);
            }
            let client = self.connector.connect()?;
            take_lock(&client, &self.name, &self.where_)?;
            *slot = Some(Conn {
                client,
                prepared: Prepared::new(self.schema.clone()),
            });
        }
        Ok(slot)
    }
}

/// Creates the schema and its tables unless all are there: a role granted only the use of
/// tables made beforehand may not create anything, and need not.
fn create_tables(client: &Client, name: &str, quoted: &str) -> Result<(), StoreError> {
    let tables: Vec<&str> = schema::TABLES.to_vec();
    let present: i64 = wait(client.query_one(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = ANY($2)",
        &[&name, &tables],
    ))
    .map_err(pg_error)?
    .get(0);
    if present as usize == tables.len() {
        return Ok(());
    }
    wait(client.batch_execute(&schema::CREATE.replace("{s}", quoted))).map_err(pg_error)
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closed here rather than when the server notices the socket gone, so that a
        // store opened right after this one finds the lock free.
        if let Ok(mut slot) = self.writer.lock()
            && let Some(conn) = slot.take()
        {
            let _ = wait(conn.client.batch_execute("SELECT pg_advisory_unlock_all()"));
        }
    }
}

/// The first half of the schema lock's key, so that it does not meet other applications'
/// advisory locks (the second half is the schema name's hash).
const LOCK_CLASS: i32 = 0x7065_7273; // "pers"

/// Takes the session lock that says this process writes `schema`, waiting up to
/// [`LOCK_WAIT`] for a holder that is going away. The session also waits for every commit
/// to reach the disk unless a transaction says otherwise, whatever the server's default.
fn take_lock(client: &Client, schema: &str, where_: &str) -> Result<(), StoreError> {
    wait(client.batch_execute("SET synchronous_commit TO on")).map_err(pg_error)?;
    let started = Instant::now();
    loop {
        let row = wait(client.query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &schema],
        ))
        .map_err(pg_error)?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        if started.elapsed() >= LOCK_WAIT {
            return Err(StoreError::Locked(where_.to_string()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
