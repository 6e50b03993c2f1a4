//! The timing examples' data: Gaussian-like blobs as `persona bench cluster` makes them.

use persona_segment::{Matrix, Scaler, Scaling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` rows × `d` around `k` seeded centres in [0, 10]^d, min-max scaled. The noise is a sum
/// of `uniforms` uniform draws, centred (near enough to a Gaussian of variance
/// `uniforms / 12` for timing, and cheaper to draw).
pub fn blobs(n: usize, d: usize, k: usize, uniforms: u32) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| rng.random_range(0.0..10.0)).collect())
        .collect();
    let half = f64::from(uniforms) / 2.0;
    let mut values = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = &centres[rng.random_range(0..k)];
        values.extend(
            c.iter()
                .map(|x| x + (0..uniforms).map(|_| rng.random::<f64>()).sum::<f64>() - half),
        );
    }
    let m = Matrix::new(n, d, values).unwrap();
    Scaler::fit(&m, Scaling::MinMax).transform(&m)
}
