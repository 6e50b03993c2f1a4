//! Reading a log record: the few fields the processor needs, borrowed from the JSON.
//!
//! The collector has already validated the message's own fields (ids, `type`, `event`,
//! timestamps), so those are read strictly. Nested fields that senders fill freely
//! (`properties.revenue`, `context.userAgent`, ...) are read leniently: a value of an
//! unexpected type is ignored rather than costing the event.

use std::borrow::Cow;

use persona_core::MessageType;
use persona_core::profile::{EmailAction, Observation, ObservedKind};
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::config::ValidStreamConfig;

/// `context.library.name` of messages written by `persona import-profiles`: CRM
/// attributes, applied to traits but not counted as behaviour.
pub const ENRICHMENT_SOURCE: &str = "persona-import-profiles";

/// A string where one is expected, a number, or anything else (then ignored).
///
/// Deserialised by hand rather than as an untagged enum: serde's untagged enums buffer
/// every value before trying the variants, which made this the processor's costliest field.
#[derive(Default)]
pub(crate) enum Lenient<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    /// Absent or null.
    #[default]
    Missing,
    /// Any other JSON value (objects, arrays, booleans), skipped.
    Ignored,
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Lenient<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Owned(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Num(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Num(v as f64))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Ignored)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Missing)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Missing)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Lenient::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::Ignored)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient::Ignored)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl Lenient<'_> {
    fn str(&self) -> Option<&str> {
        match self {
            Lenient::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number, or a string holding one (some senders quote revenue).
    fn number(&self) -> Option<f64> {
        match self {
            Lenient::Num(n) => Some(*n),
            Lenient::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|n: &f64| n.is_finite())
    }
}

/// Implements `Deserialize` for a struct of `Default` fields read from a JSON object by key:
/// unknown keys are skipped, and the last of a repeated key wins, as in a full parse into a
/// map. (serde's derive refuses a repeated field, and the collector stores nested objects as
/// sent, so `{"revenue": 1, "revenue": 2}` would otherwise cost the event.) Any other JSON
/// value reads as the default, as [`Lenient`] does: `"library": "x"` in a context is odd,
/// not a reason to drop the event.
macro_rules! last_key_wins {
    ($name:ident { $($key:literal => $field:ident),* $(,)? }) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(field_identifier)]
                #[allow(non_camel_case_types)]
                enum Key {
                    $(#[serde(rename = $key)] $field,)*
                    #[serde(other)]
                    Other,
                }
                struct V<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_unit<E>(self) -> Result<Self::Value, E> {
                        Ok($name::default())
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok($name::default())
                    }
                    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<Key>()? {
                            match key {
                                $(Key::$field => out.$field = map.next_value()?,)*
                                Key::Other => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_any(V(PhantomData))
            }
        }
    };
}

#[derive(Default)]
pub(crate) struct Properties<'a> {
    revenue: Lenient<'a>,
    total: Lenient<'a>,
    category: Lenient<'a>,
}
last_key_wins!(Properties { "revenue" => revenue, "total" => total, "category" => category });

impl Properties<'_> {
    /// `revenue`, else `total`.
    fn amount(&self) -> Option<f64> {
        self.revenue.number().or_else(|| self.total.number())
    }
}

/// The amount in a message's `properties` (JSON text) as the profiles count it: `revenue`,
/// else `total`, a number or a string holding one, the last of a repeated key. The lake's
/// `revenue` column reads it here, so SQL sums what the profiles do.
pub fn revenue_of(properties: &str) -> Option<f64> {
    serde_json::from_str::<Properties<'_>>(properties)
        .ok()?
        .amount()
}

#[derive(Default)]
pub(crate) struct Library<'a> {
    name: Lenient<'a>,
}
last_key_wins!(Library { "name" => name });

#[derive(Default)]
pub(crate) struct Context<'a> {
    pub user_agent: Lenient<'a>,
    pub ip: Lenient<'a>,
    library: Option<Library<'a>>,
}
last_key_wins!(Context { "userAgent" => user_agent, "ip" => ip, "library" => library });

/// The fields of a stored message the processor reads.
#[derive(Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    #[serde(rename = "userId", borrow, default)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(rename = "anonymousId", borrow, default)]
    pub anonymous_id: Option<Cow<'a, str>>,
    #[serde(rename = "previousId", borrow, default)]
    pub previous_id: Lenient<'a>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(rename = "messageId", borrow, default)]
    pub message_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(rename = "receivedAt", borrow, default)]
    received_at: Option<Cow<'a, str>>,
    #[serde(rename = "writeKey", borrow, default)]
    pub write_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
    #[serde(default)]
    pub traits: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    pub context: Option<Context<'a>>,
}

/// A record that cannot be read as a message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(pub String);

/// A parsed message with its kind and event time resolved.
pub(crate) struct Event<'a> {
    pub msg: Incoming<'a>,
    pub kind: MessageType,
    /// Event time, Unix milliseconds: its `timestamp`, or when it was received if that is
    /// earlier.
    pub at: i64,
}

