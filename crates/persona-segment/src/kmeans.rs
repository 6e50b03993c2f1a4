//! K-Means: k-means++ initialisation (the greedy variant scikit-learn uses), Lloyd
//! iterations over both cores, several initialisations keeping the best.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::matrix::squared_distance;
use crate::{Matrix, SegmentError};

/// How the first centres are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// Greedy k-means++: each new centre is the best of `2 + ln k` candidates drawn with
    /// probability proportional to the squared distance to the nearest centre so far.
    KMeansPlusPlus,
    /// Given centres (`k × cols`), e.g. to reproduce a reference run.
    Centers(Matrix),
}

/// K-Means parameters, checked by [`KMeansParams::fit`] before any work.
#[derive(Debug, Clone)]
pub struct KMeansParams {
    k: usize,
    init: Init,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    threads: usize,
}

impl KMeansParams {
    /// `k` clusters; k-means++ with 1 initialisation (scikit-learn's `n_init="auto"`),
    /// at most 300 iterations, `tol` 1e-4, seed 0, every core.
    pub fn new(k: usize) -> Self {
        KMeansParams {
            k,
            init: Init::KMeansPlusPlus,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Runs from this many k-means++ initialisations and keeps the lowest inertia.
    pub fn n_init(mut self, n: usize) -> Self {
        self.n_init = n;
        self
    }

    pub fn max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }

    /// Convergence: stop when the centres move less than `tol` times the mean variance of
    /// the features (in total squared distance), as scikit-learn does.
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    fn check(&self, data: &Matrix) -> Result<(), SegmentError> {
        let param = |name, rule, value: String| Err(SegmentError::Param { name, rule, value });
        if self.k == 0 {
            return Err(SegmentError::ZeroK(0));
        }
        if self.k > data.rows() {
            return Err(SegmentError::TooFewRows {
                k: self.k,
                rows: data.rows(),
            });
        }
        if self.n_init == 0 {
            return param("n_init", "at least 1", self.n_init.to_string());
        }
        if self.max_iter == 0 {
            return param("max_iter", "at least 1", self.max_iter.to_string());
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return param("tol", "a finite number ≥ 0", self.tol.to_string());
        }
        if let Init::Centers(c) = &self.init
            && (c.rows() != self.k || c.cols() != data.cols())
        {
            return Err(SegmentError::InitShape {
                k: self.k,
                cols: data.cols(),
                got_rows: c.rows(),
                got_cols: c.cols(),
            });
        }
        Ok(())
    }

    /// Clusters `data`.
    pub fn fit(&self, data: &Matrix) -> Result<KMeans, SegmentError> {
        self.check(data)?;
        let tol = self.tol * mean_variance(data);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut best: Option<KMeans> = None;
        let runs = if matches!(self.init, Init::Centers(_)) {
            1
        } else {
            self.n_init
        };
        for _ in 0..runs {
            let centers = match &self.init {
                Init::Centers(c) => c.clone(),
                Init::KMeansPlusPlus => kmeans_plus_plus(data, self.k, &mut rng),
            };
            let run = lloyd(data, centers, self.max_iter, tol, self.threads);
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(run);
            }
        }
        Ok(best.expect("at least one run"))
    }
}

/// A fitted K-Means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeans {
    /// `k × cols`, in the units of the data it was fitted on.
    pub centers: Matrix,
    /// The cluster of each row of the training data.
    pub labels: Vec<usize>,
    /// Sum of squared distances of the rows to their centres.
    pub inertia: f64,
    /// Lloyd iterations of the kept run.
    pub iterations: usize,
}

impl KMeans {
    /// The nearest centre to `row` and its squared distance.
    pub fn predict(&self, row: &[f64]) -> (usize, f64) {
        nearest(&self.centers, row)
    }
}

