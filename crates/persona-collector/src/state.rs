//! The collector's shared state.

use std::sync::Arc;

use persona_log::EventLog;

use crate::config::ValidCollectorConfig;
use crate::metrics::Metrics;

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct CollectorState {
    pub log: Arc<EventLog>,
    pub config: Arc<ValidCollectorConfig>,
    pub metrics: Arc<Metrics>,
}
