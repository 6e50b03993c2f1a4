//! From a logged message to a row of the lake's `events` table.
//!
//! Column names follow the Segment warehouse schema in snake case. `properties`, `traits`
//! and `context` are kept as the JSON text that was logged, byte for byte (keys in the
//! sender's order), for `json_get` and any engine's JSON functions; `revenue` is lifted
//! out of `properties` (`revenue`, else `total`) as the profiles count it.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The Arrow schema of the lake's Parquet files (the `date` and `hour` partition columns
/// are in the paths, not the files).
pub fn events_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
        let time = |name: &str, nullable| {
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                nullable,
            )
        };
        Arc::new(Schema::new(vec![
            Field::new("log_offset", DataType::UInt64, false),
            text("message_id", false),
            text("type", false),
            text("event", true),
            text("name", true),
            text("user_id", true),
            text("anonymous_id", true),
            text("group_id", true),
            text("previous_id", true),
            time("timestamp", false),
            time("original_timestamp", true),
            time("sent_at", true),
            time("received_at", false),
            Field::new("revenue", DataType::Float64, true),
            text("properties", true),
            text("traits", true),
            text("context", true),
        ]))
    });
    SCHEMA.clone()
}

/// The fields of a logged message the lake keeps. The collector has validated and
/// normalised it, so `type`, `messageId`, `timestamp` and `receivedAt` are there.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    message_id: Cow<'a, str>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    group_id: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    original_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sent_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    received_at: Cow<'a, str>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
    #[serde(borrow)]
    traits: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
}

/// A Hive partition: the UTC date and hour of the events in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Partition {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
}

impl Partition {
    pub(crate) fn of(t: DateTime<Utc>) -> Self {
        Partition {
            year: t.year(),
            month: t.month(),
            day: t.day(),
            hour: t.hour(),
        }
    }

    /// The partition's folder under the table, `date=YYYY-MM-DD/hour=HH`.
    pub fn path(&self) -> String {
        format!(
            "date={:04}-{:02}-{:02}/hour={:02}",
            self.year, self.month, self.day, self.hour
        )
    }
}

/// A record the lake could not read, with the reason. Never expected (the collector
/// validated every message); counted and logged rather than stopping the lake.
#[derive(Debug)]
pub(crate) struct Unreadable(pub String);

/// Rows of one partition being gathered.
pub(crate) struct Rows {
    offset: UInt64Builder,
    message_id: StringBuilder,
    kind: StringBuilder,
    event: StringBuilder,
    name: StringBuilder,
    user_id: StringBuilder,
    anonymous_id: StringBuilder,
    group_id: StringBuilder,
    previous_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    original_timestamp: TimestampMicrosecondBuilder,
    sent_at: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    revenue: Float64Builder,
    properties: StringBuilder,
    traits: StringBuilder,
    context: StringBuilder,
    len: usize,
}

/// Reads a logged message: its partition and a closure that appends its row.
pub(crate) fn read(payload: &[u8]) -> Result<(Partition, Parsed<'_>), Unreadable> {
    let m: Message<'_> = serde_json::from_slice(payload)
        .map_err(|e| Unreadable(format!("not a logged message: {e}")))?;
    let time = |field: &str, text: &str| {
        persona_core::time::parse_timestamp(text).map_err(|e| Unreadable(format!("{field}: {e}")))
    };
    let timestamp = time("timestamp", &m.timestamp)?;
    let received_at = time("receivedAt", &m.received_at)?;
    // Optional times that do not parse are left out rather than costing the event.
    let optional = |text: &Option<Cow<'_, str>>| {
        text.as_deref()
            .and_then(|t| persona_core::time::parse_timestamp(t).ok())
    };
    let parsed = Parsed {
        original_timestamp: optional(&m.original_timestamp),
        sent_at: optional(&m.sent_at),
        timestamp,
        received_at,
        revenue: m
            .properties
            .and_then(|p| persona_stream::revenue_of(p.get())),
        message: m,
    };
    Ok((Partition::of(timestamp), parsed))
}

/// A message read, ready to append.
pub(crate) struct Parsed<'a> {
    message: Message<'a>,
    timestamp: DateTime<Utc>,
    original_timestamp: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    revenue: Option<f64>,
}

/// An id or name as text: a JSON string unquoted, a number as written, null as null.
fn id_text(value: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = value?.get();
    if raw == "null" {
        return None;
    }
    if raw.starts_with('"') {
        return serde_json::from_str::<Cow<'_, str>>(raw).ok();
    }
    Some(Cow::Borrowed(raw))
}

/// JSON text as logged; `null` as a missing value.
fn json_text(value: Option<&RawValue>) -> Option<&str> {
    value.map(RawValue::get).filter(|t| *t != "null")
}

