//! `/v1/rfm`: the RFM quintile edges, fitted in batch over every purchasing customer
//! (`POST`, and on the server's schedule) and read (`GET`). Each fit is stored with the
//! next version number; profiles are scored against the newest when read.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use persona_core::FieldError;
use persona_rules::SegmentRegistry;
use persona_rules::live::RfmFit;
use persona_rules::live::rfm::{RFM_DOCUMENT, values};
use persona_segment::rfm::RfmEdges;
use persona_store::{ProfileStore, StoreError, for_each_profile_on_one_core};
use serde::Deserialize;
use serde_json::Value;

use crate::body::OptionalJsonBody;
use crate::profiles::store_error;
use crate::{ApiError, ApiState};

/// Profile ids read per store read.
const SCAN_CHUNK: u64 = 10_000;

/// The newest stored fit.
pub fn load_rfm(store: &dyn ProfileStore) -> Result<Option<RfmFit>, StoreError> {
    let Some((id, body)) = store.documents(RFM_DOCUMENT)?.pop() else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| StoreError::Backend(format!("RFM fit {id} is unreadable: {e}")))
}

/// Fits the edges over every purchasing customer as of `as_of`, stores them as the next
/// version and puts them in force; `None` when no customer has purchased yet.
pub fn refit_rfm(
    store: &dyn ProfileStore,
    registry: &SegmentRegistry,
    as_of: DateTime<Utc>,
) -> Result<Option<RfmFit>, StoreError> {
    let mut customers = Vec::new();
    let mut unusable = 0usize;
    // On one core: the fit runs on a schedule while events arrive, and the stream stage's
    // freshness matters more than the fit's few seconds.
    for_each_profile_on_one_core(store, SCAN_CHUNK, |_, p| {
        let Some(v) = values(&p.view(as_of).computed) else {
            return;
        };
        // A spend that is not a finite number cannot place an edge; such a customer is
        // scored against the others' edges, not fitted on.
        if v.monetary.is_finite() {
            customers.push(v);
        } else {
            unusable += 1;
        }
    })?;
    if unusable > 0 {
        tracing::warn!(
            customers = unusable,
            "RFM fit passes over customers whose spend is not a finite number"
        );
    }
    let version = store.next_document_id(RFM_DOCUMENT)?;
    let Ok(edges) = RfmEdges::fit(&customers, version) else {
        return Ok(None);
    };
    let fit = RfmFit {
        edges,
        fitted_at: Utc::now(),
        as_of,
    };
    store.put_document(
        RFM_DOCUMENT,
        version,
        &serde_json::to_vec(&fit).expect("serialises"),
    )?;
    tracing::info!(version, customers = customers.len(), "RFM edges fitted");
    if !registry.set_rfm(fit.clone()) {
        tracing::info!(version, "a newer RFM fit finished first and stays in force");
    }
    Ok(Some(fit))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefitRequest {
    /// Measure recency against this instant instead of now (for a backfilled history).
    as_of: Option<String>,
}

pub(crate) async fn refit(
    State(state): State<ApiState>,
    OptionalJsonBody(body): OptionalJsonBody<RefitRequest>,
) -> Result<Json<Value>, ApiError> {
    let as_of = match body.and_then(|b| b.as_of) {
        None => Utc::now(),
        Some(s) => persona_core::time::parse_timestamp(&s)
            .map_err(|reason| ApiError::invalid(vec![FieldError::request("as_of", reason)]))?,
    };
    let (store, registry) = (state.store.clone(), state.segments.clone());
    let fit = tokio::task::spawn_blocking(move || refit_rfm(&*store, &registry, as_of))
        .await
        .expect("the fit does not panic")
        .map_err(store_error)?;
    match fit {
        Some(fit) => Ok(Json(serde_json::to_value(fit).expect("serialises"))),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_purchases",
            "no customer has purchased yet; RFM needs at least one",
        )),
    }
}

pub(crate) async fn get(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    match state.segments.rfm() {
        Some(fit) => Ok(Json(serde_json::to_value(&*fit).expect("serialises"))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "RFM has not been fitted yet: POST /v1/rfm, or wait for the scheduled fit",
        )),
    }
}
