//! Hierarchical clustering. Ward's linkage by the nearest-neighbour chain, in memory linear
//! in the rows (no distance matrix); single linkage by a minimum spanning tree, also linear;
//! complete and average linkage by the chain over a condensed distance matrix, which those
//! linkages need (n(n-1)/2 distances). Time is quadratic for all.
//!
//! Ward's criterion merges the two clusters whose union increases the within-cluster sum of
//! squares least; that increase depends only on the clusters' sizes and centroids, so no
//! pairwise matrix is kept. Ward's linkage is reducible, so the chain finds the same merges
//! as the textbook algorithm (and scikit-learn), in a different order; sorting them by
//! height gives the dendrogram.

use serde::Serialize;

use crate::matrix::squared_distance;
use crate::{Matrix, SegmentError};

/// One merge of the dendrogram, in the numbering scipy and scikit-learn use: rows are
/// clusters `0..n`, and the i-th merge creates cluster `n + i`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Merge {
    pub a: usize,
    pub b: usize,
    /// Ward distance: √(2 × increase in within-cluster sum of squares), as scipy reports.
    pub height: f64,
    pub size: usize,
}

/// The merge tree, lowest merge first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dendrogram {
    pub rows: usize,
    pub merges: Vec<Merge>,
}

/// Ward clustering of the rows of `data`.
pub fn ward(data: &Matrix) -> Result<Dendrogram, SegmentError> {
    let (n, d) = (data.rows(), data.cols());
    if n < 2 {
        return Err(SegmentError::TooFewRows { k: 2, rows: n });
    }
    let mut centroid: Vec<f64> = data.as_slice().to_vec();
    let mut size: Vec<f64> = vec![1.0; n];
    let mut active: Vec<usize> = (0..n).collect();
    // Slot → position in `active`, to remove in O(1).
    let mut position: Vec<usize> = (0..n).collect();
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    // (slot a, slot b, height); slots are reused: the merged cluster lives in `a`.
    let mut raw: Vec<(usize, usize, f64)> = Vec::with_capacity(n - 1);
    while active.len() > 1 {
        if chain.is_empty() {
            chain.push(active[0]);
        }
        let top = *chain.last().expect("not empty");
        let previous = chain.len().checked_sub(2).map(|i| chain[i]);
        let ct = &centroid[top * d..(top + 1) * d];
        let mut best = (usize::MAX, f64::INFINITY);
        let mut consider = |other: usize, dist: f64| {
            if other == top {
                return;
            }
            let (na, nb) = (size[top], size[other]);
            let cost = na * nb / (na + nb) * dist;
            // On a tie the chain's previous element wins, which guarantees termination.
            if cost < best.1 || (cost == best.1 && Some(other) == previous) {
                best = (other, cost);
            }
        };
        // Four candidates at a time: four independent sums keep the CPU busy where one
        // running sum would wait on each addition. Each sum runs over the dimensions in
        // order, so every distance is bit for bit what `squared_distance` gives.
        let groups = active.chunks_exact(4);
        let rest = groups.remainder();
        for g in groups {
            let mut acc = [0.0f64; 4];
            for (j, x) in ct.iter().enumerate() {
                for (a, &o) in acc.iter_mut().zip(g) {
                    let t = x - centroid[o * d + j];
                    *a += t * t;
                }
            }
            for (&o, &dist) in g.iter().zip(&acc) {
                consider(o, dist);
            }
        }
        for &o in rest {
            consider(o, squared_distance(ct, &centroid[o * d..(o + 1) * d]));
        }
        let (nearest, cost) = best;
        if Some(nearest) == previous {
            chain.pop();
            chain.pop();
            let (a, b) = (nearest.min(top), nearest.max(top));
            let (na, nb) = (size[a], size[b]);
            for j in 0..d {
                centroid[a * d + j] =
                    (na * centroid[a * d + j] + nb * centroid[b * d + j]) / (na + nb);
            }
            size[a] = na + nb;
            let at = position[b];
            active.swap_remove(at);
            if at < active.len() {
                position[active[at]] = at;
            }
            raw.push((a, b, (2.0 * cost).sqrt()));
        } else {
            chain.push(nearest);
        }
    }
    Ok(number_merges(n, raw))
}