impl Rows {
    pub fn new() -> Self {
        let time = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
        Rows {
            offset: UInt64Builder::new(),
            message_id: StringBuilder::new(),
            kind: StringBuilder::new(),
            event: StringBuilder::new(),
            name: StringBuilder::new(),
            user_id: StringBuilder::new(),
            anonymous_id: StringBuilder::new(),
            group_id: StringBuilder::new(),
            previous_id: StringBuilder::new(),
            timestamp: time(),
            original_timestamp: time(),
            sent_at: time(),
            received_at: time(),
            revenue: Float64Builder::new(),
            properties: StringBuilder::new(),
            traits: StringBuilder::new(),
            context: StringBuilder::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, offset: u64, p: &Parsed<'_>) {
        let m = &p.message;
        self.offset.append_value(offset);
        self.message_id.append_value(&m.message_id);
        self.kind.append_value(&m.kind);
        self.event.append_option(id_text(m.event));
        self.name.append_option(id_text(m.name));
        self.user_id.append_option(id_text(m.user_id));
        self.anonymous_id.append_option(id_text(m.anonymous_id));
        self.group_id.append_option(id_text(m.group_id));
        self.previous_id.append_option(id_text(m.previous_id));
        self.timestamp.append_value(p.timestamp.timestamp_micros());
        self.original_timestamp
            .append_option(p.original_timestamp.map(|t| t.timestamp_micros()));
        self.sent_at
            .append_option(p.sent_at.map(|t| t.timestamp_micros()));
        self.received_at
            .append_value(p.received_at.timestamp_micros());
        self.revenue.append_option(p.revenue);
        self.properties.append_option(json_text(m.properties));
        self.traits.append_option(json_text(m.traits));
        self.context.append_option(json_text(m.context));
        self.len += 1;
    }

    /// The gathered rows as one batch; the builders start empty again.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.offset.finish()),
            Arc::new(self.message_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.event.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.anonymous_id.finish()),
            Arc::new(self.group_id.finish()),
            Arc::new(self.previous_id.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.original_timestamp.finish()),
            Arc::new(self.sent_at.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.revenue.finish()),
            Arc::new(self.properties.finish()),
            Arc::new(self.traits.finish()),
            Arc::new(self.context.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(events_schema(), columns)
            .expect("the builders follow the schema column for column")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, TimestampMicrosecondType};

    #[test]
    fn revenue_is_read_as_the_profiles_read_it() {
        let revenue = |properties: &str| {
            let logged = format!(
                r#"{{"type":"track","event":"Order Completed","userId":"u1","messageId":"m","timestamp":"2024-05-01T00:00:00Z","receivedAt":"2024-05-01T00:00:00Z","properties":{properties}}}"#
            );
            read(logged.as_bytes()).unwrap().1.revenue
        };
        // A repeated key: the last wins, as in the profiles, instead of costing the amount.
        assert_eq!(revenue(r#"{"revenue":1,"revenue":7.5}"#), Some(7.5));
        assert_eq!(revenue(r#"{"total":" 3 "}"#), Some(3.0));
        assert_eq!(revenue(r#"{"revenue":"x"}"#), None);
    }

    #[test]
    fn a_logged_message_becomes_a_row_with_its_json_kept_as_sent() {
        let logged = br#"{"type":"track","event":"Order Completed","userId":"u1",
            "properties":{"total":"12.50","z":1,"a":2},"context":{"ip":"10.0.0.1"},
            "messageId":"m1","timestamp":"2024-05-01T10:30:00.000Z",
            "receivedAt":"2024-05-01T10:30:01.000Z","sentAt":"bad","writeKey":"secret"}"#;
        let (partition, parsed) = read(logged).unwrap();
        assert_eq!(partition.path(), "date=2024-05-01/hour=10");
        let mut rows = Rows::new();
        rows.push(7, &parsed);
        let batch = rows.finish();
        assert_eq!(batch.num_rows(), 1);
        let text = |name: &str| {
            let c = batch.column_by_name(name).unwrap().as_string::<i32>();
            (!c.is_null(0)).then(|| c.value(0).to_string())
        };
        assert_eq!(text("event").as_deref(), Some("Order Completed"));
        assert_eq!(text("user_id").as_deref(), Some("u1"));
        assert_eq!(text("anonymous_id"), None);
        // Kept byte for byte, in the sender's key order.
        assert_eq!(
            text("properties").as_deref(),
            Some(r#"{"total":"12.50","z":1,"a":2}"#)
        );
        let revenue = batch
            .column_by_name("revenue")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(revenue.value(0), 12.5);
        let sent = batch
            .column_by_name("sent_at")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert!(sent.is_null(0), "an unreadable sentAt is left out");
        // The write key is a credential: not a column.
        assert!(batch.column_by_name("write_key").is_none());
        assert!(!format!("{batch:?}").contains("secret"));
    }

    #[test]
    fn numeric_ids_are_kept_as_written_and_garbage_is_refused() {
        let (_, parsed) = read(
            br#"{"type":"identify","userId":42,"messageId":"m","timestamp":"2024-05-01T00:00:00Z","receivedAt":"2024-05-01T00:00:00Z"}"#,
        )
        .unwrap();
        let mut rows = Rows::new();
        rows.push(0, &parsed);
        let batch = rows.finish();
        let ids = batch.column_by_name("user_id").unwrap().as_string::<i32>();
        assert_eq!(ids.value(0), "42");
        assert!(read(b"not json").is_err());
        assert!(
            read(br#"{"type":"track","messageId":"m","timestamp":"x","receivedAt":"x"}"#)
                .err()
                .unwrap()
                .0
                .contains("timestamp")
        );
    }
}
