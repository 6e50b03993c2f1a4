//! The log open for writing: appends, durable acknowledgements, consumers and retention.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::active::Active;
use crate::commit::{GroupCommit, Writer};
use crate::config::LogConfig;
use crate::consumer::Consumers;
use crate::error::{AppendError, LogError};
use crate::reader::LogReader;
use crate::record::{HEADER_LEN, MAX_PAYLOAD};
use crate::retention::{self, RetentionReport};
use crate::segment::{self, RecoveryReport, SegmentFile};
use crate::stats::LogStats;

/// Told about every group commit, e.g. to feed metrics.
pub trait CommitObserver: Send + Sync + 'static {
    /// `records` and `bytes` were made durable by one sync that took `sync`.
    fn on_commit(&self, records: u64, bytes: u64, sync: Duration);
}

/// An observer that ignores commits.
impl CommitObserver for () {
    fn on_commit(&self, _: u64, _: u64, _: Duration) {}
}

/// Two observers told in turn, e.g. metrics and a consumer waiting for new records.
impl<A: CommitObserver, B: CommitObserver> CommitObserver for (A, B) {
    fn on_commit(&self, records: u64, bytes: u64, sync: Duration) {
        self.0.on_commit(records, bytes, sync);
        self.1.on_commit(records, bytes, sync);
    }
}

/// How long a failed write is reported after it (see [`EventLog::write_trouble`]): the
/// `Retry-After` the collector gives for it.
pub const TROUBLE_HOLD: Duration = Duration::from_secs(5);

/// State shared by the committing appends, readers and maintenance in this process.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: LogConfig,
    /// Offset after the last durable record. Readers in this process never pass it.
    pub committed: AtomicU64,
    /// The segment being written: its base offset and its bytes of records (its file also
    /// holds zeros ahead). One lock, so that a roll never pairs one segment's base with the
    /// other's length.
    pub active: Mutex<(u64, u64)>,
    /// Set once a write or sync fails (the first failure's reason); the log then refuses
    /// appends until reopened. Read on every append, hence not behind a lock.
    pub failure: OnceLock<String>,
    /// Why the last group could not be written and when, when it was cut off again and no
    /// group has been stored since (a full disk): the log goes on, and readiness reports it
    /// for a while (see [`EventLog::write_trouble`]).
    pub trouble: Mutex<Option<(String, Instant)>>,
    pub consumers: Consumers,
}

impl Shared {
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }
}

/// The embedded event log, open for writing by this process.
///
/// Opening takes the folder's `LOCK` file, so a second process (a second server, or an
/// import while the server runs) gets [`LogError::Locked`] instead of corrupting it.
pub struct EventLog {
    shared: Arc<Shared>,
    group: GroupCommit,
    queue: Arc<Semaphore>,
    _lock: File,
}

impl EventLog {
    /// Opens (or creates) the log in `dir`, recovering a torn tail.
    pub fn open(
        dir: impl AsRef<Path>,
        config: LogConfig,
        observer: Arc<dyn CommitObserver>,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let dir = dir.as_ref().to_path_buf();
        segment::create_dir_durably(&dir)?;
        let lock_path = dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(|e| LogError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LogError::Locked(dir)),
            // No lock to be had at all (NFS without a lock daemon, an I/O error): not
            // another process's.
            Err(std::fs::TryLockError::Error(e)) => return Err(LogError::io(&lock_path, e)),
        }

        let mut segments = segment::list_segments(&dir)?;
        if segments.is_empty() {
            let first = SegmentFile {
                base: 0,
                path: segment::segment_path(&dir, 0),
            };
            File::create(&first.path).map_err(|e| LogError::io(&first.path, e))?;
            segment::sync_dir(&dir)?;
            segments.push(first);
        }
        let last = segments.last().expect("at least one segment").clone();
        let consumers = Consumers::open(&dir)?;
        let (scan, report) = segment::recover_tail(&last, &consumers.positions())?;
        if report.dropped_anything() {
            tracing::warn!(
                segment = %last.path.display(),
                dropped_bytes = report.dropped_bytes,
                reason = report.reason.as_deref().unwrap_or(""),
                "cut a torn write off the log's tail"
            );
        }

