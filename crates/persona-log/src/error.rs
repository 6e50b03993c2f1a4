//! Errors of the event log.

use std::path::PathBuf;
use std::time::Duration;

/// Failures opening, reading or maintaining the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    // The cause is in the message and not a `#[source]`, so that a chain of contexts
    // printed whole does not repeat it.
    #[error("I/O error on {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the log at {0} is in use by another persona process (its LOCK file is held)")]
    Locked(PathBuf),
    #[error("corrupt log: {0}")]
    Corrupt(String),
    #[error("invalid consumer name {0:?}: use letters, digits, '-', '_' or '.'")]
    InvalidConsumer(String),
    #[error("offset {offset} is beyond the end of the log ({next_offset})")]
    OffsetOutOfRange { offset: u64, next_offset: u64 },
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            cause: source,
        }
    }
}

/// Why an append was not acknowledged. None of these means the records are durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The writer is behind; the caller should retry after the given delay.
    #[error("the event log is overloaded; retry after {retry_after:?}")]
    Overloaded { retry_after: Duration },
    /// The records are larger than the whole queue can ever hold.
    #[error("append of {bytes} bytes exceeds the log's queue of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    /// Writing or syncing failed and the log refuses further appends until reopened: after
    /// a failed sync the state of the page cache is unknown (see PostgreSQL's "fsyncgate").
    #[error("the event log failed to write: {0}")]
    Failed(String),
    /// Writing failed (the disk is full, say) and the group was cut off again: nothing of
    /// it was stored, and the next append tries again.
    #[error("the event log cannot write right now: {0}")]
    Unwritable(String),
    /// The log is shutting down.
    #[error("the event log is closed")]
    Closed,
}
