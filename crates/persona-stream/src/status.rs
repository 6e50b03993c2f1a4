//! What the processor reports about itself to `/readyz`, `/metrics` and the profile API.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Shared, lock-free progress of the processor.
#[derive(Debug, Default)]
pub struct ProcessorStatus {
    /// The log offset applied up to (exclusive).
    applied: AtomicU64,
    /// When the newest applied record was received by the collector, Unix ms (0: none).
    applied_received_ms: AtomicI64,
    /// When the current lag was first seen, Unix ms (0: caught up).
    lagging_since_ms: AtomicI64,
    /// The last error, while the processor is retrying.
    failure: Mutex<Option<String>>,
}

impl ProcessorStatus {
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub(crate) fn set_applied(&self, offset: u64, received_ms: Option<i64>) {
        self.applied.store(offset, Ordering::Release);
        if let Some(ms) = received_ms {
            self.applied_received_ms.store(ms, Ordering::Release);
        }
    }

    /// Records behind the log's end.
    pub fn lag_records(&self, log_next_offset: u64) -> u64 {
        log_next_offset.saturating_sub(self.applied())
    }

    /// How far behind the processor is, in seconds, when there is a lag; 0 when caught up:
    /// the age of the newest applied event, but never more than the time since the lag was
    /// first seen. So a processor stuck since it started still shows a growing lag (an alert
    /// on it fires), and the first record after an idle hour does not read as an hour late.
    pub fn lag_seconds(&self, log_next_offset: u64, now_ms: i64) -> f64 {
        if self.lag_records(log_next_offset) == 0 {
            self.lagging_since_ms.store(0, Ordering::Release);
            return 0.0;
        }
        let seen = match self.lagging_since_ms.compare_exchange(
            0,
            now_ms,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => now_ms,
            Err(seen) => seen,
        };
        let since = self.applied_received_ms.load(Ordering::Acquire).max(seen);
        (now_ms - since).max(0) as f64 / 1000.0
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("not poisoned").clone()
    }

    pub(crate) fn set_failure(&self, why: Option<String>) {
        *self.failure.lock().expect("not poisoned") = why;
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessorStatus;

    #[test]
    fn lag_seconds_count_from_the_newest_applied_event_or_from_when_the_lag_began() {
        let status = ProcessorStatus::default();
        assert_eq!(status.lag_seconds(0, 1_000), 0.0);
        // Behind from the start with nothing applied: the lag grows from when it was seen.
        assert_eq!(status.lag_seconds(10, 5_000), 0.0);
        assert_eq!(status.lag_seconds(10, 65_000), 60.0);
        // Records applied while behind: the age of the newest applied one.
        status.set_applied(4, Some(64_000));
        assert_eq!(status.lag_seconds(10, 69_000), 5.0);
        // Caught up, an idle hour, then one new record: late from when it is seen, not
        // from the last event applied an hour ago.
        status.set_applied(10, Some(68_000));
        assert_eq!(status.lag_seconds(10, 70_000), 0.0);
        assert_eq!(status.lag_seconds(11, 3_670_000), 0.0);
        assert_eq!(status.lag_seconds(11, 3_672_000), 2.0);
    }
}
