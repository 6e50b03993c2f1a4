//! `/v1/jobs`: the scheduled jobs (lake compaction, profile snapshots), what they last
//! did, and a way to run one now, for an operator or an outside orchestrator.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use persona_jobs::{Outcome, Run, RunError};
use serde_json::{Value, json};

use crate::{ApiError, ApiState, not_found, off_workers};

pub(crate) async fn list(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "jobs": state.jobs.list() }))
}

/// Runs the job and answers its run once it has finished: 200 when it succeeded, 500
/// `job_failed` with the reason when it did not, so that a caller checking the status
/// (the CLI, an orchestrator's HTTP task) sees the failure.
pub(crate) async fn run(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Run>, ApiError> {
    let jobs = state.jobs.clone();
    let run = off_workers(move || {
        jobs.run_now(&name).map_err(|e| match e {
            RunError::Unknown { .. } => not_found(e.to_string()),
            RunError::AlreadyRunning(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_running", e.to_string())
            }
        })
    })
    .await?;
    match run.outcome {
        Outcome::Succeeded => Ok(Json(run)),
        Outcome::Failed => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job_failed",
            format!(
                "job {} failed after {:.0} ms: {}",
                run.job,
                run.duration_ms,
                run.error.as_deref().unwrap_or("no reason given")
            ),
        )),
    }
}
