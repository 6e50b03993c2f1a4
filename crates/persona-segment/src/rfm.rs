//! RFM: recency, frequency and monetary scores from 1 to 5 by quintiles over the purchasing
//! customers, and the standard named segments.
//!
//! The quintile edges are fitted in batch ([`RfmEdges::fit`]) and stored with a version, so
//! a customer whose purchases change is rescored against them at once ([`RfmEdges::score`])
//! and matches a batch recomputation with the same edges. A value's score is one more than
//! the number of edges it lies above (frequency and monetary: more is better); recency is
//! reversed, fewer days since the last purchase scoring higher. Equal values always get the
//! same score, so a quintile can hold more or fewer than a fifth of the customers when many
//! share a value (as one-time buyers share `frequency = 1`).
//!
//! Segments are named from the recency score R and the frequency-monetary score
//! FM = (F + M) / 2 rounded up, by this grid (every cell has exactly one name):
//!
//! | R \ FM | 1 | 2 | 3 | 4 | 5 |
//! |---|---|---|---|---|---|
//! | 5 | New Customers | Potential Loyalists | Potential Loyalists | Champions | Champions |
//! | 4 | Promising | Potential Loyalists | Potential Loyalists | Champions | Champions |
//! | 3 | About to Sleep | Need Attention | Need Attention | Loyal Customers | Loyal Customers |
//! | 2 | About to Sleep | About to Sleep | At Risk | At Risk | At Risk |
//! | 1 | Lost | Hibernating | At Risk | Can't Lose Them | Can't Lose Them |

use serde::{Deserialize, Serialize};

use crate::SegmentError;
use crate::scale::quantile;

/// One purchasing customer's RFM values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmValues {
    /// Whole days since the last purchase.
    pub recency_days: f64,
    /// Number of purchases (at least 1).
    pub frequency: f64,
    /// Summed purchase revenue.
    pub monetary: f64,
}

/// Quintile edges (the 20th, 40th, 60th and 80th percentiles) of each value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmEdges {
    /// Which fit these are; a profile's `rfm` names the version it was scored with.
    pub version: u64,
    pub recency_days: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
    /// Purchasing customers the edges were fitted on.
    pub customers: usize,
}

/// A customer's scores and segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmScore {
    pub r: u8,
    pub f: u8,
    pub m: u8,
    /// The three scores as one number, R F M in decimal digits (555 is the best).
    pub score: u16,
    pub segment: RfmSegment,
}

/// The standard named RFM segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RfmSegment {
    Champions,
    #[serde(rename = "Loyal Customers")]
    LoyalCustomers,
    #[serde(rename = "Potential Loyalists")]
    PotentialLoyalists,
    #[serde(rename = "New Customers")]
    NewCustomers,
    Promising,
    #[serde(rename = "Need Attention")]
    NeedAttention,
    #[serde(rename = "About to Sleep")]
    AboutToSleep,
    #[serde(rename = "At Risk")]
    AtRisk,
    #[serde(rename = "Can't Lose Them")]
    CantLoseThem,
    Hibernating,
    Lost,
}

impl RfmSegment {
    /// The segment of recency score `r` and frequency-monetary score `fm` (both 1-5), by the
    /// grid in the module documentation.
    pub fn of(r: u8, fm: u8) -> RfmSegment {
        use RfmSegment::*;
        match (r, fm) {
            (4..=5, 4..=5) => Champions,
            (4..=5, 2..=3) => PotentialLoyalists,
            (5, _) => NewCustomers,
            (4, _) => Promising,
            (3, 4..=5) => LoyalCustomers,
            (3, 2..=3) => NeedAttention,
            (3, _) | (2, 1..=2) => AboutToSleep,
            (2, _) | (1, 3) => AtRisk,
            (1, 4..=5) => CantLoseThem,
            (1, 2) => Hibernating,
            _ => Lost,
        }
    }

    pub fn name(self) -> &'static str {
        use RfmSegment::*;
        match self {
            Champions => "Champions",
            LoyalCustomers => "Loyal Customers",
            PotentialLoyalists => "Potential Loyalists",
            NewCustomers => "New Customers",
            Promising => "Promising",
            NeedAttention => "Need Attention",
            AboutToSleep => "About to Sleep",
            AtRisk => "At Risk",
            CantLoseThem => "Can't Lose Them",
            Hibernating => "Hibernating",
            Lost => "Lost",
        }
    }
}

