//! `POST /v1/sql`: one read-only SQL statement over the warehouse (the event lake, the
//! live profiles and the segments), answered as columns and rows.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use persona_warehouse::{QueryError, QueryResult};
use serde::Deserialize;

use crate::body::{JsonBody, invalid};
use crate::{ApiError, ApiState};

/// Rows answered when the request does not say.
pub const DEFAULT_ROWS: usize = 1_000;
/// The most rows one answer may carry: beyond that, aggregate, or page with `LIMIT` and
/// `OFFSET`, or read the lake's Parquet directly.
pub const MAX_ROWS: usize = 100_000;
/// The longest statement taken.
const MAX_QUERY_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlRequest {
    query: Option<serde_json::Value>,
    limit: Option<serde_json::Value>,
}

pub(crate) async fn query(
    State(state): State<ApiState>,
    JsonBody(request): JsonBody<SqlRequest>,
) -> Result<Json<QueryResult>, ApiError> {
    let sql = match request.query {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        Some(serde_json::Value::String(_)) | None => {
            return Err(invalid(
                "query",
                "is required: one SQL statement, as in SELECT count(*) FROM events",
            ));
        }
        Some(other) => return Err(invalid("query", format!("must be a string, got {other}"))),
    };
    if sql.len() > MAX_QUERY_BYTES {
        return Err(ApiError::too_large(
            "too_large",
            format!(
                "the query is {} bytes; at most {MAX_QUERY_BYTES} are taken",
                sql.len()
            ),
        ));
    }
    let rows = match request.limit {
        None => DEFAULT_ROWS,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_ROWS as u64).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_ROWS}, got {v}"),
                )
            })? as usize,
    };
    state
        .warehouse
        .query(&sql, rows)
        .await
        .map(Json)
        .map_err(answer)
}

/// The error answer for a failed query.
fn answer(e: QueryError) -> ApiError {
    let status = match &e {
        QueryError::Invalid(_) | QueryError::ReadOnly(_) | QueryError::TooExpensive(_) => {
            StatusCode::BAD_REQUEST
        }
        QueryError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
        QueryError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
        QueryError::Internal(_) => {
            tracing::error!(error = %e, "SQL query failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut error = ApiError::new(status, e.code(), e.to_string());
    if matches!(e, QueryError::Busy { .. }) {
        error.retry_after = Some(Duration::from_secs(1));
    }
    error
}
