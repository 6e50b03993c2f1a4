//! The Segment-compatible ingestion handlers: `/v1/{track,identify,page,screen,group,alias}`,
//! their one-letter short forms, and `/v1/batch` (also routed as `/v1/b` and `/v1/import`).

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use persona_core::time::parse_timestamp;
use persona_core::{FieldError, MessageType};
use persona_log::AppendError;
use serde_json::value::RawValue;
use serde_json::{Map, json};

use crate::body::{BodyShare, read_body, request_write_key};
use crate::client_ip::client_ip;
use crate::error::ApiError;
use crate::normalize::{Envelope, normalize, not_an_object};
use crate::shallow::{self, Kind, NotAnObject, Object};
use crate::state::CollectorState;

/// A message of a request: the body itself (a single call), or a batch item not yet
/// parsed.
enum Item<'a> {
    Parsed(Object<'a>),
    Raw(&'a RawValue),
}

/// Handles one call of type `kind`, or a batch when `kind` is `None`.
pub(crate) async fn ingest(
    state: CollectorState,
    kind: Option<MessageType>,
    req: Request,
) -> Result<Response, ApiError> {
    let result = ingest_inner(&state, kind, req).await;
    if let Err(e) = &result
        && let Some(reason) = refusal_reason(e)
    {
        state.metrics.count_refusal(reason);
    }
    result
}

/// The reason a refused request is counted under: its error code, so that an alert can tell
/// a failed disk (`log_unavailable`) from load (`overloaded`). `None` for refusals made of
/// invalid messages, which `persona_collector_messages_total{outcome="rejected"}` counts one
/// by one; a problem with the request itself rather than a message is `invalid_request`.
fn refusal_reason(e: &ApiError) -> Option<&'static str> {
    match e.code {
        "invalid_message" | "invalid_messages" if e.details.iter().all(|d| d.index.is_some()) => {
            None
        }
        "invalid_message" => Some("invalid_request"),
        code => Some(code),
    }
}

