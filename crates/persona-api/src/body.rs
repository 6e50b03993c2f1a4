//! Request bodies of the admin API: JSON whatever the `Content-Type` says, as the
//! ingestion endpoints take it (`curl -d` sends form encoding, and the README's examples
//! use it), with errors in the API's own `{"error": ...}` shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use persona_core::FieldError;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ApiError;

/// 400 naming one field of the request and why it is refused.
pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
    ApiError::invalid(vec![FieldError::request(field, reason)])
}

/// An optional string field of a request body, kept as a JSON value so that a value of
/// another type is refused with its name rather than as a whole body that does not parse.
pub(crate) fn text(v: &Option<Value>, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(field, format!("must be a string, got {other}"))),
    }
}

/// A JSON request body, parsed into `T`.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// A JSON request body that may be left out (empty), parsed into `T` when it is sent.
pub(crate) struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read(req, state).await?;
        if bytes.trim_ascii().is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        parse(&bytes).map(|v| OptionalJsonBody(Some(v)))
    }
}

async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        ApiError::new(
            e.status(),
            "body_unreadable",
            format!("the request body could not be read: {}", e.body_text()),
        )
    })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let (code, what) = match e.classify() {
            serde_json::error::Category::Data => ("invalid_request", "does not fit this call"),
            _ => ("invalid_json", "is not JSON"),
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("the request body {what}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Named {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn a_bad_body_is_named_as_json_or_as_the_wrong_shape() {
        let err = parse::<Named>(b"{not json").unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        let err = parse::<Named>(br#"{"nme": "x"}"#).unwrap_err();
        assert_eq!(err.code, "invalid_request");
        assert!(err.message.contains("nme"), "{}", err.message);
        assert!(parse::<Named>(br#"{"name": "x"}"#).is_ok());
    }
}
