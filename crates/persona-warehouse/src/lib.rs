//! persona's SQL warehouse: Apache DataFusion over the lake and the live profile store.
//!
//! Tables:
//! - `events`: every event in the Parquet lake (`persona-lake`), with its Hive partition
//!   columns `date` and `hour`, so a filter on them reads only those folders.
//! - `profiles`: every live profile with its computed figures as of the query.
//! - `segments`: the rule segments; `segment_members`: who is in each, now.
//! - `profile_snapshots`: the `profiles` table as it was at each daily snapshot, with its
//!   partition column `snapshot_date` (written by [`Warehouse::snapshot_profiles`]).
//!
//! Queries are read-only (no DDL, DML, `COPY` or `SET`), run on a runtime of their own
//! at a lower CPU priority so that ingestion keeps its acknowledgements fast, within a
//! memory pool and a time limit, and return at most a requested number of rows. Besides
//! DataFusion's functions there is `json_get(json, key, ...)` for the JSON columns.

mod error;
mod json_get;
mod live;
mod output;
mod runtime;
mod snapshot;
mod tables;

pub use error::QueryError;
pub use output::{Column, QueryResult};
pub use snapshot::{PROFILE_SNAPSHOTS_TABLE, SnapshotReport};

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use persona_lake::{LakeGate, LakeStorage};
use persona_store::ProfileStore;
use tokio::sync::Semaphore;

/// Limits on queries.
#[derive(Debug, Clone)]
pub struct WarehouseLimits {
    /// Longest a query may run.
    pub timeout: Duration,
    /// Memory the queries' joins, sorts and aggregations may hold together.
    pub memory_bytes: usize,
    /// Queries run at once; more are refused (429) rather than queued without bound.
    pub concurrent: usize,
}

impl Default for WarehouseLimits {
    fn default() -> Self {
        WarehouseLimits {
            timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
            concurrent: 2,
        }
    }
}

/// The SQL warehouse of one data folder.
pub struct Warehouse {
    context: SessionContext,
    runtime: runtime::QueryRuntime,
    running: Arc<Semaphore>,
    limits: WarehouseLimits,
    lake: LakeStorage,
    store: Arc<dyn ProfileStore>,
    gate: LakeGate,
}

impl Warehouse {
    /// A warehouse over `lake` and the profiles and segments in `store`. Its queries take
    /// turns at `gate` with the lake's maintenance.
    pub async fn open(
        lake: LakeStorage,
        store: Arc<dyn ProfileStore>,
        limits: WarehouseLimits,
        gate: LakeGate,
    ) -> Result<Self, QueryError> {
        let runtime = runtime::QueryRuntime::start().map_err(QueryError::internal)?;
        // No cache of the lake's file list: DataFusion keeps one by default, for good, which
        // would hide every file the lake writer adds after the first query. Listing local
        // folders costs little beside reading the files.
        let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
        let memory = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_cache_manager(caches)
            .build_arc()?;
        let config = SessionConfig::new()
            .with_target_partitions(runtime.threads())
            .with_information_schema(true);
        let context = SessionContext::new_with_config_rt(config, memory);
        context.register_udf(json_get::udf());

        register_lake_table(
            &context,
            &lake,
            persona_lake::EVENTS_TABLE,
            &["date", "hour"],
            persona_lake::events_schema(),
        )
        .await?;
        register_lake_table(
            &context,
            &lake,
            PROFILE_SNAPSHOTS_TABLE,
            &[snapshot::SNAPSHOT_DATE],
            tables::profiles_schema(),
        )
        .await?;
        tables::register(&context, store.clone())?;
        Ok(Warehouse {
            context,
            runtime,
            running: Arc::new(Semaphore::new(limits.concurrent)),
            limits,
            lake,
            store,
            gate,
        })
    }

    /// Writes today's profile snapshot (replacing one taken earlier today). Blocks for as
    /// long as reading every profile takes: call it on a thread of its own.
    pub fn snapshot_profiles(&self) -> std::io::Result<SnapshotReport> {
        snapshot::write(&*self.store, &self.lake, &self.gate, chrono::Utc::now())
    }

    /// Runs one read-only statement and returns at most `max_rows` rows of its answer.
    pub async fn query(&self, sql: &str, max_rows: usize) -> Result<QueryResult, QueryError> {
        let _running = self
            .running
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueryError::Busy {
                running: self.limits.concurrent,
            })?;
        let started = Instant::now();
        let context = self.context.clone();
        let sql = sql.to_owned();
        let gate = self.gate.clone();
        let run = async move {
            // From planning (which lists the files) to the last batch read.
            let _turn = gate.read().await;
            let read_only = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let frame = context.sql_with_options(&sql, read_only).await?;
            // One row past the limit tells whether the answer was cut.
            let frame = frame.limit(0, Some(max_rows.saturating_add(1)))?;
            let schema = frame.schema().as_arrow().clone();
            let batches = frame.collect().await?;
            Ok::<_, QueryError>((schema, batches))
        };
        let timeout = self.limits.timeout;
        // On the query runtime, so a heavy query shares the cores with the server's own
        // workers instead of occupying them; dropped at the time limit, which cancels it.
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, run).await });
        // A caller that goes away (a client hanging up) cancels its query.
        let _cancel = CancelOnDrop(task.abort_handle());
        let (schema, batches) = match task.await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(QueryError::Timeout { limit: timeout }),
            Err(e) => return Err(QueryError::internal(e)),
        };
        output::QueryResult::from_batches(&schema, &batches, max_rows, started.elapsed())
    }
}

struct CancelOnDrop(tokio::task::AbortHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Registers the Parquet files of the lake's table `table` (its folder made if missing,
/// for a local lake) as a table of that name, with Hive partition columns `partitions`
/// (text) from the folder names.
async fn register_lake_table(
    context: &SessionContext,
    lake: &LakeStorage,
    table: &str,
    partitions: &[&str],
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> Result<(), QueryError> {
    let (url, remote) = lake.table_url(table).map_err(QueryError::internal)?;
    if let Some((bucket, store)) = remote {
        context.register_object_store(&bucket, store);
    }
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partitions
                .iter()
                .map(|p| (p.to_string(), DataType::Utf8))
                .collect(),
        );
    context
        .register_listing_table(table, url, options, Some(schema), None)
        .await?;
    Ok(())
}
