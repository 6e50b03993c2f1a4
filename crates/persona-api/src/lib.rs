//! The read and admin API: what websites, CRMs and operators call.
//!
//! It serves profiles (`GET /v1/profiles/{key}`), each profile's recent events
//! (`/events`) and segment history (`/history`), and rule segments (`/v1/segments`, CRUD and
//! members), RFM edges (`/v1/rfm`), cluster models (`/v1/models`: trained on the
//! profiles, read, activated), webhooks (`/v1/webhooks`: CRUD and a test delivery), and
//! the read API as GraphQL (`POST /graphql`), SQL over the warehouse (`POST /v1/sql`) and
//! the scheduled jobs (`/v1/jobs`: listed, run on request), behind the admin token. It reads through the
//! [`ProfileStore`] trait, so it serves the embedded store and the scale-out stores alike,
//! and it reuses the collector's error type so every endpoint answers errors the same way.

mod auth;
mod body;
mod graphql;
mod guard;
mod jobs;
mod models;
mod profiles;
mod rfm;
mod segments;
mod sql;
mod webhooks;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use persona_jobs::Jobs;
use persona_rules::SegmentRegistry;
use persona_store::ProfileStore;
use persona_warehouse::Warehouse;
use persona_webhooks::Webhooks;

pub use graphql::sdl as graphql_schema;
pub use guard::WarningsCache;
pub use models::{load_models, train_on_profiles};
pub use persona_collector::ApiError;
pub use rfm::{load_rfm, refit_rfm};
pub use sql::{DEFAULT_ROWS as SQL_DEFAULT_ROWS, MAX_ROWS as SQL_MAX_ROWS};

/// Whether profiles may be missing recent events (the processor is failing or far behind).
pub type Staleness = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn ProfileStore>,
    /// The event log folder, from which a profile's events are read by position.
    pub log_dir: PathBuf,
    pub admin_token: Arc<str>,
    pub stale: Staleness,
    /// The segments and models in force, shared with the stream stage.
    pub segments: Arc<SegmentRegistry>,
    /// Serialises changes of the stored models.
    pub models_lock: Arc<WriteLock>,
    /// Serialises changes of the stored segments, from the read of the definition to the
    /// registry's reload, so that the last change stored is the one in force.
    pub segments_lock: Arc<WriteLock>,
    /// The webhooks and their delivery workers.
    pub webhooks: Arc<Webhooks>,
    /// The over-segmentation warnings last computed, served again for a few seconds.
    pub warnings: Arc<WarningsCache>,
    /// SQL over the lake and the live tables.
    pub warehouse: Arc<Warehouse>,
    /// The scheduled jobs.
    pub jobs: Arc<Jobs>,
}

/// 404 with the error body: `message` says what is not there.
pub(crate) fn not_found(message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", message)
}

/// Runs `work` on tokio's blocking threads and waits for it there.
///
/// For store calls that may wait for the disk: a change of a definition syncs it, and a
/// page of members reads one profile per member, each a disk read when the OS has evicted
/// it. On the two async workers that wait would hold up every acknowledgement of ingested
/// events queued behind it.
pub(crate) async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "store work off the async workers panicked");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?
}

/// One writer at a time over a read-modify-write of stored definitions. Held only around
/// short store calls, never across an await.
#[derive(Default)]
pub struct WriteLock(Mutex<()>);

impl WriteLock {
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        // A panic while held is a bug logged already; the next writer reads the stored
        // state afresh, so the lock itself stays usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The API routes, to merge into the server's router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/profiles/{key}", get(profiles::profile))
        .route("/v1/profiles/{key}/events", get(profiles::events))
        .route("/v1/profiles/{key}/history", get(profiles::history))
        .route("/v1/segments", get(segments::list).post(segments::create))
        .route(
            "/v1/segments/{id}",
            get(segments::get)
                .put(segments::update)
                .delete(segments::delete),
        )
        .route("/v1/segments/{id}/members", get(segments::members))
        .route("/v1/rfm", get(rfm::get).post(rfm::refit))
        .route("/v1/models", get(models::list).post(models::create))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/models/{id}/curves", get(models::curves))
        .route("/v1/models/{id}/activate", post(models::activate))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/ping", post(webhooks::ping))
        .route("/v1/sql", post(sql::query))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{name}/run", post(jobs::run))
        .route("/graphql", post(graphql::execute))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .with_state(state)
}
