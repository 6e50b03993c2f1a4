//! The writing side of the log: one thread, group commit, durable acknowledgements.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};

use crate::active::Active;
use crate::config::LogConfig;
use crate::consumer::Consumers;
use crate::error::{AppendError, LogError};
use crate::reader::LogReader;
use crate::record::{self, HEADER_LEN, MAX_PAYLOAD};
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

/// State shared by the writer thread, readers and maintenance in this process.
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
    pub consumers: Consumers,
}

impl Shared {
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }
}

struct Request {
    payloads: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Range<u64>, AppendError>>,
    /// Queue space held until the request is answered: this is what bounds memory.
    _permit: OwnedSemaphorePermit,
}

/// The embedded event log, open for writing by this process.
///
/// Opening takes the folder's `LOCK` file, so a second process (a second server, or an
/// import while the server runs) gets [`LogError::Locked`] instead of corrupting it.
pub struct EventLog {
    shared: Arc<Shared>,
    tx: Option<mpsc::UnboundedSender<Request>>,
    queue: Arc<Semaphore>,
    thread: Option<JoinHandle<()>>,
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
        let (scan, report) = segment::recover_tail(&last, &consumers.all())?;
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
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("persona-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io(&shared.dir, e))?;
        let queue = Arc::new(Semaphore::new(shared.config.max_queue_bytes));
        Ok((
            EventLog {
                shared,
                tx: Some(tx),
                queue,
                thread: Some(thread),
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
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.send(Request {
            payloads,
            reply,
            _permit: permit,
        })
        .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Waits for `bytes` of room in the queue, at most [`LogConfig::queue_wait`].
    async fn wait_for_room(&self, bytes: u32) -> Result<OwnedSemaphorePermit, AppendError> {
        let wait = self.shared.config.queue_wait;
        match tokio::time::timeout(wait, self.queue.clone().acquire_many_owned(bytes)).await {
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
        let next_offset = self.next_offset();
        if offset > next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                next_offset,
            });
        }
        self.shared.consumers.commit(name, offset)
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
        // Closing the channel lets the writer finish what it holds and exit.
        self.tx.take();
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread's state: the active segment and the next offset to assign.
struct Writer {
    shared: Arc<Shared>,
    active: Active,
    segment_base: u64,
    next_offset: u64,
    buf: Vec<u8>,
    observer: Arc<dyn CommitObserver>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let _failed_if_panicking = FailOnPanic(self.shared.clone());
        let max_group = self.shared.config.max_group_bytes;
        while let Some(first) = rx.blocking_recv() {
            // Everything that queued up while the previous sync ran goes into this one.
            let mut group = vec![first];
            let mut bytes = group_bytes(&group[0]);
            drain(&mut rx, &mut group, &mut bytes, max_group);
            let outcome = self.commit(&group);
            match outcome {
                Ok(ranges) => {
                    for (r, range) in group.into_iter().zip(ranges) {
                        let _ = r.reply.send(Ok(range));
                    }
                }
                Err(why) => {
                    for r in group {
                        let _ = r.reply.send(Err(AppendError::Failed(why.clone())));
                    }
                }
            }
        }
    }

    /// Writes and syncs one group; returns each request's offsets.
    fn commit(&mut self, group: &[Request]) -> Result<Vec<Range<u64>>, String> {
        if let Some(why) = self.shared.failure.get() {
            return Err(why.clone());
        }
        // Never roll an empty segment: the new one would take the same name (its base).
        let roll_at = self.shared.config.segment_bytes;
        if self.active.len() > 0 && self.active.len() >= roll_at {
            self.roll().map_err(|e| self.fail(e.to_string()))?;
        }
        self.buf.clear();
        let mut offset = self.next_offset;
        let mut ranges = Vec::with_capacity(group.len());
        for r in group {
            let start = offset;
            for p in &r.payloads {
                record::encode(&mut self.buf, offset, p);
                offset += 1;
            }
            ranges.push(start..offset);
        }
        if let Err(e) = self.active.write(&self.buf, roll_at) {
            let undo = self.cut_off_group();
            return Err(self.fail(format!("write failed ({e}){undo}")));
        }
        let started = Instant::now();
        if let Err(e) = self.active.sync(self.buf.len()) {
            // The group's bytes are in the file, whole and with valid CRCs, but the senders
            // are told nothing was stored: left there, a restart would keep them and the
            // senders' retries would store them twice.
            let undo = self.cut_off_group();
            return Err(self.fail(format!("fdatasync failed ({e}){undo}")));
        }
        let sync = started.elapsed();
        *self.shared.active.lock().expect("not poisoned") = (self.segment_base, self.active.len());
        let records = offset - self.next_offset;
        self.next_offset = offset;
        self.shared.committed.store(offset, Ordering::Release);
        // The group is durable whatever an observer does: a panic there must not drop the
        // replies and have the senders told that nothing was stored.
        let observed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.observer
                .on_commit(records, self.buf.len() as u64, sync)
        }));
        if observed.is_err() {
            tracing::error!("the log's commit observer panicked; the group is durable");
        }
        if self.buf.capacity() > 4 * self.shared.config.max_group_bytes {
            self.buf = Vec::new(); // do not keep a huge buffer after one burst
        }
        Ok(ranges)
    }

