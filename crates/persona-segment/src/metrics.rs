//! Cluster quality: silhouette, Calinski-Harabasz and Davies-Bouldin, defined as
//! scikit-learn defines them.

use crate::matrix::{squared_distance, widest_vectors};
use crate::{Matrix, SegmentError};

/// Labels renumbered densely (0..k in order of first appearance) and k.
fn dense_labels(data: &Matrix, labels: &[usize]) -> Result<(Vec<usize>, usize), SegmentError> {
    if labels.len() != data.rows() {
        return Err(SegmentError::LabelCount(labels.len(), data.rows()));
    }
    let mut map = std::collections::HashMap::new();
    let dense: Vec<usize> = labels
        .iter()
        .map(|l| {
            let next = map.len();
            *map.entry(*l).or_insert(next)
        })
        .collect();
    let k = map.len();
    if k < 2 || k >= data.rows() {
        return Err(SegmentError::ClusterCount(k));
    }
    Ok((dense, k))
}

/// Per-cluster sizes and means, for labels `0..k` (an empty cluster's mean is all zeros).
pub fn cluster_means(data: &Matrix, labels: &[usize], k: usize) -> (Vec<usize>, Vec<Vec<f64>>) {
    let mut counts = vec![0usize; k];
    let mut sums = vec![vec![0.0; data.cols()]; k];
    for (row, &l) in data.iter_rows().zip(labels) {
        counts[l] += 1;
        for (s, x) in sums[l].iter_mut().zip(row) {
            *s += x;
        }
    }
    for (s, &n) in sums.iter_mut().zip(&counts) {
        for x in s.iter_mut() {
            *x /= n.max(1) as f64;
        }
    }
    (counts, sums)
}

/// Mean silhouette coefficient over all rows, exact (every pair of rows), over `threads`
/// threads and in O(rows × features) memory.
///
/// For a row: `a` is its mean distance to the other rows of its cluster, `b` the smallest
/// mean distance to the rows of another cluster, and its coefficient `(b - a) / max(a, b)`;
/// a row alone in its cluster scores 0.
pub fn silhouette(data: &Matrix, labels: &[usize], threads: usize) -> Result<f64, SegmentError> {
    let each = silhouette_samples(data, labels, threads)?;
    Ok(each.iter().sum::<f64>() / each.len() as f64)
}

/// Each row's silhouette coefficient (see [`silhouette`]), as scikit-learn's
/// `silhouette_samples`: averaged per cluster, it shows which clusters are well separated.
pub fn silhouette_samples(
    data: &Matrix,
    labels: &[usize],
    threads: usize,
) -> Result<Vec<f64>, SegmentError> {
    let (labels, k) = dense_labels(data, labels)?;
    let n = data.rows();
    let blocks = ClusterBlocks::new(data, &labels, k);
    let threads = threads.max(1);
    let chunk = n.div_ceil(threads);
    let (labels, blocks) = (&labels, &blocks);
    Ok(std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut per_cluster = vec![0.0; k];
                    // More threads than chunks of rows leaves the last ones empty.
                    let rows = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                    let sizes = &blocks.sizes;
                    rows.clone()
                        .zip(&labels[rows])
                        .map(|(i, &own)| {
                            if sizes[own] <= 1 {
                                return 0.0;
                            }
                            distance_sums(blocks, data.row(i), &mut per_cluster);
                            let a = per_cluster[own] / (sizes[own] - 1) as f64;
                            let b = (0..k)
                                .filter(|&c| c != own)
                                .map(|c| per_cluster[c] / sizes[c] as f64)
                                .fold(f64::INFINITY, f64::min);
                            let m = a.max(b);
                            if m > 0.0 { (b - a) / m } else { 0.0 }
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("no panic"))
            .collect()
    }))
}

/// Rows packed for the silhouette's distance sums: grouped by cluster, and within a cluster
/// in blocks of [`LANES`] rows stored column by column, so that one row's distances to
/// eight others are eight independent sums (and eight square roots) in vector registers.
struct ClusterBlocks {
    /// Per cluster, `blocks × cols` groups of [`LANES`] values.
    values: Vec<Vec<[f64; LANES]>>,
    /// Per cluster, the rows that do not fill a whole block, as plain rows.
    tails: Vec<Vec<f64>>,
    sizes: Vec<usize>,
    cols: usize,
}

const LANES: usize = 8;

