//! One Kafka record into one message for the event log, through the collector's own
//! validation: a message is accepted or rejected for the same reasons whether it came over
//! HTTP or through Kafka.

use chrono::{DateTime, Utc};
use persona_collector::normalize::{Envelope, normalize};
use persona_collector::repair::parse_or_repair;
use persona_collector::shallow::{Field, Kind, NotAnObject, Object};

/// Namespace of the ids given to records that carry no `messageId` (see [`stable_id`]).
const KAFKA_IDS: uuid::Uuid = uuid::uuid!("5b8f2d8e-2b8a-4f1e-9a55-0f7c3c2d9e61");

/// A record as read, copied out of the consumer's buffers.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The record's timestamp in milliseconds, when it has one.
    pub timestamp_ms: Option<i64>,
}

impl Incoming {
    /// Where the record is, for logs and the dead-letter headers.
    pub fn place(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// The id a record without a `messageId` gets: the same for the same record whenever it
/// is read, so a record read again (after a crash before its offset was committed, or a
/// rebalance) is dropped by the processor's dedupe instead of counted twice. The record's
/// timestamp is part of it: a topic made again starts its offsets at 0, and its new
/// records must not take the ids of the old ones.
pub fn stable_id(record: &Incoming) -> String {
    let name = format!(
        "{}/{}/{}/{}",
        record.topic,
        record.partition,
        record.offset,
        record.timestamp_ms.unwrap_or(-1)
    );
    uuid::Uuid::new_v5(&KAFKA_IDS, name.as_bytes()).to_string()
}

/// The message as the log stores it, or why the record is not one.
///
/// The text is read as the collector reads a request body: the slips it mends over HTTP
/// (lone surrogates, `NaN`, ...) are mended here too.
///
/// `receivedAt` is the record's timestamp (when it entered Kafka), not the moment it is
/// read: a backlog read hours later keeps its events' times, and the clock-skew
/// correction from `sentAt` measures the sender's clock against the time it sent. A
/// record without a usable timestamp (none, not after 1970, or ahead of this clock) is
/// taken as received now.
pub fn decode(record: &Incoming, max_bytes: usize, now: DateTime<Utc>) -> Result<Vec<u8>, String> {
    let Some(payload) = record.payload.as_deref() else {
        return Err("the record has no value (a tombstone?): expected one JSON message".into());
    };
    if payload.len() > max_bytes {
        return Err(format!(
            "message is {} bytes; the limit is {} KB",
            payload.len(),
            max_bytes / 1024
        ));
    }
    let mut repaired = None;
    let (_, parsed) = parse_or_repair(payload, &mut repaired, Object::parse);
    let mut msg = parsed.map_err(|e| match e {
        NotAnObject::Invalid(e) => format!("not JSON: {e}"),
        NotAnObject::Other(kind) => {
            format!(
                "must be a JSON object (one message per record), got {}",
                kind.name()
            )
        }
    })?;
    if lacks_message_id(&msg) {
        let id = stable_id(record);
        msg.insert("messageId", Field::of(&id));
    }
    let received_at = record
        .timestamp_ms
        .filter(|ms| *ms > 0)
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .filter(|t| *t <= now)
        .unwrap_or(now);
    let envelope = Envelope {
        received_at,
        correct_skew: true,
        ..Default::default()
    };
    match normalize(msg, None, 0, &envelope) {
        Ok(normalized) => Ok(normalized.to_bytes()),
        Err(errors) => Err(errors
            .iter()
            .map(|e| match e.field.as_str() {
                "" => e.reason.clone(),
                field => format!("`{field}` {}", e.reason),
            })
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// Absent, null or empty: the collector would generate one. Any other value is the
/// sender's, kept for the collector's checks (a number is refused there, as over HTTP,
/// rather than silently replaced).
fn lacks_message_id(msg: &Object<'_>) -> bool {
    match msg.get("messageId") {
        None => true,
        Some(field) if field.kind() == Kind::Null => true,
        Some(field) => field.string().is_some_and(|s| s.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn record(payload: &str) -> Incoming {
        Incoming {
            topic: "events".into(),
            partition: 3,
            offset: 41,
            key: None,
            payload: Some(payload.as_bytes().to_vec()),
            timestamp_ms: Some(1_700_000_000_000),
        }
    }

    fn stored(payload: &str) -> Value {
        let now = Utc::now();
        serde_json::from_slice(&decode(&record(payload), 32 * 1024, now).unwrap()).unwrap()
    }

    #[test]
    fn a_record_without_an_id_gets_the_same_one_each_time() {
        let msg = r#"{"type":"track","event":"Order Completed","userId":"u1"}"#;
        let first = stored(msg);
        assert_eq!(first["messageId"], stored(msg)["messageId"]);
        assert_eq!(first["messageId"], stable_id(&record(msg)));
        let mut elsewhere = record(msg);
        elsewhere.offset = 42;
        let mut remade = record(msg);
        remade.timestamp_ms = Some(1_600_000_000_000);
        for other in [elsewhere, remade] {
            let other: Value =
                serde_json::from_slice(&decode(&other, 32 * 1024, Utc::now()).unwrap()).unwrap();
            assert_ne!(first["messageId"], other["messageId"]);
        }
        // A sender's own id is kept.
        let own = stored(r#"{"type":"track","event":"x","userId":"u1","messageId":"m-1"}"#);
        assert_eq!(own["messageId"], "m-1");
    }

    #[test]
    fn received_at_is_when_the_record_entered_kafka() {
        let msg = stored(r#"{"type":"identify","userId":"u1"}"#);
        assert_eq!(msg["receivedAt"], "2023-11-14T22:13:20.000Z");
        // A record stamped in the future (a producer's wrong clock) is taken as read now.
        let mut ahead = record(r#"{"type":"identify","userId":"u1"}"#);
        let now = Utc::now();
        ahead.timestamp_ms = Some(now.timestamp_millis() + 3_600_000);
        let msg: Value = serde_json::from_slice(&decode(&ahead, 1 << 15, now).unwrap()).unwrap();
        assert_eq!(
            msg["receivedAt"],
            as_written(now),
            "a future record time is not believed"
        );
        ahead.timestamp_ms = Some(0);
        let msg: Value = serde_json::from_slice(&decode(&ahead, 1 << 15, now).unwrap()).unwrap();
        assert_eq!(msg["receivedAt"], as_written(now), "nor one of 1970");
    }

    fn as_written(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    #[test]
    fn bad_records_say_why() {
        let now = Utc::now();
        let reason = |p: &str| decode(&record(p), 1024, now).unwrap_err();
        assert!(
            reason("{not json").starts_with("not JSON"),
            "{}",
            reason("{not json")
        );
        assert!(reason("[1]").contains("got an array"), "{}", reason("[1]"));
        assert!(reason(r#"{"type":"track","userId":"u"}"#).contains("`event` is required"));
        assert!(reason(r#"{"event":"x","userId":"u"}"#).contains("`type` is required"));
        assert!(reason(r#"{"type":"track","event":"x"}"#).contains("userId or anonymousId"));
        let big = format!(r#"{{"type":"identify","userId":"{}"}}"#, "u".repeat(2000));
        assert!(reason(&big).contains("the limit is 1 KB"));
        assert!(
            reason(r#"{"type":"identify","userId":"u","messageId":7}"#).contains("`messageId`"),
            "a sender's id of the wrong type is refused, not replaced"
        );
        let mut empty = record("");
        empty.payload = None;
        assert!(decode(&empty, 1024, now).unwrap_err().contains("no value"));
    }
}
