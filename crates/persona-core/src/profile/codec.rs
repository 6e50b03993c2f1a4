//! The stored form of a profile: a schema version byte, then MessagePack with field names.
//!
//! Field names make the encoding self-describing, so a field added later is simply absent
//! (and defaulted) in old data; the version byte is for changes that need a migration.

use super::Profile;

/// The schema version written by this build.
pub const SCHEMA_VERSION: u8 = 1;

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
    rmp_serde::encode::write_named(out, profile).expect("a profile always serialises");
}

/// Decodes a stored profile of this or an older schema version.
pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&SCHEMA_VERSION, rest)) => Ok(rmp_serde::from_slice(rest)?),
        Some((&v, _)) => Err(DecodeError::UnknownVersion(v)),
    }
}
