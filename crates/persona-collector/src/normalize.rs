//! Validation and normalisation of one Segment-spec message, as Segment's API does it.
//!
//! Pure functions over JSON text: the HTTP handlers and `persona import` share them, so a
//! message is accepted or rejected for the same reasons whichever way it arrives. Only the
//! top level of a message is read into fields ([`Fields`]); nested objects go to the log as
//! the sender wrote them.

mod fields;

use chrono::{DateTime, Datelike, Utc};
use persona_core::time::{format_timestamp, parse_timestamp};
use persona_core::{FieldError, MessageType};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use fields::{Field, Fields, JsonKind, quoted};

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
    /// The normalised message as compact JSON at its top level; nested objects are kept
    /// as the sender wrote them.
    pub json: Vec<u8>,
}

const IDENTITY_FIELDS: [&str; 2] = ["userId", "anonymousId"];
const OBJECT_FIELDS: [&str; 4] = ["properties", "traits", "context", "integrations"];
const TIME_FIELDS: [&str; 3] = ["timestamp", "originalTimestamp", "sentAt"];

/// Validates the JSON value `msg` and returns it normalised, or every problem found in it.
///
/// `kind` is the endpoint's call type; `None` for batch items, which name theirs in `type`.
/// `index` is the message's position, used in the errors.
pub fn normalize(
    msg: &RawValue,
    kind: Option<MessageType>,
    index: usize,
    env: &Envelope,
) -> Result<Normalized, Vec<FieldError>> {
    match Fields::of_object(msg) {
        Some(body) => normalize_fields(body, kind, index, env),
        None => Err(vec![FieldError::new(
            index,
            "",
            format!(
                "must be a JSON object, got {}",
                JsonKind::of(msg.get()).name()
            ),
        )]),
    }
}

