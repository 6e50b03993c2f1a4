//! RFM in the live system: the quintile edges in force, fitted in batch over every
//! purchasing customer, and each customer's scores against them, computed when read so a
//! profile changed since the fit is rescored at once.

use chrono::{DateTime, Utc};
use persona_core::profile::ComputedView;
use persona_segment::rfm::{RfmEdges, RfmScore, RfmValues};
use serde::{Deserialize, Serialize};

/// The store's document kind for RFM fits, numbered by version.
pub const RFM_DOCUMENT: &str = "rfm";

/// One batch fit of the RFM edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmFit {
    pub edges: RfmEdges,
    /// When the fit ran.
    pub fitted_at: DateTime<Utc>,
    /// The instant recency was measured against.
    pub as_of: DateTime<Utc>,
}

/// A customer's RFM values; `None` for a customer who never purchased.
pub fn values(computed: &ComputedView) -> Option<RfmValues> {
    let recency = computed.recency_days?;
    (computed.frequency > 0).then_some(RfmValues {
        recency_days: recency as f64,
        frequency: computed.frequency as f64,
        monetary: computed.monetary,
    })
}

impl RfmFit {
    /// The customer's scores against these edges.
    pub fn score(&self, computed: &ComputedView) -> Option<RfmScore> {
        values(computed).map(|v| self.edges.score(&v))
    }
}
