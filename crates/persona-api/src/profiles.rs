//! `GET /v1/profiles/{key}` and `GET /v1/profiles/{key}/events`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use persona_core::profile::{Profile, ProfileView};
use persona_store::{IdentityKey, ProfileId, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::invalid;
use crate::{ApiError, ApiState, off_workers};

/// Events returned when `limit` is not given, and the most that may be asked for.
const DEFAULT_EVENTS: usize = 50;
const MAX_EVENTS: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct ProfileQuery {
    as_of: Option<String>,
}

/// The profile body of the public interface: the view plus the segment-stage fields.
#[derive(Serialize)]
pub(crate) struct ProfileBody<'a> {
    #[serde(flatten)]
    view: ProfileView<'a>,
    /// RFM scores against the edges in force, for a customer who purchased.
    rfm: Option<Value>,
    segments: Vec<Value>,
    /// The customer's cluster in the first active model (by id), and in each of them.
    cluster: Option<Value>,
    clusters: Vec<Value>,
    /// True when the processor is failing or far behind, so recent events may be missing.
    stale: bool,
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        // Not over in a second: it lasts until a restart. The store said why when it
        // stopped, so each refused request is not worth a line of its own.
        StoreError::Stopped(_) => ApiError::unavailable(
            "store_unavailable",
            e.to_string(),
            std::time::Duration::from_secs(30),
        ),
        _ => {
            tracing::error!(error = %e, "profile store request failed");
            ApiError::unavailable(
                "store_unavailable",
                "the profile store cannot be used right now",
                std::time::Duration::from_secs(1),
            )
        }
    }
}

fn not_found(key: &IdentityKey<'_>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no profile for {key}"),
    )
}

fn lookup(state: &ApiState, key: &str) -> Result<(ProfileId, Profile), ApiError> {
    let parsed = IdentityKey::parse(key);
    find(state, key)?.ok_or_else(|| not_found(&parsed))
}

/// The profile a key names, if any; a key with no id is refused.
pub(crate) fn find(state: &ApiState, key: &str) -> Result<Option<(ProfileId, Profile)>, ApiError> {
    let key = IdentityKey::parse(key);
    if key.id().is_empty() {
        return Err(invalid("key", "must name an id, e.g. user_id:42"));
    }
    state.store.lookup(&key).map_err(store_error)
}

/// `as_of` as given (`field` names it in an error), or now.
pub(crate) fn as_of(text: Option<&str>, field: &str) -> Result<DateTime<Utc>, ApiError> {
    match text {
        None => Ok(Utc::now()),
        Some(s) => persona_core::time::parse_timestamp(s).map_err(|reason| invalid(field, reason)),
    }
}

/// A `limit` as given (a whole number from 1 to [`MAX_EVENTS`]), or the default.
pub(crate) fn events_limit(given: Option<&str>) -> Result<usize, ApiError> {
    match given {
        None => Ok(DEFAULT_EVENTS),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_EVENTS).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_EVENTS}, got {s:?}"),
                )
            }),
    }
}

/// The body of a profile as the API shows it, as of `as_of`.
pub(crate) fn body<'a>(
    state: &ApiState,
    profile: &'a Profile,
    as_of: DateTime<Utc>,
) -> ProfileBody<'a> {
    let live = state.segments.snapshot();
    let segments = profile
        .segments
        .iter()
        .filter_map(|id| live.segments.iter().find(|s| s.def.id == *id))
        .map(|s| serde_json::json!({ "id": s.def.id, "name": s.def.name }))
        .collect();
    let clusters: Vec<Value> = profile
        .clusters
        .iter()
        .filter_map(|&(model, cluster)| {
            let m = live.model(model)?;
            Some(serde_json::json!({
                "model": m.name,
                "model_id": m.id,
                "version": m.version,
                "cluster": cluster,
                "name": m.cluster_name(cluster),
            }))
        })
        .collect();
    let view = profile.view(as_of);
    let rfm = state.segments.rfm().and_then(|fit| {
        let s = fit.score(&view.computed)?;
        Some(serde_json::json!({
            "r": s.r, "f": s.f, "m": s.m, "score": s.score, "segment": s.segment,
            "version": fit.edges.version, "fitted_at": fit.fitted_at,
        }))
    });
    ProfileBody {
        view,
        rfm,
        segments,
        cluster: clusters.first().cloned(),
        clusters,
        stale: (state.stale)(),
    }
}

