//! What the Kafka client reports back: its log lines and errors into `tracing`, and its
//! statistics into the lag metric.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

use crate::metrics::KafkaMetrics;

/// librdkafka's own log lines, at the level it gives them.
pub(crate) fn log_client_message(client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(client, fac, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(client, fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(client, fac, "{message}"),
        RDKafkaLogLevel::Debug => tracing::debug!(client, fac, "{message}"),
    }
}

/// The consumer's context.
pub(crate) struct SourceContext {
    pub metrics: KafkaMetrics,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_client_message("consumer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Brokers that cannot be reached are retried by the client; this says why no
        // records come meanwhile.
        self.metrics.client_error();
        tracing::warn!(%error, reason, "Kafka source");
    }

    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            // Partition -1 is the client's internal one. Counted from the stored offset
            // (what is read but not yet in the log is lag), or from the committed one
            // until this process has stored one; -1 is not known yet.
            .filter(|p| p.partition >= 0)
            .map(|p| match p.consumer_lag_stored {
                stored if stored >= 0 => stored,
                _ => p.consumer_lag,
            })
            .filter(|lag| *lag >= 0)
            .sum();
        self.metrics.set_lag(lag);
    }
}

impl ConsumerContext for SourceContext {}
