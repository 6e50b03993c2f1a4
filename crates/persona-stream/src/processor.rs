//! The consumer loop: read a micro-batch, apply it, commit it with the offset.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use persona_core::MessageType;
use persona_core::profile::set_all;
use persona_log::{EventLog, LogError, LogReader, Record};
use persona_rules::live::Scope;
use persona_rules::{Reason, SegmentRegistry};
use persona_store::{ChangeSet, EventRef, IdentityKey, ProfileId, ProfileStore, StoreError};
use serde::Deserialize;

use crate::batch::{Batch, Cache};
use crate::config::ValidStreamConfig;
use crate::dedupe::DedupeWindow;
use crate::event::Event;
use crate::filter::{DropReason, noise};
use crate::metrics::ProcessorMetrics;
use crate::status::ProcessorStatus;
use crate::wakeup::Wakeup;

/// The processor's consumer name, in the store and in the log's consumer list.
pub const CONSUMER: &str = "processor";

/// How long an idle processor sleeps before looking at the log again without a wake-up.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Pause before retrying after a failed batch.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Profile ids a back-fill or sweep goes over between two event batches (fewer profiles
/// where merges left gaps): about 0.1 s of work on two cores, so events wait at most that
/// long behind a pass, while a pass pays for its threads and write batches rarely enough
/// (4,000 ids: a 1M-profile back-fill took 10% longer).
const PASS_IDS: u64 = 20_000;

/// A pass of the segments over every profile, a chunk at a time.
struct Pass {
    reason: Reason,
    /// The registry generation it started at: a back-fill brings every change up to it.
    generation: u64,
    scope: Scope,
    /// The next profile id to evaluate.
    next: ProfileId,
    started: Instant,
    profiles: u64,
}

impl Pass {
    fn new(reason: Reason, generation: u64, scope: Scope) -> Pass {
        Pass {
            reason,
            generation,
            scope,
            next: 0,
            started: Instant::now(),
            profiles: 0,
        }
    }
}

/// What committing a batch took and did.
struct Commit {
    took: Duration,
    /// A segment pass: the stored profiles it went over.
    passed: u64,
}

/// A batch could not be applied; nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Applies the event log to the profile store.
pub struct Processor {
    store: Arc<dyn ProfileStore>,
    reader: LogReader,
    config: ValidStreamConfig,
    dedupe: DedupeWindow,
    next_id: ProfileId,
    status: Arc<ProcessorStatus>,
    metrics: ProcessorMetrics,
    cache: Cache,
    /// Set when a batch failed: the next step restores from the store first.
    needs_restore: bool,
    segments: Arc<SegmentRegistry>,
    /// The registry generation last back-filled.
    seen_generation: u64,
    pass: Option<Pass>,
    last_sweep: Instant,
    /// A sweep gave way to a back-fill and starts again once it is done.
    sweep_due: bool,
}

impl Processor {
    /// A processor reading with `reader` (live or offline) and resuming at the offset the
    /// store last committed.
    pub fn new(
        store: Arc<dyn ProfileStore>,
        reader: LogReader,
        config: ValidStreamConfig,
        status: Arc<ProcessorStatus>,
        metrics: ProcessorMetrics,
    ) -> Result<Self, ProcessorError> {
        let mut p = Processor {
            store,
            reader,
            dedupe: DedupeWindow::new(config.dedupe_window),
            config,
            next_id: 1,
            status,
            metrics,
            cache: Cache::new(0, 0),
            needs_restore: false,
            segments: Arc::new(SegmentRegistry::default()),
            seen_generation: 0,
            pass: None,
            last_sweep: Instant::now(),
            sweep_due: false,
        };
        p.restore()?;
        Ok(p)
    }

    /// Evaluates the segments of `registry` on every profile change; a change of the
    /// registry back-fills every profile.
    pub fn with_segments(mut self, registry: Arc<SegmentRegistry>) -> Self {
        self.segments = registry;
        self
    }

