//! Times Ward clustering of 20,000 random rows × 12: `cargo run --release --example ward_timing`.

use persona_segment::Matrix;
use persona_segment::hierarchical::ward;

fn main() {
    let (n, d) = (20_000, 12);
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
    let t = std::time::Instant::now();
    let tree = ward(&m).unwrap();
    println!(
        "Ward on {n} × {d}: {:.2} s (last merge at height {:.3})",
        t.elapsed().as_secs_f64(),
        tree.merges.last().unwrap().height
    );
}
