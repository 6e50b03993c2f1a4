//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::CollectorState;

/// Share of the append queue above which the server reports itself not ready, so a load
/// balancer steers traffic away before appends start being refused.
const READY_QUEUE_FILL: f64 = 0.9;

/// The process is up and serving HTTP.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready to accept events: the server is not stopping, and the log can write and is not
/// saturated. Later stages' troubles
/// are reported as warnings (see [`crate::StageCheck`]).
pub(crate) async fn readyz(State(state): State<CollectorState>) -> Response {
    let fill = state.log.queue_fill();
    let mut problems = Vec::new();
    if state.is_stopping() {
        problems.push("shutting down".to_string());
    }
    if let Some(why) = state.log.failure() {
        problems.push(format!("event log failed: {why}"));
    }
    if fill >= READY_QUEUE_FILL {
        problems.push(format!("event log queue {:.0}% full", fill * 100.0));
    }
    let mut body = json!({
        "log": {"next_offset": state.log.next_offset(), "queue_fill": fill},
    });
    let mut warnings = Vec::new();
    for stage in &state.stages {
        let (figures, stage_warnings) = stage.check();
        body[stage.name()] = figures;
        warnings.extend(stage_warnings);
    }
    body["status"] = json!(if problems.is_empty() {
        "ready"
    } else {
        "not_ready"
    });
    body["problems"] = json!(problems);
    body["warnings"] = json!(warnings);
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn metrics(State(state): State<CollectorState>) -> Response {
    state.metrics.log_queue_fill.set(state.log.queue_fill());
    state
        .metrics
        .log_next_offset
        .set(state.log.next_offset() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
