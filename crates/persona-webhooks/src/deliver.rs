//! One webhook's worker: reads the outbox after the webhook's cursor, sends each entry it
//! subscribes to, and moves the cursor only once the receiver has taken it (a 2xx
//! answer). Entries go one at a time, in outbox order, so a receiver sees a customer's
//! entry into a segment before the exit from it; a failed delivery is tried again, with
//! the same delivery id, after waits that double up to `max_backoff`, until the webhook
//! has failed for `give_up_after` and is turned off.

use std::error::Error as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Request, StatusCode};
use persona_store::{ProfileStore, StoreError};
use serde::Deserialize;

use crate::client::HttpClient;
use crate::config::ValidWebhookConfig;
use crate::def::WebhookDef;
use crate::progress::{LastError, Progress, WebhookMetrics};
use crate::registry::Webhooks;
use crate::signature::sign;

/// How often an idle worker looks for new outbox entries.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Outbox entries read at once.
const PAGE: usize = 256;
/// The first wait after a failed attempt; later waits double.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// What is read of a receiver's answer (the rest is dropped with the connection).
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// The longest `Retry-After` waited for (a receiver asking for more gets it at this).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);
/// What of an answer's text is kept as the error message.
const ANSWER_SNIPPET_CHARS: usize = 200;
/// The wait before reading the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn ProfileStore>,
    pub(crate) client: HttpClient,
    pub(crate) config: ValidWebhookConfig,
    pub(crate) metrics: WebhookMetrics,
}

pub(crate) struct Worker {
    pub(crate) def: WebhookDef,
    pub(crate) shared: Arc<Shared>,
    pub(crate) progress: Arc<Progress>,
    /// For turning the webhook off; weak, so that workers do not keep the registry alive.
    pub(crate) registry: Weak<Webhooks>,
}

/// A receiver's answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<Duration>,
    /// The start of its body, for the error message of a refusal.
    pub(crate) text: String,
}

/// Sends one delivery and reads the answer's head within `timeout` (its body within as
/// long again).
pub(crate) async fn attempt(
    client: &HttpClient,
    def: &WebhookDef,
    event: &str,
    delivery: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, String> {
    let signature = sign(&def.secret, Utc::now().timestamp(), &body);
    let request = Request::post(def.url.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("persona-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-persona-event", event)
        .header("x-persona-delivery", delivery)
        .header("x-persona-signature", signature)
        .body(Full::new(body))
        .map_err(|e| format!("cannot make the request: {e}"))?;
    // The timeout covers the request and the answer's head: the status decides. The body
    // is read after it, for keep-alive and for a refusal's message, within a wait of its
    // own that cannot turn a 2xx into a failure.
    let sent = async {
        client.request(request).await.map_err(|e| {
            // The client's own message ("client error (Connect)") says little; its
            // causes say what failed ("Connection refused", a certificate problem).
            let mut text = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            text
        })
    };
    let response = tokio::time::timeout(timeout, sent)
        .await
        .map_err(|_| format!("no answer within {:.1} s", timeout.as_secs_f64()))??;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, Utc::now()));
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect();
    let mut text: String = match tokio::time::timeout(timeout, body).await {
        Ok(Ok(body)) => String::from_utf8_lossy(&body.to_bytes())
            .chars()
            .take(ANSWER_SNIPPET_CHARS)
            .collect(),
        _ => String::new(),
    };
    if status.is_redirection() {
        // Not followed (the signature names no host): say where it pointed.
        text = format!(
            "redirects are not followed (Location: {}) {text}",
            location.as_deref().unwrap_or("none")
        );
    }
    Ok(Answer {
        status,
        retry_after,
        text,
    })
}

/// An outbox entry made into a delivery's body: the entry's fields after `id` (the
/// delivery id), `webhook_id` and `sequence` (its place in the outbox), in the entry's
/// own order. `None` for an entry that is not a JSON object naming its event.
fn delivery_body(def: &WebhookDef, sequence: u64, raw: &[u8]) -> Option<(Head, Bytes)> {
    let head: Head = serde_json::from_slice(raw).ok()?;
    let raw = raw.trim_ascii();
    let fields = raw.strip_prefix(b"{")?.trim_ascii_start();
    let mut body = format!(
        r#"{{"id":"{}","webhook_id":{},"sequence":{sequence}"#,
        def.delivery_id(sequence),
        def.id
    )
    .into_bytes();
    if !fields.starts_with(b"}") {
        body.push(b',');
    }
    body.extend_from_slice(fields);
    Some((head, body.into()))
}

/// What a delivery is chosen by: the event's name, and the rule segment it concerns.
#[derive(Deserialize)]
struct Head {
    event: String,
    segment_id: Option<u64>,
}

/// Runs a store call on a blocking thread (it may wait for the disk).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(StoreError::Backend(format!("store call panicked: {e}"))))
}

