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
    pub fn lag_seconds(&self, log_next_offset: u64, now_ms: i64) -> f64 {
        if self.lag_records(log_next_offset) == 0 {
            return 0.0;
        }
        match self.applied_received_ms.load(Ordering::Acquire) {
            0 => 0.0,
            ms => ((now_ms - ms).max(0)) as f64 / 1000.0,
        }
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("not poisoned").clone()
    }

    pub(crate) fn set_failure(&self, why: Option<String>) {
        *self.failure.lock().expect("not poisoned") = why;
    }
}
