//! Validation and normalisation of one Segment-spec message, as Segment's API does it.
//!
//! Pure functions over JSON: the HTTP handlers and `persona import` share them, so a
//! message is accepted or rejected for the same reasons whichever way it arrives.

use chrono::{DateTime, Datelike, Utc};
use persona_core::time::{format_timestamp, parse_timestamp};
use persona_core::{FieldError, MessageType};
use serde_json::{Map, Value};

/// What the request around a message contributes to it.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// When the server received the request.
    pub received_at: DateTime<Utc>,
    /// Batch-level `sentAt`, used when a message has none of its own.
    pub sent_at: Option<DateTime<Utc>>,
    /// Batch-level `context`; a message's own keys win.
    pub context: Option<Map<String, Value>>,
    /// Batch-level `integrations`; a message's own value wins.
    pub integrations: Option<Value>,
    /// The write key the request was authenticated with.
    pub write_key: Option<String>,
    /// The client's address, stored as `context.ip` when the message has none.
    pub client_ip: Option<String>,
    /// Correct `timestamp` for the client's clock skew using `sentAt` (live traffic). Off
    /// for backfills, whose messages carry their own historical timestamps.
    pub correct_skew: bool,
}

/// A message that passed validation, ready for the log.
#[derive(Debug, Clone)]
pub struct Normalized {
    pub kind: MessageType,
    pub body: Map<String, Value>,
}

const IDENTITY_FIELDS: [&str; 2] = ["userId", "anonymousId"];
const OBJECT_FIELDS: [&str; 4] = ["properties", "traits", "context", "integrations"];
const TIME_FIELDS: [&str; 3] = ["timestamp", "originalTimestamp", "sentAt"];

/// Whether a message carries an id of its own; one without gets a generated `messageId`.
pub fn has_message_id(msg: &Map<String, Value>) -> bool {
    matches!(msg.get("messageId"), Some(Value::String(s)) if !s.is_empty())
}

