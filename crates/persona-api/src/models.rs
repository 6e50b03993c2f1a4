//! `/v1/models`: cluster models trained on the current profiles, read with their metrics,
//! curves, centres and cluster names, and activated.
//!
//! Training runs on a thread of its own (`POST` answers 202 at once; `GET` shows the
//! progress). It reads every profile's features as of now, runs the same training as
//! `persona cluster` and stores the model, version-numbered within its name. One model per
//! name is active: a newly trained one takes over unless `"activate": false`, and the stream
//! stage then places every customer in its nearest cluster (a back-fill pass now, and every
//! profile change after), with a `segment.entered` / `segment.exited` event per move.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use persona_rules::live::models::{FeatureTable, MODEL_DOCUMENT, feature};
use persona_rules::{ModelDoc, ModelStatus, SegmentRegistry};
use persona_segment::pipeline::spec::KPlan;
use persona_segment::pipeline::{Plan, TrainSpec, train};
use persona_store::{ProfileStore, StoreError, for_each_page};
use serde_json::Value;

use crate::body::{JsonBody, invalid};
use crate::profiles::store_error;
use crate::{ApiError, ApiState, WriteLock, off_workers};

const MAX_NAME_CHARS: usize = 200;
/// The most clusters a live model may have, given or tried: each is a segment a person
/// acts on, and each tried k is a full training on every profile.
const MAX_LIVE_K: usize = 100;
/// The most K-Means restarts per k (each one a full fit).
const MAX_N_INIT: usize = 50;
/// Profiles read per store scan while collecting features.
const SCAN_CHUNK: usize = 10_000;
/// How often a training run writes its progress into the stored model.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Every stored model. Training that a restart interrupted is marked failed, so that no
/// model stays "training" for ever.
pub fn load_models(store: &dyn ProfileStore) -> Result<Vec<ModelDoc>, StoreError> {
    let mut docs = read_models(store)?;
    for doc in &mut docs {
        if doc.status == ModelStatus::Training {
            doc.status = ModelStatus::Failed;
            doc.progress = None;
            doc.error = Some("training was interrupted by a restart; train it again".into());
            write_model(store, doc)?;
        }
    }
    Ok(docs)
}

/// Every stored model that reads back. One that does not (written by a later version of
/// persona, say) is left in the store, logged and passed over, so that it cannot take the
/// other models and the server's start with it.
fn read_models(store: &dyn ProfileStore) -> Result<Vec<ModelDoc>, StoreError> {
    Ok(store
        .documents(MODEL_DOCUMENT)?
        .into_iter()
        .filter_map(|(id, body)| match serde_json::from_slice(&body) {
            Ok(doc) => Some(doc),
            Err(e) => {
                tracing::warn!(model = id, error = %e, "a stored model is unreadable; passing over it");
                None
            }
        })
        .collect())
}

fn write_model(store: &dyn ProfileStore, doc: &ModelDoc) -> Result<(), StoreError> {
    let body = serde_json::to_vec(doc).expect("a model serialises");
    store.put_document(MODEL_DOCUMENT, doc.id, &body)
}

/// The model as the API shows it: everything but the fitted numbers (whose centres are in
/// the summary in the features' own units), and for the active model how far placing
/// every customer has come.
fn shown(doc: &ModelDoc, registry: &SegmentRegistry) -> Value {
    let mut v = serde_json::to_value(doc).expect("a model serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("model");
        if doc.active {
            o.insert(
                "backfill".into(),
                serde_json::to_value(registry.backfill(true, doc.id)).expect("serialises"),
            );
        }
    }
    v
}

