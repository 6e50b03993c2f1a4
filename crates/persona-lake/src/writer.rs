//! The lake writer's thread: read the log, gather rows by partition, flush, commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use persona_log::{EventLog, LogError, LogReader};

use crate::config::ValidLakeConfig;
use crate::files::{self, EVENTS_TABLE};
use crate::metrics::LakeMetrics;
use crate::rows::{self, Partition, Rows};
use crate::storage::LakeStorage;

/// The lake writer's consumer name in the log.
pub const CONSUMER: &str = "lake";

/// Records read from the log at a time.
const READ_BATCH: usize = 4096;
/// How long the writer sleeps when it has read everything (a stop wakes it sooner).
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// How long it waits before trying again after a flush failed (a full disk, say).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Why the lake writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("lake {place}: {cause}")]
    Io {
        place: String,
        cause: std::io::Error,
    },
}

/// The running lake writer. Dropping it stops the writer after it has flushed what it
/// has gathered.
pub struct LakeHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LakeHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Starts the lake writer on a thread of its own, writing the table `events` of `lake`.
/// Registers its consumer (a new one starts at the oldest record still in the log) and
/// removes what an earlier run wrote past the committed offset: here for a local lake
/// (before any compaction could start), on the writer's thread for a lake in an object
/// store, tried again until it can be (a bucket out of reach at start holds up the lake,
/// not the server).
pub fn spawn(
    log: Arc<EventLog>,
    lake: LakeStorage,
    config: ValidLakeConfig,
    metrics: LakeMetrics,
) -> Result<LakeHandle, LakeError> {
    let committed = log.register_consumer(CONSUMER)?;
    let mut reader = log.reader()?;
    reader.seek(committed);
    let swept = lake.is_local();
    if swept {
        let removed =
            files::remove_uncommitted(&lake, committed).map_err(|cause| LakeError::Io {
                place: lake.describe(EVENTS_TABLE),
                cause,
            })?;
        said_removed(removed, committed);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = Writer {
        log,
        reader,
        lake,
        config,
        metrics,
        failure: None,
        swept,
        unclean: false,
        pending: BTreeMap::new(),
        first: committed,
        end: committed,
        oldest: None,
    };
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("persona-lake".into())
            .spawn(move || writer.run(&stop))
            .map_err(|cause| LakeError::Io {
                place: "writer thread".into(),
                cause,
            })?
    };
    Ok(LakeHandle {
        stop,
        thread: Some(thread),
    })
}

struct Writer {
    log: Arc<EventLog>,
    reader: LogReader,
    lake: LakeStorage,
    config: ValidLakeConfig,
    metrics: LakeMetrics,
    /// The last failure, said once rather than at every retry.
    failure: Option<String>,
    /// Whether what an earlier run left past the committed offset is removed.
    swept: bool,
    /// Whether files of a failed flush may be left (their removal failed too): they are
    /// removed before anything else is written, or their rows would count twice.
    unclean: bool,
    pending: BTreeMap<Partition, Rows>,
    /// The offsets gathered: from `first` (the committed offset) to `end`.
    first: u64,
    end: u64,
    /// When the oldest gathered event was read.
    oldest: Option<Instant>,
}

