//! The collector's shared state.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use persona_log::EventLog;
use tokio::sync::Semaphore;

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
    /// The budget of request body bytes in flight ([`crate::CollectorConfig::max_inflight_bytes`]).
    pub inflight: Arc<Semaphore>,
    /// Later pipeline stages reported by `/readyz`.
    pub stages: Vec<Arc<dyn StageCheck>>,
    /// Set by [`CollectorState::begin_stop`]: `/readyz` then says not ready.
    stopping: AtomicBool,
}

/// A pipeline stage behind the log (e.g. the processor) that `/readyz` reports on.
pub trait StageCheck: Send + Sync + 'static {
    /// The key of the stage's section in the `/readyz` body.
    fn name(&self) -> &'static str;
    /// The stage's figures for `/readyz`, and what is wrong with it. Those are reported as
    /// warnings without making the server unready: readiness is about taking events, and a
    /// stage behind the log applies them once it recovers, while a load balancer steering
    /// senders away would leave them to drop events after their retries.
    fn check(&self) -> (serde_json::Value, Vec<String>);
}

impl CollectorState {
    pub fn new(log: Arc<EventLog>, config: ValidCollectorConfig, metrics: Arc<Metrics>) -> Self {
        CollectorState(Arc::new(Shared {
            log,
            inflight: Arc::new(Semaphore::new(config.max_inflight_bytes)),
            config,
            metrics,
            stages: Vec::new(),
            stopping: AtomicBool::new(false),
        }))
    }

    /// The server has been asked to stop: from now on `/readyz` answers 503, so a load
    /// balancer takes it out of rotation, while requests are still taken and acknowledged
    /// until the listener closes.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Adds a stage to `/readyz`; call before the state is shared.
    pub fn with_stage(mut self, stage: Arc<dyn StageCheck>) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("stages are added before the state is shared")
            .stages
            .push(stage);
        self
    }
}

impl Deref for CollectorState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
