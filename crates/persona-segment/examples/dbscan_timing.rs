//! Times DBSCAN on Gaussian blobs like `persona bench cluster`'s (12 features, 8 centres,
//! min-max scaled), eps suggested: `cargo run --release --example dbscan_timing [ROWS]`.

use persona_segment::dbscan::suggest_eps;
use persona_segment::{DbscanParams, Matrix, Scaler, Scaling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(50_000, |a| a.parse().expect("ROWS"));
    let (d, k) = (12, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| rng.random_range(0.0..10.0)).collect())
        .collect();
    let mut values = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = &centres[rng.random_range(0..k)];
        // A sum of uniforms: near enough to a Gaussian for timing.
        values.extend(
            c.iter()
                .map(|x| x + (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0),
        );
    }
    let m = Matrix::new(n, d, values).unwrap();
    let m = Scaler::fit(&m, Scaling::MinMax).transform(&m);
    let t = std::time::Instant::now();
    let eps = suggest_eps(&m, 2 * d, 10_000, 2).unwrap().eps;
    println!(
        "eps {eps:.4} suggested in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    for threads in [1, 2] {
        let t = std::time::Instant::now();
        let fit = DbscanParams::new(eps, 2 * d)
            .threads(threads)
            .fit(&m)
            .unwrap();
        println!(
            "threads {threads}: {} clusters, {} noise in {:.3} s",
            fit.clusters,
            fit.noise(),
            t.elapsed().as_secs_f64()
        );
    }
}
