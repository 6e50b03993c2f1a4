//! JSON objects parsed one level deep.
//!
//! A Segment message is a dozen top-level fields around nested objects (`properties`,
//! `context`, `traits`) that the collector checks for type but does not look into, apart
//! from `context`. Parsing only the top level, keeping each value as the text it arrived
//! as, and writing the message back from those texts skips building and freeing a
//! `serde_json::Value` for every nested key: that build and the re-serialisation were a
//! third of a single-event request's time in the HTTP workers. Nested values are stored as
//! sent, byte for byte.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What kind of JSON value a field holds, told from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// The kind as error messages name it ("must be a string, got a number").
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// The kind of a value serde_json has parsed (and so validated): its text has no leading
/// whitespace, and its first byte tells the kind.
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// One value of an [`Object`].
#[derive(Debug, Clone)]
pub enum Field<'a> {
    /// As the client sent it.
    Raw(&'a RawValue),
    /// Made or rewritten by the collector.
    Owned(Box<RawValue>),
}

impl<'a> Field<'a> {
    /// The value as sent, borrowed for as long as the text it came from.
    pub fn sent(&self) -> Option<&'a RawValue> {
        match self {
            Field::Raw(r) => Some(r),
            Field::Owned(_) => None,
        }
    }

    pub fn raw(&self) -> &RawValue {
        match self {
            Field::Raw(r) => r,
            Field::Owned(b) => b,
        }
    }

    pub fn kind(&self) -> Kind {
        kind(self.raw())
    }

    /// The string the field holds, borrowed unless it has escapes; or, when it holds
    /// something else, the kind it holds.
    pub fn text(&self) -> Result<Cow<'_, str>, Kind> {
        let raw = self.raw().get();
        match kind(self.raw()) {
            Kind::String => Ok(match serde_json::from_str::<&str>(raw) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(serde_json::from_str(raw).expect("a parsed JSON string")),
            }),
            other => Err(other),
        }
    }

    /// The string the field holds, if it holds one.
    pub fn string(&self) -> Option<Cow<'_, str>> {
        self.text().ok()
    }

    /// A field holding `v` (a string, a number...).
    pub fn of(v: &(impl Serialize + ?Sized)) -> Field<'static> {
        Field::Owned(serde_json::value::to_raw_value(v).expect("JSON values serialise"))
    }

    pub fn into_owned(self) -> Field<'static> {
        match self {
            Field::Raw(r) => Field::Owned(r.to_owned()),
            Field::Owned(b) => Field::Owned(b),
        }
    }
}

/// A JSON object parsed one level deep: its keys in the order they came, each once (the
/// last of a repeated key wins, as in a full parse), and their values' text.
///
/// A list, not a map: a message has a dozen keys, and looking through them costs less than
/// hashing or ordering them.
#[derive(Debug, Clone, Default)]
pub struct Object<'a> {
    fields: Vec<(Cow<'a, str>, Field<'a>)>,
}

/// Why text is not a JSON object.
#[derive(Debug)]
pub enum NotAnObject {
    Invalid(serde_json::Error),
    Other(Kind),
}

impl<'a> Object<'a> {
    /// Parses `text` as an object, one level deep. The error says why not: not JSON at
    /// all, or JSON of another kind.
    ///
    /// Text that only a full parse would refuse is given one first, so that what is
    /// accepted is exactly what `serde_json::Value` accepts: everything stored parses again
    /// downstream.
    pub fn parse(text: &'a [u8]) -> Result<Object<'a>, NotAnObject> {
        if needs_full_parse(text)
            && let Err(e) = serde_json::from_slice::<serde_json::Value>(text)
        {
            return Err(NotAnObject::Invalid(e));
        }
        serde_json::from_slice(text).map_err(|e| match serde_json::from_slice::<&RawValue>(text) {
            Ok(raw) => NotAnObject::Other(kind(raw)),
            Err(_) => NotAnObject::Invalid(e),
        })
    }

    /// The object a value of an already parsed object holds (`None` when it holds another
    /// kind). Its text was checked with the whole (see [`Object::parse`]), or made by the
    /// collector, so it is only skimmed.
    pub fn of_raw(raw: &'a RawValue) -> Option<Object<'a>> {
        serde_json::from_str(raw.get()).ok()
    }

    pub fn get(&self, key: &str) -> Option<&Field<'a>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn remove(&mut self, key: &str) -> Option<Field<'a>> {
        let at = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.swap_remove(at).1)
    }

    /// Sets `key` to `value`, in place of any value it had.
    pub fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Field<'a>) {
        let key = key.into();
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.fields.push((key, value)),
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Field<'a>)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn into_owned(self) -> Object<'static> {
        let fields = self.fields.into_iter();
        Object {
            fields: fields
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
        }
    }

    /// Writes the object as JSON.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match k {
                // Borrowed from the input only when it had no escapes, and the collector's
                // own keys have none to make: as written, it is a valid JSON string.
                Cow::Borrowed(k) => {
                    out.push(b'"');
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'"');
                }
                Cow::Owned(k) => serde_json::to_writer(&mut *out, k).expect("a Vec takes writes"),
            }
            out.push(b':');
            out.extend_from_slice(v.raw().get().as_bytes());
        }
        out.push(b'}');
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let len = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.raw().get().len() + 4);
        let mut out = Vec::with_capacity(len.sum::<usize>() + 2);
        self.write(&mut out);
        out
    }

    /// The object as a field.
    pub fn to_field(&self) -> Field<'static> {
        let text = String::from_utf8(self.to_bytes()).expect("written from UTF-8 parts");
        Field::Owned(RawValue::from_string(text).expect("written as a JSON object"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Object<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
            type Value = Object<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'a>, M::Error> {
                let mut object = Object::default();
                while let Some(Key(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    object.insert(key, Field::Raw(value));
                }
                Ok(object)
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor(PhantomData))
    }
}

