//! The collector's shared state.

use std::ops::Deref;
use std::sync::Arc;

use persona_log::EventLog;

use crate::config::ValidCollectorConfig;
use crate::metrics::Metrics;

/// What every handler needs. One `Arc`, so the per-request clone is a single atomic add.
#[derive(Clone)]
pub struct CollectorState(Arc<Shared>);

/// The parts of [`CollectorState`].
pub struct Shared {
    pub log: Arc<EventLog>,
    pub config: ValidCollectorConfig,
    pub metrics: Arc<Metrics>,
}

impl CollectorState {
    pub fn new(log: Arc<EventLog>, config: ValidCollectorConfig, metrics: Arc<Metrics>) -> Self {
        CollectorState(Arc::new(Shared {
            log,
            config,
            metrics,
        }))
    }
}

impl Deref for CollectorState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