impl<'a> Event<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<Self, Malformed> {
        let msg: Incoming<'a> =
            serde_json::from_slice(payload).map_err(|e| Malformed(e.to_string()))?;
        let kind = MessageType::parse(&msg.kind)
            .ok_or_else(|| Malformed(format!("unknown type {:?}", msg.kind)))?;
        // The stored message keeps the time that was sent; profiles count no event as
        // later than its receipt.
        let at = persona_core::time::event_time_ms(&msg.timestamp, msg.received_at.as_deref())
            .map_err(|e| Malformed(format!("timestamp {e}")))?;
        if msg.user_id.is_none() && msg.anonymous_id.is_none() {
            return Err(Malformed("neither userId nor anonymousId".into()));
        }
        Ok(Event { msg, kind, at })
    }

    /// When the collector received it, Unix milliseconds.
    pub fn received_at(&self) -> Option<i64> {
        let t = self.msg.received_at.as_deref()?;
        persona_core::time::parse_timestamp(t)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.msg.context.as_ref()?.user_agent.str()
    }

    pub fn ip(&self) -> Option<&str> {
        self.msg.context.as_ref()?.ip.str()
    }

    pub fn previous_id(&self) -> Option<&str> {
        self.msg.previous_id.str().filter(|s| !s.is_empty())
    }

    /// Written by `persona import-profiles`: traits only, not behaviour.
    pub fn is_enrichment(&self) -> bool {
        self.msg
            .context
            .as_ref()
            .and_then(|c| c.library.as_ref())
            .and_then(|l| l.name.str())
            == Some(ENRICHMENT_SOURCE)
    }

    /// What the profile counts of this event.
    pub fn observation(&self, config: &ValidStreamConfig) -> Observation<'_> {
        let props = self.msg.properties.as_ref();
        let kind = match self.kind {
            MessageType::Page | MessageType::Screen => ObservedKind::View {
                screen: self.kind == MessageType::Screen,
                category: self
                    .msg
                    .category
                    .as_deref()
                    .or_else(|| props.and_then(|p| p.category.str())),
            },
            MessageType::Track => {
                let name = self.msg.event.as_deref().unwrap_or_default();
                let is = |names: &[String]| names.iter().any(|n| n == name);
                ObservedKind::Track {
                    name,
                    purchase: is(&config.purchase_events)
                        .then(|| props.and_then(Properties::amount).unwrap_or(0.0)),
                    email: if is(&config.email_open_events) {
                        Some(EmailAction::Opened)
                    } else if is(&config.email_click_events) {
                        Some(EmailAction::Clicked)
                    } else {
                        None
                    },
                    app_open: is(&config.app_open_events),
                }
            }
            MessageType::Identify | MessageType::Group | MessageType::Alias => ObservedKind::Other,
        };
        Observation { at: self.at, kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_nested_types_are_ignored_not_fatal() {
        let raw = br#"{"type":"track","event":"Order Completed","userId":"u","timestamp":"2024-05-01T10:00:00.000Z",
            "properties":{"revenue":"12.50","category":5,"products":[{"x":1}]},
            "context":{"userAgent":{"odd":true},"ip":"10.1.2.3"}}"#;
        let e = Event::parse(raw).unwrap();
        assert_eq!(e.user_agent(), None);
        assert_eq!(e.ip(), Some("10.1.2.3"));
        match e.observation(&ValidStreamConfig::default()).kind {
            ObservedKind::Track { purchase, .. } => assert_eq!(purchase, Some(12.5)),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn a_repeated_nested_key_keeps_its_last_value() {
        // The collector stores nested objects as sent, repeated keys and all.
        let raw = br#"{"type":"track","event":"Order Completed","userId":"u","timestamp":"2024-05-01T10:00:00.000Z",
            "properties":{"revenue":1,"revenue":7.5,"revenue":"x","revenue":9},
            "context":{"ip":"10.0.0.1","library":{"name":"a","name":"b"},"ip":"10.0.0.2"}}"#;
        let e = Event::parse(raw).unwrap();
        assert_eq!(e.ip(), Some("10.0.0.2"));
        match e.observation(&ValidStreamConfig::default()).kind {
            ObservedKind::Track { purchase, .. } => assert_eq!(purchase, Some(9.0)),
            k => panic!("{k:?}"),
        }
        let library = e.msg.context.as_ref().and_then(|c| c.library.as_ref());
        assert_eq!(library.and_then(|l| l.name.str()), Some("b"));
    }

    #[test]
    fn odd_nested_objects_read_as_empty_not_fatal() {
        let raw = br#"{"type":"track","event":"Order Completed","userId":"u","timestamp":"2024-05-01T10:00:00.000Z",
            "properties":{"revenue":3},"context":{"library":"analytics.js","ip":"10.0.0.3"}}"#;
        let e = Event::parse(raw).unwrap();
        assert_eq!(e.ip(), Some("10.0.0.3"));
        let raw =
            br#"{"type":"track","event":"x","userId":"u","timestamp":"2024-05-01T10:00:00.000Z",
            "context":{"library":[1,{"name":"y"}]}}"#;
        assert!(Event::parse(raw).is_ok());
    }

    #[test]
    fn an_event_time_after_receipt_counts_as_the_receipt() {
        let at = |timestamp: &str| {
            let raw = format!(
                r#"{{"type":"track","event":"x","userId":"u","timestamp":"{timestamp}",
                "receivedAt":"2026-12-06T10:00:00.000Z"}}"#
            );
            Event::parse(raw.as_bytes()).unwrap().at
        };
        let received = at("2026-12-06T10:00:00.000Z");
        assert_eq!(at("9999-12-31T23:59:59.999Z"), received);
        assert_eq!(at("2026-12-06T09:00:00.000Z"), received - 3_600_000);
    }

    #[test]
    fn a_record_without_ids_is_malformed() {
        let raw = br#"{"type":"track","event":"x","timestamp":"2024-05-01T10:00:00.000Z"}"#;
        assert!(Event::parse(raw).is_err());
    }
}
