//! Reading request bodies within the size limits, gzip included, and finding the write key.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Query;
use axum::http::{HeaderMap, header};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::error::Elapsed;

use crate::error::ApiError;

/// How long a client may take to send a body: a slow sender must not hold a connection
/// and its buffer for ever.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// `read` if it is done at its first poll (a small body arrives with the request's head),
/// else `read` within `limit`: the timer is armed only for bodies still on their way.
async fn read_within<F: Future>(limit: Duration, read: F) -> Result<F::Output, Elapsed> {
    let mut read = std::pin::pin!(read);
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => tokio::time::timeout(limit, read).await,
    }
}

/// How long a request waits for its next share of the in-flight body budget before it is
/// refused as overloaded, as an append waits for the log's queue.
const BUDGET_WAIT: Duration = Duration::from_millis(200);

/// The first pause of a request waiting for its share; each next one is twice as long, so
/// a request tries about eight times in [`BUDGET_WAIT`], and a crowd of waiters during an
/// overload costs little CPU.
const BUDGET_FIRST_RETRY: Duration = Duration::from_millis(1);

/// A request's share of the in-flight body budget
/// ([`crate::CollectorConfig::max_inflight_bytes`]), taken as its bytes arrive and decode
/// and held until the answer. A sender that trickles its body holds only what it has sent:
/// a share reserved up front, at the declared length or the limit, would let a hundred
/// slow senders (no key needed for that) hold the whole budget and turn every other
/// sender away.
pub(crate) struct BodyShare {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl BodyShare {
    pub(crate) fn new(budget: Arc<Semaphore>) -> Self {
        BodyShare { budget, held: None }
    }

    async fn take(&mut self, bytes: usize) -> Result<(), ApiError> {
        let Ok(n) = u32::try_from(bytes) else {
            return Err(overloaded());
        };
        if n == 0 {
            return Ok(());
        }
        // All or nothing, and never queued: a queued waiter of tokio's semaphore is handed
        // every permit set free until it has all it asked for, so one large body waiting
        // for its next frame's share while holding the earlier ones would make every other
        // request, however small, wait behind it. Retried instead, briefly; most requests
        // find room at once and arm no timer.
        let mut waited = Duration::ZERO;
        let mut pause = BUDGET_FIRST_RETRY;
        let permit = loop {
            match self.budget.clone().try_acquire_many_owned(n) {
                Ok(permit) => break permit,
                Err(TryAcquireError::NoPermits) if waited < BUDGET_WAIT => {
                    let pause_now = pause.min(BUDGET_WAIT - waited);
                    tokio::time::sleep(pause_now).await;
                    waited += pause_now;
                    pause *= 2;
                }
                Err(_) => return Err(overloaded()),
            }
        };
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    /// Returns `bytes` of the share to the budget (or all of it, when it holds less).
    fn give_back(&mut self, bytes: usize) {
        if let Some(held) = &mut self.held
            && held.split(bytes).is_none()
        {
            self.held = None;
        }
    }
}

fn overloaded() -> ApiError {
    ApiError::unavailable(
        "overloaded",
        "too many request bodies are being read at once; retry later",
        Duration::from_secs(1),
    )
}

/// Reads the body, gunzipping it when `Content-Encoding: gzip`, and refuses (413) anything
/// whose decoded size exceeds `limit`. Decoding stops at the limit, so a small gzip bomb
/// cannot make the server inflate gigabytes. What is read and decoded is taken from
/// `share` as it comes.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    share: &mut BodyShare,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(
            "payload_too_large",
            format!("request body exceeds the limit of {} KB", limit / 1024),
        )
    };
    let raw = match read_within(BODY_TIMEOUT, collect(body, limit, share)).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(Collect::TooLarge)) => return Err(too_large()),
        Ok(Err(Collect::Refused(e))) => return Err(e),
        // The client went away or broke the framing mid-body: nothing to store, and not a
        // size problem to report or count as one.
        Ok(Err(Collect::Unreadable(e))) => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("the request body could not be read: {e}"),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    // A list of codings in the order applied; `identity` changes nothing.
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut codings = encoding
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
    let gzip = |c: &str| c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip");
    match (codings.next(), codings.next()) {
        (None, _) => Ok(raw),
        (Some(c), None) if gzip(c) => {
            let compressed = raw.len();
            let mut out = Vec::with_capacity((raw.len() * 4).min(limit + 1));
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "invalid_encoding",
                        format!("body is not valid gzip: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err(too_large());
            }
            // The compressed bytes go with this call: their share pays for the decoded
            // ones, so a body never needs more of the budget than the larger of the two.
            drop(raw);
            share.give_back(compressed);
            share.take(out.len()).await?;
            Ok(out.into())
        }
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!(
                "Content-Encoding {:?} is not supported; send identity or gzip",
                encoding.trim()
            ),
        )),
    }
}

