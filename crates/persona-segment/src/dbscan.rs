//! DBSCAN (Ester et al. 1996): clusters are regions dense enough that each core row has at
//! least `min_samples` rows (itself included) within `eps`; rows near no core row are noise.
//!
//! Unlike scikit-learn, which first stores every row's whole neighbourhood (memory that grows
//! with the density), this runs in linear memory on a [`KdTree`]: one pass counts neighbours
//! only until `min_samples` is reached, a second joins core rows within `eps` of each other in
//! a lock-free union-find shared by both threads, and a third gives each border row a
//! cluster. Tree nodes narrower than `eps` are joined once up front and then stand in for
//! all their rows (`CompactNodes`). The labels equal scikit-learn's exactly: clusters are numbered by their
//! lowest-numbered core row, and a border row within reach of several clusters joins the
//! lowest-numbered, as scikit-learn's in-order expansion does.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use crate::select_k::knee_of_rising;
use crate::spatial::{Hit, KdTree, par_map};
use crate::{Matrix, SegmentError};

/// Parameters of a DBSCAN run.
#[derive(Debug, Clone)]
pub struct DbscanParams {
    pub eps: f64,
    pub min_samples: usize,
    pub threads: usize,
}

impl DbscanParams {
    /// `min_samples` counts the row itself, as scikit-learn's does.
    pub fn new(eps: f64, min_samples: usize) -> Self {
        DbscanParams {
            eps,
            min_samples,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    pub fn fit(&self, data: &Matrix) -> Result<Dbscan, SegmentError> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(SegmentError::Param {
                name: "eps",
                rule: "a positive number",
                value: self.eps.to_string(),
            });
        }
        if self.min_samples == 0 {
            return Err(SegmentError::Param {
                name: "min_samples",
                rule: "at least 1",
                value: "0".into(),
            });
        }
        let tree = KdTree::new(data);
        Ok(run(
            data,
            &tree,
            self.eps * self.eps,
            self.min_samples,
            self.threads,
        ))
    }
}

/// The result: a cluster per row, `None` for noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Dbscan {
    pub labels: Vec<Option<usize>>,
    /// Whether each row is a core row.
    pub core: Vec<bool>,
    pub clusters: usize,
}

impl Dbscan {
    /// Labels as scikit-learn writes them: -1 for noise.
    pub fn labels_with_noise(&self) -> Vec<i64> {
        self.labels
            .iter()
            .map(|l| l.map_or(-1, |l| l as i64))
            .collect()
    }

    pub fn noise(&self) -> usize {
        self.labels.iter().filter(|l| l.is_none()).count()
    }
}

fn run(data: &Matrix, tree: &KdTree, r2: f64, min_samples: usize, threads: usize) -> Dbscan {
    let n = data.rows();
    let core: Vec<bool> = par_map(n, threads, |i| {
        tree.count_within(data.row(i), r2, min_samples) >= min_samples
    });
    let sets = AtomicUnionFind::new(n);
    let compact = CompactNodes::new(tree, &core, r2, &sets);
    // In tree order, each row's ball only past its own position: every pair once.
    par_map(n, threads, |p| {
        let i = tree.row_at(p);
        if core[i] {
            let _ = tree.within_nodes_from(data.row(i), r2, p + 1, |hit| {
                match hit {
                    Hit::Row(j) if core[j] => sets.union(i as u32, j as u32),
                    Hit::Row(_) => {}
                    Hit::Node(node) => {
                        compact.cores(tree, node, &core, &mut |j| sets.union(i as u32, j as u32))
                    }
                }
                ControlFlow::Continue(())
            });
        }
    });
    // Sets are linked towards the lower row number, so a set's root is its lowest core row
    // and numbering roots in row order numbers clusters as scikit-learn does.
    let mut cluster_of_root = vec![u32::MAX; n];
    let mut clusters = 0;
    let mut labels: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        if core[i] {
            let root = sets.find(i as u32) as usize;
            if cluster_of_root[root] == u32::MAX {
                cluster_of_root[root] = clusters as u32;
                clusters += 1;
            }
            labels[i] = Some(cluster_of_root[root] as usize);
        }
    }
    let core_labels = &labels;
    let border: Vec<Option<usize>> = par_map(n, threads, |i| {
        if core[i] {
            return None;
        }
        let mut best: Option<usize> = None;
        let mut consider = |j: usize| {
            if let Some(l) = core_labels[j] {
                best = Some(best.map_or(l, |b| b.min(l)));
            }
        };
        let _ = tree.within_nodes(data.row(i), r2, |hit| {
            match hit {
                Hit::Row(j) => consider(j),
                Hit::Node(node) => compact.cores(tree, node, &core, &mut consider),
            }
            ControlFlow::Continue(())
        });
        best
    });
    for (label, b) in labels.iter_mut().zip(border) {
        if b.is_some() {
            *label = b;
        }
    }
    Dbscan {
        labels,
        core,
        clusters,
    }
}

