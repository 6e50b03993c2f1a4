//! Compaction: merges each partition's small files into few large ones.
//!
//! The lake writer writes one file per partition a flush touches, every `flush_seconds`,
//! so an hour of steady traffic leaves about 120 files in its partition, and a query over
//! a month opens tens of thousands. Compaction merges, in each partition, runs of
//! consecutive files (in log order) of up to `compact_target_mib` together into one file
//! named after the whole range, `part-<first of the first>-<end of the last>.parquet`,
//! rows in log order. Only committed files are merged (the writer may still replace the
//! others after a crash), and not the current hour's, which is still growing.
//!
//! Crash safety: merged files are written under temporary names first; then, holding the
//! [`LakeGate`] alone, each is renamed into place and its sources removed. A crash after a
//! rename and before the removals leaves sources whose ranges lie inside the merged
//! file's; the next start or compaction removes them (`files::covered`). So every event is
//! in the lake exactly once, whatever the moment of the crash.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::files::{self, PartFile, StagedFile};
use crate::gate::LakeGate;
use crate::rows::Partition;

/// What a compaction did.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct CompactReport {
    /// Partitions in which files were merged.
    pub partitions: usize,
    /// Files merged, and their size.
    pub files_merged: usize,
    pub bytes_merged: u64,
    /// Files written in their place, and their size.
    pub files_written: usize,
    pub bytes_written: u64,
    /// Rows rewritten.
    pub rows: u64,
    /// Sources of an earlier, interrupted compaction found and removed.
    pub leftovers_removed: usize,
}

/// One merge to make: consecutive files of a partition.
struct Merge {
    partition: PathBuf,
    sources: Vec<PartFile>,
}

