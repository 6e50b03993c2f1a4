//! Connections to PostgreSQL, used from synchronous code.
//!
//! [`persona_store::ProfileStore`] is synchronous and is called from plain threads (the
//! stream stage) and from async handlers alike. A client's requests travel over channels
//! to its connection task, so they can be awaited by any executor: here a small blocking
//! one on the caller's thread. Only the connection tasks need tokio's sockets; they run on
//! a runtime of the store's own, so the store works whether or not its caller is inside
//! another runtime.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use persona_store::StoreError;
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::{Client, GenericClient, Statement};

use crate::tls::MakeRustls;

/// Runs `future` to completion on the calling thread. On a worker of a multi-threaded
/// runtime (an API handler), the worker's other tasks move to another thread meanwhile, so
/// a network round trip to the database does not hold up requests that never touch it.
pub(crate) fn wait<F: Future>(future: F) -> F::Output {
    blocking(|| futures_executor::block_on(future))
}

/// Runs `f`, which blocks, handing the worker's other tasks to another thread first when
/// called on a worker of a multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A PostgreSQL failure as a store error, with the server's own message where it sent one
/// (the client's `Display` says only "db error").
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(pg_message(e))
}

/// What went wrong, in words: the server's message and code, or the client's error with
/// its causes.
fn pg_message(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => {
            // The client's own errors keep their cause (an I/O error, a parameter of the
            // wrong type) as a source, not in their text.
            let mut text = format!("PostgreSQL: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// Where the server is and how to reach it: tokio-postgres's settings, and the TLS the
/// connection string asks for.
#[derive(Clone)]
pub struct ConnectionSettings {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustls,
}

impl ConnectionSettings {
    /// A new connection, whose task runs on the current runtime until the client is
    /// dropped or the server goes.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %pg_error(e), "a PostgreSQL connection of the profile store ended");
            }
        });
        Ok(client)
    }
}

/// The runtime the connection tasks run on, and how to open a connection.
pub(crate) struct Connector {
    runtime: Option<Runtime>,
    handle: Handle,
    settings: ConnectionSettings,
    /// Where the server is, for messages ([`crate::PostgresConfig::describe`]).
    where_: String,
}

impl Connector {
    pub(crate) fn new(settings: ConnectionSettings, where_: String) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("persona-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start a runtime: {e}")))?;
        Ok(Connector {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            settings,
            where_,
        })
    }

    /// A new connection; its task runs until the client is dropped or the server goes.
    /// A failure names the server, at the start and on every reconnect alike.
    pub(crate) fn connect(&self) -> Result<Client, StoreError> {
        let settings = self.settings.clone();
        let where_ = self.where_.clone();
        // Answered over a plain channel: awaiting the task's handle from inside another
        // runtime's task would draw on that task's cooperative budget and could spin.
        let (answer, connected) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let connected = settings.connect().await.map_err(|e| {
                StoreError::Backend(format!("cannot connect to {where_}: {}", pg_message(e)))
            });
            let _ = answer.send(connected);
        });
        blocking(|| connected.recv())
            .unwrap_or_else(|_| Err(StoreError::Backend("the connection task stopped".into())))
    }
}

impl Drop for Connector {
    /// Ends the connection tasks without waiting for them: dropping a runtime the plain way
    /// blocks, which tokio forbids inside another runtime (where a server drops its store).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Statements prepared on one connection, by their text with `{s}` standing for the
/// schema: each is parsed and planned once per connection rather than once per call.
pub(crate) struct Prepared {
    schema: Arc<str>,
    statements: Mutex<HashMap<&'static str, Statement>>,
}

impl Prepared {
    pub(crate) fn new(schema: Arc<str>) -> Self {
        Prepared {
            schema,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// `template` prepared on `client` (a connection, or a transaction on it).
    pub(crate) async fn get(
        &self,
        client: &impl GenericClient,
        template: &'static str,
    ) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.lock().expect("not poisoned").get(template) {
            return Ok(s.clone());
        }
        let statement = client
            .prepare(&template.replace("{s}", &self.schema))
            .await
            .map_err(pg_error)?;
        self.statements
            .lock()
            .expect("not poisoned")
            .insert(template, statement.clone());
        Ok(statement)
    }
}

/// A connection with its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) prepared: Prepared,
}

impl Conn {
    /// The single number a prepared query without parameters answers.
    pub(crate) async fn number(&self, template: &'static str) -> Result<i64, StoreError> {
        let statement = self.prepared.get(&self.client, template).await?;
        let row = self
            .client
            .query_one(&statement, &[])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }
}

/// A reading connection shared by concurrent readers (a client pipelines their requests),
/// opened again when the server has closed it (a restart, a failover).
pub(crate) struct ReadSlot {
    conn: RwLock<Arc<Conn>>,
}

impl ReadSlot {
    pub(crate) fn new(conn: Conn) -> Self {
        ReadSlot {
            conn: RwLock::new(Arc::new(conn)),
        }
    }

    pub(crate) fn get(
        &self,
        connector: &Connector,
        schema: &Arc<str>,
    ) -> Result<Arc<Conn>, StoreError> {
        let current = self.conn.read().expect("not poisoned").clone();
        if !current.client.is_closed() {
            return Ok(current);
        }
        let mut slot = self.conn.write().expect("not poisoned");
        if slot.client.is_closed() {
            *slot = Arc::new(Conn {
                client: connector.connect()?,
                prepared: Prepared::new(schema.clone()),
            });
        }
        Ok(slot.clone())
    }
}
