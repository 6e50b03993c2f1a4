//! Properties of K-Means that hold for any data.

use persona_segment::kmeans::Init;
use persona_segment::{KMeansParams, Matrix};
use proptest::prelude::*;

fn data() -> impl Strategy<Value = Vec<Vec<f64>>> {
    prop::collection::vec(prop::collection::vec(-50.0f64..50.0, 3), 12..80)
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
}
