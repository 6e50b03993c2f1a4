//! Times Lloyd iterations on random data: `cargo run --release --example lloyd_timing`.

use persona_segment::kmeans::Init;
use persona_segment::{KMeansParams, Matrix};

fn main() {
    let (n, d, k) = (1_000_000, 12, 8);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let values: Vec<f64> = (0..n * d)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect();
    let m = Matrix::new(n, d, values).unwrap();
    let init = Init::Centers(m.select(&(0..k).collect::<Vec<_>>()));
    for threads in [1, 2] {
        let t = std::time::Instant::now();
        let fit = KMeansParams::new(k)
            .init(init.clone())
            .tol(0.0)
            .max_iter(20)
            .threads(threads)
            .fit(&m)
            .unwrap();
        println!(
            "threads {threads}: {} iterations, {:.2} ms each",
            fit.iterations,
            t.elapsed().as_secs_f64() * 1000.0 / fit.iterations as f64
        );
    }
}
