//! Validation and normalisation of one Segment-spec message, as Segment's API does it.
//!
//! Pure functions over JSON: the HTTP handlers and `persona import` share them, so a
//! message is accepted or rejected for the same reasons whichever way it arrives. They work
//! on messages parsed one level deep ([`crate::shallow`]): nested objects are checked for
//! type and stored as sent.

use chrono::{DateTime, Datelike, Utc};
use persona_core::time::{format_timestamp, parse_timestamp};
use persona_core::{FieldError, MessageType};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::backend::sent_from_backend;
use crate::shallow::{self, Field, Kind, Object};

/// What the request around a message contributes to it.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// When the server received the request.
    pub received_at: DateTime<Utc>,
    /// Batch-level `sentAt`, used when a message has none of its own.
    pub sent_at: Option<DateTime<Utc>>,
    /// Batch-level `context`; a message's own keys win.
    pub context: Option<Object<'static>>,
    /// Batch-level `integrations` (an object); a message's own value wins.
    pub integrations: Option<Box<RawValue>>,
    /// The write key the request was authenticated with.
    pub write_key: Option<String>,
    /// The client's address, stored as `context.ip` when the message has none and was
    /// not sent by a backend SDK.
    pub client_ip: Option<String>,
    /// Correct `timestamp` for the client's clock skew using `sentAt` (live traffic). Off
    /// for backfills, whose messages carry their own historical timestamps.
    pub correct_skew: bool,
}

/// A message that passed validation, ready for the log.
#[derive(Debug, Clone)]
pub struct Normalized<'a> {
    pub kind: MessageType,
    pub body: Object<'a>,
}

impl Normalized<'_> {
    /// The message as the log stores it.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.body.to_bytes()
    }
}

/// A normalised message as the log stores it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub kind: MessageType,
    pub bytes: Vec<u8>,
}

impl Stored {
    /// The message as a JSON value, for a reader that wants to look into it.
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.bytes).expect("the collector writes valid JSON")
    }
}

const IDENTITY_FIELDS: [&str; 2] = ["userId", "anonymousId"];
const OBJECT_FIELDS: [&str; 4] = ["properties", "traits", "context", "integrations"];
const TIME_FIELDS: [&str; 3] = ["timestamp", "originalTimestamp", "sentAt"];

/// Whether a message carries an id of its own; one without gets a generated `messageId`.
pub fn has_message_id(msg: &Object<'_>) -> bool {
    msg.get("messageId")
        .and_then(Field::string)
        .is_some_and(|s| !s.is_empty())
}

/// The error for a message that is not a JSON object.
pub fn not_an_object(index: usize, kind: Kind) -> Vec<FieldError> {
    vec![FieldError::new(
        index,
        "",
        format!("must be a JSON object, got {}", kind.name()),
    )]
}

/// A message already parsed into a [`Value`] as an [`Object`]: each field written out on
/// its own, since a parsed `Value` holds nothing a full parse would refuse, so its text
/// needs no parse again.
pub fn object_of(map: Map<String, Value>) -> Object<'static> {
    let mut object = Object::default();
    for (k, v) in map {
        object.insert(k, Field::of(&v));
    }
    object
}

/// [`normalize`] for a message already parsed into a [`Value`] (the processor's tests and
/// benches build theirs so), straight to the bytes the log stores.
pub fn normalize_value(
    msg: Value,
    kind: Option<MessageType>,
    index: usize,
    env: &Envelope,
) -> Result<Stored, Vec<FieldError>> {
    let Value::Object(map) = msg else {
        let text = serde_json::value::to_raw_value(&msg).expect("JSON values serialise");
        return Err(not_an_object(index, shallow::kind(&text)));
    };
    let n = normalize(object_of(map), kind, index, env)?;
    Ok(Stored {
        kind: n.kind,
        bytes: n.to_bytes(),
    })
}

