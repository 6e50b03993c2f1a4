//! A KD-tree over the rows of a [`Matrix`], for the radius and nearest-neighbour queries of
//! DBSCAN and its `eps` helper, and a work-sharing parallel map for running many queries.
//!
//! The tree splits each node's box along its widest side at the median, down to leaves of
//! `LEAF` rows, and keeps the rows in tree order so that a leaf is one contiguous block. A
//! query skips a node whose box lies outside the ball and takes a node whose box lies wholly
//! inside it without measuring a single row, which is what makes dense clusters cheap.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Matrix;
use crate::matrix::squared_distance_fast;

/// Rows per leaf: small enough to prune well, large enough that the bounding-box tests do
/// not outweigh the distances they save.
const LEAF: usize = 24;

/// What a radius query found: one row, or a whole node within the radius.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Row(usize),
    Node(usize),
}

#[derive(Debug, Clone, Copy)]
struct Node {
    start: u32,
    end: u32,
    /// Children's node numbers; 0 for a leaf (the root is never a child).
    left: u32,
    right: u32,
    /// The split: rows of `left` have at most `split` in column `dim`, rows of `right` at
    /// least.
    dim: u32,
    split: f64,
}

/// A KD-tree over a matrix's rows; queries report original row numbers.
#[derive(Debug, Clone)]
pub struct KdTree {
    cols: usize,
    /// The rows, in tree order.
    points: Vec<f64>,
    /// Tree position → original row number.
    index: Vec<u32>,
    nodes: Vec<Node>,
    /// Per node: `cols` lower bounds, then `cols` upper bounds.
    bounds: Vec<f64>,
}

impl KdTree {
    pub fn new(data: &Matrix) -> KdTree {
        assert!(data.rows() <= u32::MAX as usize, "at most 2^32 rows");
        let mut tree = KdTree {
            cols: data.cols(),
            points: Vec::new(),
            index: (0..data.rows() as u32).collect(),
            nodes: Vec::new(),
            bounds: Vec::new(),
        };
        tree.build(data, 0, data.rows());
        tree.points = Vec::with_capacity(data.rows() * data.cols());
        for &i in &tree.index {
            tree.points.extend_from_slice(data.row(i as usize));
        }
        tree
    }

