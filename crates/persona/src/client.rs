//! A small HTTP client for sending Segment-spec batches to a persona server (or any
//! Segment-compatible endpoint), with retries as Segment's SDKs do them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use persona_core::FieldError;
use serde_json::Value;
use tokio::sync::Semaphore;

/// Attempts per batch before giving up on a retryable failure (429, 5xx, connection error).
const MAX_ATTEMPTS: u32 = 8;

/// One answer from the server.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub retry_after: Option<Duration>,
}

/// A message to send, with the number it goes by in its input (a line of a file, say), so
/// that a reject names it there and not by its place in one request.
pub struct Numbered {
    pub number: usize,
    /// The message as a serialised JSON object.
    pub json: String,
}

/// One reject as the import and simulate summaries print it.
pub fn reject_line(unit: &str, number: usize, e: &FieldError) -> String {
    match e.field.as_str() {
        // A problem with the whole message names no field.
        "" => format!("{unit} {number}: {}", e.reason),
        field => format!("{unit} {number}: `{field}` {}", e.reason),
    }
}

/// What happened to one batch, or (added up) to a whole send or import.
#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    pub accepted: usize,
    pub rejected: usize,
    /// The reasons for rejected messages, one line each, with the number of the message
    /// in its input (they arrive out of order when batches are sent in parallel).
    pub problems: Vec<(usize, String)>,
}

impl BatchOutcome {
    /// Adds another outcome's counts and reasons to this one.
    pub fn add(&mut self, other: BatchOutcome) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.problems.extend(other.problems);
    }
}

/// An HTTP client with pooled keep-alive connections, and `target` without a trailing
/// slash, once `target` is known to be an http:// URL with a host.
pub fn http_client(target: &str) -> anyhow::Result<(Client<HttpConnector, Full<Bytes>>, String)> {
    let base = target.trim_end_matches('/').to_string();
    let uri: Uri = base
        .parse()
        .with_context(|| format!("invalid target URL {target:?}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        bail!("target must be an http:// URL with a host, got {target:?}");
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    Ok((client, base))
}

/// Sends to one server with one write key over pooled keep-alive connections.
#[derive(Clone)]
pub struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    auth: String,
}

impl Sender {
    pub fn new(target: &str, write_key: &str) -> anyhow::Result<Self> {
        let (client, base) = http_client(target)?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
        );
        Ok(Sender { client, base, auth })
    }

    /// One POST, no retries.
    pub async fn post(&self, path: &str, body: Bytes) -> anyhow::Result<Answer> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, &self.auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("valid request");
        let resp = self.client.request(req).await?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// Sends `messages` as one `/v1/batch`, retrying overloads and connection errors with
    /// backoff. A 400 for a partial batch is not retried: the valid messages were stored.
    /// Rejects are reported as `unit` and each message's number.
    pub async fn send_batch(
        &self,
        messages: &[Numbered],
        unit: &str,
    ) -> anyhow::Result<BatchOutcome> {
        let mut body =
            String::with_capacity(messages.iter().map(|m| m.json.len() + 1).sum::<usize>() + 12);
        body.push_str("{\"batch\":[");
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&m.json);
        }
        body.push_str("]}");
        let body = Bytes::from(body);
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=MAX_ATTEMPTS {
            let answer = self.post("/v1/batch", body.clone()).await;
            let wait = match answer {
                // A partial batch is a 200 that lists its rejects; a batch with none valid is
                // a 400. Neither is retried: what was valid is stored.
                Ok(a) if a.status.is_success() || a.status == StatusCode::BAD_REQUEST => {
                    return Ok(outcome(messages, unit, &a.body));
                }
                // Batches are kept under the body limit, so only a message too large on its
                // own gets here: a reject like any other, not a reason to stop.
                Ok(a) if a.status == StatusCode::PAYLOAD_TOO_LARGE => {
                    let why: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                    let why = why["error"]["message"].as_str().unwrap_or("is too large");
                    return Ok(BatchOutcome {
                        accepted: 0,
                        rejected: messages.len(),
                        problems: messages
                            .iter()
                            .map(|m| {
                                let text =
                                    format!("{unit} {}: too large to send ({why})", m.number);
                                (m.number, text)
                            })
                            .collect(),
                    });
                }
                Ok(a)
                    if a.status == StatusCode::TOO_MANY_REQUESTS || a.status.is_server_error() =>
                {
                    a.retry_after.unwrap_or(delay)
                }
                Ok(a) => bail!(
                    "server answered {}: {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                ),
                Err(e) if attempt == MAX_ATTEMPTS => return Err(e),
                Err(_) => delay,
            };
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        bail!("server still overloaded after {MAX_ATTEMPTS} attempts")
    }
}

