//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::error::ApiError;
use crate::exposition::Exposition;
use crate::state::CollectorState;

/// Share of the append queue above which the server reports itself not ready, so a load
/// balancer steers traffic away before appends start being refused.
const READY_QUEUE_FILL: f64 = 0.9;

/// The process is up and serving HTTP.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// What `persona serve` answers while it opens its event log and profile store, which can
/// take a while on a large data folder: `/healthz` says the process is alive (so a liveness
/// probe does not kill a slow start) and everything else, `/readyz` included, is 503 with
/// `Retry-After`, which every SDK retries. Prometheus answers the same way during its WAL
/// replay. Without it, connections would wait unanswered in the kernel's queue.
pub fn starting_router() -> Router {
    let starting = || async {
        ApiError::unavailable(
            "starting",
            "the server is starting: it is opening its event log and profile store; retry shortly",
            Duration::from_secs(1),
        )
    };
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"status": "starting"})) }),
        )
        .fallback(starting)
        .layer(crate::cors())
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
        problems.push(format!(
            "event log failed: {why}; restart persona to recover"
        ));
    } else if let Some(why) = state.log.write_trouble() {
        problems.push(format!(
            "event log cannot write: {why}; every request tries again"
        ));
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

pub(crate) async fn metrics(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    state.metrics.log_queue_fill.set(state.log.queue_fill());
    let writable = state.log.failure().is_none() && !state.log.cannot_write();
    state.metrics.log_writable.set(i64::from(writable));
    state
        .metrics
        .log_next_offset
        .set(state.log.next_offset() as i64);
    let format = Exposition::for_accept(headers.get(header::ACCEPT));
    (
        [(header::CONTENT_TYPE, format.content_type())],
        format.render(state.metrics.render()),
    )
        .into_response()
}
