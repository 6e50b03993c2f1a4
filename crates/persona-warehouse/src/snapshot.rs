//! Profile snapshots: the `profiles` table as of a moment, kept in the lake as Parquet,
//! one file a day (`profile_snapshots/snapshot_date=YYYY-MM-DD/profiles.parquet`), so that
//! SQL (and any engine reading the lake) can compare customers across days: who churned,
//! how RFM figures moved, which segments grew.

use std::io;

use chrono::{DateTime, Utc};
use persona_lake::{LakeGate, LakeStorage, StagedFile};
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
    /// Where it is: a file, or an object's URL.
    pub path: String,
    /// Whether it replaced an earlier snapshot of the same day.
    pub replaced: bool,
}

/// Writes every profile as of `as_of` to the snapshot of `as_of`'s date, replacing one
/// taken earlier that day. Blocks: run it on a thread of its own.
pub(crate) fn write(
    store: &dyn ProfileStore,
    lake: &LakeStorage,
    gate: &LakeGate,
    as_of: DateTime<Utc>,
) -> io::Result<SnapshotReport> {
    let date = as_of.format("%Y-%m-%d").to_string();
    let folder = format!("{PROFILE_SNAPSHOTS_TABLE}/{SNAPSHOT_DATE}={date}");
    let mut staged = StagedFile::create(lake, &folder, FILE_NAME, tables::profiles_schema())?;
    tables::profile_batches(store, as_of, |batch| {
        staged
            .append(&batch)
            .map_err(|e| StoreError::Backend(format!("cannot write the snapshot: {e}")))
    })
    .map_err(io::Error::other)?;
    let bytes = staged.seal()?;
    // The upload, if the lake is in a bucket, before the turn that queries wait for.
    staged.upload_early()?;
    let profiles = staged.rows();
    let replaced = lake.exists(&format!("{folder}/{FILE_NAME}"))?;
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
