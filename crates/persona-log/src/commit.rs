//! Group commit without a writer thread: the append that finds no commit under way writes
//! and syncs everything queued itself, on the thread it already runs on.
//!
//! Appends queue their records and wait for their answer. The first append to find nobody
//! committing takes the *baton*: it writes the queued group with one positioned write,
//! calls `fdatasync` once, and answers every request in the group. If more appends queued
//! meanwhile, it hands the baton to one of them (a task wake-up, usually on the same
//! worker) and returns; otherwise it puts the baton down. This is the leader-based group
//! commit of RocksDB's write thread and MySQL's binlog group commit.
//!
//! Why no dedicated writer thread: handing each request to such a thread and being woken
//! with its answer cost two cross-thread wake-ups a group, and on a virtual machine each
//! one that finds a core halted crosses the host. Measured side by side with the writer
//! thread (`persona bench ingest`, 2-core VM, 2026-12-06): 2-3 µs less server CPU a
//! single-event request and 0.37-0.39 of the no-op handler's rate against 0.32-0.36
//! (docs/speed-ingest.md).
//!
//! The cost is that the write and sync block the runtime worker that holds the baton for
//! as long as they take (about 0.1-0.4 ms here, 4 ms on a slow disk). Only one append holds
//! it at a time, so on a runtime with two or more workers the others keep serving.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};

use crate::active::Active;
use crate::error::{AppendError, LogError};
use crate::record;
use crate::segment;
use crate::writer::{CommitObserver, Shared};

/// One append waiting to be committed.
pub(crate) struct Request {
    payloads: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Range<u64>, AppendError>>,
    /// Queue space held until the request is answered: this is what bounds memory. It
    /// holds one permit for each byte the records take in the log.
    permit: OwnedSemaphorePermit,
}

impl Request {
    fn bytes(&self) -> usize {
        self.permit.num_permits()
    }
}

/// Where appends queue, and the baton that one of them holds while it commits.
pub(crate) struct GroupCommit {
    /// The queued requests, and whether some append holds the baton.
    queue: Mutex<Queue>,
    /// Handed to a waiting append when the holder is done and more has queued.
    baton: Notify,
    /// Touched only by the baton's holder; a lock only so that the holder can be any task.
    writer: Mutex<Writer>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
    held: bool,
}

impl GroupCommit {
    pub fn new(writer: Writer) -> Self {
        GroupCommit {
            queue: Mutex::new(Queue::default()),
            baton: Notify::new(),
            shared: writer.shared.clone(),
            writer: Mutex::new(writer),
        }
    }

