//! How each webhook's deliveries are going, for `GET /v1/webhooks/{id}` and the metrics.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// A webhook's delivery state as the API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryStatus {
    /// `delivering` (has entries to send), `idle` (has sent all), `retrying` (the last
    /// attempt failed; the next is at `next_attempt_at`) or `disabled`.
    pub state: &'static str,
    /// The last outbox entry delivered or passed over (not subscribed to).
    pub cursor: u64,
    /// Outbox entries after `cursor`, subscribed to or not.
    pub behind: u64,
    /// Deliveries taken by the receiver since persona started.
    pub delivered: u64,
    /// Attempts that failed since persona started.
    pub failed_attempts: u64,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<LastError>,
    /// When the current run of failures began (`null` once a delivery is taken).
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The last failed attempt.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub at: DateTime<Utc>,
    pub delivery: String,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    pub message: String,
}

/// Shared between a webhook's worker and the API.
#[derive(Debug, Default)]
pub(crate) struct Progress(Mutex<DeliveryStatus>);

impl Progress {
    pub(crate) fn read(&self) -> DeliveryStatus {
        self.lock().clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut DeliveryStatus)) {
        f(&mut self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeliveryStatus> {
        // Only plain field writes happen under it: a panic cannot leave it half-changed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// `persona_webhook_attempts_total{outcome="delivered"|"failed"}` and
/// `persona_webhook_disabled_total`.
#[derive(Clone, Default)]
pub struct WebhookMetrics {
    attempts: Family<Outcome, Counter>,
    disabled: Counter,
}

impl WebhookMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "persona_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered: a 2xx answer)",
            self.attempts.clone(),
        );
        registry.register(
            "persona_webhook_disabled",
            "Webhooks persona turned off after failing for webhooks.give_up_after_hours",
            self.disabled.clone(),
        );
    }

    pub(crate) fn attempt(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.attempts.get_or_create(&Outcome { outcome }).inc();
    }

    pub(crate) fn disabled(&self) {
        self.disabled.inc();
    }
}