widest_vectors! {
    fn distance_sums(blocks: &ClusterBlocks, row: &[f64], out: &mut [f64]) -> () => ClusterBlocks::distance_sums_kernel
}

impl ClusterBlocks {
    fn new(data: &Matrix, labels: &[usize], k: usize) -> Self {
        let cols = data.cols();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (i, &l) in labels.iter().enumerate() {
            members[l].push(i);
        }
        let mut values = Vec::with_capacity(k);
        let mut tails = Vec::with_capacity(k);
        for rows in &members {
            let whole = rows.len() / LANES;
            let mut v = vec![[0.0; LANES]; whole * cols];
            for (b, block) in rows.chunks_exact(LANES).enumerate() {
                for (lane, &i) in block.iter().enumerate() {
                    for (j, x) in data.row(i).iter().enumerate() {
                        v[b * cols + j][lane] = *x;
                    }
                }
            }
            values.push(v);
            tails.push(
                rows[whole * LANES..]
                    .iter()
                    .flat_map(|&i| data.row(i).iter().copied())
                    .collect(),
            );
        }
        ClusterBlocks {
            values,
            tails,
            sizes: members.iter().map(Vec::len).collect(),
            cols,
        }
    }

    /// `out[c]` = the sum of distances from `row` to the rows of cluster `c`.
    #[inline(always)]
    fn distance_sums_kernel(&self, row: &[f64], out: &mut [f64]) {
        let cols = self.cols;
        for (c, o) in out.iter_mut().enumerate() {
            let mut acc = [0.0; LANES];
            for block in self.values[c].chunks_exact(cols) {
                let mut d2 = [0.0; LANES];
                for (x, lanes) in row.iter().zip(block) {
                    for l in 0..LANES {
                        let t = x - lanes[l];
                        d2[l] += t * t;
                    }
                }
                for l in 0..LANES {
                    acc[l] += d2[l].sqrt();
                }
            }
            let tail: f64 = self.tails[c]
                .chunks_exact(cols)
                .map(|other| squared_distance(row, other).sqrt())
                .sum();
            *o = acc.iter().sum::<f64>() + tail;
        }
    }
}

/// Calinski-Harabasz index: between-cluster dispersion over within-cluster dispersion, each
/// divided by its degrees of freedom. Higher is better.
pub fn calinski_harabasz(data: &Matrix, labels: &[usize]) -> Result<f64, SegmentError> {
    let (labels, k) = dense_labels(data, labels)?;
    let n = data.rows();
    let (counts, centers) = cluster_means(data, &labels, k);
    let mut mean = vec![0.0; data.cols()];
    for row in data.iter_rows() {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let between: f64 = centers
        .iter()
        .zip(&counts)
        .map(|(c, &cnt)| cnt as f64 * squared_distance(c, &mean))
        .sum();
    let within: f64 = data
        .iter_rows()
        .zip(&labels)
        .map(|(r, &l)| squared_distance(r, &centers[l]))
        .sum();
    Ok(if within == 0.0 {
        1.0
    } else {
        between * (n - k) as f64 / (within * (k - 1) as f64)
    })
}

/// Davies-Bouldin index: the mean over clusters of the worst ratio of summed spreads to
/// centroid distance against any other cluster. Lower is better.
pub fn davies_bouldin(data: &Matrix, labels: &[usize]) -> Result<f64, SegmentError> {
    let (labels, k) = dense_labels(data, labels)?;
    let (counts, centers) = cluster_means(data, &labels, k);
    let mut spread = vec![0.0; k];
    for (r, &l) in data.iter_rows().zip(&labels) {
        spread[l] += squared_distance(r, &centers[l]).sqrt();
    }
    for (s, &n) in spread.iter_mut().zip(&counts) {
        *s /= n as f64;
    }
    if spread.iter().all(|&s| s == 0.0) {
        return Ok(0.0);
    }
    let mut total = 0.0;
    for i in 0..k {
        let mut worst: f64 = 0.0;
        for j in 0..k {
            if i == j {
                continue;
            }
            let d = squared_distance(&centers[i], &centers[j]).sqrt();
            // Coincident centroids are left out, as scikit-learn does (distance → ∞).
            if d > 0.0 {
                worst = worst.max((spread[i] + spread[j]) / d);
            }
        }
        total += worst;
    }
    Ok(total / k as f64)
}