impl RfmEdges {
    /// Fits the edges on the purchasing customers' values.
    pub fn fit(customers: &[RfmValues], version: u64) -> Result<RfmEdges, SegmentError> {
        if customers.is_empty() {
            return Err(SegmentError::Empty);
        }
        if let Some(i) = customers.iter().position(|c| {
            ![c.recency_days, c.frequency, c.monetary]
                .iter()
                .all(|v| v.is_finite())
        }) {
            return Err(SegmentError::NotFinite { row: i, col: 0 });
        }
        let edges = |get: fn(&RfmValues) -> f64| -> [f64; 4] {
            let mut v: Vec<f64> = customers.iter().map(get).collect();
            v.sort_by(f64::total_cmp);
            [0.2, 0.4, 0.6, 0.8].map(|q| quantile(&v, q))
        };
        Ok(RfmEdges {
            version,
            recency_days: edges(|c| c.recency_days),
            frequency: edges(|c| c.frequency),
            monetary: edges(|c| c.monetary),
            customers: customers.len(),
        })
    }

    /// Scores one purchasing customer against these edges.
    pub fn score(&self, v: &RfmValues) -> RfmScore {
        let above = |x: f64, edges: &[f64; 4]| edges.iter().filter(|&&e| x > e).count() as u8;
        let r = 5 - above(v.recency_days, &self.recency_days);
        let f = 1 + above(v.frequency, &self.frequency);
        let m = 1 + above(v.monetary, &self.monetary);
        let fm = (f + m).div_ceil(2);
        RfmScore {
            r,
            f,
            m,
            score: u16::from(r) * 100 + u16::from(f) * 10 + u16::from(m),
            segment: RfmSegment::of(r, fm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(recency_days: f64, frequency: f64, monetary: f64) -> RfmValues {
        RfmValues {
            recency_days,
            frequency,
            monetary,
        }
    }

    #[test]
    fn quintiles_score_one_to_five_and_recency_is_reversed() {
        // Ten customers: recency 0..9 days, frequency 1..10, monetary 10..100.
        let customers: Vec<RfmValues> = (0..10)
            .map(|i| v(f64::from(i), f64::from(i + 1), f64::from(10 * (i + 1))))
            .collect();
        let edges = RfmEdges::fit(&customers, 3).unwrap();
        for (got, want) in edges.frequency.iter().zip([2.8, 4.6, 6.4, 8.2]) {
            assert!((got - want).abs() < 1e-12, "{:?}", edges.frequency);
        }
        let best = edges.score(&v(0.0, 10.0, 100.0));
        assert_eq!((best.r, best.f, best.m, best.score), (5, 5, 5, 555));
        assert_eq!(best.segment, RfmSegment::Champions);
        let worst = edges.score(&v(9.0, 1.0, 10.0));
        assert_eq!((worst.r, worst.f, worst.m, worst.score), (1, 1, 1, 111));
        assert_eq!(worst.segment, RfmSegment::Lost);
        // A value on an edge is not above it.
        assert_eq!(edges.score(&v(0.0, edges.frequency[0], 10.0)).f, 1);
        let scores: Vec<u8> = customers.iter().map(|c| edges.score(c).f).collect();
        assert_eq!(scores, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn every_cell_of_the_grid_has_its_documented_segment() {
        use RfmSegment::*;
        let grid = [
            [
                NewCustomers,
                PotentialLoyalists,
                PotentialLoyalists,
                Champions,
                Champions,
            ],
            [
                Promising,
                PotentialLoyalists,
                PotentialLoyalists,
                Champions,
                Champions,
            ],
            [
                AboutToSleep,
                NeedAttention,
                NeedAttention,
                LoyalCustomers,
                LoyalCustomers,
            ],
            [AboutToSleep, AboutToSleep, AtRisk, AtRisk, AtRisk],
            [Lost, Hibernating, AtRisk, CantLoseThem, CantLoseThem],
        ];
        for (row, r) in grid.iter().zip((1..=5).rev()) {
            for (want, fm) in row.iter().zip(1..=5) {
                assert_eq!(RfmSegment::of(r, fm), *want, "R {r}, FM {fm}");
            }
        }
        assert_eq!(
            serde_json::to_string(&CantLoseThem).unwrap(),
            "\"Can't Lose Them\""
        );
        assert_eq!(CantLoseThem.name(), "Can't Lose Them");
    }

    #[test]
    fn no_customers_or_a_bad_value_is_refused() {
        assert_eq!(RfmEdges::fit(&[], 1), Err(SegmentError::Empty));
        assert!(RfmEdges::fit(&[v(f64::NAN, 1.0, 1.0)], 1).is_err());
    }
}
