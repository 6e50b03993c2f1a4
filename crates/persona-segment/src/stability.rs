//! Validation: how stable a clustering is under resampling, and the adjusted Rand index
//! that measures agreement between two clusterings.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{KMeans, Matrix, SegmentError};

/// Adjusted Rand index of two labellings of the same rows: 1 for identical partitions (up
/// to renaming), about 0 for unrelated ones (Hubert and Arabie 1985, as scikit-learn).
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> Result<f64, SegmentError> {
    if a.len() != b.len() {
        return Err(SegmentError::LabelCount(a.len(), b.len()));
    }
    let mut table = std::collections::HashMap::<(usize, usize), u64>::new();
    let mut rows = std::collections::HashMap::<usize, u64>::new();
    let mut cols = std::collections::HashMap::<usize, u64>::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let pairs = |n: u64| (n * n.saturating_sub(1) / 2) as f64;
    let index: f64 = table.values().map(|&n| pairs(n)).sum();
    let sum_a: f64 = rows.values().map(|&n| pairs(n)).sum();
    let sum_b: f64 = cols.values().map(|&n| pairs(n)).sum();
    let total = pairs(a.len() as u64);
    let expected = if total > 0.0 {
        sum_a * sum_b / total
    } else {
        0.0
    };
    let max = (sum_a + sum_b) / 2.0;
    Ok(if max == expected {
        1.0
    } else {
        (index - expected) / (max - expected)
    })
}

/// Mean adjusted Rand index between the clustering of `data` by `fit` and clusterings
/// refitted on `resamples` bootstrap samples (rows drawn with replacement), each refit
/// assigning every row to its nearest centre. Near 1: the segments are a property of the
/// data; well below 1 (scikit-learn users often take 0.75 as the bar): an artefact of the
/// start or of k.
pub fn bootstrap_stability(
    data: &Matrix,
    mut fit: impl FnMut(&Matrix) -> Result<KMeans, SegmentError>,
    resamples: usize,
    seed: u64,
) -> Result<f64, SegmentError> {
    let reference = fit(data)?;
    let n = data.rows();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut total = 0.0;
    for _ in 0..resamples.max(1) {
        let rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        let refit = fit(&data.select(&rows))?;
        let assigned: Vec<usize> = data.iter_rows().map(|r| refit.predict(r).0).collect();
        total += adjusted_rand_index(&reference.labels, &assigned)?;
    }
    Ok(total / resamples.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KMeansParams;

    #[test]
    fn the_adjusted_rand_index_has_its_known_values() {
        assert_eq!(
            adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 9, 9]).unwrap(),
            1.0
        );
        // scikit-learn: adjusted_rand_score([0, 0, 1, 1], [0, 1, 0, 1]) == -0.5
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap() + 0.5).abs() < 1e-12);
        // adjusted_rand_score([0, 0, 1, 2], [0, 0, 1, 1]) == 0.5714285714285715
        assert!(
            (adjusted_rand_index(&[0, 0, 1, 2], &[0, 0, 1, 1]).unwrap() - 0.571_428_571_428_571_5)
                .abs()
                < 1e-12
        );
    }

    #[test]
    fn separable_groups_are_stable_and_noise_is_not() {
        let blobs: Vec<Vec<f64>> = (0..90)
            .map(|i| {
                let g = f64::from(i % 3) * 20.0;
                vec![g + f64::from(i % 5) * 0.1, g - f64::from(i % 7) * 0.1]
            })
            .collect();
        let blobs = Matrix::from_rows(&blobs).unwrap();
        let fit = |m: &Matrix| KMeansParams::new(3).n_init(3).seed(2).fit(m);
        assert!(bootstrap_stability(&blobs, fit, 5, 1).unwrap() > 0.99);

        let mut x = 12345u64;
        let noise: Vec<Vec<f64>> = (0..200)
            .map(|_| {
                (0..2)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (x >> 11) as f64 / (1u64 << 53) as f64
                    })
                    .collect()
            })
            .collect();
        let noise = Matrix::from_rows(&noise).unwrap();
        let fit = |m: &Matrix| KMeansParams::new(7).seed(2).fit(m);
        assert!(bootstrap_stability(&noise, fit, 5, 1).unwrap() < 0.9);
    }
}
