//! The lake's files: where they go, how one is written so that it is whole or absent, and
//! which ones a restart must remove.
//!
//! A file is named `part-<first>-<end>.parquet` after the range of log offsets its flush
//! read (`first` included, `end` not), zero-padded so names sort in log order. Every file
//! of a flush has the same name, in different partitions. Flushes read disjoint ranges,
//! so a file whose range lies inside another file's range of the same partition is a
//! source of a compaction (`crate::compact`) that was interrupted after the merged file
//! was in place: its rows are in the merged file, and it is removed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::storage::LakeStorage;

/// The lake's table of events, a folder under the lake.
pub const EVENTS_TABLE: &str = "events";

/// The name of a flush's file in each partition.
pub(crate) fn file_name(first: u64, end: u64) -> String {
    format!("part-{first:020}-{end:020}.parquet")
}

/// The offset range in a lake file's name.
pub(crate) fn range_of(name: &str) -> Option<(u64, u64)> {
    let middle = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (first, end) = middle.split_once('-')?;
    Some((first.parse().ok()?, end.parse().ok()?))
}

/// Whether a file name is a temporary one of [`StagedFile`] (readers skip those: they do
/// not end in `.parquet`).
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// A Parquet file being written under a temporary name, not yet in place: create it,
/// append batches, [`seal`](StagedFile::seal) it (written and synced), then
/// [`publish`](StagedFile::publish) it under its name. Dropped unpublished, it is removed.
pub struct StagedFile {
    lake: LakeStorage,
    temporary: PathBuf,
    folder: String,
    name: String,
    writer: Option<ArrowWriter<File>>,
    /// Whether it went up to a remote lake already ([`StagedFile::upload_early`]).
    uploaded: bool,
    bytes: u64,
    rows: u64,
}

impl StagedFile {
    /// Starts a file with `schema`, to be published as `folder/name` of `lake`.
    pub fn create(
        lake: &LakeStorage,
        folder: &str,
        name: &str,
        schema: SchemaRef,
    ) -> io::Result<StagedFile> {
        let temporary = lake.staging_path(folder, name)?;
        let properties = WriterProperties::builder()
            // Mostly repeated JSON text: zstd's lowest level makes it several times smaller
            // at little cost, and every Parquet reader decodes it.
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let file = File::create(&temporary)?;
        let writer =
            ArrowWriter::try_new(file, schema, Some(properties)).map_err(io::Error::other)?;
        Ok(StagedFile {
            lake: lake.clone(),
            temporary,
            folder: folder.to_owned(),
            name: name.to_owned(),
            writer: Some(writer),
            uploaded: false,
            bytes: 0,
            rows: 0,
        })
    }

