//! persona's Kafka source: Segment-spec messages read from Kafka topics into the event log.
//!
//! Producers that already write events to Kafka (a backend service, a stream processor,
//! a Kafka Connect pipeline) feed persona without going through HTTP. Each record's value
//! is one Segment message in JSON (`type` names the call: `track`, `identify`, ...), checked
//! by the collector's own validation, so a message is accepted or rejected for the same
//! reasons whichever way it arrives.
//!
//! Delivery is at least once into the log and exactly once into profiles: a record's
//! offset is committed only after its message is durable in the event log (or, for a
//! record that is not a valid message, in the dead-letter topic). A record read again
//! after a crash or a rebalance carries the same `messageId` (its own, or one derived from
//! its topic, partition and offset), so the processor's dedupe drops the copy.
//!
//! The dedupe that drops copies is the processor's, over the last 500,000 records of the
//! server's own log: the promise holds for one server per consumer group, with commits
//! every second.
//!
//! The source runs on a thread of its own with librdkafka's consumer.

mod config;
mod context;
mod dead_letter;
mod decode;
mod metrics;
mod source;

pub use config::{KafkaSourceConfig, ValidKafkaSource};
pub use dead_letter::{
    ERROR_HEADER, OFFSET_HEADER, PARTITION_HEADER, TOPIC_HEADER, TRUNCATED_HEADER,
};
pub use decode::stable_id;
pub use metrics::KafkaMetrics;
pub use source::{KafkaSource, SourceError, spawn};
