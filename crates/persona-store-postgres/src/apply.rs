//! Writes: each change set, segment and counter change is one transaction on the writing
//! connection, whose statements send whole arrays (`UNNEST`) rather than a row each.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::Ordering;

use persona_store::{ChangeSet, ProfileId, SegmentDef, SegmentId, StoreError};
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use crate::PostgresStore;
use crate::connection::{Conn, Prepared, pg_error, wait};
use crate::store::signed;

/// Keeps the last value of each key, in first-seen order: one statement may not change a
/// row twice, and a change set merged from several may name a key more than once.
fn last_wins<K: Hash + Eq + Copy, V: Copy>(items: impl Iterator<Item = (K, V)>) -> Vec<(K, V)> {
    let mut at: HashMap<K, usize> = HashMap::new();
    let mut out: Vec<(K, V)> = Vec::new();
    for (k, v) in items {
        match at.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                at.insert(k, out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// Runs one prepared statement in `tx`.
async fn exec(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    template: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = prepared.get(tx, template).await?;
    tx.execute(&statement, params).await.map_err(pg_error)
}

/// Adds `deltas` to counters in `meta`, never below zero.
async fn add_to_counters(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    deltas: &[(String, i64)],
) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let (keys, values): (Vec<&str>, Vec<i64>) =
        deltas.iter().map(|(k, v)| (k.as_str(), *v)).unzip();
    // Existing counters move, then missing ones start from the delta.
    exec(
        tx,
        prepared,
        "UPDATE {s}.meta m SET value = GREATEST(m.value + d.delta, 0) \
         FROM UNNEST($1::text[], $2::bigint[]) AS d(key, delta) WHERE m.key = d.key",
        &[&keys, &values],
    )
    .await?;
    exec(
        tx,
        prepared,
        "INSERT INTO {s}.meta (key, value) SELECT key, GREATEST(delta, 0) \
         FROM UNNEST($1::text[], $2::bigint[]) AS d(key, delta) ON CONFLICT (key) DO NOTHING",
        &[&keys, &values],
    )
    .await?;
    Ok(())
}

/// Takes `n` numbers from the counter `key` (which starts at 1) and returns the first. The
/// counter's row stays locked until `tx` ends, so numbers are handed out in commit order.
async fn reserve(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    key: &str,
    n: i64,
) -> Result<i64, StoreError> {
    let statement = prepared
        .get(
            tx,
            "INSERT INTO {s}.meta (key, value) VALUES ($1, 1 + $2::bigint) \
             ON CONFLICT (key) DO UPDATE SET value = {s}.meta.value + $2::bigint \
             RETURNING value - $2::bigint",
        )
        .await?;
    let row = tx
        .query_one(&statement, &[&key, &n])
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}

/// Appends entry and exit events to the outbox and to each profile's history.
async fn append_outbox(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    entries: &[(ProfileId, Vec<u8>)],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let first = reserve(tx, prepared, "next_outbox_seq", entries.len() as i64).await?;
    let seqs: Vec<i64> = (first..first + entries.len() as i64).collect();
    let profiles: Vec<i64> = entries.iter().map(|(p, _)| signed(*p)).collect();
    let bodies: Vec<&[u8]> = entries.iter().map(|(_, b)| b.as_slice()).collect();
    exec(
        tx,
        prepared,
        "INSERT INTO {s}.outbox (seq, body) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
        &[&seqs, &bodies],
    )
    .await?;
    exec(
        tx,
        prepared,
        "INSERT INTO {s}.history (profile, seq, body) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[])",
        &[&profiles, &seqs, &bodies],
    )
    .await?;
    Ok(())
}

/// Runs `work` in a transaction on `conn` and commits it: every write that is more than one
/// statement.
async fn committed<T>(
    conn: &mut Conn,
    work: impl AsyncFnOnce(&Transaction<'_>, &Prepared) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.client.transaction().await.map_err(pg_error)?;
    let out = work(&tx, &conn.prepared).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(out)
}

/// The profile, identity and event-index writes of a change set.
async fn write_profiles(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    changes: &ChangeSet,
) -> Result<(), StoreError> {
    let profiles = last_wins(
        changes
            .profiles
            .iter()
            .map(|(id, body)| (*id, body.as_slice())),
    );
    if !profiles.is_empty() {
        let (ids, bodies): (Vec<i64>, Vec<&[u8]>) =
            profiles.iter().map(|(id, b)| (signed(*id), *b)).unzip();
        exec(
            tx,
            prepared,
            "INSERT INTO {s}.profiles (id, body) SELECT * FROM UNNEST($1::bigint[], $2::bytea[]) \
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            &[&ids, &bodies],
        )
        .await?;
    }
    if !changes.removed.is_empty() {
        let removed: Vec<i64> = changes.removed.iter().map(|id| signed(*id)).collect();
        exec(
            tx,
            prepared,
            "DELETE FROM {s}.profiles WHERE id = ANY($1)",
            &[&removed],
        )
        .await?;
    }
    let links = last_wins(changes.links.iter().map(|(k, id)| (k.as_str(), *id)));
    if !links.is_empty() {
        let (keys, ids): (Vec<&str>, Vec<i64>) =
            links.iter().map(|(k, id)| (*k, signed(*id))).unzip();
        exec(
            tx,
            prepared,
            "INSERT INTO {s}.identities (key, profile) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (key) DO UPDATE SET profile = EXCLUDED.profile",
            &[&keys, &ids],
        )
        .await?;
    }
    let moved = changes.event_moves();
    let events = last_wins(changes.events.iter().map(|(id, e)| {
        let id = moved.get(id).copied().unwrap_or(*id);
        ((id, e.at, e.offset), e.position)
    }));
    if !events.is_empty() {
        let mut columns: [Vec<i64>; 4] = Default::default();
        for ((id, at, offset), position) in events {
            columns[0].push(signed(id));
            columns[1].push(at);
            columns[2].push(signed(offset));
            columns[3].push(signed(position));
        }
        exec(
            tx,
            prepared,
            "INSERT INTO {s}.events (profile, at_ms, log_offset, log_position) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) \
             ON CONFLICT (profile, at_ms, log_offset) \
             DO UPDATE SET log_position = EXCLUDED.log_position",
            &[&columns[0], &columns[1], &columns[2], &columns[3]],
        )
        .await?;
    }
    if !moved.is_empty() {
        let (from, to): (Vec<i64>, Vec<i64>) =
            moved.iter().map(|(f, t)| (signed(*f), signed(*t))).unzip();
        exec(
            tx,
            prepared,
            "WITH m AS (SELECT * FROM UNNEST($1::bigint[], $2::bigint[]) AS m(src, dst)), \
             gone AS (DELETE FROM {s}.events e USING m WHERE e.profile = m.src \
                      RETURNING m.dst, e.at_ms, e.log_offset, e.log_position) \
             INSERT INTO {s}.events (profile, at_ms, log_offset, log_position) \
             SELECT * FROM gone ON CONFLICT (profile, at_ms, log_offset) \
             DO UPDATE SET log_position = EXCLUDED.log_position",
            &[&from, &to],
        )
        .await?;
    }
    Ok(())
}

/// Segment membership changes and the member counts they move.
async fn write_memberships(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    changes: &ChangeSet,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut deltas: HashMap<SegmentId, i64> = HashMap::new();
    for &(segment, _, member) in &changes.memberships {
        *deltas.entry(segment).or_default() += if member { 1 } else { -1 };
    }
    let mut joined = [Vec::new(), Vec::new()];
    let mut left = [Vec::new(), Vec::new()];
    for ((segment, profile), member) in
        last_wins(changes.memberships.iter().map(|&(s, p, m)| ((s, p), m)))
    {
        let side = if member { &mut joined } else { &mut left };
        side[0].push(signed(segment));
        side[1].push(signed(profile));
    }
    if !joined[0].is_empty() {
        exec(
            tx,
            prepared,
            "INSERT INTO {s}.members (segment, profile) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING",
            &[&joined[0], &joined[1]],
        )
        .await?;
    }
    if !left[0].is_empty() {
        exec(
            tx,
            prepared,
            "DELETE FROM {s}.members m USING UNNEST($1::bigint[], $2::bigint[]) AS d(segment, profile) \
             WHERE m.segment = d.segment AND m.profile = d.profile",
            &[&left[0], &left[1]],
        )
        .await?;
    }
    Ok(deltas
        .into_iter()
        .map(|(segment, delta)| (format!("members:{segment}"), delta))
        .collect())
}

/// Everything a change set writes, in `tx`.
async fn write_change_set(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    changes: &ChangeSet,
) -> Result<(), StoreError> {
    if !changes.durable {
        // The event log is the durable record: see `durability`.
        tx.batch_execute("SET LOCAL synchronous_commit TO off")
            .await
            .map_err(pg_error)?;
    }
    write_profiles(tx, prepared, changes).await?;
    let mut counters = write_memberships(tx, prepared, changes).await?;
    let created = changes.created as i64 - changes.removed.len() as i64;
    if created != 0 {
        counters.push(("profile_count".into(), created));
    }
    add_to_counters(tx, prepared, &counters).await?;
    let mut set: Vec<(&str, i64)> = vec![("next_profile_id", signed(changes.next_id))];
    let offsets: Vec<String> = changes
        .offsets
        .iter()
        .map(|(c, _)| format!("offset:{c}"))
        .collect();
    set.extend(
        offsets
            .iter()
            .zip(&changes.offsets)
            .map(|(k, (_, o))| (k.as_str(), signed(*o))),
    );
    let (keys, values): (Vec<&str>, Vec<i64>) = last_wins(set.into_iter()).into_iter().unzip();
    exec(
        tx,
        prepared,
        "INSERT INTO {s}.meta (key, value) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&keys, &values],
    )
    .await?;
    // Last: the outbox number's row lock is held until the commit.
    append_outbox(tx, prepared, &changes.outbox).await
}

impl PostgresStore {
    /// One statement on the writing connection, committed and flushed.
    pub(crate) fn write(
        &self,
        template: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let mut slot = self.writer()?;
        let conn = slot.as_mut().expect("connected");
        wait(async {
            let statement = conn.prepared.get(&conn.client, template).await?;
            conn.client
                .execute(&statement, params)
                .await
                .map_err(pg_error)
        })?;
        Ok(())
    }

    /// `n` numbers from the counter `key`, committed before they are handed out.
    pub(crate) fn reserve_numbers(&self, key: &str, n: i64) -> Result<u64, StoreError> {
        let mut slot = self.writer()?;
        let conn = slot.as_mut().expect("connected");
        let first = wait(committed(conn, async |tx, prepared| {
            reserve(tx, prepared, key, n).await
        }))?;
        Ok(first as u64)
    }

    pub(crate) fn apply_change_set(&self, changes: &ChangeSet) -> Result<(), StoreError> {
        let mut slot = self.writer()?;
        if self.lost_writer.swap(false, Ordering::SeqCst) {
            return Err(self.forget_unflushed());
        }
        let conn = slot.as_mut().expect("connected");
        let lsn = wait(async {
            committed(conn, async |tx, prepared| {
                write_change_set(tx, prepared, changes).await
            })
            .await?;
            if changes.durable || changes.offsets.is_empty() {
                return Ok::<_, StoreError>(None);
            }
            // Where the commit ends in the server's log, or a little after.
            conn.number("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
                .await
                .map(Some)
        })?;
        let mut durability = self.durability.lock().expect("not poisoned");
        match lsn {
            Some(lsn) => durability.committed_async(lsn, &changes.offsets),
            None if changes.durable => durability.committed_durably(&changes.offsets),
            None => {}
        }
        Ok(())
    }

    /// After the writing connection was lost: commits awaiting the flush may be gone (a
    /// server crash undoes them), and the positions they were noted at may be reused by
    /// the server's new log, so none of them counts as durable; the stored offsets, which
    /// the stream stage now goes back to, are what holds.
    fn forget_unflushed(&self) -> StoreError {
        let stored = match self.offsets() {
            Ok(stored) => stored,
            Err(e) => return e,
        };
        self.durability
            .lock()
            .expect("not poisoned")
            .forget_pending(&stored);
        StoreError::Backend(
            "the connection to PostgreSQL was lost and opened again; commits not yet flushed \
             may be gone, so the stream stage goes back to the stored offset"
                .into(),
        )
    }

    pub(crate) fn insert_segment(
        &self,
        name: &str,
        rule: &str,
        at: i64,
    ) -> Result<SegmentDef, StoreError> {
        let mut slot = self.writer()?;
        let conn = slot.as_mut().expect("connected");
        let id = wait(committed(conn, async |tx, prepared| {
            let id = reserve(tx, prepared, "next_segment_id", 1).await?;
            exec(
                tx,
                prepared,
                "INSERT INTO {s}.segments (id, name, rule, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4::bigint, $4::bigint, 1)",
                &[&id, &name, &rule, &at],
            )
            .await?;
            Ok(id)
        }))?;
        Ok(SegmentDef {
            id: id as u64,
            name: name.to_owned(),
            rule: rule.to_owned(),
            created_at: at,
            updated_at: at,
            version: 1,
        })
    }

    pub(crate) fn remove_segment(
        &self,
        id: SegmentId,
        exits: &[(ProfileId, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut slot = self.writer()?;
        let conn = slot.as_mut().expect("connected");
        wait(committed(conn, async |tx, prepared| {
            let segment = signed(id);
            exec(
                tx,
                prepared,
                "DELETE FROM {s}.segments WHERE id = $1",
                &[&segment],
            )
            .await?;
            exec(
                tx,
                prepared,
                "DELETE FROM {s}.members WHERE segment = $1",
                &[&segment],
            )
            .await?;
            exec(
                tx,
                prepared,
                "DELETE FROM {s}.meta WHERE key = $1",
                &[&format!("members:{id}")],
            )
            .await?;
            append_outbox(tx, prepared, exits).await
        }))
    }
}
