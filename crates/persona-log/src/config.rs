//! Log settings, with their defaults in one place.

use std::time::Duration;

/// How the embedded log behaves. Every field has a default suited to one small machine.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// Bytes of appends allowed to wait for the writer. Past this, appends are refused as
    /// overloaded rather than queued without bound.
    pub max_queue_bytes: usize,
    /// How long an append may wait for queue space before it is refused as overloaded.
    pub queue_wait: Duration,
    /// Upper bound of bytes written and synced in one group commit.
    pub max_group_bytes: usize,

    /// Which closed segments may be deleted.
    pub retention: RetentionPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 128 << 20,
            max_queue_bytes: 64 << 20,
            queue_wait: Duration::from_millis(200),
            max_group_bytes: 16 << 20,

            retention: RetentionPolicy::default(),
        }
    }
}

/// Deletion of closed segments. A segment is deleted only when the policy wants it gone
/// *and* every registered consumer has committed past its last record.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    /// Keep at most this many bytes of closed segments (oldest go first). `None`: no limit.
    pub max_bytes: Option<u64>,
    /// Delete closed segments whose newest record is older than this. `None`: keep forever.
    pub max_age: Option<Duration>,
}
