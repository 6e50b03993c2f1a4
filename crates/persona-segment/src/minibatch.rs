//! Mini-batch K-Means (Sculley 2010, with scikit-learn's refinements): for tables too large to
//! iterate over fully, each step moves the centres towards a small random batch, with a
//! per-centre learning rate that falls as the centre absorbs more rows.
//!
//! As in scikit-learn's `MiniBatchKMeans`: the best of `n_init` k-means++ starts is chosen on
//! a random sample of `3 × batch_size` rows; centres that attract almost no rows are moved
//! to random rows of the batch; the run stops after `max_iter` passes' worth of batches or
//! when the smoothed batch inertia has not improved for `max_no_improvement` steps. The labels
//! and inertia returned are those of one full assignment pass with the final centres.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kmeans::{self, KMeans, nearest};
use crate::{Matrix, SegmentError};

/// Mini-batch K-Means parameters.
#[derive(Debug, Clone)]
pub struct MiniBatchParams {
    k: usize,
    batch_size: usize,
    max_iter: usize,
    max_no_improvement: usize,
    n_init: usize,
    reassignment_ratio: f64,
    seed: u64,
    threads: usize,
}

impl MiniBatchParams {
    /// scikit-learn's defaults: batches of 1024, at most 100 passes, stop after 10 steps
    /// without improvement, 3 initialisations, reassignment ratio 0.01.
    pub fn new(k: usize) -> Self {
        MiniBatchParams {
            k,
            batch_size: 1024,
            max_iter: 100,
            max_no_improvement: 10,
            n_init: 3,
            reassignment_ratio: 0.01,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Passes over the data (in batches) at most.
    pub fn max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }

    pub fn n_init(mut self, n: usize) -> Self {
        self.n_init = n;
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

    pub fn fit(&self, data: &Matrix) -> Result<KMeans, SegmentError> {
        let n = data.rows();
        if self.k == 0 {
            return Err(SegmentError::ZeroK(0));
        }
        if self.k > n {
            return Err(SegmentError::TooFewRows { k: self.k, rows: n });
        }
        for (name, v) in [
            ("batch_size", self.batch_size),
            ("max_iter", self.max_iter),
            ("n_init", self.n_init),
        ] {
            if v == 0 {
                return Err(SegmentError::Param {
                    name,
                    rule: "at least 1",
                    value: "0".into(),
                });
            }
        }
        let batch = self.batch_size.min(n);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut centers = self.best_start(data, batch, &mut rng)?;
        let k = self.k;
        let mut counts = vec![0.0f64; k];
        let steps = (self.max_iter * n).div_ceil(batch);
        // scikit-learn's smoothing of the batch inertia: a window of about one pass.
        let alpha = (batch as f64 * 2.0 / (n as f64 + 1.0)).min(1.0);
        let (mut ewa, mut best_ewa, mut stale) = (None::<f64>, f64::INFINITY, 0);
        let mut since_reassign = 0;
        let mut picked = vec![0usize; batch];
        let mut labels = vec![0usize; batch];
        let mut sums = vec![0.0; k * data.cols()];
        let mut batch_counts = vec![0usize; k];
        let mut iterations = 0;
        for step in 0..steps {
            iterations = step + 1;
            picked.iter_mut().for_each(|i| *i = rng.random_range(0..n));
            sums.iter_mut().for_each(|s| *s = 0.0);
            batch_counts.iter_mut().for_each(|c| *c = 0);
            let mut inertia = 0.0;
            for (l, &i) in labels.iter_mut().zip(&picked) {
                let (c, dist) = nearest(&centers, data.row(i));
                *l = c;
                inertia += dist;
                batch_counts[c] += 1;
                let d = data.cols();
                for (s, x) in sums[c * d..(c + 1) * d].iter_mut().zip(data.row(i)) {
                    *s += x;
                }
            }
            // Each centre moves to the running mean of every row it has absorbed.
            let d = data.cols();
            for c in 0..k {
                if batch_counts[c] == 0 {
                    continue;
                }
                let (old, add) = (counts[c], batch_counts[c] as f64);
                for (x, s) in centers.row_mut(c).iter_mut().zip(&sums[c * d..(c + 1) * d]) {
                    *x = (*x * old + s) / (old + add);
                }
                counts[c] = old + add;
            }
            since_reassign += batch;
            if counts.contains(&0.0) || since_reassign >= 10 * k {
                self.reassign(data, &mut centers, &mut counts, &picked, &mut rng);
                since_reassign = 0;
            }
            let per_row = inertia / batch as f64;
            let smoothed = ewa.map_or(per_row, |e| e * (1.0 - alpha) + per_row * alpha);
            ewa = Some(smoothed);
            if smoothed < best_ewa {
                best_ewa = smoothed;
                stale = 0;
            } else {
                stale += 1;
                if stale >= self.max_no_improvement {
                    break;
                }
            }
        }
        // Labels and inertia from one full pass with the final centres.
        Ok(kmeans::finish(
            data,
            centers,
            vec![usize::MAX; n],
            iterations,
            false,
            self.threads,
        ))
    }

    /// The best of `n_init` k-means++ starts, judged on one random sample of `3 × batch`
    /// rows (at least k).
    fn best_start(
        &self,
        data: &Matrix,
        batch: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Matrix, SegmentError> {
        let size = (3 * batch).max(self.k).min(data.rows());
        let sample: Vec<usize> = rand::seq::index::sample(rng, data.rows(), size).into_vec();
        let sample = data.select(&sample);
        let mut best: Option<(Matrix, f64)> = None;
        for _ in 0..self.n_init {
            let centers = kmeans::plus_plus_init(&sample, self.k, rng.random());
            let inertia: f64 = sample.iter_rows().map(|r| nearest(&centers, r).1).sum();
            if best.as_ref().is_none_or(|b| inertia < b.1) {
                best = Some((centers, inertia));
            }
        }
        Ok(best.expect("n_init ≥ 1").0)
    }

    /// Moves centres that have absorbed less than `reassignment_ratio` of the busiest
    /// centre's rows onto random rows of the batch, so no centre is wasted on an outlier.
    fn reassign(
        &self,
        data: &Matrix,
        centers: &mut Matrix,
        counts: &mut [f64],
        batch: &[usize],
        rng: &mut ChaCha8Rng,
    ) {
        let max = counts.iter().copied().fold(0.0, f64::max);
        let mut low: Vec<usize> = (0..counts.len())
            .filter(|&c| counts[c] < self.reassignment_ratio * max)
            .collect();
        // Never more than half the batch at once, the most starved first (as scikit-learn).
        if low.len() > batch.len() / 2 {
            low.sort_by(|&a, &b| counts[a].total_cmp(&counts[b]));
            low.truncate(batch.len() / 2);
        }
        if low.is_empty() {
            return;
        }
        let kept_min = (0..counts.len())
            .filter(|c| !low.contains(c))
            .map(|c| counts[c])
            .fold(f64::INFINITY, f64::min);
        let rows = rand::seq::index::sample(rng, batch.len(), low.len().min(batch.len()));
        for (c, r) in low.into_iter().zip(rows) {
            centers.row_mut(c).copy_from_slice(data.row(batch[r]));
            counts[c] = kept_min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KMeansParams;

    #[test]
    fn separated_groups_are_found_like_full_kmeans() {
        let mut rows = Vec::new();
        for g in 0..4 {
            for i in 0..5_000 {
                let t = f64::from(i) * 0.37;
                rows.push(vec![
                    f64::from(g) * 10.0 + t.sin(),
                    f64::from(g % 2) * 10.0 + t.cos(),
                ]);
            }
        }
        let data = Matrix::from_rows(&rows).unwrap();
        let mb = MiniBatchParams::new(4).seed(3).fit(&data).unwrap();
        let full = KMeansParams::new(4).n_init(3).seed(3).fit(&data).unwrap();
        for g in 0..4 {
            let labels = &mb.labels[g * 5_000..(g + 1) * 5_000];
            assert!(labels.iter().all(|&l| l == labels[0]), "group {g} split");
        }
        assert!(
            mb.inertia <= full.inertia * 1.01,
            "{} vs {}",
            mb.inertia,
            full.inertia
        );
        // Stopped early: far fewer steps than 100 passes' worth.
        assert!(mb.iterations < 100 * 20_000 / 1024, "{}", mb.iterations);
        let again = MiniBatchParams::new(4).seed(3).fit(&data).unwrap();
        assert_eq!(again, mb);
    }
}