/// Nesting deeper than this gets a full parse (serde_json refuses 128 levels or more).
const DEEP: usize = 100;
/// A run of more digits than this may be a number out of `f64`'s range.
const LONG_NUMBER: usize = 300;

/// Whether `text` holds anything that skipping a value does not check and a full parse
/// does: a number with an exponent or very many digits (out of range?), a `\u` escape (a
/// lone surrogate?) or deep nesting. SDKs seldom send any of these.
fn needs_full_parse(text: &[u8]) -> bool {
    let (mut depth, mut digits, mut previous) = (0usize, 0usize, b' ');
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        i += 1;
        match b {
            b'"' => {
                // To the closing quote, looking only at escapes on the way. (A plain loop:
                // most strings here are too short for a vectorised search to pay.)
                loop {
                    match text.get(i) {
                        None => return false, // unterminated: the parse refuses it anyway
                        Some(b'"') => break,
                        Some(b'\\') if text.get(i + 1) == Some(&b'u') => return true,
                        Some(b'\\') => i += 2,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                digits = 0;
            }
            b'0'..=b'9' => {
                digits += 1;
                if digits > LONG_NUMBER {
                    return true;
                }
            }
            b'e' | b'E' if previous.is_ascii_digit() || previous == b'.' => return true,
            b'[' | b'{' => {
                depth += 1;
                if depth > DEEP {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !b.is_ascii_digit() && b != b'.' {
            digits = 0;
        }
        previous = b;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_strings_are_told_from_the_text() {
        let text = br#"{"a": null, "b": true, "c": -1.5, "d": "x\"y", "e": [1], "f": {"g": 2}, "h": "plain"}"#;
        let o = Object::parse(text).unwrap();
        let kinds: Vec<Kind> = o.iter().map(|(_, v)| v.kind()).collect();
        use Kind as K;
        let want = [
            K::Null,
            K::Bool,
            K::Number,
            K::String,
            K::Array,
            K::Object,
            K::String,
        ];
        assert_eq!(kinds, want);
        assert_eq!(o.get("d").unwrap().string().as_deref(), Some("x\"y"));
        assert!(matches!(
            o.get("h").unwrap().string(),
            Some(Cow::Borrowed("plain"))
        ));
        assert_eq!(o.get("c").unwrap().string(), None);
        // Nested values are kept as sent.
        assert_eq!(o.get("f").unwrap().raw().get(), r#"{"g": 2}"#);
    }

    #[test]
    fn non_objects_are_told_apart_from_invalid_json() {
        let parse = |t: &'static str| Object::parse(t.as_bytes());
        assert!(matches!(
            parse("[1, 2]"),
            Err(NotAnObject::Other(Kind::Array))
        ));
        assert!(matches!(
            parse("\"x\""),
            Err(NotAnObject::Other(Kind::String))
        ));
        assert!(matches!(parse("{\"a\": "), Err(NotAnObject::Invalid(_))));
        assert!(matches!(parse("{} x"), Err(NotAnObject::Invalid(_))));
    }

    #[test]
    fn what_only_a_full_parse_refuses_is_refused() {
        for bad in [
            r#"{"p": {"x": 1e400}}"#.to_string(),
            format!(r#"{{"p": {}}}"#, "9".repeat(400)),
            r#"{"p": {"x": "\ud800"}}"#.to_string(),
            format!(r#"{{"p": {}{}}}"#, "[".repeat(200), "]".repeat(200)),
        ] {
            assert!(
                matches!(Object::parse(bad.as_bytes()), Err(NotAnObject::Invalid(_))),
                "{bad:.60} was accepted"
            );
        }
        // Checked by the skim itself: bytes that are not UTF-8, raw control characters.
        for bad in [&b"{\"p\": {\"x\": \"\xff\"}}"[..], b"{\"p\": [\"a\x01b\"]}"] {
            assert!(
                Object::parse(bad).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
            assert!(serde_json::from_slice::<serde_json::Value>(bad).is_err());
        }
        // The same shapes within range pass, as they would a full parse.
        for good in [
            r#"{"p": {"x": 1e300, "id": "1e5"}, "ok": true, "q": "a\"b\\"}"#.to_string(),
            r#"{"p": {"x": "\u00e9"}}"#.to_string(),
            format!(r#"{{"p": {}{}}}"#, "[".repeat(50), "]".repeat(50)),
        ] {
            assert!(
                Object::parse(good.as_bytes()).is_ok(),
                "{good:.60} was refused"
            );
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_a_full_parse_does() {
        let o = Object::parse(br#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o.get("a").unwrap().raw().get(), "3");
        let full: serde_json::Value = serde_json::from_slice(&o.to_bytes()).unwrap();
        assert_eq!(full, serde_json::json!({"a": 3, "b": 2}));
    }

    #[test]
    fn an_object_is_written_with_its_values_as_sent() {
        let text = br#"{"b": {"x": [1, 2.50]}, "a\"q": "\u00e9", "gone": 1}"#;
        let mut o = Object::parse(text).unwrap();
        o.insert("c", Field::of("new"));
        o.insert("b", Field::of(&5));
        o.remove("gone");
        let out = String::from_utf8(o.to_bytes()).unwrap();
        assert_eq!(out, r#"{"b":5,"a\"q":"\u00e9","c":"new"}"#);
    }
}
