//! The one error type the HTTP layer returns, rendered as
//! `{"error":{"code","message","details"}}` with the matching status.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use persona_core::FieldError;
use serde_json::json;

/// An error answer to an HTTP request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    pub retry_after: Option<Duration>,
    /// Extra top-level fields, e.g. how many messages of a partial batch were stored.
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            extra: None,
        }
    }

    pub fn invalid(mut details: Vec<FieldError>) -> Self {
        let message = summarize(&details);
        // A small gzip body can hold a huge batch of invalid items; the answer stays small.
        details.truncate(MAX_DETAILS);
        ApiError {
            details,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_message", message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry: Duration) -> Self {
        ApiError {
            retry_after: Some(retry),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

/// Field errors returned at most per answer; the message says how many there were.
pub const MAX_DETAILS: usize = 100;

/// One line naming the first few problems and how many there are in all.
pub fn summarize(details: &[FieldError]) -> String {
    const SHOWN: usize = 5;
    match details {
        [one] => one.to_string(),
        many => {
            let shown: Vec<_> = many.iter().take(SHOWN).map(ToString::to_string).collect();
            let more = many.len().saturating_sub(SHOWN);
            let tail = if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            };
            format!("{} problems: {}{tail}", many.len(), shown.join("; "))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": {"code": self.code, "message": self.message, "details": self.details}
        });
        if let Some(extra) = self.extra {
            body.as_object_mut().expect("object").extend(extra);
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1).to_string();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs).expect("digits"),
            );
        }
        // The headers RFC 9110 asks of these statuses: a 401 names the scheme to use (some
        // HTTP clients, Android's among them, fail on a 401 without one; the admin API
        // replaces it with `Bearer`), a 415 for an encoding says which one is understood.
        match self.status {
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"persona write key\""),
                );
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                resp.headers_mut()
                    .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            }
            _ => {}
        }
        resp
    }
}
