//! A body the JSON parse refused, repaired where its sender meant something well-defined.
//!
//! An SDK does not retry a 400, so one bad character in a batch would cost every event in
//! it. Three slips are common enough in real senders to repair, each the way the usual
//! reader of such text reads it:
//!
//! - **Bytes that are not UTF-8** (Latin-1 text from a backend): U+FFFD, as Go's
//!   `encoding/json` (Segment's and RudderStack's servers) and `String::from_utf8_lossy` read
//!   them.
//! - **Lone UTF-16 surrogate escapes** (half an emoji from `JSON.stringify`): U+FFFD, see
//!   [`crate::surrogates`].
//! - **`NaN`, `Infinity` and `-Infinity`** outside strings (Python's `json.dumps`, which
//!   analytics-python uses, writes a float NaN so): `null`, as a browser's `JSON.stringify`
//!   writes them.
//!
//! Only a body the parse refused is looked at, so well-formed bodies pay nothing.

use std::borrow::Cow;

use crate::surrogates::replace_lone_surrogates;

/// `parse` of `text`; when it refuses the text and [`repair`] mends something, `parse` of
/// the mended text, which is kept in `repaired`. Refused again, the first error is the
/// answer: its position is in the text as sent. Also returns the text that was parsed.
pub fn parse_or_repair<'a, T, E>(
    text: &'a [u8],
    repaired: &'a mut Option<Vec<u8>>,
    parse: impl Fn(&'a [u8]) -> Result<T, E>,
) -> (&'a [u8], Result<T, E>) {
    let refused = match parse(text) {
        Ok(parsed) => return (text, Ok(parsed)),
        Err(e) => e,
    };
    match repair(text) {
        Some(mended) => {
            let mended = repaired.insert(mended);
            (mended, parse(mended).map_err(|_| refused))
        }
        None => (text, Err(refused)),
    }
}

/// The text repaired; `None` when none of the slips above is in it (it was refused for
/// something else, which the original parse error describes).
pub fn repair(text: &[u8]) -> Option<Vec<u8>> {
    let mut text: Cow<'_, [u8]> = match String::from_utf8_lossy(text) {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    };
    if let Some(t) = replace_lone_surrogates(&text) {
        text = Cow::Owned(t);
    }
    if let Some(t) = replace_non_finite(&text) {
        text = Cow::Owned(t);
    }
    match text {
        Cow::Owned(mended) => Some(mended),
        Cow::Borrowed(_) => None,
    }
}

/// serde_json's message for `e` without the " at line L column C" it appends, for an
/// answer that gives the position its own way (or none).
pub fn message_without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The words that stand for non-finite numbers, longest first so `-Infinity` is not read
/// as `-` then `Infinity`.
const NON_FINITE: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];

/// The text with every `NaN`, `Infinity` and `-Infinity` outside a string replaced by
/// `null`; `None` when there is none.
fn replace_non_finite(text: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    // Bytes up to here are copied into `out` (when it exists) or unchanged.
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if in_string {
            match b {
                b'\\' => i += 1, // the escaped byte cannot end the string
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let word = NON_FINITE.iter().find(|w| {
            text[i..].starts_with(w)
                && text
                    .get(i + w.len())
                    .is_none_or(|&next| !next.is_ascii_alphanumeric())
        });
        match word {
            Some(w) => {
                let o = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
                o.extend_from_slice(&text[copied..i]);
                o.extend_from_slice(b"null");
                i += w.len();
                copied = i;
            }
            None => i += 1,
        }
    }
    let mut out = out?;
    out.extend_from_slice(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parsed(text: &[u8]) -> Value {
        serde_json::from_slice(&repair(text).expect("something to repair")).unwrap()
    }

    #[test]
    fn bytes_that_are_not_utf8_become_the_replacement_character() {
        let v = parsed(b"{\"event\":\"caf\xe9\",\"n\":1}");
        assert_eq!(v, json!({"event": "caf\u{FFFD}", "n": 1}));
    }

    #[test]
    fn non_finite_numbers_become_null_outside_strings_only() {
        let v = parsed(br#"{"a":NaN,"b":[Infinity, -Infinity],"c":"NaN and Infinity","d":1}"#);
        assert_eq!(
            v,
            json!({"a": null, "b": [null, null], "c": "NaN and Infinity", "d": 1})
        );
        let v = parsed(br#"{"s":"a \"quoted\" NaN","x":NaN}"#);
        assert_eq!(v, json!({"s": "a \"quoted\" NaN", "x": null}));
    }

    #[test]
    fn every_slip_in_one_body_is_repaired() {
        let v = parsed(b"{\"t\":\"\\ud83d \xff\",\"p\":NaN}");
        assert_eq!(v, json!({"t": "\u{FFFD} \u{FFFD}", "p": null}));
    }

    #[test]
    fn other_faults_are_left_to_the_parse_error() {
        for text in [
            &br#"{"a":1,}"#[..],
            br#"{"a":Nan}"#,
            br#"{"a":NaNa}"#,
            br#"{"a":"NaN"}"#,
            b"not json",
        ] {
            assert!(repair(text).is_none(), "{}", String::from_utf8_lossy(text));
        }
    }
}
