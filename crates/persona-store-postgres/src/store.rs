//! [`ProfileStore`] on the schema's tables: the reads here, the transactional writes in
//! `apply`.

use std::collections::HashMap;

use persona_core::profile::Profile;
use persona_store::{
    ChangeSet, EventRef, IdentityKey, ProfileId, ProfileStore, SegmentDef, SegmentId, StoreError,
    VisitEncoded, decode_profile,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresStore;
use crate::connection::{Conn, pg_error, wait};

/// Rows read at a time by a range visit.
const VISIT_PAGE: i64 = 2048;

/// A stored `bigint` as the store's `u64` (ids, offsets and counts are never negative).
pub(crate) fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

/// A `u64` bound as a `bigint` parameter; bounds past `i64::MAX` mean "to the end".
pub(crate) fn signed(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// The exclusive lower bound of a page after `after` (ids start at 0).
fn after_bound(after: Option<u64>) -> i64 {
    after.map_or(-1, signed)
}

fn limit(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

impl PostgresStore {
    /// Rows of a prepared read on one of the reading connections.
    pub(crate) fn read(
        &self,
        template: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let slot = self.reader_slot();
        let run = |conn: &Conn| {
            wait(async {
                let statement = conn.prepared.get(&conn.client, template).await?;
                conn.client
                    .query(&statement, params)
                    .await
                    .map_err(pg_error)
            })
        };
        let conn = slot.get(&self.connector, &self.schema)?;
        match run(&conn) {
            // The server closed the connection (a restart, a failover): once more, on a
            // new one, so a reader sees no error for what a reconnect mends.
            Err(_) if conn.client.is_closed() => run(&*slot.get(&self.connector, &self.schema)?),
            answer => answer,
        }
    }

    /// How a reading connection is protected, as the server sees it: the TLS version and
    /// cipher (`TLSv1.3 TLS_AES_256_GCM_SHA384`), or `None` for a plain connection.
    pub fn encryption(&self) -> Result<Option<String>, StoreError> {
        let rows = self.read(
            "SELECT version || ' ' || cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
            &[],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// A number kept in the `meta` table.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .read("SELECT value FROM {s}.meta WHERE key = $1", &[&key])?
            .first()
            .map(|r| unsigned(r.get(0))))
    }

    /// Every consumer's stored offset.
    pub(crate) fn offsets(&self) -> Result<HashMap<String, u64>, StoreError> {
        Ok(self
            .read(
                "SELECT substr(key, 8), value FROM {s}.meta WHERE key LIKE 'offset:%'",
                &[],
            )?
            .iter()
            .map(|r| (r.get::<_, String>(0), unsigned(r.get(1))))
            .collect())
    }

    /// The write-ahead log position flushed to disk, asked of the server the commits went
    /// to (a reading connection may reach another, such as a standby).
    fn flushed_lsn(&self) -> Result<i64, StoreError> {
        let slot = self.writer()?;
        let conn = slot.as_ref().expect("connected");
        wait(conn.number("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint"))
    }
}

fn encoded(rows: Vec<Row>) -> Vec<(ProfileId, Vec<u8>)> {
    rows.into_iter()
        .map(|r| (unsigned(r.get(0)), r.get(1)))
        .collect()
}

fn segment_of(r: &Row) -> SegmentDef {
    SegmentDef {
        id: unsigned(r.get(0)),
        name: r.get(1),
        rule: r.get(2),
        created_at: r.get(3),
        updated_at: r.get(4),
        version: unsigned(r.get(5)),
    }
}

impl ProfileStore for PostgresStore {
    fn resolve(&self, key: &IdentityKey<'_>) -> Result<Option<ProfileId>, StoreError> {
        Ok(self
            .read(
                "SELECT profile FROM {s}.identities WHERE key = $1",
                &[&key.storage_key()],
            )?
            .first()
            .map(|r| unsigned(r.get(0))))
    }

    fn get(&self, id: ProfileId) -> Result<Option<Profile>, StoreError> {
        self.read(
            "SELECT body FROM {s}.profiles WHERE id = $1",
            &[&signed(id)],
        )?
        .first()
        .map(|r| decode_profile(id, r.get(0)))
        .transpose()
    }

    fn remote(&self) -> bool {
        true
    }

    fn resolve_many(&self, keys: &[String]) -> Result<Vec<(String, ProfileId)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .read(
                "SELECT key, profile FROM {s}.identities WHERE key = ANY($1)",
                &[&keys],
            )?
            .iter()
            .map(|r| (r.get(0), unsigned(r.get(1))))
            .collect())
    }

    fn get_many(&self, ids: &[ProfileId]) -> Result<Vec<(ProfileId, Profile)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|id| signed(*id)).collect();
        encoded(self.read(
            "SELECT id, body FROM {s}.profiles WHERE id = ANY($1)",
            &[&ids],
        )?)
        .into_iter()
        .map(|(id, body)| Ok((id, decode_profile(id, &body)?)))
        .collect()
    }

    fn lookup(&self, key: &IdentityKey<'_>) -> Result<Option<(ProfileId, Profile)>, StoreError> {
        // One statement, so the identity and the profile come from one snapshot.
        let rows = self.read(
            "SELECT p.id, p.body FROM {s}.identities i JOIN {s}.profiles p ON p.id = i.profile \
             WHERE i.key = $1",
            &[&key.storage_key()],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let id = unsigned(r.get(0));
        Ok(Some((id, decode_profile(id, r.get(1))?)))
    }

    fn recent_events(&self, id: ProfileId, n: usize) -> Result<Vec<EventRef>, StoreError> {
        Ok(self
            .read(
                "SELECT at_ms, log_offset, log_position FROM {s}.events WHERE profile = $1 \
                 ORDER BY at_ms DESC, log_offset DESC LIMIT $2",
                &[&signed(id), &limit(n)],
            )?
            .iter()
            .map(|r| EventRef {
                at: r.get(0),
                offset: unsigned(r.get(1)),
                position: unsigned(r.get(2)),
            })
            .collect())
    }

    fn scan_encoded(
        &self,
        after: Option<ProfileId>,
        n: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        if after == Some(u64::MAX) {
            return Ok(Vec::new());
        }
        Ok(encoded(self.read(
            "SELECT id, body FROM {s}.profiles WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after_bound(after), &limit(n)],
        )?))
    }

    fn visit_encoded(
        &self,
        first: ProfileId,
        last: ProfileId,
        visit: &mut VisitEncoded<'_>,
    ) -> Result<(), StoreError> {
        let (mut from, last) = (signed(first), signed(last));
        while from <= last {
            let page = encoded(self.read(
                "SELECT id, body FROM {s}.profiles WHERE id >= $1 AND id <= $2 ORDER BY id \
                 LIMIT $3",
                &[&from, &last, &VISIT_PAGE],
            )?);
            let Some(&(end, _)) = page.last() else {
                break;
            };
            for (id, bytes) in &page {
                visit(*id, bytes)?;
            }
            if (page.len() as i64) < VISIT_PAGE {
                break;
            }
            from = signed(end) + 1;
        }
        Ok(())
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.meta("profile_count")?.unwrap_or(0))
    }

    fn offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.meta(&format!("offset:{consumer}"))
    }

    fn durable_offset(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        // Asked before taking the durability lock, which `apply` takes inside the writer's:
        // the other order could deadlock. A commit noted in between waits for the next ask.
        let pending = self.durability.lock().expect("not poisoned").has_pending();
        let flushed = if pending {
            Some(self.flushed_lsn()?)
        } else {
            None
        };
        let mut durability = self.durability.lock().expect("not poisoned");
        if let Some(lsn) = flushed {
            durability.flushed_to(lsn);
        }
        Ok(durability.synced(consumer))
    }

    fn next_id(&self) -> Result<ProfileId, StoreError> {
        Ok(self.meta("next_profile_id")?.unwrap_or(1))
    }

    fn apply(&self, changes: &ChangeSet) -> Result<(), StoreError> {
        self.apply_change_set(changes)
    }

    fn create_segment(&self, name: &str, rule: &str, at: i64) -> Result<SegmentDef, StoreError> {
        self.insert_segment(name, rule, at)
    }

    fn update_segment(&self, def: &SegmentDef) -> Result<(), StoreError> {
        self.write(
            "INSERT INTO {s}.segments (id, name, rule, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET name = $2, \
             rule = $3, created_at = $4, updated_at = $5, version = $6",
            &[
                &signed(def.id),
                &def.name,
                &def.rule,
                &def.created_at,
                &def.updated_at,
                &signed(def.version),
            ],
        )
    }

    fn delete_segment(
        &self,
        id: SegmentId,
        exits: &[(ProfileId, Vec<u8>)],
    ) -> Result<(), StoreError> {
        self.remove_segment(id, exits)
    }

    fn segments(&self) -> Result<Vec<SegmentDef>, StoreError> {
        Ok(self
            .read(
                "SELECT id, name, rule, created_at, updated_at, version FROM {s}.segments \
                 ORDER BY id",
                &[],
            )?
            .iter()
            .map(segment_of)
            .collect())
    }

    fn members(
        &self,
        segment: SegmentId,
        after: Option<ProfileId>,
        n: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        if after == Some(u64::MAX) {
            return Ok(Vec::new());
        }
        Ok(self
            .read(
                "SELECT profile FROM {s}.members WHERE segment = $1 AND profile > $2 \
                 ORDER BY profile LIMIT $3",
                &[&signed(segment), &after_bound(after), &limit(n)],
            )?
            .iter()
            .map(|r| unsigned(r.get(0)))
            .collect())
    }

    fn member_count(&self, segment: SegmentId) -> Result<u64, StoreError> {
        Ok(self.meta(&format!("members:{segment}"))?.unwrap_or(0))
    }

    fn outbox(&self, after: Option<u64>, n: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(encoded(self.read(
            "SELECT seq, body FROM {s}.outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after.map_or(0, signed), &limit(n)],
        )?))
    }

    fn outbox_end(&self) -> Result<u64, StoreError> {
        Ok(self.meta("next_outbox_seq")?.unwrap_or(1))
    }

    fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.meta(&format!("cursor:{name}"))
    }

    fn set_cursor(&self, name: &str, position: Option<u64>) -> Result<(), StoreError> {
        let key = format!("cursor:{name}");
        match position {
            Some(p) => self.write(
                "INSERT INTO {s}.meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &signed(p)],
            ),
            None => self.write("DELETE FROM {s}.meta WHERE key = $1", &[&key]),
        }
    }

    fn history(&self, profile: ProfileId, n: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .read(
                "SELECT body FROM {s}.history WHERE profile = $1 ORDER BY seq DESC LIMIT $2",
                &[&signed(profile), &limit(n)],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn next_document_id(&self, kind: &str) -> Result<u64, StoreError> {
        self.reserve_numbers(&format!("next_document_id:{kind}"), 1)
    }

    fn put_document(&self, kind: &str, id: u64, body: &[u8]) -> Result<(), StoreError> {
        self.write(
            "INSERT INTO {s}.documents (kind, id, body) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, id) DO UPDATE SET body = EXCLUDED.body",
            &[&kind, &signed(id), &body],
        )
    }

    fn delete_document(&self, kind: &str, id: u64) -> Result<(), StoreError> {
        self.write(
            "DELETE FROM {s}.documents WHERE kind = $1 AND id = $2",
            &[&kind, &signed(id)],
        )
    }

    fn documents(&self, kind: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(encoded(self.read(
            "SELECT id, body FROM {s}.documents WHERE kind = $1 ORDER BY id",
            &[&kind],
        )?))
    }
}