    /// Builds the node over tree positions `start..end` and returns its number.
    fn build(&mut self, data: &Matrix, start: usize, end: usize) -> u32 {
        let d = self.cols;
        let id = self.nodes.len();
        self.nodes.push(Node {
            start: start as u32,
            end: end as u32,
            left: 0,
            right: 0,
            dim: 0,
            split: 0.0,
        });
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for &i in &self.index[start..end] {
            for (j, &x) in data.row(i as usize).iter().enumerate() {
                lo[j] = lo[j].min(x);
                hi[j] = hi[j].max(x);
            }
        }
        let (dim, spread) = (0..d)
            .map(|j| (j, hi[j] - lo[j]))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one column");
        self.bounds.extend_from_slice(&lo);
        self.bounds.extend_from_slice(&hi);
        // A node of identical rows cannot be split, however many it holds.
        if end - start <= LEAF || spread == 0.0 {
            return id as u32;
        }
        let mid = start + (end - start) / 2;
        self.index[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
            data.row(a as usize)[dim].total_cmp(&data.row(b as usize)[dim])
        });
        let split = data.row(self.index[mid] as usize)[dim];
        let left = self.build(data, start, mid);
        let right = self.build(data, mid, end);
        let node = &mut self.nodes[id];
        (node.left, node.right, node.dim, node.split) = (left, right, dim as u32, split);
        id as u32
    }

    pub fn rows(&self) -> usize {
        self.index.len()
    }

    fn point(&self, pos: usize) -> &[f64] {
        &self.points[pos * self.cols..(pos + 1) * self.cols]
    }

    /// Squared distances from `q` to the nearest and farthest points of a node's box.
    fn box_distances(&self, node: usize, q: &[f64]) -> (f64, f64) {
        let d = self.cols;
        let b = &self.bounds[node * 2 * d..(node + 1) * 2 * d];
        let (lo, hi) = b.split_at(d);
        let (mut near, mut far) = (0.0, 0.0);
        for ((&x, &l), &h) in q.iter().zip(lo).zip(hi) {
            let below = l - x;
            let above = x - h;
            let gap = below.max(above).max(0.0);
            near += gap * gap;
            let reach = below.abs().max(above.abs());
            far += reach * reach;
        }
        (near, far)
    }

    /// Calls `visit` with the row number of every row within squared distance `r2` of `q`
    /// (boundary included, as scikit-learn's radius queries do), in no particular order, until
    /// `visit` breaks.
    pub fn within(
        &self,
        q: &[f64],
        r2: f64,
        mut visit: impl FnMut(usize) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.within_nodes(q, r2, |hit| match hit {
            Hit::Row(i) => visit(i),
            Hit::Node(node) => {
                for i in self.node_rows(node) {
                    visit(i)?;
                }
                ControlFlow::Continue(())
            }
        })
    }

    /// The radius query at node granularity: a [`Hit::Node`] for each node whose box lies
    /// wholly within the ball (its rows need no distance check; [`Self::node_rows`] lists
    /// them), a [`Hit::Row`] for each other row within it. A caller that knows something of
    /// a whole node (its size, or that its rows are already joined) then skips its rows.
    pub fn within_nodes(
        &self,
        q: &[f64],
        r2: f64,
        visit: impl FnMut(Hit) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.within_nodes_from(q, r2, 0, visit)
    }

    /// [`Self::within_nodes`] over the rows at tree positions `from..` only. Querying each
    /// row's ball only past its own position meets every pair of rows once instead of
    /// twice, for a symmetric relation such as "are neighbours".
    pub fn within_nodes_from(
        &self,
        q: &[f64],
        r2: f64,
        from: usize,
        mut visit: impl FnMut(Hit) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut stack = [0u32; 64];
        let mut top = 1;
        while top > 0 {
            top -= 1;
            let id = stack[top] as usize;
            let node = self.nodes[id];
            if node.end as usize <= from {
                continue;
            }
            let (near, far) = self.box_distances(id, q);
            if near > r2 {
                continue;
            }
            let whole = node.start as usize >= from;
            if far <= r2 && whole {
                visit(Hit::Node(id))?;
            } else if node.left == 0 {
                for p in (node.start as usize).max(from)..node.end as usize {
                    if far <= r2 || squared_distance_fast(self.point(p), q) <= r2 {
                        visit(Hit::Row(self.index[p] as usize))?;
                    }
                }
            } else {
                // The child on the query's side is searched first: a count that stops at
                // a limit, or a nearest-neighbour search, gets there sooner.
                let (first, second) = if q[node.dim as usize] < node.split {
                    (node.left, node.right)
                } else {
                    (node.right, node.left)
                };
                stack[top] = second;
                stack[top + 1] = first;
                top += 2;
            }
        }
        ControlFlow::Continue(())
    }

    /// The row at a tree position.
    pub fn row_at(&self, position: usize) -> usize {
        self.index[position] as usize
    }

    /// Number of nodes; nodes are numbered `0..nodes()`, the root 0.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_len(&self, node: usize) -> usize {
        let n = self.nodes[node];
        (n.end - n.start) as usize
    }

    /// The row numbers of a node's rows.
    pub fn node_rows(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.nodes[node];
        self.index[n.start as usize..n.end as usize]
            .iter()
            .map(|&i| i as usize)
    }

    /// The node's children, or `None` for a leaf.
    pub fn children(&self, node: usize) -> Option<(usize, usize)> {
        let n = self.nodes[node];
        (n.left != 0).then_some((n.left as usize, n.right as usize))
    }

    /// Squared length of the node's box diagonal: no two of its rows are farther apart.
    pub fn diameter2(&self, node: usize) -> f64 {
        let d = self.cols;
        let b = &self.bounds[node * 2 * d..(node + 1) * 2 * d];
        b[..d]
            .iter()
            .zip(&b[d..])
            .map(|(l, h)| (h - l) * (h - l))
            .sum()
    }

    /// Rows within squared distance `r2` of `q`, counted up to `limit` (the count stops there).
    pub fn count_within(&self, q: &[f64], r2: f64, limit: usize) -> usize {
        let mut count = 0;
        let _ = self.within_nodes(q, r2, |hit| {
            count += match hit {
                Hit::Row(_) => 1,
                Hit::Node(node) => self.node_len(node),
            };
            if count >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        count.min(limit)
    }

    /// Squared distance from `q` to its `k`-th nearest row (`q` itself counts, if a row).
    pub fn kth_nearest(&self, q: &[f64], k: usize) -> f64 {
        assert!(k >= 1 && k <= self.rows(), "k must be in 1..=rows");
        // The k best so far, ascending; small k keeps insertion sort cheapest.
        let mut best: Vec<f64> = Vec::with_capacity(k + 1);
        let worst = |best: &Vec<f64>| {
            if best.len() == k {
                best[k - 1]
            } else {
                f64::INFINITY
            }
        };
        let mut stack: Vec<(f64, u32)> = vec![(0.0, 0)];
        while let Some((near, id)) = stack.pop() {
            if near >= worst(&best) {
                continue;
            }
            let node = self.nodes[id as usize];
            if node.left == 0 {
                for p in node.start as usize..node.end as usize {
                    let dist = squared_distance_fast(self.point(p), q);
                    if dist < worst(&best) {
                        let at = best.partition_point(|&b| b <= dist);
                        best.insert(at, dist);
                        best.truncate(k);
                    }
                }
            } else {
                let l = self.box_distances(node.left as usize, q).0;
                let r = self.box_distances(node.right as usize, q).0;
                // The nearer child is pushed last, so it is searched first.
                if l < r {
                    stack.push((r, node.right));
                    stack.push((l, node.left));
                } else {
                    stack.push((l, node.left));
                    stack.push((r, node.right));
                }
            }
        }
        best[k - 1]
    }
}

/// `f(i)` for every `i` in `0..n`, on `threads` threads that take chunks of work as they
/// finish the last (query costs vary by orders of magnitude between sparse and dense areas,
/// so fixed halves would leave one core idle).
pub fn par_map<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    const CHUNK: usize = 512;
    let next = AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<T>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                        if start >= n {
                            return mine;
                        }
                        let end = (start + CHUNK).min(n);
                        mine.push((start, (start..end).map(&f).collect::<Vec<T>>()));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("no panic"))
            .collect()
    });
    parts.sort_by_key(|p| p.0);
    parts.into_iter().flat_map(|p| p.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, d: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Some duplicates, to exercise nodes that cannot split.
        let data = (0..n * d)
            .map(|i| {
                if (i / d).is_multiple_of(10) {
                    0.5
                } else {
                    rng.random::<f64>()
                }
            })
            .collect();
        Matrix::new(n, d, data).unwrap()
    }

    #[test]
    fn queries_agree_with_brute_force() {
        let data = random(2_000, 5, 1);
        let tree = KdTree::new(&data);
        for (qi, r) in [(0usize, 0.2f64), (7, 0.35), (1234, 0.5), (1999, 0.05)] {
            let q = data.row(qi);
            let mut found = Vec::new();
            let _ = tree.within(q, r * r, |i| {
                found.push(i);
                ControlFlow::Continue(())
            });
            found.sort_unstable();
            let expected: Vec<usize> = (0..data.rows())
                .filter(|&i| squared_distance_fast(data.row(i), q) <= r * r)
                .collect();
            assert_eq!(found, expected);
            assert_eq!(tree.count_within(q, r * r, 3), expected.len().min(3));
            let mut all: Vec<f64> = (0..data.rows())
                .map(|i| squared_distance_fast(data.row(i), q))
                .collect();
            all.sort_by(f64::total_cmp);
            for k in [1, 5, 40] {
                assert_eq!(tree.kth_nearest(q, k), all[k - 1]);
            }
        }
    }

    #[test]
    fn par_map_keeps_order() {
        assert_eq!(
            par_map(5_000, 2, |i| i * 2),
            (0..5_000).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(par_map(0, 2, |i| i).is_empty());
    }
}