fn nearest(centers: &Matrix, row: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, center) in centers.iter_rows().enumerate() {
        let d = squared_distance(row, center);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// The mean over columns of each column's (population) variance.
fn mean_variance(data: &Matrix) -> f64 {
    let (n, d) = (data.rows() as f64, data.cols());
    let mut total = 0.0;
    for j in 0..d {
        let mean = data.iter_rows().map(|r| r[j]).sum::<f64>() / n;
        total += data.iter_rows().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n;
    }
    total / d as f64
}

/// Greedy k-means++ (Arthur and Vassilvitskii, with scikit-learn's local trials).
fn kmeans_plus_plus(data: &Matrix, k: usize, rng: &mut ChaCha8Rng) -> Matrix {
    let n = data.rows();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut chosen = vec![rng.random_range(0..n)];
    let mut closest: Vec<f64> = data
        .iter_rows()
        .map(|r| squared_distance(r, data.row(chosen[0])))
        .collect();
    let mut potential: f64 = closest.iter().sum();
    let mut candidate_dist = vec![0.0; n];
    let mut best_dist = vec![0.0; n];
    for _ in 1..k {
        let mut best: Option<(usize, f64)> = None;
        for _ in 0..trials {
            // Draw an index with probability proportional to its squared distance.
            let target = rng.random::<f64>() * potential;
            let mut acc = 0.0;
            let mut candidate = n - 1;
            for (i, d) in closest.iter().enumerate() {
                acc += d;
                if acc > target {
                    candidate = i;
                    break;
                }
            }
            let c = data.row(candidate);
            let mut pot = 0.0;
            for (i, r) in data.iter_rows().enumerate() {
                let d = squared_distance(r, c).min(closest[i]);
                candidate_dist[i] = d;
                pot += d;
            }
            if best.is_none_or(|(_, p)| pot < p) {
                best = Some((candidate, pot));
                std::mem::swap(&mut best_dist, &mut candidate_dist);
            }
        }
        let (candidate, pot) = best.expect("at least two trials");
        chosen.push(candidate);
        potential = pot;
        std::mem::swap(&mut closest, &mut best_dist);
    }
    data.select(&chosen)
}

/// What one thread gathers in an assignment pass over its rows.
struct Partial {
    sums: Vec<f64>,
    counts: Vec<usize>,
    inertia: f64,
}

/// Assigns every row to its nearest centre (writing `labels` and `dist`) and gathers the
/// per-cluster sums for the next centres, over `threads` threads.
fn assign(
    data: &Matrix,
    centers: &Matrix,
    labels: &mut [usize],
    dist: &mut [f64],
    threads: usize,
) -> Partial {
    let (k, d) = (centers.rows(), data.cols());
    let chunk = data.rows().div_ceil(threads);
    let partials: Vec<Partial> = std::thread::scope(|s| {
        let handles: Vec<_> = labels
            .chunks_mut(chunk)
            .zip(dist.chunks_mut(chunk))
            .enumerate()
            .map(|(t, (labels, dist))| {
                s.spawn(move || {
                    let mut p = Partial {
                        sums: vec![0.0; k * d],
                        counts: vec![0; k],
                        inertia: 0.0,
                    };
                    for (i, (label, dist)) in labels.iter_mut().zip(dist.iter_mut()).enumerate() {
                        let row = data.row(t * chunk + i);
                        let (c, dd) = nearest(centers, row);
                        *label = c;
                        *dist = dd;
                        p.inertia += dd;
                        p.counts[c] += 1;
                        for (s, x) in p.sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                            *s += x;
                        }
                    }
                    p
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let mut total = Partial {
        sums: vec![0.0; k * d],
        counts: vec![0; k],
        inertia: 0.0,
    };
    for p in partials {
        total.inertia += p.inertia;
        for (a, b) in total.sums.iter_mut().zip(&p.sums) {
            *a += b;
        }
        for (a, b) in total.counts.iter_mut().zip(&p.counts) {
            *a += b;
        }
    }
    total
}

/// Lloyd's algorithm from `centers`, with scikit-learn's stopping rule: stop when no label
/// changes, or when the centres' total squared shift is at most `tol`; the final labels and
/// inertia are those of the final centres.
fn lloyd(data: &Matrix, mut centers: Matrix, max_iter: usize, tol: f64, threads: usize) -> KMeans {
    let (n, d, k) = (data.rows(), data.cols(), centers.rows());
    let mut labels = vec![usize::MAX; n];
    let mut previous = vec![usize::MAX; n];
    let mut dist = vec![0.0; n];
    let mut iterations = 0;
    let mut strict = false;
    for i in 0..max_iter {
        iterations = i + 1;
        let p = assign(data, &centers, &mut labels, &mut dist, threads);
        let mut new_centers = centers.clone();
        let mut shift = 0.0;
        for c in 0..k {
            let row = new_centers.row_mut(c);
            if p.counts[c] > 0 {
                for (x, s) in row.iter_mut().zip(&p.sums[c * d..(c + 1) * d]) {
                    *x = s / p.counts[c] as f64;
                }
            } else {
                // An empty cluster takes the row farthest from its centre.
                let far = (0..n)
                    .max_by(|&a, &b| dist[a].total_cmp(&dist[b]))
                    .expect("rows exist");
                row.copy_from_slice(data.row(far));
                dist[far] = 0.0;
            }
            shift += squared_distance(centers.row(c), new_centers.row(c));
        }
        centers = new_centers;
        if labels == previous {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
        previous.copy_from_slice(&labels);
    }
    let inertia = if strict {
        // Labels unchanged, so the centres are their means: one last pass for the inertia.
        data.iter_rows()
            .zip(&labels)
            .map(|(r, &c)| squared_distance(r, centers.row(c)))
            .sum()
    } else {
        assign(data, &centers, &mut labels, &mut dist, threads).inertia
    };
    KMeans {
        centers,
        labels,
        inertia,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> Matrix {
        let mut rows = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (10.0, 10.0), (0.0, 10.0)] {
            for i in 0..30 {
                let t = i as f64 * 0.7;
                rows.push(vec![cx + t.sin(), cy + t.cos()]);
            }
        }
        Matrix::from_rows(&rows).unwrap()
    }

    #[test]
    fn separable_blobs_are_found_and_seeded_runs_repeat() {
        let data = blobs();
        let a = KMeansParams::new(3).n_init(4).seed(7).fit(&data).unwrap();
        let b = KMeansParams::new(3).n_init(4).seed(7).fit(&data).unwrap();
        assert_eq!(a, b);
        for blob in 0..3 {
            let labels = &a.labels[blob * 30..(blob + 1) * 30];
            assert!(labels.iter().all(|&l| l == labels[0]), "blob {blob} split");
        }
        assert_eq!(a.predict(&[10.2, 9.9]).0, a.labels[30]);
    }

    #[test]
    fn bad_parameters_are_named() {
        let data = blobs();
        assert_eq!(KMeansParams::new(0).fit(&data), Err(SegmentError::ZeroK(0)));
        assert!(matches!(
            KMeansParams::new(3).tol(-1.0).fit(&data),
            Err(SegmentError::Param { name: "tol", .. })
        ));
        assert!(matches!(
            KMeansParams::new(91).fit(&data),
            Err(SegmentError::TooFewRows { .. })
        ));
    }
}
