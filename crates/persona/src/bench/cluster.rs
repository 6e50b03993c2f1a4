//! `persona bench cluster`: persona-segment beside scikit-learn on the same data file.
//!
//! One seeded dataset (Gaussian blobs, min-max scaled, written as raw little-endian f64) is
//! measured by scikit-learn (a Python script run with `--python`) and by persona-segment in
//! this process, one after the other on the same machine; the table gives the ratios.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use persona_segment::dbscan::suggest_eps;
use persona_segment::kmeans::{Algorithm, Init, plus_plus_init};
use persona_segment::matrix::squared_distance;
use persona_segment::{
    DbscanParams, KMeansParams, Matrix, MiniBatchParams, Scaler, Scaling, metrics,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::{Value, json};

use crate::cli::BenchClusterArgs;

const SCRIPT: &str = r#"
import json, sys, time
import numpy as np
from sklearn.cluster import DBSCAN, KMeans, MiniBatchKMeans, kmeans_plusplus
from sklearn.metrics import silhouette_score

path, n, d, k, sweep_rows, sil_rows, ward_rows, db_rows, min_samples = sys.argv[1], *map(int, sys.argv[2:10])
eps, labels_path = float(sys.argv[10]), sys.argv[11]
bad_rows = [int(i) for i in sys.argv[12].split(",")]
X = np.fromfile(path, dtype="<f8").reshape(n, d)
out = {}
t = time.perf_counter(); db = DBSCAN(eps=eps, min_samples=min_samples).fit(X[:db_rows])
out["dbscan_seconds"] = time.perf_counter() - t
db.labels_.astype("<i8").tofile(labels_path)
t = time.perf_counter(); mb = MiniBatchKMeans(n_clusters=k, n_init=3, random_state=0).fit(X)
out["minibatch_seconds"] = time.perf_counter() - t; out["minibatch_inertia"] = float(mb.inertia_)
t = time.perf_counter(); km = KMeans(n_clusters=k, n_init=1, random_state=0).fit(X)
out["fit_seconds"] = time.perf_counter() - t; out["fit_iterations"] = int(km.n_iter_)
t = time.perf_counter(); kmeans_plusplus(X, k, random_state=0)
out["init_seconds"] = time.perf_counter() - t
bad = KMeans(n_clusters=k, init=X[bad_rows], n_init=1, tol=0.0, max_iter=20)
t = time.perf_counter(); bad.fit(X)
out["lloyd_iteration_seconds"] = (time.perf_counter() - t) / bad.n_iter_
bad = KMeans(n_clusters=k, init=X[bad_rows], n_init=1, tol=0.0, max_iter=20, algorithm="elkan")
t = time.perf_counter(); bad.fit(X)
out["bounded_iteration_seconds"] = (time.perf_counter() - t) / bad.n_iter_
out["bad_start_iterations"] = int(bad.n_iter_)
S = X[:sweep_rows]
t = time.perf_counter()
for kk in range(2, 13): KMeans(n_clusters=kk, n_init=1, random_state=0).fit(S)
out["sweep_seconds"] = time.perf_counter() - t
L = KMeans(n_clusters=k, n_init=1, random_state=0).fit(X[:sil_rows]).labels_
t = time.perf_counter(); silhouette_score(X[:sil_rows], L)
out["silhouette_seconds"] = time.perf_counter() - t
from sklearn.cluster import AgglomerativeClustering
t = time.perf_counter(); AgglomerativeClustering(n_clusters=k, linkage="ward").fit(X[:ward_rows])
out["ward_seconds"] = time.perf_counter() - t
print(json.dumps(out))
"#;

pub fn cluster(args: BenchClusterArgs) -> anyhow::Result<()> {
    let (n, d, k) = (args.rows, args.dims, args.k);
    anyhow::ensure!(
        n >= 100_000 && k >= 2,
        "--rows must be at least 100000 and --k at least 2"
    );
    eprintln!("generating {n} × {d} blobs around {k} centres, min-max scaled");
    let data = blobs(n, d, k, args.seed)?;
    let file = tempfile::NamedTempFile::new()?;
    {
        let mut w = std::io::BufWriter::new(file.as_file());
        for v in data.as_slice() {
            w.write_all(&v.to_le_bytes())?;
        }
        w.flush()?;
    }
    let (sweep_rows, sil_rows) = (100_000.min(n), args.silhouette_rows.min(n));
    let ward_rows = args.ward_rows.min(n);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let db_rows = args.dbscan_rows.min(n);
    let db_data = data.select(&(0..db_rows).collect::<Vec<_>>());
    let min_samples = args.min_samples.unwrap_or(2 * d);
    let t = Instant::now();
    let eps = suggest_eps(&db_data, min_samples, 10_000, threads)?.eps;
    let eps_seconds = t.elapsed().as_secs_f64();
    let sk_labels = tempfile::NamedTempFile::new()?;
    // A bad start that needs many iterations: all k centres in one blob (the k rows
    // nearest the first row).
    let mut by_distance: Vec<(f64, usize)> = (0..n)
        .map(|i| (squared_distance(data.row(i), data.row(0)), i))
        .collect();
    by_distance.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
    let bad_rows: Vec<usize> = by_distance[..k].iter().map(|p| p.1).collect();

    eprintln!("scikit-learn ({}) ...", args.python);
    let py = Command::new(&args.python)
        .args(["-c", SCRIPT])
        .arg(file.path())
        .args(
            [
                n,
                d,
                k,
                sweep_rows,
                sil_rows,
                ward_rows,
                db_rows,
                min_samples,
            ]
            .map(|x| x.to_string()),
        )
        .arg(eps.to_string())
        .arg(sk_labels.path())
        .arg(
            bad_rows
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .output()
        .with_context(|| format!("cannot run {}", args.python))?;
    anyhow::ensure!(
        py.status.success(),
        "the scikit-learn script failed (pip install scikit-learn):\n{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let sk: Value = serde_json::from_slice(&py.stdout).context("scikit-learn's output")?;

    eprintln!("persona-segment ...");
    let mut ours = serde_json::Map::new();
    let t = Instant::now();
    let db = DbscanParams::new(eps, min_samples).fit(&db_data)?;
    ours.insert("dbscan_seconds".into(), t.elapsed().as_secs_f64().into());
    let theirs: Vec<i64> = std::fs::read(sk_labels.path())?
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let same_labels = db
        .labels_with_noise()
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a == b)
        .count();
    let t = Instant::now();
    let mb = MiniBatchParams::new(k).n_init(3).seed(0).fit(&data)?;
    ours.insert("minibatch_seconds".into(), t.elapsed().as_secs_f64().into());
    let t = Instant::now();
    let fit = KMeansParams::new(k).seed(0).fit(&data)?;
    ours.insert("fit_seconds".into(), t.elapsed().as_secs_f64().into());
    ours.insert("fit_iterations".into(), fit.iterations.into());
    let t = Instant::now();
    plus_plus_init(&data, k, 0);
    ours.insert("init_seconds".into(), t.elapsed().as_secs_f64().into());
    let bad = Init::Centers(data.select(&bad_rows));
    let t = Instant::now();
    let slow = KMeansParams::new(k)
        .init(bad.clone())
        .algorithm(Algorithm::Lloyd)
        .tol(0.0)
        .max_iter(20)
        .fit(&data)?;
    ours.insert(
        "lloyd_iteration_seconds".into(),
        (t.elapsed().as_secs_f64() / slow.iterations as f64).into(),
    );
    let t = Instant::now();
    let slow = KMeansParams::new(k)
        .init(bad)
        .algorithm(Algorithm::Hamerly)
        .tol(0.0)
        .max_iter(20)
        .fit(&data)?;
    ours.insert(
        "bounded_iteration_seconds".into(),
        (t.elapsed().as_secs_f64() / slow.iterations as f64).into(),
    );
    ours.insert("bad_start_iterations".into(), slow.iterations.into());
    let sweep = data.select(&(0..sweep_rows).collect::<Vec<_>>());
    let t = Instant::now();
    for kk in 2..=12 {
        KMeansParams::new(kk).seed(0).fit(&sweep)?;
    }
    ours.insert("sweep_seconds".into(), t.elapsed().as_secs_f64().into());
    let sil = data.select(&(0..sil_rows).collect::<Vec<_>>());
    let labels = KMeansParams::new(k).seed(0).fit(&sil)?.labels;
    let t = Instant::now();
    metrics::silhouette(&sil, &labels, threads)?;
    ours.insert(
        "silhouette_seconds".into(),
        t.elapsed().as_secs_f64().into(),
    );
    let ward_data = data.select(&(0..ward_rows).collect::<Vec<_>>());
    let t = Instant::now();
    persona_segment::hierarchical::ward(&ward_data)?.cut(k)?;
    ours.insert("ward_seconds".into(), t.elapsed().as_secs_f64().into());

    // The floor of a Lloyd iteration: reading the data once, on every core, with sums
    // independent enough that adding is never the bottleneck (best of three).
    let read_seconds = (0..3)
        .map(|_| {
            let t = Instant::now();
            let chunk = data.as_slice().len().div_ceil(threads);
            let sum: f64 = std::thread::scope(|s| {
                let parts: Vec<_> = data
                    .as_slice()
                    .chunks(chunk)
                    .map(|part| {
                        s.spawn(move || {
                            let mut acc = [0.0; 8];
                            for block in part.chunks_exact(8) {
                                for (a, x) in acc.iter_mut().zip(block) {
                                    *a += x;
                                }
                            }
                            acc.iter().sum::<f64>()
                        })
                    })
                    .collect();
                parts.into_iter().map(|h| h.join().expect("no panic")).sum()
            });
            std::hint::black_box(sum);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);

    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "measure", "scikit-learn", "persona", "speed-up"
    );
    let rows = [
        ("K-Means fit (k-means++, Lloyd / Hamerly)", "fit_seconds"),
        ("k-means++ initialisation", "init_seconds"),
        ("one Lloyd iteration", "lloyd_iteration_seconds"),
        ("one Elkan / Hamerly iteration", "bounded_iteration_seconds"),
        ("elbow sweep k=2..12 on 100,000 rows", "sweep_seconds"),
        ("exact silhouette", "silhouette_seconds"),
        ("Ward hierarchical clustering", "ward_seconds"),
        ("DBSCAN", "dbscan_seconds"),
        ("mini-batch K-Means (3 starts)", "minibatch_seconds"),
    ];
    let mut report = serde_json::Map::new();
    for (label, key) in rows {
        let (a, b) = (
            sk[key].as_f64().unwrap_or(f64::NAN),
            ours[key].as_f64().unwrap_or(f64::NAN),
        );
        println!("{label:<44} {:>12.4} s {:>12.4} s {:>7.2}×", a, b, a / b);
        report.insert(
            key.into(),
            json!({"scikit_learn": a, "persona": b, "speedup": a / b}),
        );
    }
    println!(
        "fit iterations: scikit-learn {}, persona {}; from the bad start: {} and {}; reading the data once takes {:.4} s (Lloyd iteration / read: {:.1}×)",
        sk["fit_iterations"],
        ours["fit_iterations"],
        sk["bad_start_iterations"],
        ours["bad_start_iterations"],
        read_seconds,
        ours["lloyd_iteration_seconds"].as_f64().unwrap_or(f64::NAN) / read_seconds
    );
    println!(
        "DBSCAN on {db_rows} rows, eps {eps:.4} (suggested in {eps_seconds:.2} s), min_samples {min_samples}: {} clusters, {} noise; labels equal to scikit-learn's for {same_labels} of {db_rows} rows",
        db.clusters,
        db.noise()
    );
    println!(
        "mini-batch K-Means inertia: scikit-learn {:.2}, persona {:.2} (full K-Means: {:.2})",
        sk["minibatch_inertia"].as_f64().unwrap_or(f64::NAN),
        mb.inertia,
        fit.inertia
    );
    println!(
        "data: {n} rows × {d}, k = {k}; silhouette on {sil_rows} rows; Ward on {ward_rows} rows"
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&Value::Object(report))?)?;
    }
    Ok(())
}

/// `n` rows around `k` random centres in [0, 10]^d with unit spread, min-max scaled.
fn blobs(n: usize, d: usize, k: usize, seed: u64) -> anyhow::Result<Matrix> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| rng.random_range(0.0..10.0)).collect())
        .collect();
    let noise = Normal::new(0.0, 1.0)?;
    let mut values = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = &centres[rng.random_range(0..k)];
        values.extend(c.iter().map(|x| x + noise.sample(&mut rng)));
    }
    let m = Matrix::new(n, d, values)?;
    Ok(Scaler::fit(&m, Scaling::MinMax).transform(&m))
}