    /// Queues the records and waits until they are durable, committing the queue whenever
    /// this append holds the baton.
    pub async fn append(
        &self,
        payloads: Vec<Vec<u8>>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Range<u64>, AppendError> {
        let (answer, takes_baton) = self.enqueue(payloads, permit);
        if takes_baton {
            // Let the tasks already runnable on this worker queue their appends first: on a
            // runtime with one worker nobody else could while this one syncs, and every group
            // would hold one request. An append dropped here passes the baton on.
            let mut pass_on = PassOnIfDropped(Some(&self.baton));
            tokio::task::yield_now().await;
            pass_on.0 = None;
            self.commit_queued();
        }
        self.while_waiting(answer)
            .await
            .map_err(|_| AppendError::Closed)?
    }

    /// Queues a request; true when no append held the baton, so this one now does.
    fn enqueue(
        &self,
        payloads: Vec<Vec<u8>>,
        permit: OwnedSemaphorePermit,
    ) -> (oneshot::Receiver<Result<Range<u64>, AppendError>>, bool) {
        let (reply, answer) = oneshot::channel();
        let mut queue = self.lock_queue();
        queue.requests.push(Request {
            payloads,
            reply,
            permit,
        });
        (answer, !std::mem::replace(&mut queue.held, true))
    }

    /// Commits one group from the front of the queue, blocking this thread for its write
    /// and sync, then passes the baton on or puts it down. Nothing in here awaits, so a
    /// dropped append cannot leave the baton held by nobody half-way.
    fn commit_queued(&self) {
        let _release_on_panic = ReleaseOnPanic(self);
        let group = self.take_group();
        if !group.is_empty() {
            let outcome = self
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .commit(&group);
            answer(group, outcome);
        }
        let mut queue = self.lock_queue();
        if queue.requests.is_empty() {
            queue.held = false;
        } else {
            drop(queue);
            self.baton.notify_one();
        }
    }

    /// The queue's front, up to `max_group_bytes` (at least one request). Requests whose
    /// append was abandoned (the client hung up) are dropped instead: nobody will be told
    /// they were stored, a client that retries would store them twice, and dropping them
    /// gives their queue space back.
    fn take_group(&self) -> Vec<Request> {
        let max = self.shared.config.max_group_bytes;
        let mut queue = self.lock_queue();
        queue.requests.retain(|r| !r.reply.is_closed());
        let mut bytes = 0;
        let taken = queue
            .requests
            .iter()
            .take_while(|r| {
                let more = bytes == 0 || bytes < max;
                bytes += r.bytes();
                more
            })
            .count();
        if taken == queue.requests.len() {
            std::mem::take(&mut queue.requests)
        } else {
            queue.requests.drain(..taken).collect()
        }
    }

    /// Waits for `done` (an append's answer, or room in the queue), committing the queue
    /// whenever the baton comes this way. An append waiting for room takes part too: when
    /// the queue is full of abandoned appends, the stored baton would otherwise wait for an
    /// append that can never queue.
    pub async fn while_waiting<T>(&self, done: impl Future<Output = T>) -> T {
        let mut done = std::pin::pin!(done);
        loop {
            tokio::select! {
                // A waiter whose future is done never takes the baton; if it was handed the
                // baton all the same, dropping the unused `Notified` passes it on to the
                // next waiter (or keeps it for the next append), so it is never lost.
                biased;
                out = &mut done => return out,
                () = self.baton.notified() => self.commit_queued(),
            }
        }
    }

    /// Test only: leaves `requests` queued with nobody waiting for them and the baton
    /// stored, as when every append in a full queue is abandoned while a commit runs.
    #[cfg(test)]
    pub fn strand(&self, requests: Vec<(Vec<Vec<u8>>, OwnedSemaphorePermit)>) {
        for (payloads, permit) in requests {
            drop(self.enqueue(payloads, permit));
        }
        self.baton.notify_one();
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still a consistent one.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Answers every request of a committed (or failed) group.
fn answer(group: Vec<Request>, outcome: Result<Vec<Range<u64>>, AppendError>) {
    match outcome {
        Ok(ranges) => {
            for (r, range) in group.into_iter().zip(ranges) {
                let _ = r.reply.send(Ok(range));
            }
        }
        Err(e) => {
            for r in group {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Hands the baton to a waiting append (or keeps it for the next one) unless disarmed.
struct PassOnIfDropped<'a>(Option<&'a Notify>);

impl Drop for PassOnIfDropped<'_> {
    fn drop(&mut self) {
        if let Some(baton) = self.0 {
            baton.notify_one();
        }
    }
}

/// When a commit unwinds: marks the log failed, so that `failure()` and `/readyz` report
/// it, refuses what is queued, and puts the baton down so no append waits for it forever.
struct ReleaseOnPanic<'a>(&'a GroupCommit);

impl Drop for ReleaseOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let why = "a commit to the log panicked".to_string();
        let _ = self.0.shared.failure.set(why.clone());
        let queued = {
            let mut queue = self.0.lock_queue();
            queue.held = false;
            std::mem::take(&mut queue.requests)
        };
        answer(queued, Err(AppendError::Failed(why)));
    }
}

/// The writing side's state: the active segment and the next offset to assign. Only the
/// append holding the baton touches it.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub active: Active,
    pub segment_base: u64,
    pub next_offset: u64,
    pub buf: Vec<u8>,
    pub observer: Arc<dyn CommitObserver>,
}

impl Writer {
    /// Writes and syncs one group; returns each request's offsets.
    pub fn commit(&mut self, group: &[Request]) -> Result<Vec<Range<u64>>, AppendError> {
        if let Some(why) = self.shared.failure.get() {
            return Err(AppendError::Failed(why.clone()));
        }
        // Never roll an empty segment: the new one would take the same name (its base).
        let roll_at = self.shared.config.segment_bytes;
        if self.active.len() > 0 && self.active.len() >= roll_at {
            self.roll()?;
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
            // A write refused for want of room leaves the page cache as it was for every
            // byte already synced: once the group is cut off, the log is as before it, and
            // the next group may try again.
            return Err(match self.cut_off_group() {
                undo if !undo.is_empty() || !passing(&e) => {
                    self.fail(format!("write failed ({e}){undo}"))
                }
                _ => self.trouble(format!("write failed ({e})")),
            });
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
        self.no_trouble();
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
    /// group off so a restart finds the segment as it was before it, and so the next group
    /// can take its place (no reader in this process has read its bytes: readers stop at
    /// the synced length published in `Shared::active`). Returns what to add to the
    /// failure's reason when the cut fails; the log must then stop.
    fn cut_off_group(&mut self) -> String {
        match self.active.cut_to_records() {
            Ok(()) => String::new(),
            Err(e) => format!(" and could not be undone ({e})"),
        }
    }

    /// Closes the active segment and starts a new one at the next offset.
    fn roll(&mut self) -> Result<(), AppendError> {
        // A closed segment holds only records: readers of closed segments read to the end.
        if self.active.has_zeros_ahead() {
            let closing = segment::segment_path(&self.shared.dir, self.segment_base);
            self.active
                .cut_to_records()
                .map_err(|e| self.fail(LogError::io(&closing, e).to_string()))?;
        }
        let path = segment::segment_path(&self.shared.dir, self.next_offset);
        // No file made, nothing changed: a full disk (no room for the file's entry or
        // inode) is over when there is room, and the next group tries again.
        let active = Active::create(&path).map_err(|e| self.refused(e, &path))?;
        if let Err(e) = persona_core::durable::sync_dir(&self.shared.dir) {
            // Out of file descriptors, say: the folder could not even be opened. Without
            // the new file the log is as before, and the next roll makes it again.
            if passing(&e) && std::fs::remove_file(&path).is_ok() {
                return Err(self.refused(e, &self.shared.dir));
            }
            return Err(self.fail(LogError::io(&self.shared.dir, e).to_string()));
        }
        tracing::debug!(segment = %path.display(), "rolled to a new log segment");
        self.active = active;
        self.segment_base = self.next_offset;
        *self.shared.active.lock().expect("not poisoned") = (self.segment_base, 0);
        Ok(())
    }

    /// A write or file creation at `at` that failed: passing ([`passing`]) or not.
    fn refused(&self, e: std::io::Error, at: &std::path::Path) -> AppendError {
        let pass = passing(&e);
        let why = LogError::io(at, e).to_string();
        if pass {
            self.trouble(why)
        } else {
            self.fail(why)
        }
    }

    fn fail(&self, why: String) -> AppendError {
        tracing::error!(
            reason = %why,
            segment_base = self.segment_base,
            "event log failed; refusing appends until restarted"
        );
        // A later failure (the undo of this one, say) does not hide the first.
        let _ = self.shared.failure.set(why.clone());
        AppendError::Failed(why)
    }

    /// A group that could not be written and was cut off again: reported once until a
    /// group is stored again, since every request retried meanwhile fails the same way.
    fn trouble(&self, why: String) -> AppendError {
        let mut trouble = self
            .shared
            .trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if trouble.as_ref().is_none_or(|(last, _)| *last != why) {
            tracing::error!(
                reason = %why,
                segment_base = self.segment_base,
                "the event log cannot write; refusing appends until a write succeeds again"
            );
        }
        *trouble = Some((why.clone(), Instant::now()));
        AppendError::Unwritable(why)
    }

    /// A group was stored: whatever stopped writes before is over, and the zeros ahead
    /// of the records may be written again.
    fn no_trouble(&mut self) {
        let mut trouble = self
            .shared
            .trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if trouble.take().is_some() {
            tracing::info!("the event log writes again");
            self.active.retry_zeros();
        }
    }
}

/// Whether a failed write or file creation may pass and leaves nothing to distrust: out of
/// room (a full disk, a quota) or of file descriptors. Anything else (an I/O error, a file
/// system gone read-only) stops the log, as a failed sync does.
fn passing(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EMFILE | libc::ENFILE)
    )
}
