//! Times DBSCAN on Gaussian blobs like `persona bench cluster`'s (12 features, 8 centres,
//! min-max scaled), eps suggested: `cargo run --release --example dbscan_timing [ROWS]`.

use persona_segment::DbscanParams;
use persona_segment::dbscan::suggest_eps;

#[path = "support/blobs.rs"]
mod support;
use support::blobs;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(50_000, |a| a.parse().expect("ROWS"));
    let (d, k) = (12, 8);
    let m = blobs(n, d, k, 6);
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
