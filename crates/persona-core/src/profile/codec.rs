//! The stored form of a profile: a schema version byte, then compact MessagePack (each
//! struct as an array of its fields in declaration order).
//!
//! Compact, because every event rewrites a profile: without field names a profile is about
//! half the size and twice as fast to encode and decode. The rule that keeps old data
//! readable: **new fields are appended at the end of their struct**, and every struct is
//! `#[serde(default)]`, so a record written before a field existed reads it as its default.
//! Anything else (a removed, reordered or retyped field) needs a new version byte and a
//! migration in [`decode`]. Version 1 records (MessagePack with field names) still decode.

use super::Profile;

/// The schema version written by this build.
pub const SCHEMA_VERSION: u8 = 2;

/// Why stored bytes could not be read as a profile.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty profile record")]
    Empty,
    #[error("profile schema version {0} is newer than this build understands ({SCHEMA_VERSION})")]
    UnknownVersion(u8),
    #[error("corrupt profile record: {0}")]
    Corrupt(#[from] rmp_serde::decode::Error),
}

/// Encodes a profile for storage.
pub fn encode(profile: &Profile) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    encode_into(profile, &mut out);
    out
}

/// Appends the stored form of a profile to `out`, reusing its allocation.
pub fn encode_into(profile: &Profile, out: &mut Vec<u8>) {
    out.push(SCHEMA_VERSION);
    rmp_serde::encode::write(out, profile).expect("a profile always serialises");
}

/// Decodes a stored profile of this or an older schema version.
pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        // Version 1 wrote field names; serde reads structs from maps and arrays alike.
        Some((1 | 2, rest)) => Ok(rmp_serde::from_slice(rest)?),
        Some((&v, _)) => Err(DecodeError::UnknownVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize)]
    struct Old {
        a: u64,
        b: String,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(default)]
    struct New {
        a: u64,
        b: String,
        added_later: Vec<u32>,
    }

    impl Default for New {
        fn default() -> Self {
            New {
                a: 0,
                b: String::new(),
                added_later: vec![7],
            }
        }
    }

    /// The compact encoding writes a struct as an array of its fields in order; a field
    /// appended later is missing from old records and must come out as its default.
    #[test]
    fn a_field_appended_later_reads_as_its_default() {
        let old = rmp_serde::to_vec(&Old {
            a: 3,
            b: "x".into(),
        })
        .unwrap();
        let new: New = rmp_serde::from_slice(&old).unwrap();
        assert_eq!(
            new,
            New {
                a: 3,
                b: "x".into(),
                added_later: vec![7]
            }
        );
    }
}