/// Validates `msg` and returns it normalised, or every problem found in it.
///
/// `kind` is the endpoint's call type; `None` for batch items, which name theirs in `type`.
/// `index` is the message's position, used in the errors.
pub fn normalize<'a>(
    mut body: Object<'a>,
    kind: Option<MessageType>,
    index: usize,
    env: &Envelope,
) -> Result<Normalized<'a>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let err = |field: &str, reason: String| FieldError::new(index, field, reason);

    let kind = match kind {
        Some(k) => Some(k),
        None => match body.get("type") {
            None => {
                errors.push(err("type", "is required in a batch item".into()));
                None
            }
            Some(v) => match v.text() {
                Ok(s) => MessageType::parse(&s).or_else(|| {
                    errors.push(err(
                        "type",
                        format!(
                            "must be one of track, identify, page, screen, group, alias; got {s:?}"
                        ),
                    ));
                    None
                }),
                Err(k) => {
                    errors.push(err("type", format!("must be a string, got {}", k.name())));
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
    if !IDENTITY_FIELDS.iter().any(|f| body.contains_key(f)) {
        errors.push(err(
            "userId",
            "either userId or anonymousId is required".into(),
        ));
    }
    if let Some(k) = kind {
        for field in k.required_fields() {
            if *field == "event" {
                match body.get("event").map(Field::text) {
                    Some(Ok(s)) if !s.trim().is_empty() => {}
                    Some(Ok(_)) => errors.push(err("event", "must not be empty".into())),
                    Some(Err(k)) => {
                        errors.push(err("event", format!("must be a string, got {}", k.name())))
                    }
                    None => errors.push(err("event", "is required for track calls".into())),
                }
            } else if !body.contains_key(field) {
                errors.push(err(field, format!("is required for {k} calls")));
            }
        }
    }
    for field in ["event", "name", "category", "messageId"] {
        if field == "event" && kind == Some(MessageType::Track) {
            continue; // checked above, with the stricter rule for track calls
        }
        match body.get(field).map(Field::kind) {
            Some(Kind::String) | None => {}
            // Null says no more than absent, as for the other optional fields (on a call
            // other than track, `event` is optional too).
            Some(Kind::Null) => {
                body.remove(field);
            }
            Some(k) => errors.push(err(field, format!("must be a string, got {}", k.name()))),
        }
    }
    for field in OBJECT_FIELDS {
        match body.get(field).map(Field::kind) {
            Some(Kind::Object) | None => {}
            Some(Kind::Null) => {
                body.remove(field);
            }
            Some(k) => errors.push(err(field, format!("must be an object, got {}", k.name()))),
        }
    }
    let mut times = [None, None, None];
    for (slot, field) in times.iter_mut().zip(TIME_FIELDS) {
        let Some(v) = body.get(field) else { continue };
        match v.text() {
            Ok(s) => match parse_timestamp(&s) {
                Ok(t) => *slot = Some(t),
                Err(reason) => errors.push(err(field, reason)),
            },
            Err(Kind::Null) => {}
            Err(k) => errors.push(err(
                field,
                format!("must be an ISO-8601 string, got {}", k.name()),
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

    body.insert("type", Field::of(kind.as_str()));
    if !has_message_id(&body) {
        let mut text = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        body.insert("messageId", Field::of(&*id));
    }
    body.insert("receivedAt", Field::of(&format_timestamp(env.received_at)));
    body.insert("timestamp", Field::of(&format_timestamp(corrected)));
    match original {
        Some(t) => body.insert("originalTimestamp", Field::of(&format_timestamp(t))),
        None => {
            body.remove("originalTimestamp");
        }
    }
    match sent_at {
        Some(t) => body.insert("sentAt", Field::of(&format_timestamp(t))),
        None => {
            body.remove("sentAt");
        }
    }
    let context_traits = merge_envelope(&mut body, env, kind == MessageType::Identify);
    // An empty `traits` object says no more than none at all.
    let no_traits = |body: &Object<'_>| {
        body.get("traits").is_none_or(|t| {
            let text = t.raw().get();
            t.kind() == Kind::Object && text[1..text.len() - 1].trim().is_empty()
        })
    };
    if let Some(traits) = context_traits
        && no_traits(&body)
    {
        // RudderStack's SDKs send identify traits only as `context.traits`; Segment's send
        // them as `traits`. Downstream reads `traits`, so copy them there (context is kept).
        body.insert("traits", Field::Owned(traits));
    }
    body.remove("writeKey");
    if let Some(key) = &env.write_key {
        body.insert("writeKey", Field::of(key));
    }
    Ok(Normalized { kind, body })
}

/// Adds the batch's context keys and the client's address (for client-side messages) to
/// the message's `context` where it lacks them, and the batch's `integrations` where it has none. Returns
/// `context.traits` when `want_traits` and it is an object.
fn merge_envelope(
    body: &mut Object<'_>,
    env: &Envelope,
    want_traits: bool,
) -> Option<Box<RawValue>> {
    if let Some(integrations) = &env.integrations
        && !body.contains_key("integrations")
    {
        body.insert("integrations", Field::Owned(integrations.clone()));
    }
    let mut context = match body.get("context") {
        // Checked to be an object.
        Some(c) => Object::of_raw(c.raw()).expect("checked to be an object"),
        None => Object::default(),
    };
    let before = context.len();
    for (k, v) in env.context.iter().flat_map(Object::iter) {
        if !context.contains_key(k) {
            context.insert(k.to_owned(), v.clone());
        }
    }
    // From the merged context: the batch's `context.traits` counts too.
    let traits = context
        .get("traits")
        .filter(|t| want_traits && t.kind() == Kind::Object)
        .map(|t| t.raw().to_owned());
    if let Some(ip) = &env.client_ip
        && !context.contains_key("ip")
        && !sent_from_backend(body, &context)
    {
        context.insert("ip", Field::of(ip));
    }
    // Rewritten only when something was added: otherwise it stays as sent.
    if context.len() > before {
        let field = context.to_field();
        body.insert("context", field);
    }
    traits
}

/// Turns a numeric identifier into a string; rejects other types and empty strings.
/// An absent, null or empty identifier is removed, so later checks see it as missing.
fn coerce_id(body: &mut Object<'_>, field: &str) -> Result<(), String> {
    let Some(v) = body.get(field) else {
        return Ok(());
    };
    let (kind, len, blank) = match v.text() {
        Ok(s) => (Kind::String, s.len(), s.trim().is_empty()),
        Err(k) => (k, 0, false),
    };
    match kind {
        Kind::Null => {
            body.remove(field);
            Ok(())
        }
        Kind::String if blank => {
            body.remove(field);
            Ok(())
        }
        Kind::String if len > 1024 => Err(format!("is {len} bytes long; the limit is 1024 bytes")),
        Kind::String => Ok(()),
        Kind::Number => {
            // An integer's digits as sent: an id past u64 (a 128-bit database key) would
            // come out of a parse as a rounded float.
            let raw = v.raw().get();
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                body.insert(field.to_owned(), Field::of(raw));
                return Ok(());
            }
            let n: serde_json::Number =
                serde_json::from_str(raw).map_err(|e| format!("is not a usable number ({e})"))?;
            // A whole number written as `1000.0` or `1e3` names the same customer as `1000`.
            let text = match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 2f64.powi(53) => (f as i64).to_string(),
                _ => n.to_string(),
            };
            body.insert(field.to_owned(), Field::of(&text));
            Ok(())
        }
        k => Err(format!("must be a string, got {}", k.name())),
    }
}

#[cfg(test)]
mod tests;
