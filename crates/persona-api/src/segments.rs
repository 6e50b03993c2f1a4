//! `/v1/segments`: rule segments created, read, changed and deleted, and their members.
//!
//! A change takes effect at once for every profile change after it; the stream stage then
//! back-fills every stored profile, a chunk at a time between event batches, recording an
//! entry or exit event for each membership that moves.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use persona_rules::Rule;
use persona_rules::live::{Backfill, Who, deleted_exit};
use persona_store::{ProfileStore, SegmentDef, SegmentId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::{JsonBody, invalid, text};
use crate::profiles::store_error;
use crate::{ApiError, ApiState, guard, off_workers};

const MAX_NAME_CHARS: usize = 200;
pub(crate) const DEFAULT_MEMBERS: usize = 100;
pub(crate) const MAX_MEMBERS: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct SegmentRequest {
    name: Option<Value>,
    rule: Option<Value>,
}

#[derive(Serialize)]
pub(crate) struct SegmentBody {
    id: SegmentId,
    name: String,
    rule: String,
    version: u64,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    /// Whether the rule reads a time-relative field, and so is re-evaluated by the sweep.
    time_relative: bool,
    /// Members so far (the back-fill after a change is counted as it goes).
    members: u64,
    /// How far the back-fill after the last change has come.
    backfill: Backfill,
    /// The over-segmentation guard's findings: tiny, or mostly inside another segment.
    warnings: Vec<String>,
}

/// The guard's warnings for every segment in force, from a thread that may block.
async fn warnings(state: &ApiState) -> Result<HashMap<SegmentId, Vec<String>>, ApiError> {
    // Read before the snapshot, so that warnings kept under it are never older than it.
    let generation = state.segments.generation();
    if let Some(kept) = state.warnings.fresh(generation) {
        return Ok(kept);
    }
    let (store, live) = (state.store.clone(), state.segments.snapshot());
    let computed = tokio::task::spawn_blocking(move || guard::warnings(&*store, &live))
        .await
        .expect("the guard does not panic")
        .map_err(store_error)?;
    state.warnings.keep(generation, &computed);
    Ok(computed)
}

fn body(
    state: &ApiState,
    def: SegmentDef,
    warnings: &mut HashMap<SegmentId, Vec<String>>,
) -> Result<SegmentBody, ApiError> {
    let members = state.store.member_count(def.id).map_err(store_error)?;
    let time_relative = Rule::compile(&def.rule).is_ok_and(|r| r.time_relative());
    Ok(SegmentBody {
        id: def.id,
        members,
        time_relative,
        backfill: state.segments.backfill(false, def.id),
        warnings: warnings.remove(&def.id).unwrap_or_default(),
        created_at: DateTime::from_timestamp_millis(def.created_at),
        updated_at: DateTime::from_timestamp_millis(def.updated_at),
        name: def.name,
        rule: def.rule,
        version: def.version,
    })
}

fn check_name(state: &ApiState, name: &str, except: Option<SegmentId>) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    let taken = state
        .store
        .segments()
        .map_err(store_error)?
        .into_iter()
        .any(|s| s.name == name && Some(s.id) != except);
    if taken {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a segment named {name:?} exists"),
        ));
    }
    Ok(())
}

fn check_rule(rule: &str) -> Result<(), ApiError> {
    Rule::compile(rule)
        .map(|_| ())
        .map_err(|e| invalid("rule", e.to_string()))
}

/// Puts the stored definitions in force for the stream stage. Called with the segments'
/// write lock held, so that a slower writer cannot put an older list in force.
fn reload(state: &ApiState) -> Result<(), ApiError> {
    state
        .segments
        .replace_segments(state.store.segments().map_err(store_error)?);
    Ok(())
}

fn find(state: &ApiState, id: &str) -> Result<SegmentDef, ApiError> {
    let not_found = || crate::not_found(format!("no segment {id}"));
    let id: SegmentId = id.parse().map_err(|_| not_found())?;
    state
        .store
        .segments()
        .map_err(store_error)?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(not_found)
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    JsonBody(req): JsonBody<SegmentRequest>,
) -> Result<(StatusCode, Json<SegmentBody>), ApiError> {
    let name = text(&req.name, "name")?.ok_or_else(|| invalid("name", "is required"))?;
    let rule = text(&req.rule, "rule")?.ok_or_else(|| invalid("rule", "is required"))?;
    check_rule(&rule)?;
    let writer = state.clone();
    let def = off_workers(move || {
        let state = writer;
        let _one_writer = state.segments_lock.hold();
        check_name(&state, &name, None)?;
        let def = state
            .store
            .create_segment(&name, &rule, Utc::now().timestamp_millis())
            .map_err(store_error)?;
        reload(&state)?;
        Ok(def)
    })
    .await?;
    let mut warned = warnings(&state).await?;
    Ok((StatusCode::CREATED, Json(body(&state, def, &mut warned)?)))
}

pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let mut warned = warnings(&state).await?;
    let segments = state
        .store
        .segments()
        .map_err(store_error)?
        .into_iter()
        .map(|d| body(&state, d, &mut warned))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "segments": segments })))
}

