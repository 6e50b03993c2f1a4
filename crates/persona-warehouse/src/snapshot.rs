//! Profile snapshots: the `profiles` table as of a moment, kept in the lake as Parquet,
//! one file a day (`profile_snapshots/snapshot_date=YYYY-MM-DD/profiles.parquet`), so that
//! SQL (and any engine reading the lake) can compare customers across days: who churned,
//! how RFM figures moved, which segments grew.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use persona_lake::{LakeGate, StagedFile};
use persona_store::{ProfileStore, StoreError};
use serde::Serialize;

use crate::tables;

/// The snapshots' table, and its folder under the lake.
pub const PROFILE_SNAPSHOTS_TABLE: &str = "profile_snapshots";
/// The partition column: the UTC date of the snapshot.
pub(crate) const SNAPSHOT_DATE: &str = "snapshot_date";
const FILE_NAME: &str = "profiles.parquet";

/// What a snapshot wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub snapshot_date: String,
    pub as_of: DateTime<Utc>,
    pub profiles: u64,
    pub bytes: u64,
    pub path: PathBuf,
    /// Whether it replaced an earlier snapshot of the same day.
    pub replaced: bool,
}

/// The snapshots' folder in a lake folder.
pub(crate) fn snapshots_dir(lake_dir: &Path) -> PathBuf {
    lake_dir.join(PROFILE_SNAPSHOTS_TABLE)
}

/// Writes every profile as of `as_of` to the snapshot of `as_of`'s date, replacing one
/// taken earlier that day. Blocks: run it on a thread of its own.
pub(crate) fn write(
    store: &dyn ProfileStore,
    lake_dir: &Path,
    gate: &LakeGate,
    as_of: DateTime<Utc>,
) -> io::Result<SnapshotReport> {
    let date = as_of.format("%Y-%m-%d").to_string();
    let dir = snapshots_dir(lake_dir).join(format!("{SNAPSHOT_DATE}={date}"));
    let mut staged = StagedFile::create(&dir, FILE_NAME, tables::profiles_schema())?;
    tables::profile_batches(store, as_of, |batch| {
        staged
            .append(&batch)
            .map_err(|e| StoreError::Backend(format!("cannot write the snapshot: {e}")))
    })
    .map_err(io::Error::other)?;
    let bytes = staged.seal()?;
    let profiles = staged.rows();
    let replaced = dir.join(FILE_NAME).exists();
    // Alone: a query that listed the old file must not read the new one in its place.
    let _turn = gate.replace();
    let path = staged.publish()?;
    Ok(SnapshotReport {
        snapshot_date: date,
        as_of,
        profiles,
        bytes,
        path,
        replaced,
    })
}