async fn ingest_inner(
    state: &CollectorState,
    kind: Option<MessageType>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let header_key = request_write_key(&parts.headers, &parts.uri)?;
    // A key in the header is checked before the body is read and decoded, so that a
    // client with a wrong key hears 401 (not 413 or 400 about its body) and costs no gunzip.
    if let Some(key) = &header_key
        && !state.config.accepts(key)
    {
        return Err(invalid_write_key());
    }
    let limit = match kind {
        Some(_) => state.config.max_message_bytes,
        None => state.config.max_batch_bytes,
    };
    // Held until the answer: the body, its parse and the serialised records all live
    // that long.
    let mut share = BodyShare::new(state.inflight.clone());
    let too_large = |after: &str| {
        let (code, what) = match kind {
            Some(_) => ("message_too_large", "message"),
            None => ("batch_too_large", "batch"),
        };
        let limit_kb = limit / 1024;
        ApiError::too_large(
            code,
            format!("{what} exceeds the limit of {limit_kb} KB{after}"),
        )
    };
    let bytes = read_body(&parts.headers, body, limit, &mut share)
        .await
        .map_err(|e| match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(""),
            _ => e,
        })?;
    state.metrics.ingested_bytes.inc_by(bytes.len() as u64);
    // Only a body the parse refused is looked at for repairs, so well-formed bodies pay
    // nothing for them.
    let mut repaired = None;
    let (mut text, mut parsed) =
        crate::repair::parse_or_repair(&bytes, &mut repaired, Object::parse);
    // A batch refused for what some of its messages hold keeps the others.
    let mut isolated = None;
    if kind.is_none()
        && matches!(parsed, Err(NotAnObject::Invalid(_)))
        && let Some(found) = crate::salvage::isolate_refused_messages(text)
    {
        isolated = Some(found);
        let found = &isolated.as_ref().expect("just set").text;
        if let Ok(o) = Object::parse(found) {
            (text, parsed) = (found, Ok(o));
        }
    }
    let isolated = isolated.as_ref();
    // A replacement character takes three bytes where a stray byte took one: what is
    // stored stays within the limit.
    let parsed_len = text.len();
    if parsed_len > limit {
        return Err(too_large(" once its bytes that are not UTF-8 are replaced"));
    }
    let mut body = match parsed {
        Ok(o) => o,
        Err(NotAnObject::Other(other)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body must be a JSON object, got {}", other.name()),
            ));
        }
        Err(NotAnObject::Invalid(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not valid JSON: {e}"),
            ));
        }
    };

    let write_key = authenticate(state, header_key, &mut body)?;
    let envelope = envelope(
        state,
        &parts.headers,
        &parts.extensions,
        &mut body,
        kind,
        write_key,
    )?;
    let messages: Vec<Item<'_>> = match kind {
        Some(_) => vec![Item::Parsed(body)],
        None => match body.remove("batch") {
            Some(items) => match items.kind() {
                Kind::Array => serde_json::from_str::<Vec<&RawValue>>(
                    items.sent().expect("parsed from the body").get(),
                )
                .expect("validated as an array")
                .into_iter()
                .map(Item::Raw)
                .collect(),
                other => {
                    return Err(invalid_field(
                        "batch",
                        &format!("must be an array, got {}", other.name()),
                    ));
                }
            },
            None => return Err(invalid_field("batch", "is required")),
        },
    };
    if messages.is_empty() {
        return Err(invalid_field("batch", "must not be empty"));
    }
    let total = messages.len();

    let mut payloads = Vec::with_capacity(total);
    let mut kinds = Vec::with_capacity(total);
    let mut errors: Vec<FieldError> = Vec::new();
    // No item can exceed the per-message limit when the whole body does not, so only
    // larger batches pay for measuring each item.
    let measure_items = kind.is_none() && parsed_len > state.config.max_message_bytes;
    for (index, item) in messages.into_iter().enumerate() {
        let msg = match item {
            Item::Parsed(o) => o,
            Item::Raw(raw) => {
                if let Some(refused) = isolated.and_then(|i| i.refusal(index)) {
                    errors.push(FieldError::new(index, "", refused.reason.clone()));
                    state.metrics.count_messages(refused.claimed, false, 1);
                    continue;
                }
                let size = raw.get().len();
                if measure_items && size > state.config.max_message_bytes {
                    errors.push(FieldError::new(
                        index,
                        "",
                        format!(
                            "message is {size} bytes; the limit is {} KB",
                            state.config.max_message_bytes / 1024
                        ),
                    ));
                    state.metrics.count_messages(claimed_kind(raw), false, 1);
                    continue;
                }
                match Object::of_raw(raw) {
                    Some(o) => o,
                    None => {
                        state.metrics.count_messages("unknown", false, 1);
                        errors.extend(not_an_object(index, shallow::kind(raw)));
                        continue;
                    }
                }
            }
        };
        let claimed = kind.map_or_else(|| batch_kind(&msg), MessageType::as_str);
        match normalize(msg, kind, index, &envelope) {
            Ok(n) => {
                payloads.push(n.to_bytes());
                kinds.push(n.kind);
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
        count_accepted(state, &kinds);
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
fn count_accepted(state: &CollectorState, kinds: &[MessageType]) {
    let mut counts = [0u64; MessageType::ALL.len()];
    for &kind in kinds {
        counts[kind as usize] += 1;
    }
    for (kind, n) in MessageType::ALL.into_iter().zip(counts) {
        if n > 0 {
            state.metrics.count_accepted(kind, n);
        }
    }
}

/// The write key from Basic auth (already checked on arrival), else from the body's
/// `writeKey`; 401 when there is neither or the body's is not valid.
fn authenticate(
    state: &CollectorState,
    header_key: Option<String>,
    body: &mut Object<'_>,
) -> Result<String, ApiError> {
    let body_key = body.remove("writeKey");
    if let Some(key) = header_key {
        return Ok(key);
    }
    let key = match body_key.as_ref().map(|k| k.text()) {
        Some(Ok(key)) => key.into_owned(),
        Some(Err(kind)) if kind != Kind::Null => {
            return Err(ApiError::unauthorized(format!(
                "writeKey in the body must be a string, got {}",
                kind.name()
            )));
        }
        _ => {
            return Err(ApiError::unauthorized(
                "missing write key: send it as the Basic auth user name, as writeKey in the body, or as ?writeKey= in the address",
            ));
        }
    };
    if !state.config.accepts(&key) {
        return Err(invalid_write_key());
    }
    Ok(key)
}

fn invalid_write_key() -> ApiError {
    ApiError::unauthorized("invalid write key")
}

fn envelope(
    state: &CollectorState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    body: &mut Object<'_>,
    kind: Option<MessageType>,
    write_key: String,
) -> Result<Envelope, ApiError> {
    let mut env = Envelope {
        received_at: Utc::now(),
        write_key: Some(write_key),
        client_ip: client_ip(headers, extensions, &state.config.trusted_proxies),
        correct_skew: true,
        ..Default::default()
    };
    if kind.is_none() {
        // Batch-level fields apply to every message that lacks its own.
        if let Some(sent_at) = body.remove("sentAt") {
            match sent_at.text() {
                Ok(s) => {
                    env.sent_at =
                        Some(parse_timestamp(&s).map_err(|r| invalid_field("sentAt", &r))?)
                }
                Err(Kind::Null) => {}
                Err(other) => {
                    return Err(invalid_field(
                        "sentAt",
                        &format!("must be an ISO-8601 string, got {}", other.name()),
                    ));
                }
            }
        }
        if let Some(context) = body.remove("context") {
            match context.kind() {
                Kind::Null => {}
                Kind::Object => {
                    let keys = Object::of_raw(context.raw()).expect("checked to be an object");
                    env.context = Some(keys.into_owned());
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
            .filter(|i| i.kind() == Kind::Object)
            .map(|i| i.raw().to_owned());
    }
    Ok(env)
}

fn invalid_field(field: &str, reason: &str) -> ApiError {
    ApiError::invalid(vec![FieldError::request(field, reason)])
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
        // The log reports each failure once itself: a line for every refused request
        // would bury it while clients retry.
        AppendError::Failed(why) => {
            tracing::debug!(reason = %why, "event log append refused");
            ApiError::unavailable(
                "log_unavailable",
                "the event log cannot write; the request was not acknowledged, retry it later",
                Duration::from_secs(30),
            )
        }
        AppendError::Unwritable(why) => {
            tracing::debug!(reason = %why, "event log append refused");
            ApiError::unavailable(
                "log_unavailable",
                "the event log cannot write right now (is its disk full?); the request was not acknowledged, retry it later",
                persona_log::TROUBLE_HOLD,
            )
        }
        AppendError::Closed => ApiError::unavailable(
            "shutting_down",
            "the server is shutting down; nothing was stored",
            Duration::from_secs(5),
        ),
    }
}

/// The `type` a batch item claims, for counting rejects ("unknown" when it has none).
fn batch_kind(msg: &Object<'_>) -> &'static str {
    msg.get("type")
        .and_then(|t| t.string())
        .and_then(|t| MessageType::parse(&t))
        .map_or("unknown", MessageType::as_str)
}

/// [`batch_kind`] of an item not parsed yet.
pub(crate) fn claimed_kind(raw: &RawValue) -> &'static str {
    Object::of_raw(raw).map_or("unknown", |o| batch_kind(&o))
}