pub(crate) async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SegmentBody>, ApiError> {
    let def = find(&state, &id)?;
    let mut warned = warnings(&state).await?;
    Ok(Json(body(&state, def, &mut warned)?))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SegmentRequest>,
) -> Result<Json<SegmentBody>, ApiError> {
    let (name, rule) = (text(&req.name, "name")?, text(&req.rule, "rule")?);
    if name.is_none() && rule.is_none() {
        return Err(invalid(
            "name",
            "or `rule` is required: a change names at least one",
        ));
    }
    if let Some(rule) = &rule {
        check_rule(rule)?;
    }
    let writer = state.clone();
    let def = off_workers(move || {
        let state = writer;
        let _one_writer = state.segments_lock.hold();
        let mut def = find(&state, &id)?;
        let unchanged = def.clone();
        if let Some(name) = name {
            check_name(&state, &name, Some(def.id))?;
            def.name = name;
        }
        if let Some(rule) = rule
            && rule != def.rule
        {
            def.rule = rule;
            def.version += 1;
        }
        if def == unchanged {
            // What it already is: nothing to store, and `updated_at` stays the last change.
            return Ok(def);
        }
        def.updated_at = Utc::now().timestamp_millis();
        state.store.update_segment(&def).map_err(store_error)?;
        reload(&state)?;
        Ok(def)
    })
    .await?;
    let mut warned = warnings(&state).await?;
    Ok(Json(body(&state, def, &mut warned)?))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    off_workers(move || {
        let _one_writer = state.segments_lock.hold();
        let def = find(&state, &id)?;
        // Out of force first, so that the stream stage moves no one in or out of it while
        // its members are read; then every member leaves it, with an exit event each (in
        // the outbox for webhooks and in the member's history), as the segment goes.
        let others = state.store.segments().map_err(store_error)?;
        state
            .segments
            .replace_segments(others.into_iter().filter(|s| s.id != def.id).collect());
        // A batch that took its snapshot before may still move members in or out.
        let generation = state.segments.generation();
        if !state
            .segments
            .wait_for_older_batches(generation, std::time::Duration::from_secs(30))
        {
            tracing::warn!(segment = def.id, "the stream stage kept a batch going for 30 s; deleting the segment without waiting more");
        }
        let deleted = exits(&state, &def).and_then(|exits| {
            state
                .store
                .delete_segment(def.id, &exits)
                .map_err(store_error)
        });
        // From the store either way: a failed deletion puts the segment back in force.
        reload(&state)?;
        deleted
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The exit event of every member of a segment being deleted.
fn exits(state: &ApiState, def: &SegmentDef) -> Result<Vec<(u64, Vec<u8>)>, ApiError> {
    const PAGE: usize = 4096;
    let now = Utc::now();
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let ids = state
            .store
            .members(def.id, after, PAGE)
            .map_err(store_error)?;
        for &pid in &ids {
            let profile = state.store.get(pid).map_err(store_error)?;
            let who = match &profile {
                Some(p) => Who::of(pid, p),
                None => Who {
                    id: pid,
                    user_id: None,
                    anonymous_id: None,
                },
            };
            let exit = deleted_exit(who, (def.id, &def.name), now);
            out.push((pid, exit));
        }
        match ids.last() {
            Some(&last) if ids.len() == PAGE => after = Some(last),
            _ => return Ok(out),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct MembersQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn members(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Result<Json<Value>, ApiError> {
    let def = find(&state, &id)?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_MEMBERS,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_MEMBERS).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_MEMBERS}, got {s:?}"),
                ));
            }
        },
    };
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            invalid(
                "cursor",
                format!("must be a next_cursor this endpoint returned, got {c:?}"),
            )
        })?),
    };
    let store = state.store.clone();
    let page = off_workers(move || member_page(&*store, def.id, after, limit)).await?;
    Ok(Json(page))
}

/// A page of at most `limit` members of a segment after profile `after`:
/// `{"members": [{"profile_id", "user_id", "anonymous_id"?}], "next_cursor"}`. Reads one
/// profile per member: call it off the async workers.
pub(crate) fn member_page(
    store: &dyn ProfileStore,
    segment: SegmentId,
    after: Option<u64>,
    limit: usize,
) -> Result<Value, ApiError> {
    let ids = store
        .members(segment, after, limit + 1)
        .map_err(store_error)?;
    let more = ids.len() > limit;
    let mut members = Vec::with_capacity(limit.min(ids.len()));
    for &pid in ids.iter().take(limit) {
        let profile = store.get(pid).map_err(store_error)?;
        let mut member = serde_json::json!({ "profile_id": pid });
        match profile.map(|p| (p.user_id, p.anonymous_ids)) {
            Some((Some(user_id), _)) => member["user_id"] = user_id.into(),
            // A customer who never signed up: named by an anonymous id, with which
            // `GET /v1/profiles/anonymous_id:{id}` finds the profile.
            Some((None, anonymous)) => {
                member["user_id"] = Value::Null;
                member["anonymous_id"] = anonymous.into_iter().next().into();
            }
            None => member["user_id"] = Value::Null,
        }
        members.push(member);
    }
    let next = more.then(|| ids[limit - 1].to_string());
    Ok(serde_json::json!({ "members": members, "next_cursor": next }))
}
