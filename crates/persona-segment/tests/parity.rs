//! Parity with scikit-learn, the reference: the fixtures in `tests/fixtures/` were made by
//! `make_fixtures.py` with scikit-learn; our results must match them (metrics to 1e-9
//! relative, K-Means and hierarchical labels up to renaming, DBSCAN labels exactly).

use std::collections::HashMap;

use persona_segment::kmeans::{Algorithm, Init};
use persona_segment::{KMeansParams, Matrix, metrics};
use serde_json::Value;

const CASES: [&str; 2] = ["blobs_separated", "blobs_overlapping"];

fn load(name: &str) -> (Matrix, Value) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let csv = std::fs::read_to_string(format!("{dir}/{name}.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let json = std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap();
    (
        Matrix::from_rows(&rows).unwrap(),
        serde_json::from_str(&json).unwrap(),
    )
}

fn assert_close(what: &str, ours: f64, theirs: f64) {
    let rel = (ours - theirs).abs() / theirs.abs().max(f64::MIN_POSITIVE);
    assert!(
        rel <= 1e-9,
        "{what}: ours {ours}, scikit-learn {theirs} (relative {rel:e})"
    );
}

fn labels(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap() as usize)
        .collect()
}

/// Equal up to renaming the clusters.
fn same_partition(a: &[usize], b: &[usize]) -> bool {
    let mut map = HashMap::new();
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| *map.entry(*x).or_insert(*y) == *y)
        && map.len() == map.values().collect::<std::collections::HashSet<_>>().len()
}

#[test]
fn kmeans_from_the_same_start_matches_scikit_learn() {
    for name in CASES {
        let (data, want) = load(name);
        let k = want["k"].as_u64().unwrap() as usize;
        let init: Vec<Vec<f64>> = serde_json::from_value(want["init"].clone()).unwrap();
        for (threads, algorithm) in [1, 2]
            .into_iter()
            .flat_map(|t| [(t, Algorithm::Lloyd), (t, Algorithm::Hamerly)])
        {
            let fit = KMeansParams::new(k)
                .init(Init::Centers(Matrix::from_rows(&init).unwrap()))
                .algorithm(algorithm)
                .threads(threads)
                .fit(&data)
                .unwrap();
            let name = format!("{name}, {algorithm:?}, {threads} threads");
            assert_close(
                &format!("{name} inertia"),
                fit.inertia,
                want["kmeans_inertia"].as_f64().unwrap(),
            );
            assert_eq!(
                fit.iterations as u64,
                want["kmeans_iterations"].as_u64().unwrap(),
                "{name} iterations"
            );
            assert!(
                same_partition(&fit.labels, &labels(&want["kmeans_labels"])),
                "{name} labels"
            );
        }
    }
}

#[test]
fn quality_metrics_match_scikit_learn() {
    for name in CASES {
        let (data, want) = load(name);
        let l = labels(&want["kmeans_labels"]);
        let f = |k: &str| want[k].as_f64().unwrap();
        assert_close(
            &format!("{name} silhouette"),
            metrics::silhouette(&data, &l, 2).unwrap(),
            f("silhouette"),
        );
        assert_close(
            &format!("{name} Calinski-Harabasz"),
            metrics::calinski_harabasz(&data, &l).unwrap(),
            f("calinski_harabasz"),
        );
        assert_close(
            &format!("{name} Davies-Bouldin"),
            metrics::davies_bouldin(&data, &l).unwrap(),
            f("davies_bouldin"),
        );
        // Renaming the clusters changes nothing.
        let renamed: Vec<usize> = l.iter().map(|x| 100 - x).collect();
        assert_close(
            "renamed",
            metrics::calinski_harabasz(&data, &renamed).unwrap(),
            f("calinski_harabasz"),
        );
    }
}

#[test]
fn hierarchical_labels_match_scikit_learn() {
    use persona_segment::hierarchical::{Linkage, linkage};
    for name in CASES {
        let (data, want) = load(name);
        let k = want["k"].as_u64().unwrap() as usize;
        for (method, key) in [
            (Linkage::Ward, "ward_labels"),
            (Linkage::Complete, "complete_labels"),
            (Linkage::Average, "average_labels"),
            (Linkage::Single, "single_labels"),
        ] {
            let ours = linkage(&data, method).unwrap().cut(k).unwrap();
            assert!(
                same_partition(&ours, &labels(&want[key])),
                "{name}: {method:?} labels differ"
            );
        }
    }
}

#[test]
fn dbscan_labels_equal_scikit_learns() {
    use persona_segment::DbscanParams;
    for name in CASES {
        let (data, want) = load(name);
        for case in want["dbscan"].as_array().unwrap() {
            let eps = case["eps"].as_f64().unwrap();
            let min_samples = case["min_samples"].as_u64().unwrap() as usize;
            let theirs: Vec<i64> = serde_json::from_value(case["labels"].clone()).unwrap();
            for threads in [1, 2] {
                let fit = DbscanParams::new(eps, min_samples)
                    .threads(threads)
                    .fit(&data)
                    .unwrap();
                // Not only the same partition: the same numbers, noise and border rows
                // included.
                assert_eq!(
                    fit.labels_with_noise(),
                    theirs,
                    "{name}, eps {eps}, min_samples {min_samples}, {threads} threads"
                );
            }
        }
    }
}