impl Worker {
    pub(crate) async fn run(self) {
        let name = WebhookDef::cursor_name(self.def.id);
        let mut cursor = self
            .store_call(|store| {
                let name = name.clone();
                move || {
                    Ok(match store.cursor(&name)? {
                        Some(c) => c,
                        // Set when the webhook was created; missing only if the store lost
                        // it, and then only what comes from now on is sent.
                        None => store.outbox_end()? - 1,
                    })
                }
            })
            .await;
        self.progress.update(|s| s.cursor = cursor);
        loop {
            let page = self
                .store_call(|store| move || store.outbox(Some(cursor), PAGE))
                .await;
            if page.is_empty() {
                self.progress.update(|s| {
                    s.state = "idle";
                    s.cursor = cursor;
                });
                tokio::time::sleep(POLL_EVERY).await;
                continue;
            }
            self.progress.update(|s| s.state = "delivering");
            let mut saved_at = cursor;
            for (sequence, raw) in page {
                let mut sent = false;
                match delivery_body(&self.def, sequence, &raw) {
                    Some((head, body)) if self.def.wants(&head.event, head.segment_id) => {
                        if !self.deliver(sequence, &head.event, body).await {
                            return;
                        }
                        sent = true;
                    }
                    Some(_) => {}
                    None => tracing::warn!(
                        webhook = self.def.id,
                        sequence,
                        "an outbox entry is not a JSON object naming its event; passed over"
                    ),
                }
                cursor = sequence;
                self.progress.update(|s| s.cursor = cursor);
                // Recorded after each delivery, so that a restart sends it no more; entries
                // passed over are recorded once a page.
                if sent && self.save(&name, cursor).await {
                    saved_at = cursor;
                }
            }
            if saved_at != cursor {
                self.save(&name, cursor).await;
            }
        }
    }

