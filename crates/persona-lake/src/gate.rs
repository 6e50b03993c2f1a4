//! Turns between the queries that read the lake and the maintenance that replaces its
//! files.
//!
//! A query lists a table's files when it is planned and opens them as it runs. A
//! compaction puts a merged file in place and then removes its sources; a query between the
//! two would count those rows twice, and one that listed the sources before and opens them
//! after would fail. So queries hold the gate shared while they run, and maintenance holds
//! it alone, only for its renames and removals (milliseconds; for a lake in an object
//! store, copies inside the store and deletions, longer for large files), never while it
//! reads, writes or uploads Parquet. New files of the lake writer need no turn: each appears whole, by a
//! rename, and holds rows no other file has.
//!
//! Only readers in this process take turns. Another engine reading the folder (DuckDB,
//! Spark) can see a merged file and its sources together for those milliseconds; point it
//! at the lake between compactions, or at a snapshot of it.

use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, RwLock, RwLockWriteGuard};

/// The lake's gate; clones share it.
#[derive(Clone, Debug, Default)]
pub struct LakeGate(Arc<RwLock<()>>);

impl LakeGate {
    /// A query's turn: shared with other queries, held until the guard drops.
    pub async fn read(&self) -> OwnedRwLockReadGuard<()> {
        self.0.clone().read_owned().await
    }

    /// Maintenance's turn, alone: waits for running queries to finish, and queries that
    /// arrive meanwhile wait behind it. Blocks the thread: never call it on an async
    /// worker.
    pub fn replace(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.blocking_write()
    }
}