impl Dendrogram {
    /// Flat clusters: the tree cut so that `k` clusters remain. Labels are numbered by
    /// first appearance in row order.
    pub fn cut(&self, k: usize) -> Result<Vec<usize>, SegmentError> {
        let n = self.rows;
        if k == 0 || k > n {
            return Err(SegmentError::TooFewRows { k, rows: n });
        }
        Ok(self.apply(n - k))
    }

    /// Flat clusters: the tree cut at `height`, keeping every merge at or below it
    /// (scikit-learn's `distance_threshold`, which keeps those strictly below). Returns the
    /// labels and the number of clusters.
    pub fn cut_at(&self, height: f64) -> (Vec<usize>, usize) {
        // Merge heights never fall (the reducible linkages here guarantee it).
        let merges = self.merges.partition_point(|m| m.height <= height);
        (self.apply(merges), self.rows - merges)
    }

    /// Labels after the first `merges` merges.
    fn apply(&self, merges: usize) -> Vec<usize> {
        let n = self.rows;
        let mut parent: Vec<usize> = (0..2 * n - 1).collect();
        for (i, m) in self.merges.iter().take(merges).enumerate() {
            let (ra, rb) = (find(&mut parent, m.a), find(&mut parent, m.b));
            parent[ra] = n + i;
            parent[rb] = n + i;
        }
        let mut numbering = std::collections::HashMap::new();
        (0..n)
            .map(|row| {
                let root = find(&mut parent, row);
                let next = numbering.len();
                *numbering.entry(root).or_insert(next)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_groups_merge_last() {
        let rows: Vec<Vec<f64>> = (0..30)
            .map(|i| {
                let g = f64::from(i % 3) * 50.0;
                vec![g + f64::from(i % 5), g - f64::from(i % 4)]
            })
            .collect();
        let m = Matrix::from_rows(&rows).unwrap();
        let tree = ward(&m).unwrap();
        assert_eq!(tree.merges.len(), 29);
        assert!(tree.merges.windows(2).all(|w| w[0].height <= w[1].height));
        assert_eq!(tree.merges.last().unwrap().size, 30);
        let labels = tree.cut(3).unwrap();
        for (i, l) in labels.iter().enumerate() {
            assert_eq!(*l, labels[i % 3], "row {i}");
        }
        assert_eq!(tree.cut(1).unwrap(), vec![0; 30]);
        // The last two merges join groups 50 apart; every earlier one is far lower.
        let (by_height, k) = tree.cut_at(tree.merges[26].height);
        assert_eq!((by_height, k), (labels, 3));
    }
}

/// How the distance between two clusters is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    Ward,
    /// The largest distance between their rows.
    Complete,
    /// The mean distance between their rows.
    Average,
    /// The smallest distance between their rows.
    Single,
}

/// Rows above which complete and average linkage are refused: their distance matrix would
/// pass 3.2 GB.
pub const MAX_MATRIX_ROWS: usize = 20_000;

/// Hierarchical clustering of the rows of `data` with `linkage`.
pub fn linkage(data: &Matrix, linkage: Linkage) -> Result<Dendrogram, SegmentError> {
    match linkage {
        Linkage::Ward => ward(data),
        Linkage::Single => single(data),
        Linkage::Complete | Linkage::Average => {
            if data.rows() > MAX_MATRIX_ROWS {
                return Err(SegmentError::Param {
                    name: "rows",
                    rule: "at most 20000 for complete or average linkage (they need every pairwise distance; use ward or single, or a sample)",
                    value: data.rows().to_string(),
                });
            }
            matrix_chain(data, linkage == Linkage::Complete)
        }
    }
}

/// The root of `x` in a union-find forest, halving paths on the way.
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Merges of rows or slots, `(a, b, height)` in any order, as a dendrogram: sorted by
/// height and renumbered into scipy's scheme (the i-th merge creates cluster `n + i`).
/// Valid for reducible linkages, whose heights never decrease up the tree.
fn number_merges(n: usize, mut raw: Vec<(usize, usize, f64)>) -> Dendrogram {
    raw.sort_by(|x, y| x.2.total_cmp(&y.2));
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    let merges = raw
        .into_iter()
        .enumerate()
        .map(|(i, (a, b, height))| {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            parent[ra] = n + i;
            parent[rb] = n + i;
            Merge {
                a: ra.min(rb),
                b: ra.max(rb),
                height,
                size: 0,
            }
        })
        .collect::<Vec<_>>();
    // Sizes from the numbering: a merge's size is the sum of its parts.
    let mut sizes = vec![1usize; 2 * n - 1];
    let merges = merges
        .into_iter()
        .enumerate()
        .map(|(i, mut m)| {
            sizes[n + i] = sizes[m.a] + sizes[m.b];
            m.size = sizes[n + i];
            m
        })
        .collect();
    Dendrogram { rows: n, merges }
}

/// Single linkage: the minimum spanning tree by Prim's algorithm (O(n) memory); its edges in
/// increasing order are the merges.
fn single(data: &Matrix) -> Result<Dendrogram, SegmentError> {
    let n = data.rows();
    if n < 2 {
        return Err(SegmentError::TooFewRows { k: 2, rows: n });
    }
    let mut in_tree = vec![false; n];
    let mut best = vec![f64::INFINITY; n];
    let mut from = vec![0usize; n];
    let mut current = 0;
    in_tree[0] = true;
    let mut edges = Vec::with_capacity(n - 1);
    for _ in 1..n {
        let row = data.row(current);
        let mut next = usize::MAX;
        let mut next_d = f64::INFINITY;
        for j in 0..n {
            if in_tree[j] {
                continue;
            }
            let d = squared_distance(row, data.row(j)).sqrt();
            if d < best[j] {
                best[j] = d;
                from[j] = current;
            }
            if best[j] < next_d {
                next_d = best[j];
                next = j;
            }
        }
        in_tree[next] = true;
        edges.push((from[next], next, next_d));
        current = next;
    }
    Ok(number_merges(n, edges))
}

/// Complete or average linkage by the nearest-neighbour chain over a condensed matrix of
/// Euclidean distances, updated by the Lance-Williams formulas.
fn matrix_chain(data: &Matrix, complete: bool) -> Result<Dendrogram, SegmentError> {
    let n = data.rows();
    if n < 2 {
        return Err(SegmentError::TooFewRows { k: 2, rows: n });
    }
    // Index of (i, j), i < j, in the condensed upper triangle.
    let at = |i: usize, j: usize| -> usize {
        let (i, j) = (i.min(j), i.max(j));
        i * n - i * (i + 1) / 2 + (j - i - 1)
    };
    let mut dist = vec![0.0f64; n * (n - 1) / 2];
    for i in 0..n {
        for j in i + 1..n {
            dist[at(i, j)] = squared_distance(data.row(i), data.row(j)).sqrt();
        }
    }
    let mut size = vec![1usize; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut position: Vec<usize> = (0..n).collect();
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n - 1);
    while active.len() > 1 {
        if chain.is_empty() {
            chain.push(active[0]);
        }
        let top = *chain.last().expect("not empty");
        let previous = chain.len().checked_sub(2).map(|i| chain[i]);
        let mut best = (usize::MAX, f64::INFINITY);
        for &other in &active {
            if other == top {
                continue;
            }
            let d = dist[at(top, other)];
            if d < best.1 || (d == best.1 && Some(other) == previous) {
                best = (other, d);
            }
        }
        let (nearest, d) = best;
        if Some(nearest) != previous {
            chain.push(nearest);
            continue;
        }
        chain.pop();
        chain.pop();
        let (a, b) = (nearest.min(top), nearest.max(top));
        let (na, nb) = (size[a] as f64, size[b] as f64);
        for &other in &active {
            if other == a || other == b {
                continue;
            }
            let (da, db) = (dist[at(a, other)], dist[at(b, other)]);
            dist[at(a, other)] = if complete {
                da.max(db)
            } else {
                (na * da + nb * db) / (na + nb)
            };
        }
        size[a] += size[b];
        let p = position[b];
        active.swap_remove(p);
        if p < active.len() {
            position[active[p]] = p;
        }
        raw.push((a, b, d));
    }
    Ok(number_merges(n, raw))
}