    /// Records the cursor; a failure is logged and the worker goes on (a restart would
    /// then deliver again from the last cursor saved, with the same delivery ids).
    async fn save(&self, name: &str, cursor: u64) -> bool {
        let (store, name) = (self.shared.store.clone(), name.to_owned());
        match blocking(move || store.set_cursor(&name, Some(cursor))).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(webhook = self.def.id, error = %e, "cannot record the webhook's position");
                false
            }
        }
    }

    /// A store read, tried again every second until it works (logged once).
    async fn store_call<T: Send + 'static, F>(&self, make: impl Fn(Arc<dyn ProfileStore>) -> F) -> T
    where
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    {
        let mut logged = false;
        loop {
            match blocking(make(self.shared.store.clone())).await {
                Ok(v) => return v,
                Err(e) => {
                    if !logged {
                        tracing::warn!(webhook = self.def.id, error = %e, "cannot read the outbox; trying again every second");
                        logged = true;
                    }
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
    }

    /// Sends outbox entry `sequence` until the receiver takes it (true), or the webhook
    /// has failed for `give_up_after` and is turned off (false).
    async fn deliver(&self, sequence: u64, event: &str, body: Bytes) -> bool {
        let delivery = self.def.delivery_id(sequence).to_string();
        let config = &self.shared.config;
        let mut failures: u32 = 0;
        loop {
            let result = attempt(
                &self.shared.client,
                &self.def,
                event,
                &delivery,
                body.clone(),
                config.timeout,
            )
            .await;
            let (status, message, retry_after) = match result {
                Ok(answer) if answer.status.is_success() => {
                    self.shared.metrics.attempt(true);
                    let was_failing = self.progress.read().failing_since.is_some();
                    self.progress.update(|s| {
                        s.delivered += 1;
                        s.last_delivered_at = Some(Utc::now());
                        s.failing_since = None;
                        s.next_attempt_at = None;
                        s.state = "delivering";
                    });
                    if was_failing {
                        tracing::info!(webhook = self.def.id, url = %self.def.url, "webhook deliveries are taken again");
                    }
                    return true;
                }
                Ok(answer) => (
                    Some(answer.status.as_u16()),
                    format!("answered {}: {}", answer.status, answer.text.trim()),
                    answer.retry_after,
                ),
                Err(message) => (None, message, None),
            };
            self.shared.metrics.attempt(false);
            failures = failures.saturating_add(1);
            let now = Utc::now();
            let wait = backoff(failures, retry_after, config.max_backoff);
            let mut first_failure = false;
            let mut since = now;
            self.progress.update(|s| {
                first_failure = s.failing_since.is_none();
                since = *s.failing_since.get_or_insert(now);
                s.failed_attempts += 1;
                s.last_error = Some(LastError {
                    at: now,
                    delivery: delivery.clone(),
                    status,
                    message: message.clone(),
                });
                s.state = "retrying";
                s.next_attempt_at = Some(now + wait);
            });
            if first_failure {
                tracing::warn!(webhook = self.def.id, url = %self.def.url, error = %message, "a webhook delivery failed; trying again with growing waits");
            }
            let failing_for = (now - since).to_std().unwrap_or_default();
            if failing_for >= config.give_up_after {
                let reason = format!(
                    "every delivery failed for {}; the last error: {message}",
                    how_long(failing_for)
                );
                if self.give_up(reason).await {
                    return false;
                }
                // Not recorded: go on trying, and try to give up again after the next.
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Turns the webhook off; true when that is recorded, or when the webhook was changed
    /// or deleted meanwhile (this worker is then stopped anyway).
    async fn give_up(&self, reason: String) -> bool {
        let Some(registry) = self.registry.upgrade() else {
            return true;
        };
        let (id, updated_at) = (self.def.id, self.def.updated_at);
        let logged = reason.clone();
        let done =
            tokio::task::spawn_blocking(move || registry.disable(id, updated_at, reason)).await;
        match done {
            Ok(Ok(true)) => {
                tracing::error!(webhook = id, url = %self.def.url, reason = %logged, "webhook turned off");
                self.shared.metrics.disabled();
                true
            }
            Ok(Ok(false)) => true,
            Ok(Err(e)) => {
                tracing::error!(webhook = id, error = %e, "cannot record that the webhook is off; it goes on trying");
                false
            }
            Err(e) => {
                tracing::error!(webhook = id, error = %e, "turning the webhook off failed; it goes on trying");
                false
            }
        }
    }
}

/// A duration as a person would say it: "40 s", "12 min", "72.0 hours".
fn how_long(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} hours", s / 3600.0)
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`).
fn retry_after(value: &str, now: chrono::DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

/// The wait before attempt `failures + 1`: one second doubled for each failure so far, with
/// a fifth either way at random (so that webhooks failing together do not retry together),
/// at most `max`; or the receiver's `Retry-After` where that is longer, up to an hour. A
/// `Retry-After` of 0 or in the past is no reason to retry at once.
fn backoff(failures: u32, retry_after: Option<Duration>, max: Duration) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(20));
    let wait = doubled.mul_f64(rand::random_range(0.8..1.2)).min(max);
    match retry_after {
        Some(asked) => wait.max(asked.min(RETRY_AFTER_CAP)),
        None => wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> WebhookDef {
        WebhookDef {
            id: 3,
            url: "http://127.0.0.1:1/".into(),
            events: vec!["segment.entered".into()],
            segments: Vec::new(),
            secret: "a secret of some length".into(),
            active: true,
            disabled_reason: None,
            created_at: 0,
            updated_at: 0,
            salt: uuid::Uuid::new_v4(),
        }
    }

    #[test]
    fn the_body_is_the_entry_with_the_delivery_in_front() {
        let d = def();
        let (head, body) =
            delivery_body(&d, 12, br#"{"event":"segment.entered","user_id":"u1"}"#).unwrap();
        assert_eq!(
            (head.event.as_str(), head.segment_id),
            ("segment.entered", None)
        );
        let expected = format!(
            r#"{{"id":"{}","webhook_id":3,"sequence":12,"event":"segment.entered","user_id":"u1"}}"#,
            d.delivery_id(12)
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        assert!(delivery_body(&d, 1, b"[1]").is_none());
        assert!(delivery_body(&d, 1, br#"{"no":"event"}"#).is_none());
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(how_long(Duration::from_millis(1400)), "1 s");
        assert_eq!(how_long(Duration::from_secs(600)), "10 min");
        assert_eq!(how_long(Duration::from_secs(72 * 3600)), "72.0 hours");
    }

    #[test]
    fn waits_double_stay_under_the_cap_and_follow_retry_after() {
        let max = Duration::from_secs(600);
        let first = backoff(1, None, max);
        assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
        let fourth = backoff(4, None, max);
        assert!(fourth >= Duration::from_millis(6400) && fourth <= Duration::from_millis(9600));
        assert_eq!(backoff(40, None, max), max);
        let seconds = Duration::from_secs;
        assert_eq!(backoff(1, Some(seconds(30)), max), seconds(30));
        assert_eq!(
            backoff(1, Some(seconds(30)), seconds(8)),
            seconds(30),
            "a longer Retry-After is waited for beyond the cap"
        );
        assert_eq!(backoff(1, Some(seconds(90_000)), max), seconds(3600));
        let zero = backoff(1, Some(Duration::ZERO), max);
        assert!(
            zero >= Duration::from_millis(800),
            "Retry-After: 0 is no tight loop"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-10-21T07:27:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date past is now"
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn a_refused_connection_is_named() {
        let client = crate::client::build(Duration::from_secs(1), None).unwrap();
        let err = attempt(
            &client,
            &def(),
            "ping",
            "x",
            Bytes::from_static(b"{}"),
            Duration::from_secs(2),
        )
        .await
        .err()
        .unwrap();
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }
}