/// A profile's `limit` most recent events as logged, newest first. Reads the log: call
/// it off the async workers.
pub(crate) fn recent_events(
    state: &ApiState,
    id: ProfileId,
    limit: usize,
) -> Result<Vec<Value>, ApiError> {
    let refs = state.store.recent_events(id, limit).map_err(store_error)?;
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        match persona_log::read_at(&state.log_dir, r.offset, r.position) {
            Ok(Some(rec)) => match serde_json::from_slice::<Value>(&rec.payload) {
                // A log that lost records reuses their offsets (and often positions): an
                // index entry from before names another event now.
                Ok(v) if !indexed_at(&v, r.at) => {
                    tracing::debug!(offset = r.offset, "the log holds another event here now");
                }
                Ok(mut v) => {
                    // A source's credential is not part of the customer's history.
                    if let Some(o) = v.as_object_mut() {
                        o.remove("writeKey");
                    }
                    out.push(v)
                }
                Err(e) => tracing::warn!(offset = r.offset, error = %e, "unreadable event"),
            },
            // Deleted by log retention: older than the log keeps.
            Ok(None) => {}
            Err(e) => tracing::warn!(offset = r.offset, error = %e, "cannot read an event"),
        }
    }
    Ok(out)
}

/// A profile's `limit` most recent segment entries and exits, newest first.
pub(crate) fn history_of(
    state: &ApiState,
    id: ProfileId,
    limit: usize,
) -> Result<Vec<Value>, ApiError> {
    Ok(state
        .store
        .history(id, limit)
        .map_err(store_error)?
        .iter()
        .filter_map(|e| serde_json::from_slice(e).ok())
        .collect())
}

pub(crate) async fn profile(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response, ApiError> {
    let as_of = as_of(q.as_of.as_deref(), "as_of")?;
    let (_, profile) = lookup(&state, &key)?;
    // Written out here, while the profile the view borrows from is at hand.
    Ok(Json(body(&state, &profile, as_of)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    limit: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct EventsBody {
    user_id: Option<String>,
    /// Newest first.
    events: Vec<Value>,
}

pub(crate) async fn events(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsBody>, ApiError> {
    let limit = events_limit(q.limit.as_deref())?;
    let (id, profile) = lookup(&state, &key)?;
    // A scan of the event index and one small file read per event: off the async workers.
    let reader = state.clone();
    let events = off_workers(move || recent_events(&reader, id, limit)).await?;
    Ok(Json(EventsBody {
        user_id: profile.user_id,
        events,
    }))
}

/// `GET /v1/profiles/{key}/history`: the profile's segment entries and exits, newest first.
pub(crate) async fn history(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = events_limit(q.limit.as_deref())?;
    let (id, profile) = lookup(&state, &key)?;
    let history = history_of(&state, id, limit)?;
    Ok(Json(
        serde_json::json!({ "user_id": profile.user_id, "history": history }),
    ))
}

/// Whether a logged event is the one an index entry made at `at` (Unix milliseconds) names:
/// its time as the processor counts it, or, for entries indexed before a time after
/// receipt was counted as the receipt, its `timestamp` as sent.
fn indexed_at(event: &Value, at: i64) -> bool {
    let Some(t) = event.get("timestamp").and_then(Value::as_str) else {
        return false;
    };
    let received = event.get("receivedAt").and_then(Value::as_str);
    persona_core::time::event_time_ms(t, received) == Ok(at)
        || persona_core::time::parse_timestamp(t).is_ok_and(|s| s.timestamp_millis() == at)
}
