//! The source's thread: read a batch of records, append the valid messages to the event
//! log, send the rest to the dead-letter topic, and only then store the batch's offsets
//! for the client's next commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use persona_core::parallel::split_work;
use persona_log::{AppendError, EventLog};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::config::ValidKafkaSource;
use crate::context::SourceContext;
use crate::dead_letter::DeadLetters;
use crate::decode::{Incoming, decode};
use crate::metrics::KafkaMetrics;

/// How long one poll waits for a first record; the stop flag is checked in between.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// How long a batch keeps gathering after its first record: records that arrive together
/// share one append and so one fsync.
const LINGER: Duration = Duration::from_millis(20);

/// Bytes per append, at most: one append is one group commit. A log whose queue is
/// smaller than this refuses the append as too large, and the source halves it.
const APPEND_BYTES: usize = 8 << 20;

/// Longest a stopping server waits for the source to leave its group. The client waits
/// for the group's coordinator, which may be unreachable; what is left uncommitted is read
/// again after the next start.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Fewest records a decoding thread is given: fewer are not worth a thread.
const DECODE_PART: usize = 256;

/// Wait before trying again a store that failed.
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// Settings the source gives the client unless `options` say otherwise.
const DEFAULTS: [(&str, &str); 4] = [
    // The client stops fetching a partition once it holds 100,000 of its records unread,
    // and by default looks again only a second later: a source slower than the broker
    // (validation and fsync cost more than reading) would wait that second each time.
    ("fetch.queue.backoff.ms", "10"),
    // A new group starts at the oldest record: events sent before persona first read the
    // topic are kept, not skipped.
    ("auto.offset.reset", "earliest"),
    // What a crash leaves uncommitted is read again and must fall within the processor's
    // dedupe window (500,000 records by default): a second of records is far less.
    ("auto.commit.interval.ms", "1000"),
    // For the lag metric.
    ("statistics.interval.ms", "10000"),
];

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("sources.kafka: the Kafka client refused its settings: {0}")]
    Client(#[from] KafkaError),
    #[error("cannot start the Kafka source's thread: {0}")]
    Thread(std::io::Error),
}

/// The running source. Dropping it stops it after the batch in hand and commits the
/// offsets of what it stored.
pub struct KafkaSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(
                "the Kafka source did not leave its group within {STOP_WAIT:?}; what it had \
                 not committed is read again at the next start"
            );
        }
    }
}

/// Starts reading `config.topics` into `log`. Messages larger than `max_message_bytes`
/// are rejected, as the collector rejects them.
pub fn spawn(
    config: ValidKafkaSource,
    log: Arc<EventLog>,
    max_message_bytes: usize,
    metrics: KafkaMetrics,
    runtime: tokio::runtime::Handle,
) -> Result<KafkaSource, SourceError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.options {
        client.set(key, value);
    }
    let dead_letters = match &config.dead_letter_topic {
        Some(topic) => Some(DeadLetters::new(client.clone(), topic.clone())?),
        None => None,
    };
    for (key, value) in DEFAULTS {
        if !config.options.contains_key(key) {
            client.set(key, value);
        }
    }
    client
        .set("group.id", &config.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer<SourceContext> = client.create_with_context(SourceContext {
        metrics: metrics.clone(),
    })?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(brokers = %config.brokers, topics = ?config.topics, group = %config.group,
        "reading Segment messages from Kafka");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        consumer,
        dead_letters,
        log,
        runtime,
        metrics,
        max_batch: config.max_batch,
        max_message_bytes,
        stop: stop.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("persona-kafka".into())
        .spawn(move || reader.run())
        .map_err(SourceError::Thread)?;
    Ok(KafkaSource {
        stop,
        thread: Some(thread),
    })
}

struct Reader {
    consumer: BaseConsumer<SourceContext>,
    dead_letters: Option<DeadLetters>,
    log: Arc<EventLog>,
    runtime: tokio::runtime::Handle,
    metrics: KafkaMetrics,
    max_batch: usize,
    max_message_bytes: usize,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(self) {
        self.metrics.set_running(true);
        self.read_until_stopped();
        self.metrics.set_running(false);
        // Dropping the consumer leaves the group and commits the offsets stored.
    }

    fn read_until_stopped(&self) {
        while !self.stopping() {
            let batch = self.gather();
            if batch.is_empty() {
                continue;
            }
            if let Err(why) = self.store(&batch) {
                // Nothing of the batch is committed: it is read again after a restart.
                tracing::error!(%why, "the Kafka source stops");
                return;
            }
            self.commit_later(&batch);
        }
    }

