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
    /// When a lag was first seen with nothing applied yet, Unix ms (0: not seen): the lag
    /// is at least that old.
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

    /// How old the newest applied event is, in seconds, when there is a lag; 0 when caught up.
    /// A processor that has applied nothing since it started (stuck on its first batch, say)
    /// counts from when the lag was first seen, so that an alert on it still fires.
    pub fn lag_seconds(&self, log_next_offset: u64, now_ms: i64) -> f64 {
        if self.lag_records(log_next_offset) == 0 {
            // Caught up: a later lag with nothing applied counts from when it is seen.
            self.lagging_since_ms.store(0, Ordering::Release);
            return 0.0;
        }
        let since = match self.applied_received_ms.load(Ordering::Acquire) {
            0 => match self.lagging_since_ms.compare_exchange(
                0,
                now_ms,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => now_ms,
                Err(seen) => seen,
            },
            ms => ms,
        };
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
    fn lag_seconds_grow_while_nothing_is_applied() {
        let status = ProcessorStatus::default();
        assert_eq!(status.lag_seconds(0, 1_000), 0.0);
        // 10 records behind from the start, and none applied: the lag grows from when it
        // was first seen.
        assert_eq!(status.lag_seconds(10, 5_000), 0.0);
        assert_eq!(status.lag_seconds(10, 65_000), 60.0);
        // Caught up (on records without a received time), then behind again: counted anew.
        status.set_applied(10, None);
        assert_eq!(status.lag_seconds(10, 70_000), 0.0);
        assert_eq!(status.lag_seconds(12, 80_000), 0.0);
        assert_eq!(status.lag_seconds(12, 83_000), 3.0);
        // Once records are applied, it is the age of the newest one.
        status.set_applied(4, Some(60_000));
        assert_eq!(status.lag_seconds(10, 65_000), 5.0);
        assert_eq!(status.lag_seconds(4, 65_000), 0.0);
    }
}
