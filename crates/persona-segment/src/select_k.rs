//! Choosing k: fit every k of a range, draw the curves, and pick by a stated rule.
//!
//! The rule (`--k auto`): among the k whose smallest cluster holds at least `min_share` of
//! the rows (the over-segmentation guard), the one with the highest silhouette. Silhouettes
//! within [`SILHOUETTE_TIE`] of the best count as tied (a sampled silhouette is not more
//! precise than that, and two overlapping groups barely move it), and among tied k the
//! highest Calinski-Harabasz index wins. The elbow of the inertia curve (Kneedle) is reported beside it, as a second
//! opinion a person can compare on the plot. If no k passes the guard, the smallest k of the
//! range is taken and [`KChoice::guarded_out`] says so.

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
}

/// The curves over k and the choice made from them.
#[derive(Debug, Clone, Serialize)]
pub struct KChoice {
    pub curve: Vec<KPoint>,
    /// The chosen k.
    pub k: usize,
    /// The knee of the inertia curve, when the curve has one.
    pub elbow: Option<usize>,
    /// True when every k had a cluster below the minimum share.
    pub guarded_out: bool,
}

/// Fits `fit(k)` for every k in `ks` and chooses one. The silhouette is computed on a
/// seeded sample of at most `silhouette_rows` rows (all rows when there are fewer).
pub fn choose_k(
    data: &Matrix,
    ks: std::ops::RangeInclusive<usize>,
    mut fit: impl FnMut(usize) -> Result<KMeans, SegmentError>,
    silhouette_rows: usize,
    min_share: f64,
    seed: u64,
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
    let rows: Vec<usize> = if n > silhouette_rows {
        sample(&mut ChaCha8Rng::seed_from_u64(seed), n, silhouette_rows).into_vec()
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
        });
        progress(k);
    }
    let eligible: Vec<&KPoint> = curve.iter().filter(|p| p.min_share >= min_share).collect();
    let guarded_out = eligible.is_empty();
    let best_silhouette = eligible
        .iter()
        .map(|p| p.silhouette)
        .fold(f64::NEG_INFINITY, f64::max);
    let k = eligible
        .iter()
        .copied()
        .filter(|p| p.silhouette >= best_silhouette - SILHOUETTE_TIE)
        .reduce(|best, p| {
            if p.calinski_harabasz > best.calinski_harabasz {
                p
            } else {
                best
            }
        })
        .map_or(curve.first().map_or(2, |p| p.k), |p| p.k);
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

/// The knee of a decreasing, convex curve by the Kneedle method (Satopää et al. 2011):
/// normalise both axes to [0, 1], and take the point farthest above the line from the
/// first to the last point. `None` for fewer than three points or a flat curve.
pub fn kneedle(points: &[(f64, f64)]) -> Option<usize> {
    if points.len() < 3 {
        return None;
    }
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let ymax = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let ymin = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    if ymax <= ymin || x1 <= x0 {
        return None;
    }
    // Flipped so the curve rises and bends down: the knee is where it most exceeds x.
    points
        .iter()
        .map(|&(x, y)| (x, (ymax - y) / (ymax - ymin) - (x - x0) / (x1 - x0)))
        .filter(|(_, d)| *d > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(x, _)| x as usize)
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
        let choice = choose_k(
            &data,
            2..=8,
            |k| KMeansParams::new(k).n_init(4).seed(3).fit(&data),
            10_000,
            0.02,
            0,
            |_| {},
        )
        .unwrap();
        assert_eq!(choice.k, 4, "{choice:#?}");
        assert_eq!(choice.elbow, Some(4));
        assert_eq!(choice.curve.len(), 7);
        assert!(!choice.guarded_out);
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
    }
}