/// Compacts the events table of the lake in `lake_dir`, merging files whose offsets end at
/// or before `committed` (the lake writer's committed offset), except in the partition of
/// `now`'s hour and later ones. Blocks: run it on a thread of its own.
pub fn compact(
    lake_dir: &Path,
    committed: u64,
    target_bytes: u64,
    gate: &LakeGate,
    now: DateTime<Utc>,
) -> io::Result<CompactReport> {
    let table = files::events_dir(lake_dir);
    let growing = table.join(Partition::of(now).path());
    let mut report = CompactReport::default();
    let mut merges = Vec::new();
    let mut leftovers = Vec::new();
    for partition in files::partitions(&table)? {
        if partition >= growing {
            continue;
        }
        let mut done: Vec<PartFile> = files::part_files(&partition)?
            .into_iter()
            .filter(|f| f.end <= committed)
            .collect();
        let covered: Vec<PathBuf> = files::covered(&done)
            .into_iter()
            .map(|f| f.path.clone())
            .collect();
        done.retain(|f| !covered.contains(&f.path));
        leftovers.extend(covered);
        merges.extend(runs(done, target_bytes).into_iter().map(|sources| Merge {
            partition: partition.clone(),
            sources,
        }));
    }

    // The slow part, while queries go on: every merged file, staged.
    let mut staged = Vec::with_capacity(merges.len());
    for merge in &merges {
        let (first, end) = (merge.sources[0].first, merge.sources.last().unwrap().end);
        let name = files::file_name(first, end);
        let file = merge_files(&merge.partition, &name, &merge.sources).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot merge files in {}: {e}", merge.partition.display()),
            )
        })?;
        report.bytes_written += file.bytes();
        staged.push((merge.partition.join(name), file));
    }

    // The swap, alone: queries wait for it, and it waits for them. Once a merged file is
    // in place its sources must go, whatever else fails, or their rows count twice: so a
    // failure is kept and said at the end rather than stopping the swap half done.
    let _turn = gate.replace();
    let mut trouble = None;
    for path in &leftovers {
        match remove_and_sync(path) {
            Ok(()) => report.leftovers_removed += 1,
            Err(e) => keep_first(&mut trouble, e),
        }
    }
    let mut partitions = std::collections::BTreeSet::new();
    for (merge, (target, file)) in merges.iter().zip(staged) {
        let rows = file.rows();
        if let Err(e) = file.publish() {
            keep_first(&mut trouble, e);
            // Renamed but not synced is in place all the same.
            if !target.exists() {
                continue;
            }
        }
        report.files_written += 1;
        report.rows += rows;
        partitions.insert(&merge.partition);
        for source in &merge.sources {
            match remove_and_sync(&source.path) {
                Ok(()) => {
                    report.files_merged += 1;
                    report.bytes_merged += source.bytes;
                }
                // Left beside the merged file: the next compaction or start removes it.
                Err(e) => keep_first(&mut trouble, e),
            }
        }
    }
    report.partitions = partitions.len();
    match trouble {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

fn keep_first(trouble: &mut Option<io::Error>, e: io::Error) {
    if trouble.is_none() {
        *trouble = Some(e);
    }
}

/// Groups a partition's files (in log order) into runs of consecutive files of at most
/// `target_bytes` together; runs of one file are left as they are.
fn runs(files: Vec<PartFile>, target_bytes: u64) -> Vec<Vec<PartFile>> {
    let mut runs: Vec<Vec<PartFile>> = Vec::new();
    let mut run: Vec<PartFile> = Vec::new();
    let mut size = 0;
    for file in files {
        if !run.is_empty() && size + file.bytes > target_bytes {
            runs.push(std::mem::take(&mut run));
            size = 0;
        }
        size += file.bytes;
        run.push(file);
    }
    runs.push(run);
    runs.retain(|run| run.len() > 1);
    runs
}

/// Writes the rows of `sources`, in order, to a staged file `name` in `partition`.
fn merge_files(partition: &Path, name: &str, sources: &[PartFile]) -> io::Result<StagedFile> {
    let open = |source: &PartFile| {
        ParquetRecordBatchReaderBuilder::try_new(File::open(&source.path)?)
            .map_err(io::Error::other)
    };
    let schema = open(&sources[0])?.schema().clone();
    let mut staged = StagedFile::create(partition, name, schema)?;
    for source in sources {
        for batch in open(source)?.build().map_err(io::Error::other)? {
            staged.append(&batch.map_err(io::Error::other)?)?;
        }
    }
    staged.seal()?;
    Ok(staged)
}

/// Removes a file whose rows are in another. Already gone is as good.
fn remove_and_sync(path: &Path) -> io::Result<()> {
    files::remove_if_there(path)?;
    if let Some(dir) = path.parent() {
        persona_core::durable::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{self, Rows};
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    use chrono::TimeZone;

    /// Writes one flush of events at `hours` (of 2024-05-01), offsets from `first`, as the
    /// lake writer does; returns the end offset.
    fn flush(lake: &Path, first: u64, hours: &[u32]) -> u64 {
        let mut by_partition: std::collections::BTreeMap<String, Rows> = Default::default();
        for (i, hour) in hours.iter().enumerate() {
            let payload = format!(
                r#"{{"type":"track","event":"E","userId":"u","messageId":"m{}","timestamp":"2024-05-01T{hour:02}:30:00Z","receivedAt":"2024-05-01T{hour:02}:30:00Z"}}"#,
                first + i as u64
            );
            let (partition, parsed) = rows::read(payload.as_bytes()).unwrap();
            by_partition
                .entry(partition.path())
                .or_insert_with(Rows::new)
                .push(first + i as u64, &parsed);
        }
        let end = first + hours.len() as u64;
        for (path, mut rows) in by_partition {
            let dir = files::events_dir(lake).join(path);
            files::write_atomically(&dir, &files::file_name(first, end), &rows.finish()).unwrap();
        }
        end
    }

    /// The log offsets in a partition, file by file.
    fn offsets(partition: &Path) -> Vec<Vec<u64>> {
        files::part_files(partition)
            .unwrap()
            .iter()
            .map(|f| {
                let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f.path).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
                reader
                    .flat_map(|b| {
                        let b = b.unwrap();
                        b.column(0).as_primitive::<UInt64Type>().values().to_vec()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn merges_committed_files_of_past_hours_in_log_order() {
        let lake = tempfile::tempdir().unwrap();
        let mut end = 0;
        for hours in [&[10, 11][..], &[10], &[11, 10, 10], &[10]] {
            end = flush(lake.path(), end, hours);
        }
        let hour10 = files::events_dir(lake.path()).join("date=2024-05-01/hour=10");
        let hour11 = files::events_dir(lake.path()).join("date=2024-05-01/hour=11");
        assert_eq!(
            offsets(&hour10),
            vec![vec![0], vec![2], vec![4, 5], vec![6]]
        );
        let gate = LakeGate::default();
        let late = Utc.with_ymd_and_hms(2024, 5, 2, 0, 0, 0).unwrap();

        // The last flush (offset 6) is not committed yet: it stays as it is.
        let report = compact(lake.path(), 6, 1 << 20, &gate, late).unwrap();
        assert_eq!(offsets(&hour10), vec![vec![0, 2, 4, 5], vec![6]]);
        assert_eq!(offsets(&hour11), vec![vec![1, 3]]);
        assert_eq!(report.partitions, 2);
        assert_eq!(
            (report.files_merged, report.files_written, report.rows),
            (5, 2, 6)
        );
        assert_eq!(
            files::part_files(&hour10).unwrap()[0]
                .path
                .file_name()
                .unwrap(),
            files::file_name(0, 6).as_str()
        );

        // Committed, it joins; the hour still being written (11 o'clock, now) is left.
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 11, 5, 0).unwrap();
        let report = compact(lake.path(), end, 1 << 20, &gate, now).unwrap();
        assert_eq!(offsets(&hour10), vec![vec![0, 2, 4, 5, 6]]);
        assert_eq!((report.files_merged, report.files_written), (2, 1));
        let leftovers: Vec<_> = std::fs::read_dir(&hour10)
            .unwrap()
            .map(|f| f.unwrap().file_name())
            .filter(|n| !n.to_string_lossy().ends_with(".parquet"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn part(first: u64, end: u64, bytes: u64) -> PartFile {
        PartFile {
            path: PathBuf::from(files::file_name(first, end)),
            first,
            end,
            bytes,
        }
    }

    fn ranges(runs: &[Vec<PartFile>]) -> Vec<Vec<(u64, u64)>> {
        runs.iter()
            .map(|run| run.iter().map(|f| (f.first, f.end)).collect())
            .collect()
    }

    #[test]
    fn runs_stay_under_the_target_and_single_files_stay_put() {
        let files = vec![
            part(0, 1, 40),
            part(1, 2, 40),
            part(2, 3, 40),
            part(3, 4, 200),
            part(4, 5, 10),
        ];
        assert_eq!(
            ranges(&runs(files, 100)),
            vec![vec![(0, 1), (1, 2)]],
            "(2,3) would take the first run over 100 bytes; (3,4) alone is over the target"
        );
        assert!(runs(vec![part(0, 1, 5)], 100).is_empty());
        assert!(runs(Vec::new(), 100).is_empty());
    }
}