    /// Adds a batch of rows.
    pub fn append(&mut self, batch: &RecordBatch) -> io::Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("a sealed lake file takes no more rows"))?;
        writer.write(batch).map_err(io::Error::other)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Finishes the file and syncs it; returns its size in bytes.
    pub fn seal(&mut self) -> io::Result<u64> {
        if let Some(writer) = self.writer.take() {
            let file = writer.into_inner().map_err(io::Error::other)?;
            file.sync_all()?;
            self.bytes = file.metadata()?.len();
        }
        Ok(self.bytes)
    }

    /// The file's size in bytes, once sealed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The rows appended.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Seals the file and, for a lake in an object store, uploads it now to wait outside
    /// every table, so that [`publish`](StagedFile::publish) only has to copy it inside
    /// the store. For whoever publishes while queries wait (compaction, snapshots).
    pub fn upload_early(&mut self) -> io::Result<()> {
        self.seal()?;
        if !self.uploaded
            && self
                .lake
                .upload_early(&self.temporary, &self.folder, &self.name)?
        {
            self.uploaded = true;
            self.temporary = PathBuf::new();
        }
        Ok(())
    }

    /// Puts the file in place (replacing a file of the same name): renamed and its folder
    /// synced, or uploaded (copied, if uploaded early). Returns where it is, for people.
    pub fn publish(mut self) -> io::Result<String> {
        self.seal()?;
        self.lake
            .publish(&self.temporary, self.uploaded, &self.folder, &self.name)?;
        // In place: nothing left for the drop to remove.
        self.temporary = PathBuf::new();
        Ok(self
            .lake
            .describe(&format!("{}/{}", self.folder, self.name)))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.temporary.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Writes `batch` to `folder/name` of `lake` whole or not at all; returns its size in
/// bytes.
pub(crate) fn write_atomically(
    lake: &LakeStorage,
    folder: &str,
    name: &str,
    batch: &RecordBatch,
) -> io::Result<u64> {
    let mut staged = StagedFile::create(lake, folder, name, batch.schema())?;
    staged.append(batch)?;
    let bytes = staged.seal()?;
    staged.publish()?;
    Ok(bytes)
}

/// A lake file of a partition, with its offset range.
#[derive(Debug, Clone)]
pub(crate) struct PartFile {
    /// The partition's folder in the lake (`events/date=…/hour=…`).
    pub folder: String,
    pub name: String,
    pub first: u64,
    pub end: u64,
    pub bytes: u64,
}

impl PartFile {
    /// Where it is in the lake.
    pub fn inside(&self) -> String {
        format!("{}/{}", self.folder, self.name)
    }
}

/// What a partition folder holds.
#[derive(Debug, Default)]
pub(crate) struct PartitionFiles {
    /// The lake files, in log order (by first offset, the widest first).
    pub files: Vec<PartFile>,
    /// Temporary files of a [`StagedFile`] that was never published, by where they are.
    pub temporary: Vec<String>,
}

/// The partitions of a table, by folder, in order, with their files: one listing.
pub(crate) fn partitions(
    lake: &LakeStorage,
    table: &str,
) -> io::Result<BTreeMap<String, PartitionFiles>> {
    let mut found: BTreeMap<String, PartitionFiles> = BTreeMap::new();
    for listed in lake.list(table)? {
        if let Some((first, end)) = range_of(&listed.name) {
            found
                .entry(listed.folder.clone())
                .or_default()
                .files
                .push(PartFile {
                    folder: listed.folder,
                    name: listed.name,
                    first,
                    end,
                    bytes: listed.bytes,
                });
        } else if is_temporary(&listed.name) {
            let inside = format!("{}/{}", listed.folder, listed.name);
            found
                .entry(listed.folder)
                .or_default()
                .temporary
                .push(inside);
        }
    }
    for partition in found.values_mut() {
        partition
            .files
            .sort_by_key(|f| (f.first, std::cmp::Reverse(f.end)));
    }
    Ok(found)
}

/// The files of `files` (in log order) whose range lies inside another's: sources of an
/// interrupted compaction, already in the merged file.
pub(crate) fn covered(files: &[PartFile]) -> Vec<&PartFile> {
    let mut reach = None;
    let mut inside = Vec::new();
    // Sorted by first offset, the widest first: a file is covered when an earlier one
    // reaches its end.
    for file in files {
        match reach {
            Some(end) if file.end <= end => inside.push(file),
            _ => reach = Some(file.end),
        }
    }
    inside
}

/// Removes what a crash can leave in the events table: files of a flush past the
/// committed offset `committed` that was not committed (their events are read again and
/// written anew), sources of an interrupted compaction, and temporary files. Returns how
/// many files it removed. Only at start, before any compaction: it would take a running
/// one's files.
pub(crate) fn remove_uncommitted(lake: &LakeStorage, committed: u64) -> io::Result<usize> {
    sweep(lake, committed, true)
}

/// Removes the files of a flush that failed (those from `committed` on), and nothing
/// else: a compaction may be running beside the lake writer.
pub(crate) fn remove_failed_flush(lake: &LakeStorage, committed: u64) -> io::Result<usize> {
    sweep(lake, committed, false)
}

fn sweep(lake: &LakeStorage, committed: u64, leftovers: bool) -> io::Result<usize> {
    let mut removed = 0;
    for partition in partitions(lake, EVENTS_TABLE)?.values() {
        let mut stale: Vec<String> = partition
            .files
            .iter()
            .filter(|f| f.first >= committed)
            .map(PartFile::inside)
            .collect();
        if leftovers {
            stale.extend(covered(&partition.files).into_iter().map(PartFile::inside));
            stale.extend(partition.temporary.iter().cloned());
        }
        stale.sort();
        stale.dedup();
        for inside in &stale {
            lake.remove(inside)?;
        }
        removed += stale.len();
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::TestLake;

    #[test]
    fn names_carry_their_offsets_and_sort_in_log_order() {
        assert_eq!(range_of(&file_name(5, 17)), Some((5, 17)));
        assert!(file_name(9, 10) < file_name(10, 11));
        assert_eq!(range_of("notes.txt"), None);
    }

    const HOUR: &str = "events/date=2024-05-01/hour=10";

    #[test]
    fn a_restart_removes_only_what_was_not_committed() {
        for test in TestLake::both() {
            for name in [
                file_name(0, 10),
                file_name(10, 20),
                ".part-x.parquet.tmp".into(),
            ] {
                test.put(&format!("{HOUR}/{name}"), b"x");
            }
            assert_eq!(remove_uncommitted(&test.lake, 10).unwrap(), 2, "{test:?}");
            assert_eq!(test.names(HOUR), vec![file_name(0, 10)], "{test:?}");
        }
    }

    #[test]
    fn a_failed_flush_removes_only_its_own_files() {
        for test in TestLake::both() {
            // A compaction in progress beside the writer: its staged file and a source it
            // is about to remove stay for it to handle.
            for name in [
                file_name(0, 20),
                file_name(10, 20),
                ".part-00000000000000000000-00000000000000000030.parquet.tmp".into(),
                file_name(30, 40),
            ] {
                test.put(&format!("{HOUR}/{name}"), b"x");
            }
            assert_eq!(remove_failed_flush(&test.lake, 30).unwrap(), 1, "{test:?}");
            let names = test.names(HOUR);
            assert_eq!(names.len(), 3, "{test:?}");
            assert!(!names.contains(&file_name(30, 40)), "{test:?}");
        }
    }

    #[test]
    fn a_restart_removes_the_sources_of_an_interrupted_compaction() {
        for test in TestLake::both() {
            // 0..30 merged 0..10, 12..20 and 20..30; 30..40 came later and stays.
            for name in [
                file_name(0, 10),
                file_name(0, 30),
                file_name(12, 20),
                file_name(20, 30),
                file_name(30, 40),
            ] {
                test.put(&format!("{HOUR}/{name}"), b"x");
            }
            assert_eq!(remove_uncommitted(&test.lake, 40).unwrap(), 3, "{test:?}");
            assert_eq!(
                test.names(HOUR),
                vec![file_name(0, 30), file_name(30, 40)],
                "{test:?}"
            );
        }
    }
}
