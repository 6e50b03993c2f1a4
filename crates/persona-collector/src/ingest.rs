//! The Segment-compatible ingestion handlers: `/v1/{track,identify,page,screen,group,alias}`,
//! their one-letter short forms, and `/v1/batch`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use persona_core::time::parse_timestamp;
use persona_core::{FieldError, MessageType};
use persona_log::AppendError;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::body::{basic_auth_key, read_body};
use crate::error::ApiError;
use crate::normalize::{Envelope, Field, Fields, JsonKind, normalize, normalize_fields};
use crate::state::CollectorState;

/// Handles one call of type `kind`, or a batch when `kind` is `None`.
pub(crate) async fn ingest(
    state: CollectorState,
    kind: Option<MessageType>,
    req: Request,
) -> Result<Response, ApiError> {
    let result = ingest_inner(&state, kind, req).await;
    if let Err(e) = &result {
        let reason = match e.status {
            StatusCode::UNAUTHORIZED => Some("auth"),
            StatusCode::PAYLOAD_TOO_LARGE => Some("too_large"),
            StatusCode::SERVICE_UNAVAILABLE => Some("overloaded"),
            _ if e.code == "invalid_json" => Some("invalid_json"),
            _ => None,
        };
        if let Some(reason) = reason {
            state.metrics.count_refusal(reason);
        }
    }
    result
}

async fn ingest_inner(
    state: &CollectorState,
    kind: Option<MessageType>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let header_key = basic_auth_key(&parts.headers)?;
    let limit = match kind {
        Some(_) => state.config.max_message_bytes,
        None => state.config.max_batch_bytes,
    };
    let bytes =
        read_body(&parts.headers, body, limit)
            .await
            .map_err(|e| match (e.status, kind) {
                (StatusCode::PAYLOAD_TOO_LARGE, Some(_)) => ApiError::too_large(
                    "message_too_large",
                    format!("message exceeds the limit of {} KB", limit / 1024),
                ),
                (StatusCode::PAYLOAD_TOO_LARGE, None) => ApiError::too_large(
                    "batch_too_large",
                    format!("batch exceeds the limit of {} KB", limit / 1024),
                ),
                _ => e,
            })?;
    state.metrics.ingested_bytes.inc_by(bytes.len() as u64);
    let mut body = read_object(&bytes)?;

    let write_key = authenticate(state, header_key, &mut body)?;
    let envelope = envelope(
        &parts.headers,
        &parts.extensions,
        &mut body,
        kind,
        write_key,
    )?;
    let messages = match kind {
        Some(_) => vec![Message::Read(body)],
        None => {
            let items = match body.remove("batch") {
                Some(v) if JsonKind::of(v.get()) == JsonKind::Array => serde_json::from_str::<
                    Vec<&RawValue>,
                >(v.get())
                .map_err(|e| invalid_field("batch", &format!("is not a valid array: {e}")))?,
                Some(v) => {
                    return Err(invalid_field(
                        "batch",
                        &format!("must be an array, got {}", JsonKind::of(v.get()).name()),
                    ));
                }
                None => return Err(invalid_field("batch", "is required")),
            };
            if items.is_empty() {
                return Err(invalid_field("batch", "must not be empty"));
            }
            items.into_iter().map(Message::Raw).collect()
        }
    };
    let total = messages.len();

    let mut payloads = Vec::with_capacity(total);
    let mut kinds = Vec::with_capacity(total);
    let mut errors: Vec<FieldError> = Vec::new();
    // No item can exceed the per-message limit when the whole body does not, so only
    // larger batches pay for measuring each item.
    let measure_items = kind.is_none() && bytes.len() > state.config.max_message_bytes;
    for (index, msg) in messages.into_iter().enumerate() {
        if measure_items {
            let size = msg.size();
            if size > state.config.max_message_bytes {
                errors.push(FieldError::new(
                    index,
                    "",
                    format!(
                        "message is {size} bytes; the limit is {} KB",
                        state.config.max_message_bytes / 1024
                    ),
                ));
                state.metrics.count_messages(msg.claimed_kind(), false, 1);
                continue;
            }
        }
        let claimed = kind.map_or_else(|| msg.claimed_kind(), MessageType::as_str);
        let normalized = match msg {
            Message::Read(fields) => normalize_fields(fields, kind, index, &envelope),
            Message::Raw(raw) => normalize(raw, kind, index, &envelope),
        };
        match normalized {
            Ok(n) => {
                payloads.push(n.json);
                kinds.push(n.kind.as_str());
            }
            Err(e) => {
                state.metrics.count_messages(claimed, false, 1);
                errors.extend(e);
            }
        }
    }

    let accepted = payloads.len();
    if accepted > 0 {
        state.log.append(payloads).await.map_err(append_error)?;
        count_accepted(state, kinds);
    }
    if errors.is_empty() {
        return Ok(success());
    }
    let rejected = total - accepted;
    let mut err = ApiError::invalid(errors);
    if kind.is_some() {
        return Err(err);
    }
    err.code = "invalid_messages";
    err.message = format!(
        "{rejected} of {total} messages were rejected ({}); the other {accepted} were stored",
        err.message
    );
    if accepted == 0 {
        let mut extra = Map::new();
        extra.insert("accepted".into(), 0.into());
        extra.insert("rejected".into(), rejected.into());
        err.extra = Some(extra);
        return Err(err);
    }
    // Some were stored: answer 2xx so that no SDK resends (and duplicates) the stored ones,
    // and 200 rather than 207 because analytics-python retries any other status. The
    // rejects are reported in the body and counted in the metrics.
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "success": true,
            "accepted": accepted,
            "rejected": rejected,
            "error": {"code": err.code, "message": err.message, "details": err.details},
        })),
    )
        .into_response())
}

