//! Times K-Means on Gaussian-like blobs (1,000,000 × 12, 8 centres, min-max scaled), Lloyd
//! beside Hamerly: iterations from a bad start, whole fits, a k = 2..12 sweep on 100,000
//! rows, and the k-means++ start: `cargo run --release --example lloyd_timing`.

use std::time::Instant;

use persona_segment::KMeansParams;
use persona_segment::kmeans::{Algorithm, Init};

#[path = "support/blobs.rs"]
mod support;
use support::blobs;

fn main() {
    let (n, d, k) = (1_000_000, 12, 8);
    let m = blobs(n, d, k, 12);
    let sweep = m.select(&(0..100_000).collect::<Vec<_>>());
    let bad = Init::Centers(m.select(&(0..k).collect::<Vec<_>>()));
    for algorithm in [Algorithm::Lloyd, Algorithm::Hamerly] {
        let t = Instant::now();
        let fit = KMeansParams::new(k)
            .init(bad.clone())
            .algorithm(algorithm)
            .tol(0.0)
            .max_iter(20)
            .fit(&m)
            .unwrap();
        let per_iteration = t.elapsed().as_secs_f64() * 1000.0 / fit.iterations as f64;
        let t = Instant::now();
        let fit = KMeansParams::new(k).algorithm(algorithm).fit(&m).unwrap();
        let whole = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        for kk in 2..=12 {
            KMeansParams::new(kk)
                .algorithm(algorithm)
                .fit(&sweep)
                .unwrap();
        }
        println!(
            "{algorithm:?}: {per_iteration:.2} ms an iteration from a bad start; fit {whole:.1} ms ({} iterations); sweep {:.1} ms",
            fit.iterations,
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
    let t = Instant::now();
    persona_segment::kmeans::plus_plus_init(&m, k, 0);
    println!(
        "k-means++ start: {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
