//! `persona bench kafka`: the Kafka source's rate from a topic into the durable event log,
//! beside a bare consumer reading the same topic in the same run (the ceiling: what the
//! client and broker give before persona validates, normalises and syncs anything).
//!
//! The topic is filled first with synthetic Segment messages; each side then reads all of
//! it in a consumer group of its own, timed from its first record to its last, so the
//! group's join is not counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use persona_log::{EventLog, LogConfig};
use persona_source_kafka::{KafkaMetrics, KafkaSourceConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;

use super::profiles::synthetic_messages;
use crate::cli::BenchKafkaArgs;
use crate::client::progress_bar;

/// Longest the bench waits for a side to read the whole topic.
const PATIENCE: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
struct Side {
    records: u64,
    seconds: f64,
    records_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    brokers: String,
    topic: String,
    partitions: i32,
    records: u64,
    mean_record_bytes: f64,
    produce_seconds: f64,
    bare_consumer: Side,
    persona_source: Side,
    /// The source's rate over the bare consumer's.
    ratio: f64,
}

pub async fn kafka(args: BenchKafkaArgs) -> anyhow::Result<()> {
    let topic = format!("persona-bench-{}", std::process::id());
    let messages: Vec<String> = synthetic_messages(args.profiles, args.events_per_profile)
        .map(|m| m.to_string())
        .collect();
    let records = messages.len() as u64;
    let mean_record_bytes =
        messages.iter().map(String::len).sum::<usize>() as f64 / messages.len().max(1) as f64;
    create_topic(&args.brokers, &topic, args.partitions).await?;
    let produce_seconds = produce(&args.brokers, &topic, &messages)?;
    drop(messages);

    eprintln!("bare consumer: reading {records} records");
    let brokers = args.brokers.clone();
    let read_topic = topic.clone();
    let bare =
        tokio::task::spawn_blocking(move || bare_read(&brokers, &read_topic, records)).await??;
    eprintln!("persona source: reading {records} records into a fresh event log");
    let source = source_read(&args, &topic, records).await?;
    let report = Report {
        brokers: args.brokers,
        topic,
        partitions: args.partitions,
        records,
        mean_record_bytes,
        produce_seconds,
        ratio: source.records_per_sec / bare.records_per_sec,
        bare_consumer: bare,
        persona_source: source,
    };
    println!(
        "Kafka source into the durable log: {:.0} records/s; bare consumer: {:.0} records/s; ratio {:.2}",
        report.persona_source.records_per_sec, report.bare_consumer.records_per_sec, report.ratio
    );
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn client(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(brokers).create()?;
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .with_context(|| format!("cannot reach the brokers at {brokers}"))?;
    for result in created {
        result.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
    }
    Ok(())
}

/// Sends every message, keyed by nothing (spread over the partitions), and waits until the
/// broker has them all; returns the seconds it took.
fn produce(brokers: &str, topic: &str, messages: &[String]) -> anyhow::Result<f64> {
    let producer: BaseProducer = client(brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let bar = progress_bar(messages.len() as u64, "filling the topic");
    let started = Instant::now();
    for m in messages {
        let mut record = BaseRecord::<(), str>::to(topic).payload(m.as_str());
        while let Err((e, back)) = producer.send(record) {
            if e.rdkafka_error_code() != Some(rdkafka::error::RDKafkaErrorCode::QueueFull) {
                anyhow::bail!("cannot send to {topic}: {e}");
            }
            producer.poll(Duration::from_millis(10));
            record = back;
        }
        bar.inc(1);
    }
    producer.flush(PATIENCE)?;
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

/// Consumer settings both sides share: tansu's group joins wait about half the session
/// timeout, which must not dominate a short run.
fn group_options() -> [(&'static str, &'static str); 1] {
    [("session.timeout.ms", "6000")]
}

fn bare_read(brokers: &str, topic: &str, records: u64) -> anyhow::Result<Side> {
    let mut config = client(brokers);
    config
        .set("group.id", format!("{topic}-bare"))
        .set("auto.offset.reset", "earliest");
    for (k, v) in group_options() {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + PATIENCE;
    let mut first = None;
    let mut read = 0u64;
    let mut bytes = 0usize;
    while read < records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "read {read} of {records} records"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            // The payload is copied, as the source copies it.
            bytes += rdkafka::Message::payload(&m?).map_or(0, |p| p.to_vec().len());
            first.get_or_insert_with(|| (Instant::now(), 1));
            read += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(side(records, first))
}

async fn source_read(args: &BenchKafkaArgs, topic: &str, records: u64) -> anyhow::Result<Side> {
    let dir = tempfile::tempdir()?;
    let (log, _) = EventLog::open(dir.path().join("log"), LogConfig::default(), Arc::new(()))?;
    let log = Arc::new(log);
    let config = KafkaSourceConfig {
        brokers: Some(args.brokers.clone()),
        topics: vec![topic.into()],
        group: Some(format!("{topic}-source")),
        max_batch: Some(args.max_batch),
        options: group_options()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        ..Default::default()
    }
    .validate()
    .map_err(anyhow::Error::msg)?
    .expect("brokers are set");
    let metrics = KafkaMetrics::default();
    let source = persona_source_kafka::spawn(
        config,
        log.clone(),
        persona_collector::CollectorConfig::default().max_message_bytes,
        metrics.clone(),
        tokio::runtime::Handle::current(),
    )?;
    let deadline = Instant::now() + PATIENCE;
    let mut first = None;
    while log.next_offset() < records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the source stored {} of {records} records",
            log.next_offset()
        );
        let stored = log.next_offset();
        if stored > 0 {
            first.get_or_insert_with(|| (Instant::now(), stored));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let side = side(records, first);
    drop(source);
    anyhow::ensure!(
        metrics.records("rejected") == 0,
        "the source rejected {} synthetic records",
        metrics.records("rejected")
    );
    Ok(side)
}

/// The rate over the records after the first ones seen (`first`: when, and how many were
/// in by then), so that neither side's group join is counted.
fn side(records: u64, first: Option<(Instant, u64)>) -> Side {
    let (seconds, counted) = first.map_or((0.0, 0), |(t, seen)| {
        (t.elapsed().as_secs_f64(), records - seen)
    });
    Side {
        records,
        seconds,
        records_per_sec: counted as f64 / seconds.max(f64::EPSILON),
    }
}
