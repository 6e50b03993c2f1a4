//! The jobs' Prometheus metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{Outcome, Run};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

/// What the jobs have done. Clones share the same metrics.
#[derive(Clone, Debug, Default)]
pub struct JobMetrics {
    runs: Family<RunLabels, Counter>,
    last_success: Family<JobLabel, Gauge>,
    last_duration: Family<JobLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl JobMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "persona_job_runs",
            "Runs of each scheduled job, by outcome (succeeded, failed)",
            self.runs.clone(),
        );
        registry.register(
            "persona_job_last_success_timestamp_seconds",
            "When each job last succeeded, in Unix seconds (alert when it falls behind its schedule)",
            self.last_success.clone(),
        );
        registry.register(
            "persona_job_last_duration_seconds",
            "How long each job's last run took",
            self.last_duration.clone(),
        );
    }

    pub(crate) fn record(&self, run: &Run, took: Duration) {
        let outcome = match run.outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        };
        self.runs
            .get_or_create(&RunLabels {
                job: run.job.into(),
                outcome: outcome.into(),
            })
            .inc();
        let job = JobLabel {
            job: run.job.into(),
        };
        self.last_duration
            .get_or_create(&job)
            .set(took.as_secs_f64());
        if run.outcome == Outcome::Succeeded {
            self.last_success
                .get_or_create(&job)
                .set(run.finished_at.timestamp());
        }
    }
}
