//! Hamerly's K-Means (Hamerly 2010): the same iterations as Lloyd's, the same labels and
//! centres, with most rows never read again once they settle.
//!
//! Each row keeps an upper bound on the distance to its own centre and a lower bound on
//! the distance to any other. When the centres move, the bounds move by at most as much;
//! while the upper bound stays below the lower bound (or below half the distance from its
//! centre to the nearest other centre), the row's label cannot change, and the row is
//! skipped without touching its features. The centres' sums are kept up to date by the
//! rows that do move. A settled row costs its 24 bytes of bounds and label instead of its
//! features and k distances.

use crate::Matrix;
use crate::kmeans::{CenterBlocks, KMeans, finish, lloyd};
use crate::matrix::{squared_distance, widest_vectors};

/// What one thread changes in a pass: per-cluster sums and counts, and labels moved.
struct Delta {
    sums: Vec<f64>,
    counts: Vec<i64>,
    changed: usize,
}

/// What every thread's pass reads.
struct Shared<'a> {
    data: &'a Matrix,
    centers: &'a Matrix,
    blocks: &'a CenterBlocks,
    /// How far each centre moved in the last update.
    moved: &'a [f64],
    /// Half the distance from each centre to the nearest other.
    half_gap: &'a [f64],
    /// The first pass: measure every row, with no bounds yet.
    full: bool,
}

/// One thread's rows, from row `start`.
struct Rows<'a> {
    start: usize,
    labels: &'a mut [usize],
    upper: &'a mut [f64],
    lower: &'a mut [f64],
}

widest_vectors! {
    fn pass(shared: &Shared, rows: Rows) -> Delta => pass_kernel
}

/// The bounds-checked pass over one thread's rows.
#[inline(always)]
fn pass_kernel(shared: &Shared, rows: Rows) -> Delta {
    let Shared {
        data,
        centers,
        blocks,
        moved,
        half_gap,
        full,
    } = *shared;
    let Rows {
        start,
        labels,
        upper,
        lower,
    } = rows;
    let (k, d) = (centers.rows(), data.cols());
    let mut delta = Delta {
        sums: vec![0.0; k * d],
        counts: vec![0; k],
        changed: 0,
    };
    // The largest move of any centre but a row's own: the two largest suffice.
    let (mut top, mut second) = (0usize, f64::NEG_INFINITY);
    for c in 1..moved.len() {
        if moved[c] > moved[top] {
            (second, top) = (moved[top], c);
        } else if moved[c] > second {
            second = moved[c];
        }
    }
    for i in 0..labels.len() {
        let row = data.row(start + i);
        let a = labels[i];
        if !full {
            upper[i] += moved[a];
            lower[i] -= if a == top { second } else { moved[top] };
            let bound = lower[i].max(half_gap[a]);
            // Strictly below: at equality another centre may be as near, and Lloyd gives
            // the row to the lower-numbered of equals.
            if upper[i] < bound {
                continue;
            }
            upper[i] = squared_distance(row, centers.row(a)).sqrt();
            if upper[i] < bound {
                continue;
            }
        }
        let (b, d1, d2) = blocks.two_nearest(row);
        upper[i] = d1.sqrt();
        lower[i] = d2.sqrt();
        if full || b != a {
            delta.changed += 1;
            delta.counts[b] += 1;
            for (s, x) in delta.sums[b * d..(b + 1) * d].iter_mut().zip(row) {
                *s += x;
            }
            if !full {
                delta.counts[a] -= 1;
                for (s, x) in delta.sums[a * d..(a + 1) * d].iter_mut().zip(row) {
                    *s -= x;
                }
            }
            labels[i] = b;
        }
    }
    delta
}

/// Hamerly's algorithm from `centers`, with Lloyd's stopping rule (see [`lloyd`]). A cluster
/// that empties hands the rest of the run to Lloyd's algorithm, which refills it.
pub(crate) fn hamerly(
    data: &Matrix,
    mut centers: Matrix,
    max_iter: usize,
    tol: f64,
    threads: usize,
) -> KMeans {
    let (n, d, k) = (data.rows(), data.cols(), centers.rows());
    if k < 2 {
        return lloyd(data, centers, max_iter, tol, threads);
    }
    let mut labels = vec![0usize; n];
    let mut upper = vec![0.0; n];
    let mut lower = vec![0.0; n];
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0i64; k];
    let mut moved = vec![0.0; k];
    let mut half_gap = vec![0.0; k];
    let chunk = n.div_ceil(threads.max(1));
    let mut iterations = 0;
    let mut strict = false;
    for it in 0..max_iter {
        iterations = it + 1;
        let blocks = CenterBlocks::new(&centers);
        let shared = &Shared {
            data,
            centers: &centers,
            blocks: &blocks,
            moved: &moved,
            half_gap: &half_gap,
            full: it == 0,
        };
        let deltas: Vec<Delta> = std::thread::scope(|s| {
            let handles: Vec<_> = labels
                .chunks_mut(chunk)
                .zip(upper.chunks_mut(chunk))
                .zip(lower.chunks_mut(chunk))
                .enumerate()
                .map(|(t, ((labels, upper), lower))| {
                    s.spawn(move || {
                        pass(
                            shared,
                            Rows {
                                start: t * chunk,
                                labels,
                                upper,
                                lower,
                            },
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        let mut changed = 0;
        for delta in deltas {
            changed += delta.changed;
            sums.iter_mut().zip(&delta.sums).for_each(|(a, b)| *a += b);
            counts
                .iter_mut()
                .zip(&delta.counts)
                .for_each(|(a, b)| *a += b);
        }
        if counts.contains(&0) {
            let mut rest = lloyd(data, centers, max_iter - it, tol, threads);
            rest.iterations += it;
            return rest;
        }
        let mut shift = 0.0;
        for c in 0..k {
            let row = centers.row_mut(c);
            let mut m = 0.0;
            for (x, s) in row.iter_mut().zip(&sums[c * d..(c + 1) * d]) {
                let new = s / counts[c] as f64;
                m += (new - *x) * (new - *x);
                *x = new;
            }
            moved[c] = m.sqrt();
            shift += m;
        }
        if changed == 0 {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
        for (c, gap) in half_gap.iter_mut().enumerate() {
            *gap = 0.5
                * (0..k)
                    .filter(|&o| o != c)
                    .map(|o| squared_distance(centers.row(c), centers.row(o)))
                    .fold(f64::INFINITY, f64::min)
                    .sqrt();
        }
    }
    finish(data, centers, labels, iterations, strict, threads)
}

#[cfg(test)]
mod tests {
    use crate::kmeans::{Algorithm, Init};
    use crate::{KMeansParams, Matrix};

    #[test]
    fn a_row_tied_between_two_centres_goes_to_the_lower_as_lloyd_gives_it() {
        // After the first update the centres are 0 and 2: row 1 is exactly between them.
        let data = Matrix::from_rows(&[vec![0.0], vec![1.0], vec![2.0], vec![3.0]]).unwrap();
        let init = Init::Centers(Matrix::from_rows(&[vec![0.0], vec![1.5]]).unwrap());
        let fit = |a| {
            KMeansParams::new(2)
                .init(init.clone())
                .algorithm(a)
                .fit(&data)
                .unwrap()
        };
        let (lloyd, hamerly) = (fit(Algorithm::Lloyd), fit(Algorithm::Hamerly));
        assert_eq!(lloyd.labels, [0, 0, 1, 1]);
        assert_eq!(hamerly.labels, lloyd.labels);
        assert_eq!(hamerly.inertia, lloyd.inertia);
        assert_eq!(hamerly.iterations, lloyd.iterations);
    }
}
