//! Prometheus metrics of the Kafka source.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `accepted` (in the event log) or `rejected` (skipped, or in the dead-letter topic).
    outcome: &'static str,
}

/// What the source counts; cheap to clone, every clone counts into the same metrics.
#[derive(Clone, Debug, Default)]
pub struct KafkaMetrics {
    records: Family<OutcomeLabels, Counter>,
    lag: Gauge<i64, AtomicI64>,
    running: Gauge<i64, AtomicI64>,
    client_errors: Counter,
}

impl KafkaMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "persona_kafka_source_records",
            "Kafka records read, by outcome: accepted into the event log, or rejected",
            self.records.clone(),
        );
        registry.register(
            "persona_kafka_source_lag_records",
            "Records in the source's assigned partitions not yet stored in the event log, as the client last reported",
            self.lag.clone(),
        );
        registry.register(
            "persona_kafka_source_running",
            "1 while the Kafka source reads; 0 once it has stopped (the event log failed; see the server's log)",
            self.running.clone(),
        );
        registry.register(
            "persona_kafka_source_client_errors",
            "Errors the Kafka client reported and retries: brokers out of reach, TLS or authentication refused",
            self.client_errors.clone(),
        );
    }

    pub(crate) fn client_error(&self) {
        self.client_errors.inc();
    }

    pub(crate) fn accepted(&self, n: usize) {
        self.count("accepted", n);
    }

    pub(crate) fn rejected(&self, n: usize) {
        self.count("rejected", n);
    }

    fn count(&self, outcome: &'static str, n: usize) {
        self.records
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n as u64);
    }

    pub(crate) fn set_lag(&self, records: i64) {
        self.lag.set(records);
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.running.set(i64::from(running));
    }

    /// Records counted with `outcome`, for tests and reports.
    pub fn records(&self, outcome: &'static str) -> u64 {
        self.records.get_or_create(&OutcomeLabels { outcome }).get()
    }
}
