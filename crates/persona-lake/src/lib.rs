//! persona's lake: every event of the log, as Parquet, in Hive partitions.
//!
//! The lake writer is one more consumer of the event log, with its own committed offset
//! (`lake` in `persona log stats`). It gathers events for `flush_seconds` or `max_rows`,
//! writes one Parquet file per partition touched (`events/date=YYYY-MM-DD/hour=HH/`, by
//! the event's corrected `timestamp`, in UTC), and commits its offset only once every file
//! of the flush is on disk. Files are named after the log offsets they hold, so a crash
//! between a file's rename and the commit is undone at the next start by deleting the
//! files past the committed offset, and the events are written again: each event is in
//! the lake exactly once.
//!
//! The lake is a folder (`<data dir>/lake` by default) or a bucket of an object store
//! (`[lake] url = "s3://…"`, GCS or Azure too), in the same layout ([`LakeStorage`]).
//!
//! Any engine that reads Parquet with Hive partitions reads the lake as it is (DataFusion,
//! DuckDB, Spark, Trino); `persona-warehouse` serves SQL over it. [`compact`] merges a
//! partition's small files once they are committed, and [`StagedFile`] writes any other
//! table of the lake (the profile snapshots) whole or not at all; [`LakeGate`] keeps the
//! queries of this process from seeing a file swap half done.

mod compact;
mod config;
mod files;
mod gate;
mod metrics;
mod rows;
mod storage;
mod writer;

pub use compact::{CompactReport, compact};
pub use config::{LakeConfig, LakeLocation, RemoteLake, ValidLakeConfig};
pub use files::{EVENTS_TABLE, StagedFile};
pub use gate::LakeGate;
pub use metrics::LakeMetrics;
pub use rows::events_schema;
pub use storage::{BucketStore, LakeStorage};
pub use writer::{CONSUMER, LakeError, LakeHandle, spawn};
