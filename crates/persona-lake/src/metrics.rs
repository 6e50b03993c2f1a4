//! The lake writer's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What the lake writer has done. Clones share the same metrics.
#[derive(Clone, Debug, Default)]
pub struct LakeMetrics {
    pub(crate) events: Counter,
    pub(crate) files: Counter,
    pub(crate) bytes: Counter,
    pub(crate) unreadable: Counter,
    /// Log records not yet in the lake.
    pub(crate) lag: Gauge,
    pub(crate) failing: Gauge,
}

impl LakeMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "persona_lake_events",
                "Events written to the Parquet lake",
                &self.events,
            ),
            (
                "persona_lake_files",
                "Parquet files written to the lake",
                &self.files,
            ),
            (
                "persona_lake_written_bytes",
                "Bytes of Parquet written to the lake",
                &self.bytes,
            ),
            (
                "persona_lake_unreadable_records",
                "Log records left out of the lake because they could not be read as messages",
                &self.unreadable,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "persona_lake_lag_records",
            "Log records not yet written to the lake",
            self.lag.clone(),
        );
        registry.register(
            "persona_lake_failing",
            "1 while the lake writer's last flush failed (it retries every second)",
            self.failing.clone(),
        );
    }
}
