//! persona's durable event log: the first thing every acknowledged event touches.
//!
//! The embedded log is a folder of rolling segment files (`<base offset>.log`). Each record
//! carries its offset and a CRC; appends from many concurrent requests are gathered into one
//! group, written and made durable with a single `fdatasync` (group commit) by whichever
//! append holds the baton (see `commit`), and only then
//! is each caller told its offsets. On open, the tail of the last segment is checked and a
//! torn write is cut off (and kept aside for inspection), so every whole record survives a
//! crash and no partial record is ever read.
//!
//! Every downstream stage is a *consumer* with its own committed offset (the next offset it
//! will read, as in Kafka). Retention never deletes a segment that a registered consumer has
//! not committed past.
//!
//! This crate knows nothing about HTTP, message schemas or metrics backends: payloads are
//! opaque bytes, and commit timings are reported through [`CommitObserver`].

mod active;
mod commit;
mod config;
mod consumer;
mod error;
mod reader;
mod record;
mod retention;
mod segment;
mod stats;
mod verify;
mod writer;

pub use config::{LogConfig, RetentionPolicy};
pub use consumer::Consumers;
pub use error::{AppendError, LogError};
pub use reader::{LogReader, Record, read_at};
pub use retention::RetentionReport;
pub use segment::{RecoveryReport, written_len};
pub use stats::{ConsumerStats, LogStats};
pub use verify::{VerifyReport, verify};
pub use writer::{CommitObserver, EventLog, TROUBLE_HOLD};
