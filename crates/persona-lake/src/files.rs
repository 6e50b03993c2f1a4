//! The lake's files: where they go, how one is written so that it is whole or absent, and
//! which ones a restart must remove.
//!
//! A file is named `part-<first>-<end>.parquet` after the range of log offsets its flush
//! read (`first` included, `end` not), zero-padded so names sort in log order. Every file
//! of a flush has the same name, in different partitions.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
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
fn range_of(name: &str) -> Option<(u64, u64)> {
    let middle = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (first, end) = middle.split_once('-')?;
    Some((first.parse().ok()?, end.parse().ok()?))
}

/// Writes `batch` to `dir/name` whole or not at all: into a hidden temporary file (which
/// readers skip: it does not end in `.parquet`), synced, renamed, and the folder synced.
pub(crate) fn write_atomically(dir: &Path, name: &str, batch: &RecordBatch) -> io::Result<u64> {
    persona_core::durable::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let properties = WriterProperties::builder()
        // Mostly repeated JSON text: zstd's lowest level makes it several times smaller
        // at little cost, and every Parquet reader decodes it.
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = File::create(&temporary)?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(properties)).map_err(io::Error::other)?;
    writer.write(batch).map_err(io::Error::other)?;
    let file = writer.into_inner().map_err(io::Error::other)?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    fs::rename(&temporary, dir.join(name))?;
    persona_core::durable::sync_dir(dir)?;
    Ok(bytes)
}

/// Removes what a crash can leave past the committed offset `committed`: files of a flush
/// that was not committed (their events are read again and written anew) and temporary
/// files. Returns how many files it removed.
pub(crate) fn remove_uncommitted(table: &Path, committed: u64) -> io::Result<usize> {
    let mut removed = 0;
    let Ok(dates) = fs::read_dir(table) else {
        return Ok(0);
    };
    for date in dates {
        let date = date?.path();
        if !date.is_dir() {
            continue;
        }
        for hour in fs::read_dir(&date)? {
            let hour = hour?.path();
            if !hour.is_dir() {
                continue;
            }
            let mut changed = false;
            for file in fs::read_dir(&hour)? {
                let file = file?;
                let name = file.file_name();
                let name = name.to_string_lossy();
                let stale = if name.starts_with('.') && name.ends_with(".tmp") {
                    true
                } else {
                    range_of(&name).is_some_and(|(first, _)| first >= committed)
                };
                if stale {
                    fs::remove_file(file.path())?;
                    changed = true;
                    removed += 1;
                }
            }
            if changed {
                persona_core::durable::sync_dir(&hour)?;
            }
        }
    }
    Ok(removed)
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
        let left: Vec<_> = fs::read_dir(&hour)
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![file_name(0, 10)]);
    }
}
