//! Lone UTF-16 surrogates in JSON text, replaced as Segment's servers replace them.
//!
//! A browser's `JSON.stringify` writes half of an emoji (a page title cut to a length, text
//! pasted by a user) as an escape such as `"\ud83d"`. Rust strings cannot hold it, so a
//! strict parse refuses the whole body, and an SDK does not retry a 400: every event of the
//! batch would be lost for one character. Segment's servers read such an escape as U+FFFD,
//! the replacement character; so does persona, when a parse has refused the text.

/// The text with every `\uXXXX` escape of a lone surrogate replaced by `\uFFFD`; `None`
/// when there is none (the common case, which allocates nothing). A surrogate pair's two
/// escapes are kept. Both escapes are six bytes, so nothing else moves.
pub fn replace_lone_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    let mut repaired: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(found) = text[i..].iter().position(|&b| b == b'\\') {
        let at = i + found;
        let Some(unit) = escaped_unit(text, at) else {
            // Any other escape is two bytes; skipping both keeps `\\u` from reading as one.
            i = at + 2;
            if i >= text.len() {
                break;
            }
            continue;
        };
        i = at + 6;
        let lone = match unit {
            0xD800..=0xDBFF => match escaped_unit(text, i) {
                Some(0xDC00..=0xDFFF) => {
                    i += 6; // a pair: both halves stay
                    false
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            repaired.get_or_insert_with(|| text.to_vec())[at..at + 6].copy_from_slice(b"\\uFFFD");
        }
    }
    repaired
}

/// The UTF-16 unit of a `\uXXXX` escape starting at `at`.
fn escaped_unit(text: &[u8], at: usize) -> Option<u16> {
    let escape = text.get(at..at + 6)?;
    if &escape[..2] != b"\\u" {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(text: &str) -> String {
        String::from_utf8(replace_lone_surrogates(text.as_bytes()).unwrap_or(text.into())).unwrap()
    }

    #[test]
    fn lone_halves_become_the_replacement_character() {
        assert_eq!(repaired(r#"{"t":"cut \ud83d"}"#), r#"{"t":"cut \uFFFD"}"#);
        assert_eq!(repaired(r#"{"t":"\ude00 x"}"#), r#"{"t":"\uFFFD x"}"#);
        assert_eq!(
            repaired(r#"{"t":"\ud83d\ud83d\ude00"}"#),
            r#"{"t":"\uFFFD\ud83d\ude00"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&repaired(r#"{"t":"a\uD800"}"#)).unwrap();
        assert_eq!(v["t"], "a\u{FFFD}");
    }

    #[test]
    fn pairs_other_escapes_and_plain_text_are_left_alone() {
        for text in [
            r#"{"t":"\ud83d\ude00"}"#,
            r#"{"t":"\u00e9\n\"\\"}"#,
            r#"{"t":"\\ud83d is text, not an escape"}"#,
            r#"{"t":"no escapes at all"}"#,
            r#"{"t":"ends in a backslash\\"}"#,
            "\\",
            r"\u12",
        ] {
            assert!(replace_lone_surrogates(text.as_bytes()).is_none(), "{text}");
        }
    }
}