    /// Positions the reader at the store's committed offset and refills the dedupe window
    /// from the records just before it, so the state equals what it was before a restart.
    fn restore(&mut self) -> Result<(), ProcessorError> {
        let committed = self.store.offset(CONSUMER)?.unwrap_or(0);
        let first = self.reader.first_offset()?;
        if committed < first {
            // Retention never deletes what this consumer has not committed, so the store is
            // older than the log (restored from a backup, or rebuilt after retention ran):
            // the best that can be done is to go on from the first record still kept.
            tracing::warn!(
                store_offset = committed,
                log_first_offset = first,
                missing = first - committed,
                "the profile store is behind the start of the event log: the records in \
                 between are gone and the profiles will not include them"
            );
        }
        let log_end = self.reader.end_offset()?;
        if committed > log_end {
            // The log lost records it had stored (an older copy restored, a disk that lost
            // synced writes, a segment cut by hand). Its next events take those offsets
            // again; going on from the store's offset would skip them.
            tracing::warn!(
                store_offset = committed,
                log_end,
                "the profile store has applied more of the event log than the log still \
                 holds: the profiles keep those events, and the processor goes on from the \
                 log's end so that new events reusing the offsets are applied"
            );
            // Recorded at once, so that a restart before the next batch goes on from there
            // too.
            self.store.apply(&ChangeSet {
                next_id: self.store.next_id()?,
                offsets: vec![(CONSUMER.to_string(), log_end)],
                durable: true,
                ..ChangeSet::default()
            })?;
        }
        let start = committed.min(log_end).max(first);
        self.dedupe = DedupeWindow::new(self.dedupe.capacity());
        // After a failed batch the cache may hold changes the store never got.
        self.cache = Cache::new(self.config.profile_cache, self.config.identity_cache);
        self.reader.seek(
            start
                .saturating_sub(self.dedupe.capacity() as u64)
                .max(first),
        );
        while self.reader.position() < start {
            let want = (start - self.reader.position()).min(8192) as usize;
            let records = self.reader.read_batch(want)?;
            if records.is_empty() {
                break;
            }
            for r in &records {
                self.dedupe.record(message_id(&r.payload).as_deref());
            }
        }
        self.reader.seek(start);
        self.next_id = self.store.next_id()?;
        self.status.set_applied(start, None);
        Ok(())
    }

    /// Applies at most one micro-batch. Returns how many records it read: 0 means the
    /// processor has caught up with the log.
    ///
    /// After an error nothing of the batch is stored, but the reader, the dedupe window and
    /// the cache have moved on; the next call restores them from the store first, and keeps
    /// failing until it can.
    pub fn step(&mut self) -> Result<usize, ProcessorError> {
        if self.needs_restore {
            self.restore()?;
            self.needs_restore = false;
        }
        let result = self.apply_batch().and_then(|read| {
            // Segment passes run between batches, a chunk at a time, so events never wait
            // behind a whole back-fill.
            Ok(read + self.advance_pass()?)
        });
        self.needs_restore = result.is_err();
        result
    }

    /// Starts a back-fill when the segments changed, or a sweep when one is due, and
    /// evaluates the next chunk of profiles of the pass in progress; returns how many
    /// profile ids it went over.
    fn advance_pass(&mut self) -> Result<usize, ProcessorError> {
        self.start_pass()?;
        let Some(pass) = &mut self.pass else {
            return Ok(0);
        };
        // Profiles created after the pass began were evaluated by the events creating them.
        if pass.next >= self.next_id {
            let seconds = pass.started.elapsed().as_secs_f64();
            tracing::info!(reason = ?pass.reason, profiles = pass.profiles, seconds, "segment pass over every profile done");
            self.segments.pass_finished(pass.reason, pass.generation);
            self.pass = None;
            return Ok(0);
        }
        let (first, last) = (pass.next, (pass.next + PASS_IDS).min(self.next_id) - 1);
        let (reason, scope) = (pass.reason, pass.scope.clone());
        let ((), committed) = self.in_batch(reason, &scope, |_, batch| {
            batch.pass_over(first, last);
            Ok(())
        })?;
        // Only once the chunk is stored: after a failed commit the pass retries it.
        if let Some(pass) = &mut self.pass {
            pass.next = last + 1;
            pass.profiles += committed.passed;
        }
        self.segments.pass_advanced(committed.passed);
        // Ids gone over, not profiles: a range that merges emptied is work done too, and
        // the pass is not over.
        Ok((last - first + 1) as usize)
    }

    /// Starts a back-fill when the segments or models changed, or a sweep when one is due,
    /// unless a back-fill is under way.
    ///
    /// A back-fill runs to its end: changes made meanwhile are newer than the generation
    /// it started at, so the next back-fill takes them up and nothing done is done again.
    /// A sweep gives way to a back-fill (a new segment should fill quickly) and starts
    /// again after it.
    fn start_pass(&mut self) -> Result<(), ProcessorError> {
        let generation = self.segments.generation();
        let sweeping = matches!(&self.pass, Some(p) if p.reason == Reason::Sweep);
        if generation != self.seen_generation && (self.pass.is_none() || sweeping) {
            self.seen_generation = generation;
            // With nothing new or changed there is nothing to back-fill: ids of deleted
            // segments and models left in profiles are dropped at their next change, and
            // hidden until then.
            let scope = self.segments.backfill_scope();
            if !self.segments.snapshot().is_empty() && !scope.is_empty() {
                self.sweep_due |= sweeping;
                return self.begin(Pass::new(Reason::Backfill, generation, scope));
            }
        }
        // Rules and models that read time-relative fields are evaluated over every profile
        // now and then, so that customers leave "active in the last 30 days" without an
        // event of their own.
        let due = self.sweep_due || self.last_sweep.elapsed() >= self.config.segment_sweep;
        if self.pass.is_none() && due {
            self.last_sweep = Instant::now();
            self.sweep_due = false;
            if self.segments.snapshot().time_relative() {
                return self.begin(Pass::new(Reason::Sweep, generation, Scope::TimeRelative));
            }
        }
        Ok(())
    }