        let mut active = Active::open(&last.path, scan.valid_len, scan.file_len)
            .map_err(|e| LogError::io(&last.path, e))?;
        // A killed process may have written a group it never synced. Readers may read every
        // whole record found here, so those are synced first: a consumer that applied them
        // and saved its position would otherwise be ahead of the log after a power cut.
        active.sync(0).map_err(|e| LogError::io(&last.path, e))?;
        let shared = Arc::new(Shared {
            consumers,
            dir,
            committed: AtomicU64::new(scan.next_offset),
            active: Mutex::new((last.base, scan.valid_len)),
            failure: OnceLock::new(),
            trouble: Mutex::new(None),
            config,
        });
        let writer = Writer {
            shared: shared.clone(),
            active,
            segment_base: last.base,
            next_offset: scan.next_offset,
            buf: Vec::new(),
            observer,
        };
        let queue = Arc::new(Semaphore::new(shared.config.max_queue_bytes));
        Ok((
            EventLog {
                shared,
                group: GroupCommit::new(writer),
                queue,
                _lock: lock,
            },
            report,
        ))
    }

    /// Appends records and returns their offsets once they are durable on disk.
    ///
    /// Concurrent appends share one sync. When the queue is full for longer than
    /// [`LogConfig::queue_wait`] the append is refused with [`AppendError::Overloaded`]
    /// instead of waiting without bound.
    pub async fn append(&self, payloads: Vec<Vec<u8>>) -> Result<Range<u64>, AppendError> {
        if let Some(why) = self.shared.failure.get() {
            return Err(AppendError::Failed(why.clone()));
        }
        if payloads.is_empty() {
            let at = self.shared.committed();
            return Ok(at..at);
        }
        if let Some(p) = payloads.iter().find(|p| p.len() > MAX_PAYLOAD as usize) {
            // Recovery would take a record this large for garbage and cut it off.
            return Err(AppendError::TooLarge {
                bytes: p.len(),
                limit: MAX_PAYLOAD as usize,
            });
        }
        let bytes: usize = payloads.iter().map(|p| p.len() + HEADER_LEN).sum();
        let limit = self.shared.config.max_queue_bytes;
        if bytes > limit {
            return Err(AppendError::TooLarge { bytes, limit });
        }
        // The queue counts bytes in `u32` permits: a larger queue still takes no larger
        // append than that.
        let permits = u32::try_from(bytes).map_err(|_| AppendError::TooLarge {
            bytes,
            limit: u32::MAX as usize,
        })?;
        // Most appends find room at once; only those that do not arm a timer.
        let permit = match self.queue.clone().try_acquire_many_owned(permits) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(AppendError::Closed),
            Err(TryAcquireError::NoPermits) => self.wait_for_room(permits).await?,
        };
        self.group.append(payloads, permit).await
    }

    /// Waits for `bytes` of room in the queue, at most [`LogConfig::queue_wait`].
    async fn wait_for_room(&self, bytes: u32) -> Result<OwnedSemaphorePermit, AppendError> {
        let wait = self.shared.config.queue_wait;
        let room = self
            .group
            .while_waiting(self.queue.clone().acquire_many_owned(bytes));
        match tokio::time::timeout(wait, room).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(AppendError::Closed),
            Err(_) => Err(AppendError::Overloaded {
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// Offset after the last durable record.
    pub fn next_offset(&self) -> u64 {
        self.shared.committed()
    }

    /// The reason the log stopped accepting appends, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.get().cloned()
    }

    /// Why the last group could not be written (a full disk), when that was less than
    /// [`TROUBLE_HOLD`] ago and no group has been stored since. Only a write can tell that
    /// there is room again, and none comes to a server that readiness has taken out of its
    /// load balancer: so after a quiet while it is reported ready again, and the next
    /// append tries (a circuit breaker's half-open state).
    pub fn write_trouble(&self) -> Option<String> {
        match &*self
            .shared
            .trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some((why, at)) if at.elapsed() < TROUBLE_HOLD => Some(why.clone()),
            _ => None,
        }
    }

    /// Whether the last group could not be written (a full disk) and none has been since,
    /// however long ago: for an alert, which must not clear just because no request came
    /// to find out (unlike [`EventLog::write_trouble`], which readiness uses).
    pub fn cannot_write(&self) -> bool {
        self.shared
            .trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Share of the append queue in use, 0.0 to 1.0: how close the log is to refusing.
    pub fn queue_fill(&self) -> f64 {
        let max = self.shared.config.max_queue_bytes as f64;
        1.0 - self.queue.available_permits() as f64 / max
    }

    /// A reader over the durable records, starting at the oldest retained one.
    pub fn reader(&self) -> Result<LogReader, LogError> {
        LogReader::live(self.shared.clone())
    }

    /// The consumers' committed offsets.
    pub fn consumers(&self) -> &Consumers {
        &self.shared.consumers
    }

    /// Registers a consumer (idempotent) and returns its committed offset: where it starts
    /// reading. A new consumer starts at the oldest retained record.
    pub fn register_consumer(&self, name: &str) -> Result<u64, LogError> {
        // The start is read under the consumers' lock, which retention also holds while it
        // deletes, so a new consumer never starts at a segment being deleted.
        self.shared.consumers.register(name, || self.first_offset())
    }

    /// Records that consumer `name` has processed everything before `offset`.
    pub fn commit(&self, name: &str, offset: u64) -> Result<(), LogError> {
        self.commit_keeping(name, offset, offset)
    }

    /// Records that consumer `name` has durably processed everything before `processed`
    /// but wants the records from `keep_from` on kept (and read again after a restart): the
    /// processor keeps those its dedupe window is rebuilt from. Retention keeps them; a
    /// damaged record before `processed` is refused at start as damage, not cut as a torn
    /// write.
    pub fn commit_keeping(
        &self,
        name: &str,
        processed: u64,
        keep_from: u64,
    ) -> Result<(), LogError> {
        let next_offset = self.next_offset();
        if processed > next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset: processed,
                next_offset,
            });
        }
        let at = crate::consumer::Position {
            offset: keep_from.min(processed),
            processed,
        };
        self.shared.consumers.commit(name, at)
    }

    /// Offset of the oldest retained record.
    pub fn first_offset(&self) -> Result<u64, LogError> {
        Ok(segment::list_segments(&self.shared.dir)?
            .first()
            .map_or(0, |s| s.base))
    }

    /// Sizes, offsets and consumer positions.
    pub fn stats(&self) -> Result<LogStats, LogError> {
        let active = *self.shared.active.lock().expect("not poisoned");
        LogStats::collect(&self.shared.dir, self.next_offset(), active)
    }

    /// Deletes closed segments as the retention policy allows. Blocking file I/O.
    pub fn enforce_retention(&self) -> Result<RetentionReport, LogError> {
        retention::enforce(&self.shared)
    }

    /// The folder holding the log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // Appends still waiting for room are refused as closed.
        self.queue.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue full of appends that were all abandoned while a commit ran (clients hanging
    /// up under overload) must not refuse every later append as overloaded: the append
    /// waiting for room takes the stored baton, and the abandoned records are not written.
    #[tokio::test]
    async fn a_queue_full_of_abandoned_appends_frees_itself() {
        let dir = tempfile::tempdir().unwrap();
        let record = 100 + HEADER_LEN;
        let config = LogConfig {
            max_queue_bytes: 10 * record,
            ..Default::default()
        };
        let (log, _) = EventLog::open(dir.path(), config, Arc::new(())).unwrap();
        let stranded = (0..10)
            .map(|_| {
                let permit = log.queue.clone().try_acquire_many_owned(record as u32);
                (vec![vec![b'x'; 100]], permit.unwrap())
            })
            .collect();
        log.group.strand(stranded);
        assert_eq!(log.queue_fill(), 1.0);
        let appended = log.append(vec![vec![b'y'; 100]]).await.unwrap();
        assert_eq!(appended, 0..1, "only the live append was written");
        assert_eq!(log.queue_fill(), 0.0);
    }

    /// A group limit below one request still commits one request a group.
    #[test]
    fn a_zero_group_limit_still_commits() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            max_group_bytes: 0,
            ..Default::default()
        };
        let path = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        // On a thread of its own, so that an append that never finishes fails the test
        // instead of hanging it.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (log, _) = EventLog::open(&path, config, Arc::new(())).unwrap();
            let _ = tx.send(runtime.block_on(log.append(vec![vec![1]])));
        });
        let appended = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the append completes");
        assert_eq!(appended.unwrap(), 0..1);
    }
}