    /// Up to `max_batch` records: those that have come by `LINGER` after the first.
    fn gather(&self) -> Vec<Incoming> {
        let mut batch = Vec::new();
        let mut until: Option<Instant> = None;
        while batch.len() < self.max_batch {
            let wait = match until {
                None => POLL_WAIT,
                Some(t) => t.saturating_duration_since(Instant::now()),
            };
            match self.consumer.poll(wait) {
                Some(Ok(m)) => {
                    batch.push(Incoming {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                    until.get_or_insert_with(|| Instant::now() + LINGER);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading from Kafka");
                    break;
                }
                None => break,
            }
        }
        batch
    }

    /// The batch's valid messages into the log and its rejects into the dead-letter topic,
    /// waiting out a log that is behind; `Err` when the log has failed for good or the
    /// source is stopping with part of the batch unstored.
    fn store(&self, batch: &[Incoming]) -> Result<(), String> {
        let now = Utc::now();
        // Validation is most of the source's work: it is spread over the cores, as the
        // collector's concurrent requests are.
        let mut records: Vec<&Incoming> = batch.iter().collect();
        let decoded = split_work(&mut records, DECODE_PART, |part| {
            part.iter()
                .map(|r| decode(r, self.max_message_bytes, now))
                .collect::<Vec<_>>()
        });
        let mut valid = Vec::with_capacity(batch.len());
        let mut rejects = Vec::new();
        for (record, outcome) in batch.iter().zip(decoded.into_iter().flatten()) {
            match outcome {
                Ok(bytes) => valid.push((record, bytes)),
                Err(reason) => rejects.push((record.clone(), reason)),
            }
        }
        let accepted = valid.len();
        let (mut records, mut chunk) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for (record, message) in valid {
            bytes += message.len();
            records.push(record);
            chunk.push(message);
            if bytes >= APPEND_BYTES {
                self.append(
                    &std::mem::take(&mut records),
                    Some(std::mem::take(&mut chunk)),
                    now,
                )?;
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            self.append(&records, Some(chunk), now)?;
        }
        self.metrics.accepted(accepted);
        if !rejects.is_empty() {
            self.reject(&rejects)?;
            self.metrics.rejected(rejects.len());
        }
        Ok(())
    }

    /// Appends the messages of `records` (`decoded` already, when given), waiting out a
    /// log that is behind.
    fn append(
        &self,
        records: &[&Incoming],
        mut decoded: Option<Vec<Vec<u8>>>,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        loop {
            // An append takes its messages; one that must be tried again decodes them
            // again (the same bytes: decoding depends only on the record and `now`),
            // rather than every batch keeping a copy for the rare retry.
            let messages = decoded.take().unwrap_or_else(|| {
                records
                    .iter()
                    .map(|r| decode(r, self.max_message_bytes, now).expect("valid when read"))
                    .collect()
            });
            let wait = match self.runtime.block_on(self.log.append(messages)) {
                Ok(_) => return Ok(()),
                Err(AppendError::TooLarge { .. }) if records.len() > 1 => {
                    let (first, second) = records.split_at(records.len() / 2);
                    self.append(first, None, now)?;
                    return self.append(second, None, now);
                }
                Err(AppendError::Overloaded { retry_after }) => retry_after,
                Err(e @ AppendError::Unwritable(_)) => {
                    tracing::warn!(error = %e, "the Kafka source waits for the event log");
                    RETRY_WAIT
                }
                Err(e) => return Err(e.to_string()),
            };
            if self.stopping() {
                return Err("stopping with a batch not yet stored".into());
            }
            std::thread::sleep(wait);
        }
    }

    /// Rejects go to the dead-letter topic when there is one (until it takes them), and
    /// to the server's log in any case.
    fn reject(&self, rejects: &[(Incoming, String)]) -> Result<(), String> {
        for (record, reason) in rejects.iter().take(10) {
            tracing::warn!(record = %record.place(), %reason, "rejected a Kafka record");
        }
        if rejects.len() > 10 {
            tracing::warn!(more = rejects.len() - 10, "rejected more Kafka records");
        }
        let Some(dead_letters) = &self.dead_letters else {
            return Ok(());
        };
        while let Err(e) = dead_letters.send(rejects, &self.stop) {
            if self.stopping() {
                return Err(format!("stopping with dead letters not yet delivered: {e}"));
            }
            tracing::warn!(error = %e, "the dead letters are sent again");
            std::thread::sleep(RETRY_WAIT);
        }
        Ok(())
    }

    /// Stores the batch's offsets for the client's next commit (every second, and when the
    /// source stops or gives up a partition).
    fn commit_later(&self, batch: &[Incoming]) {
        let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for r in batch {
            let offset = last.entry((&r.topic, r.partition)).or_insert(r.offset);
            *offset = (*offset).max(r.offset);
        }
        for ((topic, partition), offset) in last {
            // A partition given up meanwhile is read again by its new owner from its last
            // commit; the processor's dedupe drops the records stored twice.
            if let Err(e) = self.consumer.store_offset(topic, partition, offset) {
                tracing::debug!(error = %e, topic, partition, "cannot store an offset");
            }
        }
    }
}
