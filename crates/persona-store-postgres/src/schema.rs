//! The tables the store keeps in its schema, created when missing.
//!
//! Profiles and events are stored as the stream stage encodes them; segments, members and
//! the event index are plain columns, so that a BI tool can join them. Numbers the store
//! keeps as `u64` (profile ids, offsets) are below 2^63 and stored as `bigint`.

use persona_store::StoreError;

/// The layout version this build writes; a schema marked with a later one was written by a
/// newer persona and is refused rather than misread.
pub(crate) const VERSION: i64 = 1;

/// The tables, for telling whether the schema needs creating.
pub(crate) const TABLES: [&str; 9] = [
    "meta",
    "profiles",
    "identities",
    "events",
    "segments",
    "members",
    "outbox",
    "history",
    "documents",
];

/// Creates the schema's tables where missing. `{s}` stands for the quoted schema.
pub(crate) const CREATE: &str = r#"
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (
    key text PRIMARY KEY,
    value bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.profiles (
    id bigint PRIMARY KEY,
    body bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.identities (
    key text PRIMARY KEY,
    profile bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.events (
    profile bigint NOT NULL,
    at_ms bigint NOT NULL,
    log_offset bigint NOT NULL,
    log_position bigint NOT NULL,
    PRIMARY KEY (profile, at_ms, log_offset)
);
CREATE TABLE IF NOT EXISTS {s}.segments (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    rule text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    version bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.members (
    segment bigint NOT NULL,
    profile bigint NOT NULL,
    PRIMARY KEY (segment, profile)
);
CREATE TABLE IF NOT EXISTS {s}.outbox (
    seq bigint PRIMARY KEY,
    body bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.history (
    profile bigint NOT NULL,
    seq bigint NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (profile, seq)
);
CREATE TABLE IF NOT EXISTS {s}.documents (
    kind text NOT NULL,
    id bigint NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (kind, id)
);
INSERT INTO {s}.meta (key, value) VALUES ('schema_version', 1) ON CONFLICT (key) DO NOTHING;
"#;

/// A schema name as given in the settings, checked: it goes into SQL text (quoted, so a
/// reserved word such as `user` works too), so only a plain lower-case identifier is taken.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let plain = matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63;
    if plain && name.starts_with("pg_") {
        Err(format!(
            "{name:?} starts with pg_, which PostgreSQL keeps for itself"
        ))
    } else if plain {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a plain schema name: use up to 63 lower-case letters, digits and \
             underscores, starting with a letter or underscore"
        ))
    }
}

/// Refuses a schema written by a newer persona.
pub(crate) fn check_version(stored: i64) -> Result<(), StoreError> {
    if stored > VERSION {
        return Err(StoreError::Backend(format!(
            "the schema was written by a newer persona (layout {stored}; this one reads up to \
             {VERSION})"
        )));
    }
    Ok(())
}
