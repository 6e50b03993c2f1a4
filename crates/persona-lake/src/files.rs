//! The lake's files: where they go, how one is written so that it is whole or absent, and
//! which ones a restart must remove.
//!
//! A file is named `part-<first>-<end>.parquet` after the range of log offsets its flush
//! read (`first` included, `end` not), zero-padded so names sort in log order. Every file
//! of a flush has the same name, in different partitions. Flushes read disjoint ranges,
//! so a file whose range lies inside another file's range of the same partition is a
//! source of a compaction (`crate::compact`) that was interrupted after the merged file
//! was in place: its rows are in the merged file, and it is removed.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// The lake's table of events, a folder under the lake.
pub const EVENTS_TABLE: &str = "events";

/// The folder of the `events` table in a lake folder.
pub fn events_dir(lake_dir: &Path) -> PathBuf {
    lake_dir.join(EVENTS_TABLE)
}

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

/// A Parquet file being written under a hidden temporary name, not yet in place: create
/// it, append batches, [`seal`](StagedFile::seal) it (written and synced), then
/// [`publish`](StagedFile::publish) it under its name. Dropped unpublished, it is removed.
pub struct StagedFile {
    dir: PathBuf,
    temporary: PathBuf,
    name: String,
    writer: Option<ArrowWriter<File>>,
    bytes: u64,
    rows: u64,
}