/// The stored model `id` names; 404 for an id that is not a model's, a number or not.
fn find(state: &ApiState, id: &str) -> Result<ModelDoc, ApiError> {
    let unknown = || crate::not_found(format!("no model with id {id}"));
    let id: u64 = id.parse().map_err(|_| unknown())?;
    read_models(&*state.store)
        .map_err(store_error)?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(unknown)
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Value::Object(mut fields) = body else {
        return Err(invalid("body", "must be a JSON object"));
    };
    let name = match fields.remove("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS => s,
        Some(Value::String(_)) | None => {
            return Err(invalid(
                "name",
                format!("is required, 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        Some(other) => return Err(invalid("name", format!("must be a string, got {other}"))),
    };
    let activate = match fields.remove("activate") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(invalid(
                "activate",
                format!("must be true or false, got {other}"),
            ));
        }
    };
    let spec: TrainSpec = serde_json::from_value(Value::Object(fields))
        .map_err(|e| invalid("body", e.to_string()))?;
    if spec.features.is_empty() {
        return Err(invalid(
            "features",
            "name the profile fields to cluster on, such as [\"computed.frequency\", \"computed.monetary\", \"computed.recency_days\"]",
        ));
    }
    for (i, f) in spec.features.iter().enumerate() {
        feature(f).map_err(|e| invalid(&format!("features[{i}]"), e.to_string()))?;
    }
    let plan = spec
        .plan()
        .map_err(|e| invalid(e.field, e.reason.clone()))?;
    if !plan.assigns() {
        return Err(invalid(
            "algorithm",
            "dbscan has no centres to place new customers by; use kmeans, minibatch-kmeans or hierarchical (or persona cluster for DBSCAN)",
        ));
    }
    check_live_limits(&plan)?;
    let (store, lock) = (state.store.clone(), state.models_lock.clone());
    let doc = off_workers(move || {
        let _one_at_a_time = lock.hold();
        let existing = read_models(&*store).map_err(store_error)?;
        // Training takes every core it can; a second one at the same time would only
        // slow both (and the stream stage beside them).
        if let Some(running) = existing.iter().find(|m| m.status == ModelStatus::Training) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "training_in_progress",
                format!(
                    "model {} ({:?}) is training; wait until GET /v1/models/{} shows it ready or failed",
                    running.id, running.name, running.id
                ),
            ));
        }
        let version = existing
            .iter()
            .filter(|m| m.name == name)
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
            + 1;
        let doc = ModelDoc {
            id: store
                .next_document_id(MODEL_DOCUMENT)
                .map_err(store_error)?,
            name,
            version,
            status: ModelStatus::Training,
            active: false,
            created_at: Utc::now(),
            trained_at: None,
            training_seconds: None,
            profiles: None,
            spec,
            progress: Some("starting".into()),
            error: None,
            summary: None,
            model: None,
        };
        write_model(&*store, &doc).map_err(store_error)?;
        Ok(doc)
    })
    .await?;
    let store = state.store.clone();
    let shown_now = shown(&doc, &state.segments);
    let (registry, lock) = (state.segments.clone(), state.models_lock.clone());
    std::thread::Builder::new()
        .name(format!("persona-train-{}", doc.id))
        .spawn(move || run_training(&*store, &registry, &lock, doc, activate))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot start training: {e}"),
            )
        })?;
    Ok((StatusCode::ACCEPTED, Json(shown_now)))
}

/// Refuses settings a live model cannot use or that would train for hours.
fn check_live_limits(plan: &Plan) -> Result<(), ApiError> {
    // A tree's cut height finds k itself; training refuses it a single cluster.
    let given = match plan.k {
        KPlan::Fixed(k) => Some(("k", k)),
        KPlan::Auto { max } => Some(("k_max", max)),
        _ => None,
    };
    if let Some((field, k)) = given {
        if k < 2 {
            return Err(invalid(
                field,
                "must be at least 2 for a live model: one cluster places every customer alike",
            ));
        }
        if k > MAX_LIVE_K {
            return Err(invalid(
                field,
                format!("must be at most {MAX_LIVE_K} for a live model, got {k}"),
            ));
        }
    }
    if plan.n_init > MAX_N_INIT {
        return Err(invalid(
            "n_init",
            format!("must be at most {MAX_N_INIT}, got {}", plan.n_init),
        ));
    }
    Ok(())
}

/// Trains `doc` and stores the outcome, trained or failed; activates it when asked.
fn run_training(
    store: &dyn ProfileStore,
    registry: &SegmentRegistry,
    lock: &WriteLock,
    mut doc: ModelDoc,
    activate: bool,
) {
    let started = Instant::now();
    // A bug in training must fail this model, not leave it "training" until a restart.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| train_on_profiles(store, &mut doc)))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("training stopped on an internal error: {what}"))
        });
    doc.progress = None;
    doc.training_seconds = Some(started.elapsed().as_secs_f64());
    match outcome {
        Ok(()) => {
            doc.status = ModelStatus::Ready;
            doc.trained_at = Some(Utc::now());
            tracing::info!(model = doc.id, name = %doc.name, version = doc.version, seconds = doc.training_seconds, "model trained");
        }
        Err(e) => {
            tracing::warn!(model = doc.id, error = %e, "model training failed");
            doc.status = ModelStatus::Failed;
            doc.error = Some(e);
        }
    }
    let ready = doc.status == ModelStatus::Ready;
    let stored = if activate && ready {
        make_active(store, registry, lock, doc).map(|_| ())
    } else {
        write_model(store, &doc)
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot store a trained model");
    }
}

