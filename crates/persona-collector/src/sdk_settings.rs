//! The settings documents browser SDKs fetch before they send anything.
//!
//! `AnalyticsBrowser.load({ writeKey, cdnURL })` first asks
//! `GET {cdnURL}/v1/projects/{writeKey}/settings` and refuses to start on any answer but
//! 2xx. Segment's CDN answers with the source's destinations and options; persona answers
//! with the one destination it is, itself: the `Segment.io` integration pointed at the host
//! the browser asked, so events come back here. Remote metrics are switched off (their
//! default sends them to Segment), and no other destination or plugin is listed, so the
//! browser loads no further code.
//!
//! RudderStack's JavaScript SDK likewise asks its control plane (`configUrl`) for
//! `GET /sourceConfig/` with the write key as Basic auth, and waits for the answer before it
//! sends. persona answers as a control plane whose source has no device-mode destinations, so
//! the SDK sends every call to its data plane, persona.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::body::request_write_key;
use crate::error::ApiError;
use crate::state::CollectorState;

pub(crate) const ROUTE: &str = "/v1/projects/{write_key}/settings";
/// RudderStack's SDKs ask for `/sourceConfig/?p=npm&v=...` (with the slash) or without it.
pub(crate) const RUDDERSTACK_ROUTES: [&str; 2] = ["/sourceConfig", "/sourceConfig/"];

/// How the settings may be cached. The browser may keep them for five minutes (every page
/// load asks for them otherwise), but no shared cache may: they name the host and scheme the
/// request came in on, which a shared cache would hand to requests that came in on others.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("private, max-age=300");

/// The settings answer with [`CACHE_CONTROL`].
fn cacheable(settings: Value) -> Response {
    ([(header::CACHE_CONTROL, CACHE_CONTROL)], Json(settings)).into_response()
}

pub(crate) async fn settings(
    State(state): State<CollectorState>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.config.accepts(&write_key) {
        return Err(ApiError::unauthorized("invalid write key"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_host",
                "the Host header is needed to tell analytics.js where to send events",
            )
        })?;
    // Behind a proxy that ends TLS, the browser spoke https.
    let protocol = match headers
        .get("x-forwarded-proto")
        .and_then(|p| p.to_str().ok())
        .and_then(|p| p.split(',').next())
        .map(str::trim)
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Ok(cacheable(json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
            }
        },
        "metrics": {"sampleRate": 0},
        "plan": {},
        "enabledMiddleware": {},
        "remotePlugins": [],
    })))
}

pub(crate) async fn rudderstack_source_config(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let Some(write_key) = request_write_key(&headers, &uri)? else {
        return Err(ApiError::unauthorized(
            "missing write key: send it as the Basic auth user name or as ?writeKey=",
        ));
    };
    if !state.config.accepts(&write_key) {
        return Err(ApiError::unauthorized("invalid write key"));
    }
    Ok(cacheable(json!({
        "isHosted": false,
        "source": {
            "id": "persona",
            "name": "persona",
            "writeKey": write_key,
            "enabled": true,
            "config": {},
            "destinations": [],
        },
    })))
}