impl Writer {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            if !self.swept || self.unclean {
                if let Err(e) = self.sweep() {
                    self.fail(e);
                    std::thread::park_timeout(RETRY_PAUSE);
                }
                continue;
            }
            let read = match self.read() {
                Ok(n) => n,
                Err(e) => {
                    self.fail(format!("cannot read the event log: {e}"));
                    std::thread::park_timeout(RETRY_PAUSE);
                    continue;
                }
            };
            let behind = self.log.next_offset().saturating_sub(self.first);
            self.metrics
                .lag
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
            let gathered: usize = self.pending.values().map(Rows::len).sum();
            let due = self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.config.flush_interval);
            if self.end > self.first
                && (gathered >= self.config.max_rows || due)
                && let Err(e) = self.flush()
            {
                self.fail(e);
                std::thread::park_timeout(RETRY_PAUSE);
                continue;
            }
            if read == 0 {
                std::thread::park_timeout(IDLE_WAIT);
            }
        }
        // Stopping: what was gathered is written, so a clean stop leaves the lake
        // current. A failure here is harmless: the next start reads those events again.
        if self.end > self.first
            && let Err(e) = self.flush()
        {
            tracing::warn!(error = %e, "cannot write the lake's last events before stopping; they are written at the next start");
        }
    }

    /// Removes the files past the committed offset, written by a run that stopped before
    /// committing them, or by a failed flush: their events are read and written again.
    fn sweep(&mut self) -> Result<(), String> {
        let removed = if self.swept {
            files::remove_failed_flush(&self.lake, self.first)
        } else {
            files::remove_uncommitted(&self.lake, self.first)
        }
        .map_err(|e| format!("cannot clean up {}: {e}", self.lake.describe(EVENTS_TABLE)))?;
        said_removed(removed, self.first);
        self.unclean = false;
        self.swept = true;
        self.metrics.failing.set(0);
        self.failure = None;
        Ok(())
    }

    /// Reads one batch of records into the pending rows; returns how many it read.
    fn read(&mut self) -> Result<usize, LogError> {
        let records = self.reader.read_batch(READ_BATCH)?;
        for record in &records {
            match rows::read(&record.payload) {
                Ok((partition, parsed)) => self
                    .pending
                    .entry(partition)
                    .or_insert_with(Rows::new)
                    .push(record.offset, &parsed),
                Err(rows::Unreadable(reason)) => {
                    self.metrics.unreadable.inc();
                    tracing::warn!(offset = record.offset, %reason, "log record left out of the lake");
                }
            }
            self.end = record.offset + 1;
        }
        if !records.is_empty() && self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        Ok(records.len())
    }

    /// Writes a file to every partition gathered, then commits the offset. On failure the
    /// files written are removed and the events are read again from the committed offset.
    fn flush(&mut self) -> Result<(), String> {
        let name = files::file_name(self.first, self.end);
        let pending = std::mem::take(&mut self.pending);
        let mut written = (0, 0, 0);
        let mut result = Ok(());
        for (partition, mut rows) in pending {
            let batch = rows.finish();
            let folder = format!("{EVENTS_TABLE}/{}", partition.path());
            match files::write_atomically(&self.lake, &folder, &name, &batch) {
                Ok(bytes) => {
                    written.0 += batch.num_rows() as u64;
                    written.1 += 1;
                    written.2 += bytes;
                }
                Err(e) => {
                    let place = self.lake.describe(&format!("{folder}/{name}"));
                    result = Err(format!("cannot write {place}: {e}"));
                    break;
                }
            }
        }
        let result = result.and_then(|()| {
            self.log
                .commit(CONSUMER, self.end)
                .map_err(|e| format!("cannot commit the lake's offset: {e}"))
        });
        if let Err(e) = result {
            // Undo: nothing past the committed offset may stay, or it would be written twice.
            if let Err(undo) = files::remove_failed_flush(&self.lake, self.first) {
                tracing::warn!(error = %undo, "cannot remove the files of a failed lake flush; tried again before the next");
                self.unclean = true;
            }
            self.reader.seek(self.first);
            self.end = self.first;
            self.oldest = None;
            return Err(e);
        }
        self.first = self.end;
        self.oldest = None;
        self.metrics.events.inc_by(written.0);
        self.metrics.files.inc_by(written.1);
        self.metrics.bytes.inc_by(written.2);
        self.metrics.failing.set(0);
        self.failure = None;
        Ok(())
    }

    fn fail(&mut self, reason: String) {
        if self.failure.as_ref() != Some(&reason) {
            tracing::error!(error = %reason, "lake writer failed; retrying");
        }
        self.failure = Some(reason);
        self.metrics.failing.set(1);
    }
}

fn said_removed(removed: usize, committed: u64) {
    if removed > 0 {
        tracing::info!(
            removed,
            committed,
            "removed lake files past the committed offset; their events are written again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LakeConfig, RemoteLake};
    use crate::storage::flaky::FlakyBucket;
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Appends events `offsets`, alternating between two hours.
    fn append(runtime: &tokio::runtime::Runtime, log: &EventLog, offsets: std::ops::Range<u64>) {
        let payloads = offsets
            .map(|n| {
                format!(
                    r#"{{"type":"track","event":"E","userId":"u","messageId":"m{n}","timestamp":"2024-05-01T{:02}:30:00Z","receivedAt":"2024-05-01T10:30:00Z"}}"#,
                    10 + n % 2
                )
                .into_bytes()
            })
            .collect();
        runtime.block_on(log.append(payloads)).unwrap();
    }

    fn wait(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "waited 30 s for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_flush_cut_short_is_undone_before_the_next_even_when_its_undo_failed_too() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (log, _) =
            EventLog::open(dir.path().join("log"), Default::default(), Arc::new(())).unwrap();
        let log = Arc::new(log);
        let bucket = Arc::new(FlakyBucket::new());
        let remote = RemoteLake::new(bucket.clone(), "memory:///bucket/lake").unwrap();
        let lake =
            LakeStorage::remote(remote, dir.path().join("staging"), runtime.handle().clone())
                .unwrap();
        let config = LakeConfig {
            flush_seconds: 0.05,
            ..LakeConfig::default()
        }
        .validate()
        .unwrap();

        // The first flush writes one hour's file, then the bucket refuses the other's,
        // and the removal of the first as well.
        append(&runtime, &log, 0..10);
        bucket.fail_after(1);
        let writer = spawn(log.clone(), lake.clone(), config, LakeMetrics::default()).unwrap();
        wait("a refusal", || bucket.refused() >= 2);
        // More events before the bucket is back: the next flush reads further, so its
        // files are named for another range than the one left behind.
        append(&runtime, &log, 10..20);
        bucket.recover();
        wait("the commit", || {
            log.consumers().committed(CONSUMER) == Some(20)
        });
        drop(writer);

        let mut offsets: Vec<u64> = Vec::new();
        for partition in files::partitions(&lake, EVENTS_TABLE).unwrap().values() {
            for file in &partition.files {
                let crate::storage::Fetched::Remote(bytes) = lake.fetch(&file.inside()).unwrap()
                else {
                    panic!("a remote lake")
                };
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap();
                for batch in reader {
                    offsets.extend(
                        batch
                            .unwrap()
                            .column(0)
                            .as_primitive::<UInt64Type>()
                            .values(),
                    );
                }
            }
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..20).collect::<Vec<u64>>(), "every event once");
    }
}
