//! Request bodies that are read to their end even when the handler refuses them first.
//!
//! A handler that answers before it has read the body (413 too large, 401 wrong key, 503
//! overloaded or starting, 404, 405) leaves bytes unread, and a connection closed with
//! bytes unread is reset; the reset can reach the client before the answer, which it then
//! never reads. A client that sends its whole body before it reads, as the SDKs and most
//! HTTP libraries do, would see a broken pipe instead of the answer, and retry what it
//! should not, or sooner than `Retry-After` asks. So every request body is wrapped: dropped
//! before its end, it reads the rest and throws it away, as nginx's lingering close does.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{EXPECT, HeaderMap};

/// How much of a refused body is read and thrown away, and for how long. A body declared
/// longer is not read at all: its connection is reset whatever is read of it.
const LINGER_BYTES: u64 = 8 << 20;
const LINGER_TIME: Duration = Duration::from_secs(5);

/// A request body that drains what is left of itself when dropped before its end.
pub struct Lingering {
    inner: Option<Incoming>,
    /// The handler has asked for a frame. hyper answers `Expect: 100-continue` at the first
    /// ask, so a client waiting for that has been invited to send from then on.
    asked: bool,
    ended: bool,
    /// The client sends nothing until invited (`Expect: 100-continue`), and nothing at all
    /// once it hears a final answer: reading its body unasked would invite it to.
    waits_to_send: bool,
}

impl Lingering {
    pub fn new(body: Incoming, headers: &HeaderMap) -> Self {
        Lingering {
            inner: Some(body),
            asked: false,
            ended: false,
            waits_to_send: headers
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
        }
    }
}

impl Body for Lingering {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.asked = true;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut rest) = self.inner.take() else {
            return;
        };
        if self.ended
            || rest.is_end_stream()
            || (self.waits_to_send && !self.asked)
            || rest.size_hint().lower() > LINGER_BYTES
        {
            return;
        }
        // Bodies are dropped on the runtime that serves them; elsewhere there is no
        // connection left to keep.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut seen = 0u64;
                while let Some(Ok(frame)) = rest.frame().await {
                    seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if seen > LINGER_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        });
    }
}