/// Tree nodes no wider than `eps`: every two of their rows are neighbours, so all their core
/// rows form one set from the start, and a query that takes in such a node whole needs to
/// join with one representative core row instead of each. In dense clusters, where
/// neighbourhoods hold thousands of rows, this turns a query's cost from its rows to its
/// nodes.
struct CompactNodes {
    compact: Vec<bool>,
    /// A core row of each node, if it has one.
    representative: Vec<Option<u32>>,
}

impl CompactNodes {
    fn new(tree: &KdTree, core: &[bool], r2: f64, sets: &AtomicUnionFind) -> Self {
        let nodes = tree.nodes();
        let compact: Vec<bool> = (0..nodes).map(|node| tree.diameter2(node) <= r2).collect();
        // Children are numbered after their parent, so a backward sweep sees them first.
        let mut representative = vec![None; nodes];
        for node in (0..nodes).rev() {
            representative[node] = match tree.children(node) {
                Some((l, r)) => representative[l].or(representative[r]),
                None => tree.node_rows(node).find(|&i| core[i]).map(|i| i as u32),
            };
        }
        // Join the core rows of each largest compact node (its compact descendants are in it).
        let mut stack = vec![0usize];
        while let Some(node) = stack.pop() {
            if compact[node] {
                if let Some(rep) = representative[node] {
                    for i in tree.node_rows(node).filter(|&i| core[i]) {
                        sets.union(i as u32, rep);
                    }
                }
            } else if let Some((l, r)) = tree.children(node) {
                stack.push(l);
                stack.push(r);
            }
        }
        CompactNodes {
            compact,
            representative,
        }
    }

    /// Calls `f` with the core rows of `node` (a node within the radius), one
    /// representative standing for all those of each compact node.
    fn cores(&self, tree: &KdTree, node: usize, core: &[bool], f: &mut impl FnMut(usize)) {
        if self.representative[node].is_none() {
            return;
        }
        if self.compact[node] {
            f(self.representative[node].expect("checked") as usize);
        } else if let Some((l, r)) = tree.children(node) {
            self.cores(tree, l, core, f);
            self.cores(tree, r, core, f);
        } else {
            tree.node_rows(node).filter(|&i| core[i]).for_each(f);
        }
    }
}

/// A union-find that threads update at once: each link is one compare-and-swap of a root
/// to a lower-numbered root, so parents only ever point downwards and no cycle can form.
struct AtomicUnionFind {
    parent: Vec<AtomicU32>,
}

impl AtomicUnionFind {
    fn new(n: usize) -> Self {
        AtomicUnionFind {
            parent: (0..n as u32).map(AtomicU32::new).collect(),
        }
    }

