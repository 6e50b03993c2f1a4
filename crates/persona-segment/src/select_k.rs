//! Choosing k: fit every k of a range, draw the curves, and pick by a stated rule.
//!
//! The rule (`--k auto`): among the k whose smallest cluster holds at least `min_share` of
//! the rows (the over-segmentation guard), the one with the highest silhouette. Silhouettes
//! within [`SILHOUETTE_TIE`] of the best count as tied (a sampled silhouette is not more
//! precise than that, and two overlapping groups barely move it), and among tied k the
//! highest Calinski-Harabasz index wins. The k so picked must then be stable: its bootstrap
//! stability (mean adjusted Rand index of refits on resamples) must reach `min_stability`,
//! or the next k by the same rule is tried. The elbow of the inertia curve (Kneedle) is
//! reported beside it, as a second opinion a person can compare on the plot. If no k passes
//! both guards, the best k by silhouette alone is taken and [`KChoice::guarded_out`] says so.

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::kmeans::KMeans;
use crate::{Matrix, SegmentError, metrics};

/// Silhouettes closer than this to the best are treated as equal by the `auto` rule.
pub const SILHOUETTE_TIE: f64 = 0.01;

/// The figures of one k.
#[derive(Debug, Clone, Serialize)]
pub struct KPoint {
    pub k: usize,
    pub inertia: f64,
    pub silhouette: f64,
    pub calinski_harabasz: f64,
    pub davies_bouldin: f64,
    /// Share of rows in the smallest cluster.
    pub min_share: f64,
    /// Bootstrap stability, measured only for the k the rule considered.
    pub stability: Option<f64>,
}

/// The thresholds and sampling of [`choose_k`].
#[derive(Debug, Clone)]
pub struct KRules {
    /// Rows the silhouette is computed on (a seeded sample when there are more).
    pub silhouette_rows: usize,
    /// The smallest share of rows a cluster may hold.
    pub min_share: f64,
    /// The lowest bootstrap stability a chosen k may have.
    pub min_stability: f64,
    pub seed: u64,
}

/// The curves over k and the choice made from them.
#[derive(Debug, Clone, Serialize)]
pub struct KChoice {
    pub curve: Vec<KPoint>,
    /// The chosen k.
    pub k: usize,
    /// The knee of the inertia curve, when the curve has one.
    pub elbow: Option<usize>,
    /// True when no k passed both the minimum share and the minimum stability.
    pub guarded_out: bool,
}

/// Fits `fit(k)` for every k in `ks` and chooses one by the rule above; `stability(k)` is
/// asked only for the k the rule is about to choose.
pub fn choose_k(
    data: &Matrix,
    ks: std::ops::RangeInclusive<usize>,
    mut fit: impl FnMut(usize) -> Result<KMeans, SegmentError>,
    mut stability: impl FnMut(usize) -> Result<f64, SegmentError>,
    rules: &KRules,
    mut progress: impl FnMut(usize),
) -> Result<KChoice, SegmentError> {
    let n = data.rows();
    if *ks.start() < 2 || ks.is_empty() {
        return Err(SegmentError::Param {
            name: "k range",
            rule: "from at least 2, and not empty",
            value: format!("{}..={}", ks.start(), ks.end()),
        });
    }
    let rows: Vec<usize> = if n > rules.silhouette_rows {
        sample(
            &mut ChaCha8Rng::seed_from_u64(rules.seed),
            n,
            rules.silhouette_rows,
        )
        .into_vec()
    } else {
        (0..n).collect()
    };
    let sampled = data.select(&rows);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut curve = Vec::new();
    for k in ks {
        if k >= n {
            break;
        }
        let m = fit(k)?;
        let mut sizes = vec![0usize; k];
        for &l in &m.labels {
            sizes[l] += 1;
        }
        let labels: Vec<usize> = rows.iter().map(|&i| m.labels[i]).collect();
        let distinct = {
            let mut seen = labels.clone();
            seen.sort_unstable();
            seen.dedup();
            seen.len()
        };
        curve.push(KPoint {
            k,
            inertia: m.inertia,
            silhouette: if distinct >= 2 && distinct < labels.len() {
                metrics::silhouette(&sampled, &labels, threads)?
            } else {
                0.0
            },
            calinski_harabasz: metrics::calinski_harabasz(data, &m.labels).unwrap_or(0.0),
            davies_bouldin: metrics::davies_bouldin(data, &m.labels).unwrap_or(0.0),
            min_share: *sizes.iter().min().unwrap_or(&0) as f64 / n as f64,
            stability: None,
        });
        progress(k);
    }
    let mut candidates: Vec<usize> = (0..curve.len())
        .filter(|&i| curve[i].min_share >= rules.min_share)
        .collect();
    let mut chosen = None;
    while let Some(i) = best_by_rule(&curve, &candidates) {
        let s = stability(curve[i].k)?;
        curve[i].stability = Some(s);
        if s >= rules.min_stability {
            chosen = Some(i);
            break;
        }
        candidates.retain(|&c| c != i);
    }
    let guarded_out = chosen.is_none();
    let all: Vec<usize> = (0..curve.len()).collect();
    let k = chosen
        .or_else(|| best_by_rule(&curve, &all))
        .map_or(2, |i| curve[i].k);
    let elbow = kneedle(
        &curve
            .iter()
            .map(|p| (p.k as f64, p.inertia))
            .collect::<Vec<_>>(),
    );
    Ok(KChoice {
        curve,
        k,
        elbow,
        guarded_out,
    })
}