/// Why [`collect`] stopped short of a whole body.
enum Collect {
    TooLarge,
    Unreadable(axum::Error),
    Refused(ApiError),
}

/// The body's bytes, at most `limit` of them, each frame's taken from `share` as it
/// arrives. A body that comes in one frame (the usual case) is kept without a copy.
async fn collect(mut body: Body, limit: usize, share: &mut BodyShare) -> Result<Bytes, Collect> {
    if body.size_hint().lower() > limit as u64 {
        return Err(Collect::TooLarge);
    }
    // The body so far: in `whole` while it is one frame, in `joined` from the second on.
    let mut whole = Bytes::new();
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Collect::Unreadable)?.into_data() else {
            continue; // trailers
        };
        if whole.len() + joined.len() + data.len() > limit {
            return Err(Collect::TooLarge);
        }
        share.take(data.len()).await.map_err(Collect::Refused)?;
        if whole.is_empty() && joined.is_empty() {
            whole = data;
        } else {
            joined.extend_from_slice(&std::mem::take(&mut whole));
            joined.extend_from_slice(&data);
        }
    }
    Ok(if joined.is_empty() {
        whole
    } else {
        joined.into()
    })
}

/// The write key from HTTP Basic auth (user name, empty password), as Segment's SDKs send it.
/// The write key a request carries outside its body: the Basic auth user name, else
/// `?writeKey=` in the address (RudderStack's JavaScript SDK puts it there when it sends with
/// `navigator.sendBeacon`, which can set no header).
pub(crate) fn request_write_key(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<Option<String>, ApiError> {
    if let Some(key) = basic_auth_key(headers)? {
        return Ok(Some(key));
    }
    if uri.query().is_none() {
        return Ok(None);
    }
    let Ok(Query(mut params)) = Query::<HashMap<String, String>>::try_from_uri(uri) else {
        return Ok(None);
    };
    Ok(params.remove("writeKey").filter(|k| !k.is_empty()))
}

/// Standard base64 that also reads text whose padding was left off.
const BASE64_ANY_PADDING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn basic_auth_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || ApiError::unauthorized("Authorization header must be Basic <base64(writeKey:)>");
    let value = value.to_str().map_err(|_| bad())?;
    // The scheme's name is case-insensitive (RFC 9110), and some clients leave off the
    // base64 padding.
    let encoded = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest,
        _ => return Err(bad()),
    };
    let decoded = BASE64_ANY_PADDING
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let user = decoded.split(':').next().unwrap_or_default();
    Ok((!user.is_empty()).then(|| user.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(authorization: &str) -> Result<Option<String>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        basic_auth_key(&headers)
    }

    #[test]
    fn basic_auth_takes_any_case_and_missing_padding() {
        // base64("key1:") is "a2V5MTo=".
        for value in [
            "Basic a2V5MTo=",
            "basic a2V5MTo=",
            "BASIC a2V5MTo=",
            "Basic a2V5MTo",
        ] {
            assert_eq!(key_of(value).unwrap().as_deref(), Some("key1"), "{value}");
        }
        // base64("key1:secret"): the password is not the key.
        assert_eq!(
            key_of("Basic a2V5MTpzZWNyZXQ=").unwrap().as_deref(),
            Some("key1")
        );
        for value in ["Bearer a2V5MTo=", "Basic", "Basica2V5MTo=", "Basic !!!"] {
            assert!(key_of(value).is_err(), "{value}");
        }
    }
}
