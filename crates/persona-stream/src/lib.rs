//! The processor: the log consumer that turns events into live profiles.
//!
//! It reads the event log from its own committed offset, drops noise (bots, test write
//! keys, internal networks, duplicate `messageId`s), resolves identities (anonymous ids and
//! user ids linked by identify and alias, anonymous history merged into the known profile),
//! folds each event into its profile, and commits a micro-batch of profile changes together
//! with the consumed offset in one atomic store write. A restart at any moment therefore
//! resumes exactly where the last commit ended: no event is lost or counted twice.
//!
//! What a profile counts lives in `persona_core::profile`; how it is stored lives in
//! `persona-store`. This crate owns the rules in between and knows nothing about HTTP.

mod batch;
mod config;
mod dedupe;
mod event;
mod filter;
mod metrics;
mod processor;
mod status;
mod wakeup;

pub use config::{ConfigError, StreamConfig, ValidStreamConfig};
pub use event::{ENRICHMENT_SOURCE, revenue_of};
pub use filter::DropReason;
pub use metrics::ProcessorMetrics;
pub use processor::{CONSUMER, Processor, ProcessorError, ProcessorHandle, spawn};
pub use status::ProcessorStatus;
pub use wakeup::Wakeup;
