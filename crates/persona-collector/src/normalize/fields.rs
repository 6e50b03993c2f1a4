//! A message's top-level fields, each value kept as its JSON text.
//!
//! Validation reads a handful of small top-level fields; the nested objects that senders
//! fill freely (`properties`, `context`, `traits`, ...) only need to be objects. Keeping
//! every value as the text it arrived in, instead of building a tree of them and
//! serialising the tree again, halves the collector's JSON work per message.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level fields of one JSON object, in key order (as `serde_json::Map` keeps them),
/// the last of a repeated key winning (as it does there).
#[derive(Debug, Default)]
pub struct Fields<'a>(BTreeMap<Cow<'a, str>, Slot<'a>>);

/// A field's value: the sender's JSON text, or JSON text put there by normalisation.
#[derive(Debug)]
enum Slot<'a> {
    Raw(&'a RawValue),
    Json(String),
}

impl Slot<'_> {
    fn text(&self) -> &str {
        match self {
            Slot::Raw(r) => r.get(),
            Slot::Json(s) => s,
        }
    }
}

/// The JSON type of a value, told from its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl JsonKind {
    /// The type as error messages name it: "a string", "an object", ...
    pub fn name(self) -> &'static str {
        match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        }
    }

    /// The kind of the (valid, trimmed) JSON text `json`.
    pub fn of(json: &str) -> JsonKind {
        match json.trim_start().as_bytes().first() {
            Some(b'"') => JsonKind::String,
            Some(b'{') => JsonKind::Object,
            Some(b'[') => JsonKind::Array,
            Some(b't' | b'f') => JsonKind::Bool,
            Some(b'n') => JsonKind::Null,
            _ => JsonKind::Number,
        }
    }
}

/// One field's value, read on demand from its JSON text.
#[derive(Debug, Clone, Copy)]
pub struct Field<'t>(&'t str);

impl<'t> Field<'t> {
    pub fn of(raw: &'t RawValue) -> Self {
        Field(raw.get())
    }

    pub fn kind(self) -> JsonKind {
        JsonKind::of(self.0)
    }

    /// The string, when the value is one.
    pub fn as_str(self) -> Option<Cow<'t, str>> {
        if self.kind() != JsonKind::String {
            return None;
        }
        serde_json::from_str::<CowStr<'t>>(self.0).ok().map(|s| s.0)
    }

    /// A number written as serde_json writes it (`42`, `4.5`), when the value is one.
    pub fn number_text(self) -> Option<String> {
        if self.kind() != JsonKind::Number {
            return None;
        }
        serde_json::from_str::<serde_json::Number>(self.0)
            .ok()
            .map(|n| n.to_string())
    }

    /// The value's JSON text.
    pub fn json(self) -> &'t str {
        self.0
    }
}

impl<'a> Fields<'a> {
    /// The fields of `json` when it is a JSON object; `None` for any other value.
    pub fn of_object(json: &'a RawValue) -> Option<Fields<'a>> {
        if JsonKind::of(json.get()) != JsonKind::Object {
            return None;
        }
        serde_json::from_str(json.get()).ok()
    }

    pub fn get(&self, key: &str) -> Option<Field<'_>> {
        self.0.get(key).map(|s| Field(s.text()))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes a field, returning its value as the sender wrote it when it was theirs.
    pub fn remove(&mut self, key: &str) -> Option<&'a RawValue> {
        match self.0.remove(key)? {
            Slot::Raw(r) => Some(r),
            Slot::Json(_) => None,
        }
    }

    /// Sets a field to the JSON text `json`.
    pub fn set_json(&mut self, key: impl Into<Cow<'a, str>>, json: String) {
        self.0.insert(key.into(), Slot::Json(json));
    }

    /// Sets a field to a JSON string.
    pub fn set_str(&mut self, key: impl Into<Cow<'a, str>>, value: &str) {
        self.set_json(key, quoted(value));
    }

    /// Sets a field to JSON text only when it has none.
    pub fn set_json_if_absent(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        json: impl FnOnce() -> String,
    ) {
        self.0
            .entry(key.into())
            .or_insert_with(|| Slot::Json(json()));
    }

    /// The object as compact JSON text (nested values as they were written).
    pub fn to_json(&self) -> String {
        let len: usize = self
            .0
            .iter()
            .map(|(k, v)| k.len() + v.text().len() + 4)
            .sum();
        let mut out = String::with_capacity(len + 2);
        out.push('{');
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&quoted(key));
            out.push(':');
            out.push_str(value.text());
        }
        out.push('}');
        out
    }
}

/// `s` as a JSON string literal.
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some(CowStr(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.insert(key, Slot::Raw(value));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON string borrowed from the input when it has no escapes, copied when it has.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn values_keep_their_text_and_repeated_keys_keep_the_last() {
        let text = r#"{"b": {"x" : [1, 2]}, "a\u0041": "s\n", "b": 5}"#;
        let f = Fields::of_object(raw(text)).unwrap();
        assert_eq!(f.get("b").unwrap().json(), "5");
        assert_eq!(f.get("aA").unwrap().as_str().unwrap(), "s\n");
        assert_eq!(f.to_json(), r#"{"aA":"s\n","b":5}"#);
        let nested = Fields::of_object(raw(r#"{"p": {"x" : [1, 2]}}"#)).unwrap();
        assert_eq!(nested.to_json(), r#"{"p":{"x" : [1, 2]}}"#);
        assert!(Fields::of_object(raw("[1]")).is_none());
    }

    #[test]
    fn kinds_and_numbers_read_as_serde_json_reads_them() {
        let kinds = ["null", "true", "-1.5e2", "\"x\"", "[]", "{}"].map(JsonKind::of);
        use JsonKind::*;
        assert_eq!(kinds, [Null, Bool, Number, String, Array, Object]);
        let f = Fields::of_object(raw(r#"{"n": 42, "f": 1e2, "s": "7"}"#)).unwrap();
        assert_eq!(f.get("n").unwrap().number_text().unwrap(), "42");
        assert_eq!(
            f.get("f").unwrap().number_text().unwrap(),
            serde_json::json!(1e2).to_string()
        );
        assert_eq!(f.get("s").unwrap().number_text(), None);
    }
}