/// The index (into `curve`) the rule picks among `candidates`: the highest silhouette,
/// near-ties broken by Calinski-Harabasz.
fn best_by_rule(curve: &[KPoint], candidates: &[usize]) -> Option<usize> {
    let best_silhouette = candidates
        .iter()
        .map(|&i| curve[i].silhouette)
        .fold(f64::NEG_INFINITY, f64::max);
    candidates
        .iter()
        .copied()
        .filter(|&i| curve[i].silhouette >= best_silhouette - SILHOUETTE_TIE)
        .reduce(|best, i| {
            if curve[i].calinski_harabasz > curve[best].calinski_harabasz {
                i
            } else {
                best
            }
        })
}

/// The knee of a decreasing, convex curve by the Kneedle method (Satopää et al. 2011):
/// normalise both axes to [0, 1], and take the point farthest above the line from the
/// first to the last point. Returns the knee's x. `None` for fewer than three points or a
/// flat curve.
pub fn kneedle(points: &[(f64, f64)]) -> Option<usize> {
    // Flipped so the curve rises and bends down: the knee is where it most exceeds x.
    knee_by(points, |x, y| (1.0 - y) - x).map(|i| points[i].0 as usize)
}

/// The knee of a rising, convex curve (as sorted k-distances are) by the same method: the
/// point farthest below the line from the first to the last point. Returns its index.
pub fn knee_of_rising(points: &[(f64, f64)]) -> Option<usize> {
    knee_by(points, |x, y| x - y)
}

/// The index of the point with the largest positive `gap(x, y)`, both axes normalised to
/// [0, 1].
fn knee_by(points: &[(f64, f64)], gap: impl Fn(f64, f64) -> f64) -> Option<usize> {
    if points.len() < 3 {
        return None;
    }
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let ymax = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let ymin = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    if ymax <= ymin || x1 <= x0 {
        return None;
    }
    points
        .iter()
        .map(|&(x, y)| gap((x - x0) / (x1 - x0), (y - ymin) / (ymax - ymin)))
        .enumerate()
        .filter(|(_, d)| *d > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KMeansParams;

    /// Four tight groups far apart, 50 rows each.
    fn four_blobs() -> Matrix {
        let mut rows = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0), (20.0, 20.0)] {
            for i in 0..50 {
                let t = f64::from(i) * 0.37;
                rows.push(vec![cx + t.sin(), cy + (t * 1.3).cos()]);
            }
        }
        Matrix::from_rows(&rows).unwrap()
    }

    #[test]
    fn auto_finds_the_true_k_of_separable_blobs() {
        let data = four_blobs();
        let fit = |k: usize| KMeansParams::new(k).n_init(4).seed(3).fit(&data);
        let rules = KRules {
            silhouette_rows: 10_000,
            min_share: 0.02,
            min_stability: 0.75,
            seed: 0,
        };
        let mut asked = Vec::new();
        let choice = choose_k(
            &data,
            2..=8,
            fit,
            |k| {
                asked.push(k);
                crate::stability::bootstrap_stability(
                    &data,
                    |m| KMeansParams::new(k).n_init(4).seed(3).fit(m),
                    3,
                    1,
                )
            },
            &rules,
            |_| {},
        )
        .unwrap();
        assert_eq!(choice.k, 4, "{choice:#?}");
        assert_eq!(
            asked,
            [4],
            "stability is measured only for the k about to be chosen"
        );
        assert!(choice.curve[2].stability.unwrap() > 0.99);
        assert_eq!(choice.elbow, Some(4));
        assert_eq!(choice.curve.len(), 7);
        assert!(!choice.guarded_out);
        // A rule that no k can pass falls back to the silhouette and says so.
        let strict = KRules {
            min_stability: 1.5,
            ..rules
        };
        let choice = choose_k(&data, 2..=8, fit, |_| Ok(1.0), &strict, |_| {}).unwrap();
        assert_eq!(choice.k, 4);
        assert!(choice.guarded_out);
    }

    #[test]
    fn the_knee_of_a_textbook_elbow() {
        let pts = [
            (1.0, 100.0),
            (2.0, 40.0),
            (3.0, 15.0),
            (4.0, 12.0),
            (5.0, 10.0),
            (6.0, 9.0),
        ];
        assert_eq!(kneedle(&pts), Some(3));
        assert_eq!(kneedle(&pts[..2]), None);
        let rising: Vec<(f64, f64)> = pts.iter().rev().map(|&(x, y)| (7.0 - x, y)).collect();
        // Mirrored left to right, the same bend: (4, 15) of the rising curve, at index 3.
        assert_eq!(knee_of_rising(&rising), Some(3));
    }
}