fn outcome(batch: &[Numbered], unit: &str, body: &[u8]) -> BatchOutcome {
    let mut v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if v["error"].is_null() {
        return BatchOutcome {
            accepted: batch.len(),
            ..Default::default()
        };
    }
    let total = batch.len();
    let accepted = v["accepted"].as_u64().unwrap_or(0) as usize;
    let first = batch.first().map_or(0, |m| m.number);
    let name = |e: &FieldError| match e.index.and_then(|i| batch.get(i)) {
        Some(m) => (m.number, reject_line(unit, m.number, e)),
        None => (first, e.to_string()),
    };
    let problems = serde_json::from_value::<Vec<FieldError>>(v["error"]["details"].take())
        .ok()
        .filter(|d| !d.is_empty())
        .map(|d| d.iter().map(name).collect())
        .unwrap_or_else(|| {
            let message = v["error"]["message"].as_str().unwrap_or("rejected");
            vec![(first, message.to_string())]
        });
    BatchOutcome {
        accepted,
        rejected: total - accepted,
        problems,
    }
}

/// Batches in flight at once when sending.
const IN_FLIGHT: usize = 4;

/// Sends messages in batches, a few in flight; rejects are named as `unit` and the
/// message's number. Messages are taken from `messages` as batches go out, so only those
/// in flight are held. A progress bar shows when their number is known beforehand (a
/// caller streaming from a file shows its own).
pub async fn send_all(
    sender: &Sender,
    messages: impl IntoIterator<Item = Numbered>,
    batch_size: usize,
    unit: &'static str,
) -> anyhow::Result<BatchOutcome> {
    let messages = messages.into_iter();
    let bar = match messages.size_hint() {
        (n, Some(m)) if n == m => progress_bar(n as u64, "sending"),
        _ => indicatif::ProgressBar::hidden(),
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut chunks = messages.peekable();
    let mut total = BatchOutcome::default();
    while chunks.peek().is_some() {
        let batch = next_batch(&mut chunks, batch_size);
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let task_sender = sender.clone();
        let bar = bar.clone();
        tasks.spawn(async move {
            let outcome = task_sender.send_batch(&batch, unit).await;
            bar.inc(batch.len() as u64);
            drop(permit);
            outcome
        });
        let mut failed = None;
        while let Some(done) = tasks.try_join_next() {
            match done? {
                Ok(outcome) => total.add(outcome),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(stopped(e, sender, tasks, total).await);
        }
    }
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(outcome) => total.add(outcome),
            Err(e) => return Err(stopped(e, sender, tasks, total).await),
        }
    }
    bar.finish_and_clear();
    Ok(total)
}

/// A send that failed part way, with what had been stored by then, the batches still in
/// flight included.
async fn stopped(
    e: anyhow::Error,
    sender: &Sender,
    mut in_flight: tokio::task::JoinSet<anyhow::Result<BatchOutcome>>,
    mut so_far: BatchOutcome,
) -> anyhow::Error {
    while let Some(done) = in_flight.join_next().await {
        if let Ok(Ok(outcome)) = done {
            so_far.add(outcome);
        }
    }
    e.context(format!(
        "sending to {} stopped after {} messages were stored and {} rejected",
        sender.base, so_far.accepted, so_far.rejected
    ))
}

/// Request bodies are kept under the server's 500 KB batch limit with room to spare.
const MAX_BATCH_BODY: usize = 450 * 1024;

/// Takes up to `max` messages whose total size stays under [`MAX_BATCH_BODY`] (always at
/// least one: a message that is too large on its own is for the server to reject).
fn next_batch(
    messages: &mut std::iter::Peekable<impl Iterator<Item = Numbered>>,
    max: usize,
) -> Vec<Numbered> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while batch.len() < max {
        match messages.peek() {
            Some(m) if batch.is_empty() || bytes + m.json.len() < MAX_BATCH_BODY => {
                bytes += m.json.len() + 1;
                batch.push(messages.next().expect("peeked"));
            }
            _ => break,
        }
    }
    batch
}

/// A progress bar of bytes read, in the same style; its length is set once known (an input
/// of unknown length, such as standard input, shows what was read so far).
pub fn bytes_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::no_length();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

/// A progress bar in the style every long command uses.
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_under_the_servers_size_limit() {
        let messages: Vec<Numbered> = (0..10)
            .map(|i| Numbered {
                number: i,
                json: format!("{i}{}", "x".repeat(100 * 1024)),
            })
            .collect();
        let mut it = messages.into_iter().peekable();
        let sizes: Vec<usize> =
            std::iter::from_fn(|| Some(next_batch(&mut it, 100)).filter(|b| !b.is_empty()))
                .map(|b| b.len())
                .collect();
        assert_eq!(sizes, [4, 4, 2]);
        let mut small = (0..250)
            .map(|i| Numbered {
                number: i,
                json: i.to_string(),
            })
            .peekable();
        assert_eq!(next_batch(&mut small, 100).len(), 100);
    }
}
