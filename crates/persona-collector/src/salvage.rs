//! A batch refused for what one of its messages holds, taken apart so that the others are
//! kept.
//!
//! Everything stored must parse again downstream, so the collector refuses JSON that
//! `serde_json::Value` refuses: a number beyond a 64-bit float's range (`1e400`) or nesting
//! deeper than 127 levels. Found anywhere in a batch, that refused the whole body, and with
//! it every good message beside the bad one (an SDK does not retry a 400). Such a value is
//! one message's problem: [`isolate_refused_messages`] finds the messages a full parse
//! refuses and puts `null` in their place, so that the batch is read as usual, the others
//! are stored, and the refused ones are reported by index.
//!
//! Only a batch the parse refused is looked at, so well-formed bodies pay nothing. Broken
//! syntax (a cut-off body, a missing quote) is not salvaged: where one message ends is then
//! guesswork.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::ingest::claimed_kind;

/// A batch body with its refused messages replaced by `null`.
pub struct Isolated {
    pub text: Vec<u8>,
    /// Each refused message: its index in the batch, the `type` it claims ("unknown" when
    /// none) and why it was refused.
    pub refused: Vec<Refused>,
}

pub struct Refused {
    pub index: usize,
    pub claimed: &'static str,
    pub reason: String,
}

impl Isolated {
    /// The refusal of the message at `index`, if it was one.
    pub fn refusal(&self, index: usize) -> Option<&Refused> {
        self.refused
            .binary_search_by_key(&index, |r| r.index)
            .ok()
            .map(|at| &self.refused[at])
    }
}

/// `text`, a batch body, with each message that a full parse refuses replaced by `null`;
/// `None` when it is not a syntactically whole object with a `batch` array, or when no
/// message is refused on its own (the problem lies elsewhere in the body).
pub fn isolate_refused_messages(text: &[u8]) -> Option<Isolated> {
    let text_str = std::str::from_utf8(text).ok()?;
    // Raw values are skimmed, never converted: neither limit applies to them. A repeated
    // `batch` key: the last one, as the shallow parse takes it.
    let top: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_str(text_str).ok()?;
    let items: Vec<&RawValue> = serde_json::from_str(top.get("batch")?.get()).ok()?;
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    let mut refused = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        // At the depth it has in the body: inside the body's object and the batch's array.
        let Err(e) = serde_json::from_str::<serde_json::Value>(&format!("[[{}]]", item.get()))
        else {
            continue;
        };
        // Borrowed from `text` (a raw value deserialised from a `&str` always is).
        let start = item.get().as_ptr() as usize - text.as_ptr() as usize;
        debug_assert!(start + item.get().len() <= text.len());
        out.extend_from_slice(&text[copied..start]);
        out.extend_from_slice(b"null");
        copied = start + item.get().len();
        refused.push(Refused {
            index,
            claimed: claimed_kind(item),
            reason: reason(&e),
        });
    }
    if refused.is_empty() {
        return None;
    }
    out.extend_from_slice(&text[copied..]);
    Some(Isolated { text: out, refused })
}

/// Why the full parse refused a message, without a position (which would be in the text
/// as the check wrapped it, not as sent).
fn reason(e: &serde_json::Error) -> String {
    match crate::repair::message_without_position(e).as_str() {
        "number out of range" => "holds a number beyond the range of a 64-bit float".into(),
        "recursion limit exceeded" => "is nested deeper than 125 levels".into(),
        other => format!("is not JSON that can be stored: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn refused_messages_become_null_and_the_rest_is_kept_byte_for_byte() {
        let text = format!(
            r#"{{"writeKey": "k", "batch": [{{"type": "track", "n": 1}},
               {{"type": "identify", "x": 1e400}}, {{"d": {}}}, 7]}}"#,
            deep(200)
        );
        let isolated = isolate_refused_messages(text.as_bytes()).expect("two refused");
        let kept: serde_json::Value = serde_json::from_slice(&isolated.text).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"writeKey": "k", "batch": [{"type": "track", "n": 1}, null, null, 7]})
        );
        let refused: Vec<_> = isolated
            .refused
            .iter()
            .map(|r| (r.index, r.claimed, r.reason.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                (
                    1,
                    "identify",
                    "holds a number beyond the range of a 64-bit float"
                ),
                (2, "unknown", "is nested deeper than 125 levels"),
            ]
        );
        assert!(isolated.refusal(2).is_some() && isolated.refusal(0).is_none());
    }

    #[test]
    fn nesting_counts_from_the_top_of_the_body() {
        // 125 levels in a message are 127 in the body, serde_json's most: accepted. One more
        // is refused.
        let fits = format!(r#"{{"batch": [{}]}}"#, deep(125));
        serde_json::from_str::<serde_json::Value>(&fits).expect("within serde_json's limit");
        assert!(isolate_refused_messages(fits.as_bytes()).is_none());
        let over = format!(r#"{{"batch": [{}]}}"#, deep(126));
        assert!(serde_json::from_str::<serde_json::Value>(&over).is_err());
        let isolated = isolate_refused_messages(over.as_bytes()).expect("refused");
        assert_eq!(isolated.refused[0].index, 0);
    }

    #[test]
    fn broken_syntax_and_problems_outside_the_batch_are_not_salvaged() {
        for text in [
            r#"{"batch": [{"type": "track"}, {"x": 1e400"#,
            r#"{"batch": [{"type": "track"}], "context": {"x": 1e400}}"#,
            r#"{"batch": {"x": 1e400}}"#,
            r#"[{"x": 1e400}]"#,
        ] {
            assert!(
                isolate_refused_messages(text.as_bytes()).is_none(),
                "{text}"
            );
        }
    }
}
