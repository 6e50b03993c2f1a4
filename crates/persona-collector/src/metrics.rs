//! Prometheus metrics of ingestion and of the log beneath it.
//!
//! Names follow `persona_<stage>_<what>_<unit>`; the text encoder adds `_total` to counters.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use persona_core::MessageType;
use persona_log::CommitObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MessageLabels {
    /// The Segment call type.
    pub kind: &'static str,
    /// `accepted` or `rejected`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    /// Why a whole request was refused: its error code (`unauthorized`, `invalid_json`,
    /// `payload_too_large`, `overloaded`, `log_unavailable`, `shutting_down`, ...), or
    /// `invalid_request` for a problem with the request rather than one of its messages.
    pub reason: &'static str,
}

type Seconds = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Every metric the collector and log expose, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub(crate) messages: Family<MessageLabels, Counter>,
    /// Each call type's accepted-messages counter of `messages`, looked up once rather than
    /// hashed into the family on every request; indexed by `MessageType as usize`.
    accepted: [OnceLock<Counter>; MessageType::ALL.len()],
    pub(crate) refused: Family<RefusalLabels, Counter>,
    pub(crate) request_seconds: Seconds,
    pub(crate) ingested_bytes: Counter,
    log_sync_seconds: Histogram,
    log_records: Counter,
    log_bytes: Counter,
    pub(crate) log_queue_fill: Gauge<f64, AtomicU64>,
    pub(crate) log_next_offset: Gauge,
    pub(crate) log_writable: Gauge,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 26 s: a body read that times out takes 30 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "persona_collector_messages",
            "Messages received, by call type and outcome",
            messages.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "persona_collector_refused_requests",
            "Requests refused as a whole, by reason",
            refused.clone(),
        );
        let request_seconds: Seconds = Family::new_with_constructor(latency_histogram);
        registry.register(
            "persona_http_request_duration_seconds",
            "HTTP request latency, by route and status",
            request_seconds.clone(),
        );
        let ingested_bytes = Counter::default();
        registry.register(
            "persona_collector_received_bytes",
            "Request body bytes received by the ingestion endpoints, after gzip decoding",
            ingested_bytes.clone(),
        );
        let log_sync_seconds = latency_histogram();
        registry.register(
            "persona_log_fsync_duration_seconds",
            "Time of each group commit's fdatasync",
            log_sync_seconds.clone(),
        );
        let log_records = Counter::default();
        registry.register(
            "persona_log_appended_records",
            "Records made durable in the event log",
            log_records.clone(),
        );
        let log_bytes = Counter::default();
        registry.register(
            "persona_log_appended_bytes",
            "Bytes made durable in the event log",
            log_bytes.clone(),
        );
        let log_queue_fill = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "persona_log_queue_fill_ratio",
            "Share of the log's append queue in use; appends are refused at 1",
            log_queue_fill.clone(),
        );
        let log_next_offset = Gauge::default();
        registry.register(
            "persona_log_next_offset",
            "Offset the next appended record will get",
            log_next_offset.clone(),
        );
        let log_writable = Gauge::default();
        registry.register(
            "persona_log_writable",
            "1 while the log takes appends; 0 once it has failed, or while it cannot write (a full disk; see /readyz)",
            log_writable.clone(),
        );
        Metrics {
            registry,
            messages,
            accepted: Default::default(),
            refused,
            request_seconds,
            ingested_bytes,
            log_sync_seconds,
            log_records,
            log_bytes,
            log_queue_fill,
            log_next_offset,
            log_writable,
        }
    }

    /// The registry, for other stages to add their metrics to the same `/metrics` page.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Everything in the OpenMetrics text format (`/metrics` also answers in Prometheus's
    /// older text format; see `crate::exposition`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub(crate) fn count_messages(&self, kind: &'static str, accepted: bool, n: u64) {
        let outcome = if accepted { "accepted" } else { "rejected" };
        self.messages
            .get_or_create(&MessageLabels { kind, outcome })
            .inc_by(n);
    }

    pub(crate) fn count_accepted(&self, kind: MessageType, n: u64) {
        self.accepted[kind as usize]
            .get_or_init(|| {
                let labels = MessageLabels {
                    kind: kind.as_str(),
                    outcome: "accepted",
                };
                self.messages.get_or_create(&labels).clone()
            })
            .inc_by(n);
    }

    pub(crate) fn count_refusal(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }
}

/// Feeds the log's group commits into the metrics.
pub struct LogMetrics(pub Arc<Metrics>);

impl CommitObserver for LogMetrics {
    fn on_commit(&self, records: u64, bytes: u64, sync: Duration) {
        self.0.log_sync_seconds.observe(sync.as_secs_f64());
        self.0.log_records.inc_by(records);
        self.0.log_bytes.inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use persona_core::MessageType;

    #[test]
    fn call_types_index_their_counters() {
        for (i, kind) in MessageType::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
    }
}