    /// Makes `pass` the one in progress and tells the registry (and so the API's progress
    /// report).
    fn begin(&mut self, pass: Pass) -> Result<(), ProcessorError> {
        let total = self.store.count()?;
        tracing::info!(reason = ?pass.reason, profiles = total, "segment pass over every profile starts");
        self.segments
            .pass_started(pass.reason, pass.generation, total);
        self.pass = Some(pass);
        Ok(())
    }

    /// Runs `fill` on a fresh batch over the processor's cache and commits it; returns what
    /// `fill` returned and what the commit did. On an error nothing is stored and the
    /// cache is gone, which is why a failed step restores before the next.
    fn in_batch<T>(
        &mut self,
        reason: Reason,
        scope: &Scope,
        fill: impl FnOnce(&mut Self, &mut Batch<'_>) -> Result<T, ProcessorError>,
    ) -> Result<(T, Commit), ProcessorError> {
        let store = self.store.clone();
        let registry = self.segments.clone();
        // Marked until this function returns, committed or not: deleting a segment waits
        // for batches evaluating with a snapshot that still has it.
        let (_in_progress, live) = registry.batch_starts();
        let mut cache = std::mem::replace(&mut self.cache, Cache::new(0, 0));
        let mut batch = Batch::new(
            &*store,
            &mut cache,
            self.next_id,
            self.config.session_gap_ms,
            live,
            reason,
            scope,
        );
        let out = fill(self, &mut batch)?;
        let committing = Instant::now();
        let committed = batch.commit()?;
        self.next_id = committed.next_id;
        self.cache = cache;
        Ok((
            out,
            Commit {
                took: committing.elapsed(),
                passed: committed.passed,
            },
        ))
    }

    /// Tells the log how far the store has applied it on disk, and that retention may
    /// delete records only below that, less the records the dedupe window is rebuilt from
    /// after a restart. (The first tells the log's start-up that damage before it is to
    /// acknowledged records, not a torn write.)
    pub fn commit_to_log(&self, log: &EventLog) -> Result<(), ProcessorError> {
        let durable = self.store.durable_offset(CONSUMER)?.unwrap_or(0);
        let keep_from = durable.saturating_sub(self.dedupe.capacity() as u64);
        log.commit_keeping(CONSUMER, durable, keep_from)?;
        Ok(())
    }

    fn apply_batch(&mut self) -> Result<usize, ProcessorError> {
        let records = self.reader.read_batch(self.config.batch_records)?;
        if records.is_empty() {
            return Ok(0);
        }
        let taken = records.len();
        let next = records[taken - 1].offset + 1;
        if self.store.remote() {
            self.cache.prefetch(&*self.store, identity_keys(&records))?;
        }
        let ((applied, last_applied, merges), committing) =
            self.in_batch(Reason::Event, &Scope::All, |p, batch| {
                let mut applied = 0;
                let mut last_applied = None;
                for r in &records {
                    if p.apply(batch, r)? {
                        applied += 1;
                        last_applied = Some(r);
                    }
                }
                // The store syncs to disk on its own schedule; the log is the durable record.
                batch.set_offset(CONSUMER, next);
                Ok((applied, last_applied, batch.merges))
            })?;
        // For the lag in seconds: when the newest applied event arrived. Read once a batch,
        // not once an event.
        let received = last_applied
            .and_then(|r| Event::parse(&r.payload).ok())
            .and_then(|e| e.received_at());
        self.metrics
            .batch(taken, applied, merges, committing.took.as_secs_f64());
        self.status.set_applied(next, received);
        Ok(taken)
    }

    /// Applies every record there is now; returns how many were read.
    pub fn run_to_end(&mut self) -> Result<u64, ProcessorError> {
        let mut total = 0;
        loop {
            match self.step()? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    }

    /// Applies one record to the batch; false if it was dropped.
    fn apply(&mut self, batch: &mut Batch<'_>, record: &Record) -> Result<bool, StoreError> {
        let event = match Event::parse(&record.payload) {
            Ok(e) => e,
            Err(e) => {
                // Into the window all the same, as `restore` would put it.
                self.dedupe.record(message_id(&record.payload).as_deref());
                tracing::warn!(offset = record.offset, error = %e, "skipping a malformed log record");
                self.metrics.dropped(DropReason::Malformed);
                return Ok(false);
            }
        };
        let duplicate = self.dedupe.record(event.msg.message_id.as_deref());
        if let Some(reason) = noise(&event, &self.config) {
            self.metrics.dropped(reason);
            return Ok(false);
        }
        if duplicate {
            self.metrics.dropped(DropReason::Duplicate);
            return Ok(false);
        }
        let id = batch.resolve_event(
            event.msg.user_id.as_deref(),
            event.msg.anonymous_id.as_deref(),
        )?;
        if event.kind == MessageType::Alias
            && let Some(previous) = event.previous_id()
        {
            batch.alias(previous, id)?;
        }
        let gap = self.config.session_gap_ms;
        let observation = event.observation(&self.config);
        let enrichment = event.is_enrichment();
        let profile = batch.profile(id)?;
        if event.kind == MessageType::Identify
            && let Some(traits) = &event.msg.traits
        {
            set_all(&mut profile.traits, traits, event.at);
        }
        if !enrichment {
            profile.activity.observe(&observation, gap);
            batch.add_event(
                id,
                EventRef {
                    at: event.at,
                    offset: record.offset,
                    position: record.position,
                },
            );
        }
        Ok(true)
    }
}

/// The `messageId` of a stored message, read the same way whether or not the rest of the
/// record is usable.
fn message_id(payload: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(rename = "messageId", borrow)]
        message_id: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Id<'_>>(payload).ok()?.message_id
}

/// The processor running on its own thread; dropping it stops the thread after the batch
/// in progress (each batch is atomic, so stopping at any point is safe anyway).
pub struct ProcessorHandle {
    stop: Arc<AtomicBool>,
    wakeup: Wakeup,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ProcessorHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wakeup.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `processor` on a thread of its own, following the live `log`.
pub fn spawn(
    mut processor: Processor,
    log: Arc<EventLog>,
    wakeup: Wakeup,
) -> std::io::Result<ProcessorHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        let wakeup = wakeup.clone();
        std::thread::Builder::new()
            .name("persona-processor".into())
            .spawn(move || {
                // The last failure to tell the log, said once rather than at every idle step;
                // and the last failed batch's error, said once rather than at every retry.
                let mut commit_failure = None;
                let mut batch_failure = None;
                while !stop.load(Ordering::Acquire) {
                    let result = processor.step();
                    processor.report_lag(&log);
                    match result {
                        Ok(applied) => {
                            if applied > 0 {
                                processor.status.set_failure(None);
                                processor.metrics.failing.set(0);
                                batch_failure = None;
                            }
                            // Idle steps too: the store's durable offset moves on (once a
                            // second) after the last batch, and retention waits for it.
                            // Unchanged, it costs no write.
                            let failure = processor.commit_to_log(&log).err().map(|e| e.to_string());
                            if let Some(e) = &failure
                                && failure != commit_failure
                            {
                                tracing::warn!(error = %e, "cannot record the processor's offset in the log");
                            }
                            commit_failure = failure;
                            if applied == 0 {
                                wakeup.wait(IDLE_WAIT);
                            }
                        }
                        Err(e) => {
                            // The next step restores from the store before going on.
                            let e = e.to_string();
                            if batch_failure.as_ref() != Some(&e) {
                                tracing::error!(error = %e, "processor batch failed; retrying");
                            }
                            processor.status.set_failure(Some(e.clone()));
                            processor.metrics.failing.set(1);
                            batch_failure = Some(e);
                            std::thread::sleep(RETRY_PAUSE);
                        }
                    }
                }
            })?
    };
    Ok(ProcessorHandle {
        stop,
        wakeup,
        thread: Some(thread),
    })
}

impl Processor {
    fn report_lag(&self, log: &EventLog) {
        let next = log.next_offset();
        let now = chrono::Utc::now().timestamp_millis();
        self.metrics
            .lag_records
            .set(self.status.lag_records(next) as i64);
        self.metrics
            .lag_seconds
            .set(self.status.lag_seconds(next, now));
    }
}

/// The storage keys of the identities `records` name (an alias's previous id as either
/// kind), for [`Cache::prefetch`]; records that do not parse are left to the batch.
fn identity_keys(records: &[Record]) -> HashSet<String> {
    let mut keys = HashSet::new();
    for r in records {
        let Ok(e) = Event::parse(&r.payload) else {
            continue;
        };
        if let Some(u) = e.msg.user_id.as_deref() {
            keys.insert(IdentityKey::User(u).storage_key());
        }
        if let Some(a) = e.msg.anonymous_id.as_deref() {
            keys.insert(IdentityKey::Anonymous(a).storage_key());
        }
        if let Some(p) = e.previous_id() {
            keys.insert(IdentityKey::User(p).storage_key());
            keys.insert(IdentityKey::Anonymous(p).storage_key());
        }
    }
    keys
}