impl StagedFile {
    /// Starts a file with `schema`, to be published as `dir/name`.
    pub fn create(dir: &Path, name: &str, schema: SchemaRef) -> io::Result<StagedFile> {
        persona_core::durable::create_dir_all(dir)?;
        let temporary = dir.join(format!(".{name}.tmp"));
        let properties = WriterProperties::builder()
            // Mostly repeated JSON text: zstd's lowest level makes it several times smaller
            // at little cost, and every Parquet reader decodes it.
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let file = File::create(&temporary)?;
        let writer =
            ArrowWriter::try_new(file, schema, Some(properties)).map_err(io::Error::other)?;
        Ok(StagedFile {
            dir: dir.to_owned(),
            temporary,
            name: name.to_owned(),
            writer: Some(writer),
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

    /// Puts the file in place (replacing a file of the same name) and syncs the folder.
    pub fn publish(mut self) -> io::Result<PathBuf> {
        self.seal()?;
        let target = self.dir.join(&self.name);
        fs::rename(&self.temporary, &target)?;
        // Renamed: nothing left for the drop to remove.
        self.temporary = PathBuf::new();
        persona_core::durable::sync_dir(&self.dir)?;
        Ok(target)
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.temporary.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Writes `batch` to `dir/name` whole or not at all; returns its size in bytes.
pub(crate) fn write_atomically(dir: &Path, name: &str, batch: &RecordBatch) -> io::Result<u64> {
    let mut staged = StagedFile::create(dir, name, batch.schema())?;
    staged.append(batch)?;
    let bytes = staged.seal()?;
    staged.publish()?;
    Ok(bytes)
}

/// A partition folder's lake files, with their offset ranges, in log order.
pub(crate) struct PartFile {
    pub path: PathBuf,
    pub first: u64,
    pub end: u64,
    pub bytes: u64,
}

/// The partition folders of a table (`date=.../hour=...`), in order.
pub(crate) fn partitions(table: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let Ok(dates) = fs::read_dir(table) else {
        return Ok(found);
    };
    for date in dates {
        let date = date?.path();
        if !date.is_dir() {
            continue;
        }
        for hour in fs::read_dir(&date)? {
            let hour = hour?.path();
            if hour.is_dir() {
                found.push(hour);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The lake files of one partition folder, in log order, with their sizes.
pub(crate) fn part_files(partition: &Path) -> io::Result<Vec<PartFile>> {
    let mut found = named_files(partition)?;
    for file in &mut found {
        file.bytes = fs::metadata(&file.path)?.len();
    }
    Ok(found)
}

/// The lake files of one partition folder, in log order, from their names alone (sizes
/// left 0).
fn named_files(partition: &Path) -> io::Result<Vec<PartFile>> {
    let mut found = Vec::new();
    for file in fs::read_dir(partition)? {
        let file = file?;
        let name = file.file_name();
        if let Some((first, end)) = range_of(&name.to_string_lossy()) {
            found.push(PartFile {
                path: file.path(),
                first,
                end,
                bytes: 0,
            });
        }
    }
    found.sort_by_key(|f| (f.first, std::cmp::Reverse(f.end)));
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

/// Removes what a crash can leave: files of a flush past the committed offset
/// `committed` that was not committed (their events are read again and written anew),
/// sources of an interrupted compaction, and temporary files. Returns how many files it
/// removed. Only at start, before any compaction: it would take a running one's files.
pub(crate) fn remove_uncommitted(table: &Path, committed: u64) -> io::Result<usize> {
    sweep(table, committed, true)
}

/// Removes the files of a flush that failed (those from `committed` on), and nothing
/// else: a compaction may be running beside the lake writer.
pub(crate) fn remove_failed_flush(table: &Path, committed: u64) -> io::Result<usize> {
    sweep(table, committed, false)
}

fn sweep(table: &Path, committed: u64, leftovers: bool) -> io::Result<usize> {
    let mut removed = 0;
    for partition in partitions(table)? {
        let files = named_files(&partition)?;
        let mut stale: Vec<&Path> = files
            .iter()
            .filter(|f| f.first >= committed)
            .map(|f| f.path.as_path())
            .collect();
        let mut temporary = Vec::new();
        if leftovers {
            stale.extend(covered(&files).into_iter().map(|f| f.path.as_path()));
            for file in fs::read_dir(&partition)? {
                let file = file?;
                if is_temporary(&file.file_name().to_string_lossy()) {
                    temporary.push(file.path());
                }
            }
            stale.extend(temporary.iter().map(PathBuf::as_path));
        }
        stale.sort();
        stale.dedup();
        for path in &stale {
            remove_if_there(path)?;
        }
        if !stale.is_empty() {
            persona_core::durable::sync_dir(&partition)?;
        }
        removed += stale.len();
    }
    Ok(removed)
}

/// Removes a file; already gone is as good.
pub(crate) fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_offsets_and_sort_in_log_order() {
        assert_eq!(range_of(&file_name(5, 17)), Some((5, 17)));
        assert!(file_name(9, 10) < file_name(10, 11));
        assert_eq!(range_of("notes.txt"), None);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_restart_removes_only_what_was_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("date=2024-05-01/hour=10");
        fs::create_dir_all(&hour).unwrap();
        for name in [
            file_name(0, 10),
            file_name(10, 20),
            ".part-x.parquet.tmp".into(),
        ] {
            fs::write(hour.join(name), b"x").unwrap();
        }
        assert_eq!(remove_uncommitted(dir.path(), 10).unwrap(), 2);
        assert_eq!(names(&hour), vec![file_name(0, 10)]);
    }

    #[test]
    fn a_failed_flush_removes_only_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("date=2024-05-01/hour=10");
        fs::create_dir_all(&hour).unwrap();
        // A compaction in progress beside the writer: its staged file and a source it is
        // about to remove stay for it to handle.
        for name in [
            file_name(0, 20),
            file_name(10, 20),
            ".part-00000000000000000000-00000000000000000030.parquet.tmp".into(),
            file_name(30, 40),
        ] {
            fs::write(hour.join(name), b"x").unwrap();
        }
        assert_eq!(remove_failed_flush(dir.path(), 30).unwrap(), 1);
        assert_eq!(names(&hour).len(), 3);
        assert!(!hour.join(file_name(30, 40)).exists());
    }

    #[test]
    fn a_restart_removes_the_sources_of_an_interrupted_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("date=2024-05-01/hour=10");
        fs::create_dir_all(&hour).unwrap();
        // 0..30 merged 0..10, 12..20 and 20..30; 30..40 came later and stays.
        for name in [
            file_name(0, 10),
            file_name(0, 30),
            file_name(12, 20),
            file_name(20, 30),
            file_name(30, 40),
        ] {
            fs::write(hour.join(name), b"x").unwrap();
        }
        assert_eq!(remove_uncommitted(dir.path(), 40).unwrap(), 3);
        assert_eq!(names(&hour), vec![file_name(0, 30), file_name(30, 40)]);
    }
}
