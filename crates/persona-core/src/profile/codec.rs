//! The stored form of a profile: a schema version byte, then compact MessagePack (each
//! struct as an array of its fields in declaration order).
//!
//! Compact, because every event rewrites a profile: without field names a profile is about
//! half the size and twice as fast to encode and decode. The rule that keeps old data
//! readable: **new fields are appended at the end of their struct**, and every struct is
//! `#[serde(default)]`, so a record written before a field existed reads it as its default.
//! Anything else (a removed, reordered or retyped field) needs a new version byte and a
//! migration in [`decode`]. Version 1 records (MessagePack with field names) still decode.

use serde::Deserialize;
use serde::de::IgnoredAny;

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

/// Where a current-version record's memberships (`segments`, `clusters`) begin, so that a
/// segment pass rewrites only those: see [`decode_for_pass`].
#[derive(Debug, Clone, Copy)]
pub struct Memberships {
    at: usize,
}

/// The fields a compact record of this build holds (user id to clusters).
const FIELDS: u8 = 7;
/// Fields up to and including `activity`; the memberships follow.
const BEFORE_MEMBERSHIPS: u8 = 5;
/// MessagePack's marker of an array of up to 15 items, the length in its low four bits.
const FIXARRAY: u8 = 0x90;

/// Decodes a stored profile for a segment pass: everything but its aliases and anonymous
/// ids, which no rule or model reads (they come out empty). For a current-version record
/// it also says where the memberships begin, so that [`reencode_memberships`] writes the
/// profile back by copying the rest of the bytes instead of encoding it all again. Other
/// records decode whole, without that.
pub fn decode_for_pass(bytes: &[u8]) -> Result<(Profile, Option<Memberships>), DecodeError> {
    let fields = match bytes {
        [SCHEMA_VERSION, m, ..] if m & 0xf0 == FIXARRAY => m & 0x0f,
        _ => 0,
    };
    if !(BEFORE_MEMBERSHIPS..=FIELDS).contains(&fields) {
        return decode(bytes).map(|p| (p, None));
    }
    let mut de = rmp_serde::Deserializer::new(&bytes[2..]);
    let mut p = Profile {
        user_id: Deserialize::deserialize(&mut de)?,
        ..Profile::default()
    };
    IgnoredAny::deserialize(&mut de)?;
    IgnoredAny::deserialize(&mut de)?;
    p.traits = Deserialize::deserialize(&mut de)?;
    p.activity = Deserialize::deserialize(&mut de)?;
    let at = bytes.len() - de.get_ref().len();
    if fields > BEFORE_MEMBERSHIPS {
        p.segments = Deserialize::deserialize(&mut de)?;
    }
    if fields > BEFORE_MEMBERSHIPS + 1 {
        p.clusters = Deserialize::deserialize(&mut de)?;
    }
    Ok((p, Some(Memberships { at })))
}

/// The stored form of `profile`, read from `bytes` by [`decode_for_pass`], after a pass
/// changed its memberships: the stored bytes up to them, then its memberships. Equal to
/// [`encode`] of the whole profile.
pub fn reencode_memberships(bytes: &[u8], m: Memberships, profile: &Profile) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&[SCHEMA_VERSION, FIXARRAY | FIELDS]);
    out.extend_from_slice(&bytes[2..m.at]);
    rmp_serde::encode::write(&mut out, &profile.segments).expect("ids always serialise");
    rmp_serde::encode::write(&mut out, &profile.clusters).expect("ids always serialise");
    out
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

    /// A pass reads a record without its ids and writes back new memberships by copying
    /// the rest: the bytes must be exactly what encoding the whole profile gives.
    #[test]
    fn a_pass_rewrites_memberships_exactly_as_a_full_encode() {
        use super::super::{Observation, ObservedKind, set_all};
        use super::{decode_for_pass, encode, reencode_memberships};

        let mut p = super::Profile {
            user_id: Some("ann".into()),
            aliases: vec!["ann-old".into()],
            anonymous_ids: vec!["a1".into(), "a2".into()],
            segments: vec![3],
            ..Default::default()
        };
        let serde_json::Value::Object(traits) = serde_json::json!({"country": "DE", "age": 41})
        else {
            unreachable!()
        };
        set_all(&mut p.traits, &traits, 1_000);
        for at in [1_000, 90_000_000, 200_000_000] {
            let kind = ObservedKind::Track {
                name: "Order Completed",
                purchase: Some(12.5),
                email: None,
                app_open: false,
            };
            p.activity.observe(&Observation { at, kind }, 1_800_000);
        }
        let stored = encode(&p);
        let (mut read, m) = decode_for_pass(&stored).unwrap();
        assert_eq!(
            (read.user_id.as_deref(), &read.traits),
            (Some("ann"), &p.traits)
        );
        assert_eq!((&read.activity, &read.segments), (&p.activity, &p.segments));
        assert!(read.aliases.is_empty() && read.anonymous_ids.is_empty());
        read.segments = vec![3, 9];
        read.clusters = vec![(1, 4)];
        (p.segments, p.clusters) = (read.segments.clone(), read.clusters.clone());
        assert_eq!(reencode_memberships(&stored, m.unwrap(), &read), encode(&p));
    }
}