/// Reads the features of every profile as of now and trains as `doc.spec` says; fills in
/// the summary and the model, and writes progress into the stored model as it goes.
pub fn train_on_profiles(store: &dyn ProfileStore, doc: &mut ModelDoc) -> Result<(), String> {
    let features = doc
        .spec
        .features
        .iter()
        .map(|f| feature(f).map(|field| (f.clone(), field)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut table = FeatureTable::new(features, &doc.spec.categorical);
    let total = store.count().map_err(|e| e.to_string())?;
    let now = Utc::now();
    let mut reported = Instant::now();
    for_each_page(store, SCAN_CHUNK, |page| {
        for (_, profile) in page {
            table.push(&profile.view(now));
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            doc.progress = Some(format!("reading profiles: {} of {total}", table.rows()));
            let _ = write_model(store, doc);
        }
        Ok::<_, StoreError>(())
    })
    .map_err(|e| e.to_string())?;
    if table.rows() == 0 {
        return Err("there are no profiles to train on yet".into());
    }
    doc.profiles = Some(table.rows());
    doc.progress = Some(format!("clustering {} profiles", table.rows()));
    let _ = write_model(store, doc);
    let columns = table.finish();
    let mut last_report = Instant::now();
    let trained = train(&columns, &doc.spec.clone(), &mut |done, total| {
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            doc.progress = Some(format!("trying k: {done} of {total}"));
            let _ = write_model(store, doc);
        }
    })
    .map_err(|e| e.to_string())?;
    if trained.summary.k < 2 {
        return Err(format!(
            "training found a single cluster in {} profiles; a live model needs two or more (give k, or a lower cut_height)",
            trained.summary.rows
        ));
    }
    doc.model = trained.model();
    doc.summary = Some(trained.summary);
    Ok(())
}

/// Makes `doc` the one active model of its name, stores it, and puts it in force.
fn make_active(
    store: &dyn ProfileStore,
    registry: &SegmentRegistry,
    lock: &WriteLock,
    mut doc: ModelDoc,
) -> Result<ModelDoc, StoreError> {
    let _one_at_a_time = lock.hold();
    let mut all = read_models(store)?;
    for other in &mut all {
        if other.name == doc.name && other.id != doc.id && other.active {
            other.active = false;
            write_model(store, other)?;
        }
    }
    doc.active = true;
    write_model(store, &doc)?;
    match all.iter_mut().find(|m| m.id == doc.id) {
        Some(m) => *m = doc.clone(),
        None => all.push(doc.clone()),
    }
    registry.replace_models(&all);
    Ok(doc)
}

pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let models = read_models(&*state.store).map_err(store_error)?;
    Ok(Json(serde_json::json!({
        "models": models.iter().map(|m| shown(m, &state.segments)).collect::<Vec<_>>()
    })))
}

pub(crate) async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(shown(&find(&state, &id)?, &state.segments)))
}

/// The curves over k (or the k-distance curve) the model's k was chosen by.
pub(crate) async fn curves(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = find(&state, &id)?;
    let curves = doc.summary.map(|s| s.curves).unwrap_or_default();
    Ok(Json(serde_json::json!({ "id": doc.id, "curves": curves })))
}

/// Makes a trained model the active one of its name (a rollback to an earlier version).
pub(crate) async fn activate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = find(&state, &id)?;
    if doc.status != ModelStatus::Ready {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "model {} is {}, not trained; only a trained model can be active",
                doc.id,
                serde_json::to_value(doc.status).expect("serialises")
            ),
        ));
    }
    let (store, registry, lock) = (
        state.store.clone(),
        state.segments.clone(),
        state.models_lock.clone(),
    );
    let doc = off_workers(move || make_active(&*store, &registry, &lock, doc).map_err(store_error))
        .await?;
    Ok(Json(shown(&doc, &state.segments)))
}