    fn find(&self, mut x: u32) -> u32 {
        loop {
            let p = self.parent[x as usize].load(Ordering::Acquire);
            if p == x {
                return x;
            }
            let grand = self.parent[p as usize].load(Ordering::Acquire);
            // Path halving; losing the race only leaves a longer path.
            let _ = self.parent[x as usize].compare_exchange_weak(
                p,
                grand,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            x = grand;
        }
    }

    fn union(&self, a: u32, b: u32) {
        loop {
            let (ra, rb) = (self.find(a), self.find(b));
            if ra == rb {
                return;
            }
            let (high, low) = if ra > rb { (ra, rb) } else { (rb, ra) };
            if self.parent[high as usize]
                .compare_exchange(high, low, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// An `eps` read off the k-distance curve: each row's distance to its `min_samples`-th
/// nearest row (itself included), sorted; the knee, where the curve turns up from dense
/// regions into sparse ones, is the suggestion.
#[derive(Debug, Clone, Serialize)]
pub struct EpsSuggestion {
    pub eps: f64,
    pub min_samples: usize,
    /// The sorted k-distances of the rows sampled, thinned to at most 200 points for a plot.
    pub curve: Vec<f64>,
}

/// Suggests `eps` for `min_samples` from the k-distance curve of up to `sample` rows
/// (chosen evenly through the data), each measured against all rows.
pub fn suggest_eps(
    data: &Matrix,
    min_samples: usize,
    sample: usize,
    threads: usize,
) -> Result<EpsSuggestion, SegmentError> {
    if min_samples == 0 || min_samples > data.rows() {
        return Err(SegmentError::Param {
            name: "min_samples",
            rule: "from 1 to the number of rows",
            value: min_samples.to_string(),
        });
    }
    let tree = KdTree::new(data);
    let step = data.rows().div_ceil(sample.max(1));
    let picked: Vec<usize> = (0..data.rows()).step_by(step).collect();
    let mut dist: Vec<f64> = par_map(picked.len(), threads, |i| {
        tree.kth_nearest(data.row(picked[i]), min_samples).sqrt()
    });
    dist.sort_by(f64::total_cmp);
    // Rows with min_samples exact duplicates (one-time buyers of one item) sit at distance 0;
    // the knee is looked for among the rest, or eps would come out as 0.
    let zeros = dist.partition_point(|&d| d == 0.0);
    if zeros == dist.len() {
        return Err(SegmentError::Param {
            name: "eps",
            rule: "given by hand when every sampled row has min_samples exact duplicates",
            value: "auto".into(),
        });
    }
    let points: Vec<(f64, f64)> = dist[zeros..]
        .iter()
        .enumerate()
        .map(|(i, &d)| (i as f64, d))
        .collect();
    let at = zeros + knee_of_rising(&points).unwrap_or(points.len() - 1);
    let thin = dist.len().div_ceil(200);
    Ok(EpsSuggestion {
        eps: dist[at],
        min_samples,
        curve: dist.iter().step_by(thin).copied().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two interleaved half-moons with a gap, and three far-off stragglers: shapes K-Means
    /// cuts wrongly and DBSCAN follows.
    fn moons() -> Matrix {
        let mut rows = Vec::new();
        for i in 0..200 {
            let t = std::f64::consts::PI * f64::from(i) / 199.0;
            rows.push(vec![t.cos(), t.sin()]);
            rows.push(vec![1.0 - t.cos(), 0.5 - t.sin()]);
        }
        rows.extend([vec![5.0, 5.0], vec![-5.0, 5.0], vec![5.0, -5.0]]);
        Matrix::from_rows(&rows).unwrap()
    }

    #[test]
    fn moons_are_followed_and_stragglers_are_noise() {
        let data = moons();
        for threads in [1, 2] {
            let fit = DbscanParams::new(0.1, 4)
                .threads(threads)
                .fit(&data)
                .unwrap();
            assert_eq!(fit.clusters, 2);
            assert_eq!(fit.noise(), 3);
            for i in 0..200 {
                assert_eq!(fit.labels[2 * i], Some(0), "row {}", 2 * i);
                assert_eq!(fit.labels[2 * i + 1], Some(1));
            }
        }
    }

    #[test]
    fn the_suggested_eps_separates_the_moons() {
        let data = moons();
        let s = suggest_eps(&data, 4, 10_000, 2).unwrap();
        assert!(s.eps > 0.01 && s.eps < 0.5, "{s:?}");
        let fit = DbscanParams::new(s.eps, 4).fit(&data).unwrap();
        assert_eq!(fit.clusters, 2, "eps {}", s.eps);
    }

    /// scikit-learn's algorithm, straight: all neighbourhoods, then expansion in row order.
    fn reference(data: &Matrix, eps: f64, min_samples: usize) -> Vec<i64> {
        let n = data.rows();
        let hood: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                (0..n)
                    .filter(|&j| {
                        crate::matrix::squared_distance(data.row(i), data.row(j)) <= eps * eps
                    })
                    .collect()
            })
            .collect();
        let core: Vec<bool> = hood.iter().map(|h| h.len() >= min_samples).collect();
        let mut labels = vec![-1i64; n];
        let mut next = 0;
        for start in 0..n {
            if labels[start] != -1 || !core[start] {
                continue;
            }
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                if labels[i] != -1 {
                    continue;
                }
                labels[i] = next;
                if core[i] {
                    stack.extend(hood[i].iter().filter(|&&j| labels[j] == -1));
                }
            }
            next += 1;
        }
        labels
    }

    #[test]
    fn equals_the_plain_algorithm_on_repeated_rows_and_wide_eps() {
        // Many exact repeats (as customer tables have: one-time buyers of the same item) make
        // nodes narrower than eps, the shortcut's case; scattered rows make border and noise.
        let mut x = 7u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rows = Vec::new();
        for i in 0..1500 {
            rows.push(match i % 3 {
                0 => vec![0.1, 0.1, 0.2],
                1 => vec![0.1 + next() * 0.05, 0.1, 0.2 + next() * 0.05],
                _ => vec![next(), next(), next()],
            });
        }
        // Groups of 30 repeats, each with one row 0.015 away: a neighbour of the whole
        // group, which a query may meet only as a node narrower than eps.
        for _ in 0..30 {
            let (a, b, c) = (next(), next(), next());
            rows.extend(std::iter::repeat_n(vec![a, b, c], 30));
            rows.push(vec![a + 0.015, b, c]);
        }
        let data = Matrix::from_rows(&rows).unwrap();
        for (eps, min_samples) in [(0.03, 4), (0.08, 10), (0.2, 30), (0.02, 25)] {
            let want = reference(&data, eps, min_samples);
            let got = DbscanParams::new(eps, min_samples).fit(&data).unwrap();
            assert_eq!(
                got.labels_with_noise(),
                want,
                "eps {eps}, min_samples {min_samples}"
            );
        }
    }

    #[test]
    fn repeated_rows_do_not_make_the_suggestion_zero() {
        // Most rows repeat one point (more than min_samples times); the rest spread out.
        let mut rows = vec![vec![0.5, 0.5]; 300];
        for i in 0..100 {
            let t = f64::from(i) / 100.0;
            rows.push(vec![t, 1.0 - t * t]);
        }
        let s = suggest_eps(&Matrix::from_rows(&rows).unwrap(), 4, 10_000, 2).unwrap();
        assert!(s.eps > 0.0, "{s:?}");
        let all_same = Matrix::from_rows(&vec![vec![1.0, 2.0]; 50]).unwrap();
        assert!(suggest_eps(&all_same, 4, 10_000, 2).is_err());
    }

    #[test]
    fn bad_parameters_are_named() {
        let data = moons();
        let e = DbscanParams::new(-1.0, 4).fit(&data).unwrap_err();
        assert!(e.to_string().contains("eps"), "{e}");
        let e = DbscanParams::new(0.1, 0).fit(&data).unwrap_err();
        assert!(e.to_string().contains("min_samples"), "{e}");
    }
}