/// [`normalize`] for a message whose top level is already read.
pub fn normalize_fields(
    mut body: Fields<'_>,
    kind: Option<MessageType>,
    index: usize,
    env: &Envelope,
) -> Result<Normalized, Vec<FieldError>> {
    let mut errors = Vec::new();
    let err = |field: &str, reason: String| FieldError::new(index, field, reason);

    let kind = match kind {
        Some(k) => Some(k),
        None => match body.get("type") {
            None => {
                errors.push(err("type", "is required in a batch item".into()));
                None
            }
            Some(v) => match v.as_str() {
                Some(s) => MessageType::parse(&s).or_else(|| {
                    errors.push(err(
                        "type",
                        format!(
                            "must be one of track, identify, page, screen, group, alias; got {s:?}"
                        ),
                    ));
                    None
                }),
                None => {
                    errors.push(err(
                        "type",
                        format!("must be a string, got {}", v.kind().name()),
                    ));
                    None
                }
            },
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
    if !IDENTITY_FIELDS.iter().any(|f| body.contains(f)) {
        errors.push(err(
            "userId",
            "either userId or anonymousId is required".into(),
        ));
    }
    if let Some(k) = kind {
        for field in k.required_fields() {
            if *field == "event" {
                match body.get("event").map(|v| (v, v.as_str())) {
                    Some((_, Some(s))) if !s.trim().is_empty() => {}
                    Some((_, Some(_))) => errors.push(err("event", "must not be empty".into())),
                    Some((v, None)) => errors.push(err(
                        "event",
                        format!("must be a string, got {}", v.kind().name()),
                    )),
                    None => errors.push(err("event", "is required for track calls".into())),
                }
            } else if !body.contains(field) {
                errors.push(err(field, format!("is required for {k} calls")));
            }
        }
    }
    for field in ["event", "name", "category", "messageId"] {
        if field == "event" && kind == Some(MessageType::Track) {
            continue; // checked above, with the stricter rule for track calls
        }
        match body.get(field).map(Field::kind) {
            Some(JsonKind::String) | None => {}
            Some(JsonKind::Null) if field != "event" => {
                body.remove(field);
            }
            Some(other) => errors.push(err(
                field,
                format!("must be a string, got {}", other.name()),
            )),
        }
    }
    for field in OBJECT_FIELDS {
        match body.get(field).map(Field::kind) {
            Some(JsonKind::Object) | None => {}
            Some(JsonKind::Null) => {
                body.remove(field);
            }
            Some(other) => errors.push(err(
                field,
                format!("must be an object, got {}", other.name()),
            )),
        }
    }
    let mut times = [None, None, None];
    for (slot, field) in times.iter_mut().zip(TIME_FIELDS) {
        let Some(v) = body.get(field) else { continue };
        match (v.kind(), v.as_str()) {
            (JsonKind::Null, _) => {}
            (_, Some(s)) => match parse_timestamp(&s) {
                Ok(t) => *slot = Some(t),
                Err(reason) => errors.push(err(field, reason)),
            },
            (other, None) => errors.push(err(
                field,
                format!("must be an ISO-8601 string, got {}", other.name()),
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

    body.set_str("type", kind.as_str());
    let has_id = body
        .get("messageId")
        .and_then(Field::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_id {
        body.set_str("messageId", &uuid::Uuid::new_v4().to_string());
    }
    body.set_str("receivedAt", &format_timestamp(env.received_at));
    body.set_str("timestamp", &format_timestamp(corrected));
    match original {
        Some(t) => body.set_str("originalTimestamp", &format_timestamp(t)),
        None => {
            body.remove("originalTimestamp");
        }
    };
    match sent_at {
        Some(t) => body.set_str("sentAt", &format_timestamp(t)),
        None => {
            body.remove("sentAt");
        }
    };
    merge_envelope(&mut body, env);
    if kind == MessageType::Identify && !body.contains("traits") {
        // RudderStack's SDKs send identify traits only as `context.traits`; Segment's send
        // them as `traits`. Downstream reads `traits`, so copy them there (context is kept).
        let traits = body
            .get("context")
            .and_then(|c| Fields::of_object(raw(c.json())?))
            .and_then(|c| c.get("traits").map(|t| (t.kind(), t.json().to_owned())));
        if let Some((JsonKind::Object, traits)) = traits {
            body.set_json("traits", traits);
        }
    }
    body.remove("writeKey");
    if let Some(key) = &env.write_key {
        body.set_str("writeKey", key);
    }
    Ok(Normalized {
        kind,
        json: body.to_json().into_bytes(),
    })
}

/// `json` (text that is known to be valid) as a raw value to read fields of.
fn raw(json: &str) -> Option<&RawValue> {
    serde_json::from_str(json).ok()
}

/// Adds the batch's `context` keys and the client's address to the message's `context`,
/// and the batch's `integrations` when the message has none.
fn merge_envelope(body: &mut Fields<'_>, env: &Envelope) {
    if env.context.is_some() || env.client_ip.is_some() {
        let had_context = body.contains("context");
        let merged = {
            let mut context = body
                .get("context")
                .and_then(|c| Fields::of_object(raw(c.json())?))
                .unwrap_or_default();
            for (k, v) in env.context.iter().flatten() {
                context.set_json_if_absent(k.as_str(), || v.to_string());
            }
            if let Some(ip) = &env.client_ip {
                context.set_json_if_absent("ip", || quoted(ip));
            }
            (had_context || !context.is_empty()).then(|| context.to_json())
        };
        if let Some(merged) = merged {
            body.set_json("context", merged);
        }
    }
    if let Some(integrations) = &env.integrations {
        body.set_json_if_absent("integrations", || integrations.to_string());
    }
}

/// Turns a numeric identifier into a string; rejects other types and empty strings.
/// An absent, null or empty identifier is removed, so later checks see it as missing.
fn coerce_id(body: &mut Fields<'_>, field: &str) -> Result<(), String> {
    let Some(v) = body.get(field) else {
        return Ok(());
    };
    match v.kind() {
        JsonKind::Null => {}
        JsonKind::String => {
            let s = v.as_str().unwrap_or_default();
            if s.trim().is_empty() {
                // removed below
            } else if s.len() > 1024 {
                return Err(format!("is {} characters long; the limit is 1024", s.len()));
            } else {
                return Ok(());
            }
        }
        JsonKind::Number => {
            let n = v.number_text().unwrap_or_default();
            body.set_str(field.to_owned(), &n);
            return Ok(());
        }
        other => return Err(format!("must be a string, got {}", other.name())),
    }
    body.remove(field);
    Ok(())
}

#[cfg(test)]
mod tests;
