//! Shared vocabulary of persona's pipeline stages.
//!
//! This crate owns the types every stage agrees on: the Segment-spec message kinds, the
//! customer profile (its state, merge rules, stored form and read-time view), the
//! field-level validation error that the collector reports and the importer prints, the
//! error kinds used across crates, timestamp helpers, bulk work split over the cores, and
//! persona's threads as Linux shows them (CPU time, priority), and folders created and
//! synced so that they survive a power loss. It knows nothing about
//! HTTP, storage or async runtimes, so any stage (or an outside tool) can depend on it cheaply.

pub mod durable;
pub mod error;
pub mod message;
pub mod open_files;
pub mod parallel;
pub mod profile;
pub mod signals;
pub mod threads;
pub mod time;

pub use error::{ErrorKind, FieldError};
pub use message::MessageType;
