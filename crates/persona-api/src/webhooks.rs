//! `/v1/webhooks`: subscriptions to segment entries and exits, created, read, changed,
//! deleted and tested. Delivery itself is `persona_webhooks`' work.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use persona_core::FieldError;
use persona_webhooks::{
    DeliveryStatus, PingResult, WebhookChange, WebhookView, check_events, check_secret, check_url,
    new_secret,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::body::{JsonBody, invalid, text};
use crate::profiles::store_error;
use crate::{ApiError, ApiState, off_workers};

/// A request body's fields, each kept as sent for its own check.
pub(crate) struct WebhookRequest {
    url: Option<Value>,
    events: Option<Value>,
    segments: Option<Value>,
    secret: Option<Value>,
    active: Option<Value>,
}

const FIELDS: [&str; 5] = ["url", "events", "segments", "secret", "active"];

impl WebhookRequest {
    /// The fields of a JSON object; any other field is refused by its name (a misspelt
    /// `event` must not pass for a change of nothing).
    fn from_body(mut body: Map<String, Value>) -> Result<Self, ApiError> {
        if let Some(other) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                other,
                format!(
                    "is not a field of a webhook; the fields are {}",
                    FIELDS.join(", ")
                ),
            ));
        }
        Ok(WebhookRequest {
            url: body.remove("url"),
            events: body.remove("events"),
            segments: body.remove("segments"),
            secret: body.remove("secret"),
            active: body.remove("active"),
        })
    }
}

#[derive(Serialize)]
pub(crate) struct WebhookBody {
    id: u64,
    url: String,
    events: Vec<String>,
    /// The rule segments whose events it receives; empty for all.
    segments: Vec<u64>,
    active: bool,
    /// Why persona turned it off, when it did.
    disabled_reason: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    delivery: DeliveryStatus,
    /// The signing secret: only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<WebhookView> for WebhookBody {
    fn from(v: WebhookView) -> Self {
        WebhookBody {
            id: v.def.id,
            url: v.def.url,
            events: v.def.events,
            segments: v.def.segments,
            active: v.def.active,
            disabled_reason: v.def.disabled_reason,
            created_at: DateTime::from_timestamp_millis(v.def.created_at),
            updated_at: DateTime::from_timestamp_millis(v.def.updated_at),
            delivery: v.delivery,
            secret: None,
        }
    }
}

/// The change a request asks for, each field checked (`segments` against the stored ones).
fn change(state: &ApiState, req: WebhookRequest) -> Result<WebhookChange, ApiError> {
    let url = text(&req.url, "url")?;
    if let Some(url) = &url {
        check_url(url).map_err(|e| invalid("url", e))?;
    }
    let events = match req.events {
        None => None,
        Some(Value::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => names.push(s.clone()),
                    other => {
                        return Err(invalid(
                            &format!("events[{i}]"),
                            format!("must be an event name, got {other}"),
                        ));
                    }
                }
            }
            check_events(&names).map_err(|(at, why)| match at {
                Some(i) => invalid(&format!("events[{i}]"), why),
                None => invalid("events", why),
            })?;
            Some(names)
        }
        Some(other) => {
            return Err(invalid(
                "events",
                format!("must be an array of event names, got {other}"),
            ));
        }
    };
    let segments = match req.segments {
        None => None,
        Some(Value::Array(items)) => {
            let known = state.store.segments().map_err(store_error)?;
            let mut ids = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("segments[{i}]");
                let id = item
                    .as_u64()
                    .ok_or_else(|| invalid(&field, format!("must be a segment id, got {item}")))?;
                if !known.iter().any(|s| s.id == id) {
                    return Err(invalid(&field, format!("no segment {id}")));
                }
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Some(ids)
        }
        Some(other) => {
            return Err(invalid(
                "segments",
                format!("must be an array of segment ids, got {other}"),
            ));
        }
    };
    let secret = text(&req.secret, "secret")?;
    if let Some(secret) = &secret {
        check_secret(secret).map_err(|e| invalid("secret", e))?;
    }
    let active = match req.active {
        None => None,
        Some(Value::Bool(b)) => Some(b),
        Some(other) => {
            return Err(invalid(
                "active",
                format!("must be true or false, got {other}"),
            ));
        }
    };
    Ok(WebhookChange {
        url,
        events,
        segments,
        secret,
        active,
    })
}

fn id_of(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| crate::not_found(format!("no webhook {id}")))
}

fn view(state: &ApiState, id: u64) -> Result<WebhookView, ApiError> {
    state
        .webhooks
        .get(id)
        .map_err(store_error)?
        .ok_or_else(|| crate::not_found(format!("no webhook {id}")))
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<(StatusCode, Json<WebhookBody>), ApiError> {
    let mut change = change(&state, WebhookRequest::from_body(body)?)?;
    let url = change
        .url
        .take()
        .ok_or_else(|| invalid("url", "is required"))?;
    let events = change.events.take().ok_or_else(|| {
        invalid(
            "events",
            format!(
                "is required: a list of {}",
                persona_webhooks::EVENTS.join(", ")
            ),
        )
    })?;
    let secret = change.secret.take().unwrap_or_else(new_secret);
    let segments = change.segments.take().unwrap_or_default();
    let writer = state.clone();
    let def = off_workers(move || {
        let active = change.active.unwrap_or(true);
        writer
            .webhooks
            .create(url, events, segments, secret, active)
            .map_err(store_error)
    })
    .await?;
    let mut body = WebhookBody::from(view(&state, def.id)?);
    body.secret = Some(def.secret);
    Ok((StatusCode::CREATED, Json(body)))
}

pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let webhooks: Vec<WebhookBody> = state
        .webhooks
        .list()
        .map_err(store_error)?
        .into_iter()
        .map(WebhookBody::from)
        .collect();
    Ok(Json(serde_json::json!({ "webhooks": webhooks })))
}

pub(crate) async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookBody>, ApiError> {
    Ok(Json(view(&state, id_of(&id)?)?.into()))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<WebhookBody>, ApiError> {
    let id = id_of(&id)?;
    let change = change(&state, WebhookRequest::from_body(body)?)?;
    if change.url.is_none()
        && change.events.is_none()
        && change.segments.is_none()
        && change.secret.is_none()
        && change.active.is_none()
    {
        return Err(ApiError::invalid(vec![FieldError::request(
            "url",
            "or `events`, `segments`, `secret` or `active` is required: a change names at least one",
        )]));
    }
    let writer = state.clone();
    let found =
        off_workers(move || writer.webhooks.update(id, change).map_err(store_error)).await?;
    if found.is_none() {
        return Err(crate::not_found(format!("no webhook {id}")));
    }
    Ok(Json(view(&state, id)?.into()))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id_of(&id)?;
    let found = off_workers(move || state.webhooks.delete(id).map_err(store_error)).await?;
    if !found {
        return Err(crate::not_found(format!("no webhook {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn ping(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<PingResult>, ApiError> {
    let id = id_of(&id)?;
    state
        .webhooks
        .ping(id)
        .await
        .map(Json)
        .ok_or_else(|| crate::not_found(format!("no webhook {id}")))
}
