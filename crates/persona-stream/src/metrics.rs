//! Prometheus metrics of the processor.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::filter::DropReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

/// The processor's metrics; clones share the same series.
#[derive(Clone)]
pub struct ProcessorMetrics {
    applied: Counter,
    dropped: Family<DropLabels, Counter>,
    merges: Counter,
    pub(crate) lag_records: Gauge,
    pub(crate) lag_seconds: Gauge<f64, AtomicU64>,
    /// 1 while the processor's batches fail and it retries, else 0.
    pub(crate) failing: Gauge,
    commit_seconds: Histogram,
    batch_records: Histogram,
}

impl Default for ProcessorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessorMetrics {
    pub fn new() -> Self {
        ProcessorMetrics {
            applied: Counter::default(),
            dropped: Family::default(),
            merges: Counter::default(),
            lag_records: Gauge::default(),
            lag_seconds: Gauge::default(),
            failing: Gauge::default(),
            // 100 µs to about 3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            batch_records: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
        }
    }

    /// Adds every series to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "persona_processor_events",
            "Events applied to profiles",
            self.applied.clone(),
        );
        registry.register(
            "persona_processor_dropped_events",
            "Events dropped by the processor, by reason",
            self.dropped.clone(),
        );
        registry.register(
            "persona_processor_profile_merges",
            "Profiles merged into another by identity resolution",
            self.merges.clone(),
        );
        registry.register(
            "persona_processor_lag_records",
            "Log records not yet applied to profiles",
            self.lag_records.clone(),
        );
        registry.register(
            "persona_processor_lag_seconds",
            "Age of the newest applied event while records are waiting; 0 when caught up",
            self.lag_seconds.clone(),
        );
        registry.register(
            "persona_processor_failing",
            "1 while the processor's batches fail and it retries (see /readyz for why), else 0",
            self.failing.clone(),
        );
        registry.register(
            "persona_processor_commit_duration_seconds",
            "Time of each atomic store commit of a micro-batch",
            self.commit_seconds.clone(),
        );
        registry.register(
            "persona_processor_batch_records",
            "Records per micro-batch",
            self.batch_records.clone(),
        );
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn batch(&self, records: usize, applied: u64, merges: u64, commit: f64) {
        self.applied.inc_by(applied);
        self.merges.inc_by(merges);
        self.batch_records.observe(records as f64);
        self.commit_seconds.observe(commit);
    }

    /// The number of events dropped for `reason` so far.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.as_str(),
            })
            .get()
    }
}