/// Validates `msg` and returns it normalised, or every problem found in it.
///
/// `kind` is the endpoint's call type; `None` for batch items, which name theirs in `type`.
/// `index` is the message's position, used in the errors.
pub fn normalize(
    msg: Value,
    kind: Option<MessageType>,
    index: usize,
    env: &Envelope,
) -> Result<Normalized, Vec<FieldError>> {
    let Value::Object(mut body) = msg else {
        return Err(vec![FieldError::new(
            index,
            "",
            format!("must be a JSON object, got {}", type_name(&msg)),
        )]);
    };
    let mut errors = Vec::new();
    let err = |field: &str, reason: String| FieldError::new(index, field, reason);

    let kind = match kind {
        Some(k) => Some(k),
        None => match body.get("type") {
            None => {
                errors.push(err("type", "is required in a batch item".into()));
                None
            }
            Some(Value::String(s)) => MessageType::parse(s).or_else(|| {
                errors.push(err(
                    "type",
                    format!(
                        "must be one of track, identify, page, screen, group, alias; got {s:?}"
                    ),
                ));
                None
            }),
            Some(v) => {
                errors.push(err(
                    "type",
                    format!("must be a string, got {}", type_name(v)),
                ));
                None
            }
        },
    };

    // Identifiers: Segment accepts numbers and stores them as strings.
    let required = kind.map_or(&[][..], MessageType::required_fields);
    let id_fields = IDENTITY_FIELDS
        .iter()
        .chain(required.iter().filter(|f| **f != "event"));
    for &field in id_fields {
        if let Err(reason) = coerce_id(&mut body, field) {
            errors.push(err(field, reason));
        }
    }
    if !IDENTITY_FIELDS.iter().any(|f| body.contains_key(*f)) {
        errors.push(err(
            "userId",
            "either userId or anonymousId is required".into(),
        ));
    }
    if let Some(k) = kind {
        for field in k.required_fields() {
            if *field == "event" {
                match body.get("event") {
                    Some(Value::String(s)) if !s.trim().is_empty() => {}
                    Some(Value::String(_)) => errors.push(err("event", "must not be empty".into())),
                    Some(v) => errors.push(err(
                        "event",
                        format!("must be a string, got {}", type_name(v)),
                    )),
                    None => errors.push(err("event", "is required for track calls".into())),
                }
            } else if !body.contains_key(*field) {
                errors.push(err(field, format!("is required for {k} calls")));
            }
        }
    }
    for field in ["event", "name", "category", "messageId"] {
        if field == "event" && kind == Some(MessageType::Track) {
            continue; // checked above, with the stricter rule for track calls
        }
        match body.get(field) {
            Some(Value::String(_)) | None => {}
            Some(Value::Null) if field != "event" => {
                body.remove(field);
            }
            Some(v) => errors.push(err(
                field,
                format!("must be a string, got {}", type_name(v)),
            )),
        }
    }
    for field in OBJECT_FIELDS {
        match body.get(field) {
            Some(Value::Object(_)) | None => {}
            Some(Value::Null) => {
                body.remove(field);
            }
            Some(v) => errors.push(err(
                field,
                format!("must be an object, got {}", type_name(v)),
            )),
        }
    }
    let mut times = [None, None, None];
    for (slot, field) in times.iter_mut().zip(TIME_FIELDS) {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => match parse_timestamp(s) {
                Ok(t) => *slot = Some(t),
                Err(reason) => errors.push(err(field, reason)),
            },
            Some(v) => errors.push(err(
                field,
                format!("must be an ISO-8601 string, got {}", type_name(v)),
            )),
        }
    }
    let kind = match kind {
        Some(k) if errors.is_empty() => k,
        _ => return Err(errors),
    };

    // analytics.js sends the client clock's time as `timestamp`; other SDKs may send it as
    // `originalTimestamp`. Either way it is kept as `originalTimestamp`.
    let [timestamp, original, sent_at] = times;
    let sent_at = sent_at.or(env.sent_at);
    let corrected = match (original.or(timestamp), sent_at) {
        (Some(orig), Some(sent)) if env.correct_skew => {
            match env.received_at.checked_sub_signed(sent - orig) {
                Some(t) if (1..=9999).contains(&t.year()) => t,
                _ => {
                    return Err(vec![FieldError::new(
                        index,
                        "sentAt",
                        "is too far from timestamp to correct the clock skew",
                    )]);
                }
            }
        }
        // Without skew correction a given `timestamp` is authoritative (in a Segment export it
        // is already corrected); otherwise the client's original time, else receipt.
        _ => timestamp.or(original).unwrap_or(env.received_at),
    };
    let original = original.or(timestamp);

    body.insert("type".into(), kind.as_str().into());
    if !has_message_id(&body) {
        body.insert("messageId".into(), uuid::Uuid::new_v4().to_string().into());
    }
    body.insert(
        "receivedAt".into(),
        format_timestamp(env.received_at).into(),
    );
    body.insert("timestamp".into(), format_timestamp(corrected).into());
    match original {
        Some(t) => body.insert("originalTimestamp".into(), format_timestamp(t).into()),
        None => body.remove("originalTimestamp"),
    };
    match sent_at {
        Some(t) => body.insert("sentAt".into(), format_timestamp(t).into()),
        None => body.remove("sentAt"),
    };
    merge_envelope(&mut body, env);
    if kind == MessageType::Identify && !body.contains_key("traits") {
        // RudderStack's SDKs send identify traits only as `context.traits`; Segment's send
        // them as `traits`. Downstream reads `traits`, so copy them there (context is kept).
        if let Some(traits) = body
            .get("context")
            .and_then(|c| c.get("traits"))
            .filter(|t| t.is_object())
        {
            body.insert("traits".into(), traits.clone());
        }
    }
    body.remove("writeKey");
    if let Some(key) = &env.write_key {
        body.insert("writeKey".into(), key.clone().into());
    }
    Ok(Normalized { kind, body })
}

fn merge_envelope(body: &mut Map<String, Value>, env: &Envelope) {
    let has_context = body.contains_key("context");
    let context = body
        .entry("context")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("checked to be an object");
    if let Some(batch) = &env.context {
        for (k, v) in batch {
            context.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if let Some(ip) = &env.client_ip {
        context.entry("ip").or_insert_with(|| ip.clone().into());
    }
    if !has_context && context.is_empty() {
        body.remove("context");
    }
    if let Some(integrations) = &env.integrations {
        body.entry("integrations")
            .or_insert_with(|| integrations.clone());
    }
}

/// Turns a numeric identifier into a string; rejects other types and empty strings.
/// An absent, null or empty identifier is removed, so later checks see it as missing.
fn coerce_id(body: &mut Map<String, Value>, field: &str) -> Result<(), String> {
    match body.get(field) {
        None => Ok(()),
        Some(Value::Null) => {
            body.remove(field);
            Ok(())
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            body.remove(field);
            Ok(())
        }
        Some(Value::String(s)) if s.len() > 1024 => {
            Err(format!("is {} characters long; the limit is 1024", s.len()))
        }
        Some(Value::String(_)) => Ok(()),
        Some(Value::Number(n)) => {
            let s = n.to_string();
            body.insert(field.into(), s.into());
            Ok(())
        }
        Some(v) => Err(format!("must be a string, got {}", type_name(v))),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
