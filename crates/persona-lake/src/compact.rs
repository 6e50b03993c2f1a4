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
//! Crash safety: merged files are written under temporary names first (and, for a lake in
//! an object store, uploaded outside the table); then, holding the [`LakeGate`] alone,
//! each is renamed (copied inside the store) into place and its sources removed. A crash after a
//! rename and before the removals leaves sources whose ranges lie inside the merged
//! file's; the next start or compaction removes them (`files::covered`). So every event is
//! in the lake exactly once, whatever the moment of the crash.

use std::io;

use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;
use serde::Serialize;

use crate::files::{self, EVENTS_TABLE, PartFile, StagedFile};
use crate::gate::LakeGate;
use crate::rows::Partition;
use crate::storage::{Fetched, LakeStorage};

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
    /// The partition's folder in the lake.
    folder: String,
    sources: Vec<PartFile>,
}

/// Compacts the events table of `lake`, merging files whose offsets end at or before
/// `committed` (the lake writer's committed offset), except in the partition of `now`'s
/// hour and later ones. Blocks: run it on a thread of its own.
pub fn compact(
    lake: &LakeStorage,
    committed: u64,
    target_bytes: u64,
    gate: &LakeGate,
    now: DateTime<Utc>,
) -> io::Result<CompactReport> {
    let growing = format!("{EVENTS_TABLE}/{}", Partition::of(now).path());
    let mut report = CompactReport::default();
    let mut merges = Vec::new();
    let mut leftovers = Vec::new();
    for (folder, partition) in files::partitions(lake, EVENTS_TABLE)? {
        if folder >= growing {
            continue;
        }
        let mut done: Vec<PartFile> = partition
            .files
            .into_iter()
            .filter(|f| f.end <= committed)
            .collect();
        let covered: Vec<String> = files::covered(&done)
            .into_iter()
            .map(PartFile::inside)
            .collect();
        done.retain(|f| !covered.contains(&f.inside()));
        leftovers.extend(covered);
        merges.extend(runs(done, target_bytes).into_iter().map(|sources| Merge {
            folder: folder.clone(),
            sources,
        }));
    }

    // The slow part, while queries go on: every merged file, staged.
    let mut staged = Vec::with_capacity(merges.len());
    for merge in &merges {
        let (first, end) = (merge.sources[0].first, merge.sources.last().unwrap().end);
        let name = files::file_name(first, end);
        let file = merge_files(lake, &merge.folder, &name, &merge.sources).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot merge files in {}: {e}",
                    lake.describe(&merge.folder)
                ),
            )
        })?;
        report.bytes_written += file.bytes();
        staged.push((format!("{}/{name}", merge.folder), file));
    }

    // The swap, alone: queries wait for it, and it waits for them. Once a merged file is
    // in place its sources must go, whatever else fails, or their rows count twice: so a
    // failure is kept and said at the end rather than stopping the swap half done.
    let _turn = gate.replace();
    let mut trouble = None;
    for inside in &leftovers {
        match lake.remove(inside) {
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
            if !lake.exists(&target).unwrap_or(false) {
                continue;
            }
        }
        report.files_written += 1;
        report.rows += rows;
        partitions.insert(&merge.folder);
        for source in &merge.sources {
            match lake.remove(&source.inside()) {
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

/// Writes the rows of `sources`, in order, to a staged file `folder/name`.
fn merge_files(
    lake: &LakeStorage,
    folder: &str,
    name: &str,
    sources: &[PartFile],
) -> io::Result<StagedFile> {
    let mut staged = None;
    for source in sources {
        match lake.fetch(&source.inside())? {
            Fetched::Local(file) => copy_rows(file, lake, folder, name, &mut staged)?,
            Fetched::Remote(bytes) => copy_rows(bytes, lake, folder, name, &mut staged)?,
        }
    }
    let mut staged = staged.ok_or_else(|| io::Error::other("a merge without sources"))?;
    staged.upload_early()?;
    Ok(staged)
}

/// Appends the rows of one Parquet file to `staged`, started with the file's schema.
fn copy_rows<R: ChunkReader + 'static>(
    source: R,
    lake: &LakeStorage,
    folder: &str,
    name: &str,
    staged: &mut Option<StagedFile>,
) -> io::Result<()> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(source).map_err(io::Error::other)?;
    let staged = match staged {
        Some(staged) => staged,
        None => staged.insert(StagedFile::create(
            lake,
            folder,
            name,
            reader.schema().clone(),
        )?),
    };
    for batch in reader.build().map_err(io::Error::other)? {
        staged.append(&batch.map_err(io::Error::other)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{self, Rows};
    use crate::storage::testing::TestLake;
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    use chrono::TimeZone;

    /// Writes one flush of events at `hours` (of 2024-05-01), offsets from `first`, as the
    /// lake writer does; returns the end offset.
    fn flush(lake: &LakeStorage, first: u64, hours: &[u32]) -> u64 {
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
            let folder = format!("{EVENTS_TABLE}/{path}");
            files::write_atomically(lake, &folder, &files::file_name(first, end), &rows.finish())
                .unwrap();
        }
        end
    }

    /// The log offsets in a partition, file by file.
    fn offsets(lake: &LakeStorage, folder: &str) -> Vec<Vec<u64>> {
        let partitions = files::partitions(lake, EVENTS_TABLE).unwrap();
        partitions[folder]
            .files
            .iter()
            .map(|f| match lake.fetch(&f.inside()).unwrap() {
                Fetched::Local(file) => offsets_in(file),
                Fetched::Remote(bytes) => offsets_in(bytes),
            })
            .collect()
    }

    fn offsets_in<R: ChunkReader + 'static>(source: R) -> Vec<u64> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(source)
            .unwrap()
            .build()
            .unwrap();
        reader
            .flat_map(|b| {
                let b = b.unwrap();
                b.column(0).as_primitive::<UInt64Type>().values().to_vec()
            })
            .collect()
    }

    #[test]
    fn merges_committed_files_of_past_hours_in_log_order() {
        for test in TestLake::both() {
            let lake = &test.lake;
            let mut end = 0;
            for hours in [&[10, 11][..], &[10], &[11, 10, 10], &[10]] {
                end = flush(lake, end, hours);
            }
            let hour10 = "events/date=2024-05-01/hour=10";
            let hour11 = "events/date=2024-05-01/hour=11";
            assert_eq!(
                offsets(lake, hour10),
                vec![vec![0], vec![2], vec![4, 5], vec![6]],
                "{test:?}"
            );
            let gate = LakeGate::default();
            let late = Utc.with_ymd_and_hms(2024, 5, 2, 0, 0, 0).unwrap();

            // The last flush (offset 6) is not committed yet: it stays as it is.
            let report = compact(lake, 6, 1 << 20, &gate, late).unwrap();
            assert_eq!(offsets(lake, hour10), vec![vec![0, 2, 4, 5], vec![6]]);
            assert_eq!(offsets(lake, hour11), vec![vec![1, 3]]);
            assert_eq!(report.partitions, 2);
            assert_eq!(
                (report.files_merged, report.files_written, report.rows),
                (5, 2, 6)
            );
            assert_eq!(
                test.names(hour10),
                vec![files::file_name(0, 6), files::file_name(6, 7)]
            );

            // Committed, it joins; the hour still being written (11 o'clock, now) is left.
            let now = Utc.with_ymd_and_hms(2024, 5, 1, 11, 5, 0).unwrap();
            let report = compact(lake, end, 1 << 20, &gate, now).unwrap();
            assert_eq!(offsets(lake, hour10), vec![vec![0, 2, 4, 5, 6]]);
            assert_eq!((report.files_merged, report.files_written), (2, 1));
            // Nothing else: no temporary file left behind.
            assert_eq!(test.names(hour10), vec![files::file_name(0, 7)], "{test:?}");
            // Uploaded early to a bucket, merged files leave nothing behind once in place.
            assert!(test.lake.list("_uploads").unwrap().is_empty(), "{test:?}");
        }
    }

    fn part(first: u64, end: u64, bytes: u64) -> PartFile {
        PartFile {
            folder: "events/date=2024-05-01/hour=10".into(),
            name: files::file_name(first, end),
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
