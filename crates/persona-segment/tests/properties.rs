//! Properties of the clusterings that hold for any data.

use std::collections::HashMap;

use persona_segment::hierarchical::{Linkage, linkage};
use persona_segment::kmeans::{Algorithm, Init};
use persona_segment::{DbscanParams, KMeansParams, Matrix};
use proptest::prelude::*;

fn data() -> impl Strategy<Value = Vec<Vec<f64>>> {
    prop::collection::vec(prop::collection::vec(-50.0f64..50.0, 3), 12..80)
}

/// Equal up to renaming the clusters.
fn same_partition<T: Eq + std::hash::Hash + Copy, U: Eq + std::hash::Hash + Copy>(
    a: &[T],
    b: &[U],
) -> bool {
    let (mut ab, mut ba) = (HashMap::new(), HashMap::new());
    a.iter()
        .zip(b)
        .all(|(x, y)| *ab.entry(*x).or_insert(*y) == *y && *ba.entry(*y).or_insert(*x) == *x)
}

proptest! {
    /// Each Lloyd iteration can only lower the inertia.
    #[test]
    fn inertia_never_increases_across_iterations(rows in data(), k in 2usize..6) {
        let m = Matrix::from_rows(&rows).unwrap();
        let init = Init::Centers(m.select(&(0..k).collect::<Vec<_>>()));
        let mut last = f64::INFINITY;
        for iters in 1..12 {
            let fit = KMeansParams::new(k).init(init.clone()).max_iter(iters).tol(0.0).fit(&m).unwrap();
            prop_assert!(fit.inertia <= last * (1.0 + 1e-12), "iteration {iters}: {} after {last}", fit.inertia);
            last = fit.inertia;
        }
    }

    /// From the same start, the order of the rows does not change the clustering.
    #[test]
    fn labels_do_not_depend_on_row_order(rows in data(), k in 2usize..5, rotate in 1usize..11) {
        let m = Matrix::from_rows(&rows).unwrap();
        let init = Init::Centers(m.select(&(0..k).collect::<Vec<_>>()));
        let a = KMeansParams::new(k).init(init.clone()).fit(&m).unwrap();
        let n = rows.len();
        let order: Vec<usize> = (0..n).map(|i| (i + rotate) % n).collect();
        let b = KMeansParams::new(k).init(init).fit(&m.select(&order)).unwrap();
        for (pos, &i) in order.iter().enumerate() {
            prop_assert_eq!(b.labels[pos], a.labels[i]);
        }
        prop_assert!((a.inertia - b.inertia).abs() <= 1e-9 * a.inertia.max(1.0));
    }

    /// Hamerly's bounds only skip work: the same labels, inertia and iterations as Lloyd.
    #[test]
    fn hamerly_equals_lloyd(rows in data(), k in 2usize..7) {
        let m = Matrix::from_rows(&rows).unwrap();
        let init = Init::Centers(m.select(&(0..k).collect::<Vec<_>>()));
        let fit = |a| KMeansParams::new(k).init(init.clone()).algorithm(a).fit(&m).unwrap();
        let (lloyd, hamerly) = (fit(Algorithm::Lloyd), fit(Algorithm::Hamerly));
        prop_assert_eq!(&lloyd.labels, &hamerly.labels);
        prop_assert_eq!(lloyd.iterations, hamerly.iterations);
        prop_assert!((lloyd.inertia - hamerly.inertia).abs() <= 1e-9 * lloyd.inertia.max(1.0));
    }

    /// The order of the rows changes neither Ward's clusters nor DBSCAN's core rows, their
    /// clusters and its noise (a border row within reach of two clusters joins the one met
    /// first, in DBSCAN as in scikit-learn, so border rows are left out).
    #[test]
    fn ward_and_dbscan_do_not_depend_on_row_order(rows in data(), rotate in 1usize..11, eps in 5.0f64..40.0) {
        let m = Matrix::from_rows(&rows).unwrap();
        let n = rows.len();
        let order: Vec<usize> = (0..n).map(|i| (i + rotate) % n).collect();
        let shuffled = m.select(&order);
        let a = linkage(&m, Linkage::Ward).unwrap().cut(3).unwrap();
        let b = linkage(&shuffled, Linkage::Ward).unwrap().cut(3).unwrap();
        let a_in_order: Vec<usize> = order.iter().map(|&i| a[i]).collect();
        prop_assert!(same_partition(&a_in_order, &b));

        let a = DbscanParams::new(eps, 4).fit(&m).unwrap();
        let b = DbscanParams::new(eps, 4).fit(&shuffled).unwrap();
        let core_a: Vec<Option<usize>> = order.iter().map(|&i| if a.core[i] { a.labels[i] } else { None }).collect();
        let core_b: Vec<Option<usize>> = (0..n).map(|p| if b.core[p] { b.labels[p] } else { None }).collect();
        prop_assert!(same_partition(&core_a, &core_b));
        let noise_a: Vec<bool> = order.iter().map(|&i| a.labels[i].is_none()).collect();
        let noise_b: Vec<bool> = b.labels.iter().map(Option::is_none).collect();
        prop_assert_eq!(noise_a, noise_b);
    }
}
