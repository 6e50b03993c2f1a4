//! The dead-letter topic: records that are not valid messages, kept whole with the reason,
//! as Kafka Connect's `errors.deadletterqueue.topic.name` keeps them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::context::log_client_message;
use crate::decode::Incoming;

/// How long one wait for the broker to take the dead letters lasts; the stop flag is
/// checked in between.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Header names of a dead letter.
pub const ERROR_HEADER: &str = "persona.error";
pub const TOPIC_HEADER: &str = "persona.topic";
pub const PARTITION_HEADER: &str = "persona.partition";
pub const OFFSET_HEADER: &str = "persona.offset";
/// Set on a dead letter sent without its value, which was too large for the producer.
pub const TRUNCATED_HEADER: &str = "persona.truncated";

/// Counts deliveries the broker refused, so a group is known stored only when none was.
#[derive(Default)]
pub(crate) struct Deliveries {
    failed: AtomicUsize,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // The options are shared with the consumer: the producer ignoring the consumer's
        // own settings is expected, not worth a warning at every start.
        let level = match fac {
            "CONFWARN" => rdkafka::config::RDKafkaLogLevel::Debug,
            _ => level,
        };
        log_client_message("dead-letter producer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka dead-letter producer");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            tracing::warn!(%error, "a dead letter was not delivered; it is sent again");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An idempotent producer to the dead-letter topic.
pub(crate) struct DeadLetters {
    producer: BaseProducer<Deliveries>,
    topic: String,
}

impl DeadLetters {
    pub fn new(mut config: ClientConfig, topic: String) -> Result<Self, KafkaError> {
        // Every dead letter is on all in-sync replicas, once, before the offsets of the
        // records it stands for are committed.
        config.set("enable.idempotence", "true").set("acks", "all");
        Ok(DeadLetters {
            producer: config.create_with_context(Deliveries::default())?,
            topic,
        })
    }

    /// Sends `rejects` and waits until the broker has them all (the client retries each
    /// for `message.timeout.ms`, 5 minutes by default). `Err` when any was refused in the
    /// end, or `stop` was set while waiting; the caller sends the whole group again: a dead
    /// letter twice is harmless, one lost is not.
    pub fn send(&self, rejects: &[(Incoming, String)], stop: &AtomicBool) -> Result<(), String> {
        let stopped = || stop.load(Ordering::Relaxed);
        self.producer.context().failed.store(0, Ordering::Relaxed);
        for (record, reason) in rejects {
            let (partition, offset) = (record.partition.to_string(), record.offset.to_string());
            let headers = OwnedHeaders::new_with_capacity(5)
                .insert(header(ERROR_HEADER, reason))
                .insert(header(TOPIC_HEADER, &record.topic))
                .insert(header(PARTITION_HEADER, &partition))
                .insert(header(OFFSET_HEADER, &offset));
            let mut next = BaseRecord::<[u8], [u8]>::to(&self.topic).headers(headers.clone());
            if let Some(key) = &record.key {
                next = next.key(key.as_slice());
            }
            if let Some(payload) = &record.payload {
                next = next.payload(payload.as_slice());
            }
            // A full local queue drains as the broker takes what it holds.
            while let Err((error, back)) = self.producer.send(next) {
                next = match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => {
                        self.producer.poll(Duration::from_millis(100));
                        back
                    }
                    // Sent again and again it would never fit: the headers say where
                    // the record is and why it was refused.
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) if back.payload.is_some() => {
                        let headers = headers.clone().insert(header(TRUNCATED_HEADER, "value"));
                        let mut bare = BaseRecord::to(&self.topic).headers(headers);
                        bare.key = back.key;
                        bare
                    }
                    _ => return Err(format!("cannot send a dead letter: {error}")),
                };
                if stopped() {
                    return Err("stopped".into());
                }
            }
        }
        // Waited out rather than sent again: those still queued are still being tried.
        while self.producer.flush(FLUSH_WAIT).is_err() {
            if stopped() {
                return Err("stopped before the dead-letter topic took its records".into());
            }
        }
        match self.producer.context().failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(format!("{n} dead letters were refused by the broker")),
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