    /// After a failed write or sync, when nothing of the group was acknowledged: cuts the
    /// group off so a restart finds the segment as it was before it. The log then stops (see
    /// [`Writer::fail`]): a reader in this process may already have buffered bytes of the
    /// failed group, and reusing their offsets would let it return them. Returns what to add
    /// to the failure's reason.
    fn cut_off_group(&mut self) -> String {
        match self.active.cut_to_records() {
            Ok(()) => String::new(),
            Err(e) => format!(" and could not be undone ({e})"),
        }
    }

    /// Closes the active segment and starts a new one at the next offset.
    fn roll(&mut self) -> Result<(), LogError> {
        // A closed segment holds only records: readers of closed segments read to the end.
        if self.active.has_zeros_ahead() {
            let closing = segment::segment_path(&self.shared.dir, self.segment_base);
            self.active
                .cut_to_records()
                .map_err(|e| LogError::io(&closing, e))?;
        }
        let path = segment::segment_path(&self.shared.dir, self.next_offset);
        let active = Active::create(&path).map_err(|e| LogError::io(&path, e))?;
        segment::sync_dir(&self.shared.dir)?;
        tracing::debug!(segment = %path.display(), "rolled to a new log segment");
        self.active = active;
        self.segment_base = self.next_offset;
        *self.shared.active.lock().expect("not poisoned") = (self.segment_base, 0);
        Ok(())
    }

    fn fail(&self, why: String) -> String {
        tracing::error!(
            reason = %why,
            segment_base = self.segment_base,
            "event log failed; refusing appends until restarted"
        );
        // A later failure (the undo of this one, say) does not hide the first.
        let _ = self.shared.failure.set(why.clone());
        why
    }
}

/// Marks the log failed when the writer thread unwinds, so that `failure()` and `/readyz`
/// report it instead of a healthy log whose every append is refused as closed.
struct FailOnPanic(Arc<Shared>);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .0
                .failure
                .set("the log's writer thread panicked".into());
        }
    }
}

/// Moves queued requests into `group` until the queue is empty or the group is full.
fn drain(
    rx: &mut mpsc::UnboundedReceiver<Request>,
    group: &mut Vec<Request>,
    bytes: &mut usize,
    max: usize,
) {
    while *bytes < max {
        match rx.try_recv() {
            Ok(r) => {
                *bytes += group_bytes(&r);
                group.push(r);
            }
            Err(_) => break,
        }
    }
}

fn group_bytes(r: &Request) -> usize {
    r.payloads.iter().map(|p| p.len() + HEADER_LEN).sum()
}