/// Segment's success answer, built without serialising anything.
fn success() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"success":true}"#,
    )
        .into_response()
}

/// Counts accepted messages with one metrics update per call type, not per message.
fn count_accepted(state: &CollectorState, mut kinds: Vec<&'static str>) {
    kinds.sort_unstable();
    for run in kinds.chunk_by(|a, b| a == b) {
        state.metrics.count_messages(run[0], true, run.len() as u64);
    }
}

/// The write key from Basic auth, else from the body's `writeKey`; 401 when neither is valid.
fn authenticate(
    state: &CollectorState,
    header_key: Option<String>,
    body: &mut Fields<'_>,
) -> Result<String, ApiError> {
    let body_key = body
        .remove("writeKey")
        .and_then(|v| Field::of(v).as_str().map(|s| s.into_owned()));
    let Some(key) = header_key.or(body_key) else {
        return Err(ApiError::unauthorized(
            "missing write key: send it as the Basic auth user name or as writeKey in the body",
        ));
    };
    if !state.config.accepts(&key) {
        return Err(ApiError::unauthorized("invalid write key"));
    }
    Ok(key)
}

fn envelope(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    body: &mut Fields<'_>,
    kind: Option<MessageType>,
    write_key: String,
) -> Result<Envelope, ApiError> {
    let mut env = Envelope {
        received_at: Utc::now(),
        write_key: Some(write_key),
        client_ip: client_ip(headers, extensions),
        correct_skew: true,
        ..Default::default()
    };
    if kind.is_none() {
        // Batch-level fields apply to every message that lacks its own.
        if let Some(v) = body.remove("sentAt").map(Field::of) {
            match (v.kind(), v.as_str()) {
                (JsonKind::Null, _) => {}
                (_, Some(s)) => {
                    env.sent_at =
                        Some(parse_timestamp(&s).map_err(|r| invalid_field("sentAt", &r))?)
                }
                (other, None) => {
                    return Err(invalid_field(
                        "sentAt",
                        &format!("must be an ISO-8601 string, got {}", other.name()),
                    ));
                }
            }
        }
        if let Some(v) = body.remove("context") {
            match JsonKind::of(v.get()) {
                JsonKind::Null => {}
                JsonKind::Object => {
                    env.context = serde_json::from_str::<Map<String, Value>>(v.get()).ok()
                }
                other => {
                    return Err(invalid_field(
                        "context",
                        &format!("must be an object, got {}", other.name()),
                    ));
                }
            }
        }
        env.integrations = body
            .remove("integrations")
            .filter(|v| JsonKind::of(v.get()) == JsonKind::Object)
            .and_then(|v| serde_json::from_str(v.get()).ok());
    }
    Ok(env)
}

/// The first `X-Forwarded-For` address when a proxy set one, else the peer address.
fn client_ip(headers: &HeaderMap, extensions: &axum::http::Extensions) -> Option<String> {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    forwarded.or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
    })
}

fn invalid_field(field: &str, reason: &str) -> ApiError {
    ApiError::invalid(vec![FieldError::new(0, field, reason)])
}

fn append_error(e: AppendError) -> ApiError {
    match e {
        AppendError::Overloaded { retry_after } => ApiError::unavailable(
            "overloaded",
            "the event log is behind; retry later",
            retry_after,
        ),
        AppendError::TooLarge { bytes, limit } => ApiError::too_large(
            "payload_too_large",
            format!("{bytes} bytes exceed the log's queue of {limit} bytes"),
        ),
        AppendError::Failed(why) => {
            tracing::error!(reason = %why, "event log append failed");
            ApiError::unavailable(
                "log_unavailable",
                "the event log cannot write; nothing was stored",
                std::time::Duration::from_secs(30),
            )
        }
        AppendError::Closed => ApiError::unavailable(
            "shutting_down",
            "the server is shutting down; nothing was stored",
            std::time::Duration::from_secs(5),
        ),
    }
}

/// The body's top-level fields; 400 naming why when it is not a JSON object.
fn read_object(bytes: &[u8]) -> Result<Fields<'_>, ApiError> {
    let invalid = |message| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message);
    // Read as an object straight away: that is what every valid request sends. Only a
    // refused body is read again, to say what it was instead.
    if let Ok(fields) = serde_json::from_slice::<Fields>(bytes) {
        return Ok(fields);
    }
    match serde_json::from_slice::<&RawValue>(bytes) {
        Err(e) => Err(invalid(format!("body is not valid JSON: {e}"))),
        Ok(raw) => Err(invalid(format!(
            "body must be a JSON object, got {}",
            JsonKind::of(raw.get()).name()
        ))),
    }
}

/// One message of a request: a single call's body, already read, or a batch item.
enum Message<'a> {
    Read(Fields<'a>),
    Raw(&'a RawValue),
}

impl Message<'_> {
    /// Its size as sent, in bytes.
    fn size(&self) -> usize {
        match self {
            Message::Read(fields) => fields.to_json().len(),
            Message::Raw(raw) => raw.get().len(),
        }
    }

    /// The `type` it claims, for counting rejects ("unknown" when it has none).
    fn claimed_kind(&self) -> &'static str {
        let claimed = match self {
            Message::Read(fields) => fields
                .get("type")
                .and_then(Field::as_str)
                .map(|s| s.into_owned()),
            Message::Raw(raw) => Fields::of_object(raw).and_then(|f| {
                f.get("type")
                    .and_then(Field::as_str)
                    .map(|s| s.into_owned())
            }),
        };
        claimed
            .as_deref()
            .and_then(MessageType::parse)
            .map_or("unknown", MessageType::as_str)
    }
}
