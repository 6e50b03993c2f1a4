//! Feature scaling, fitted once and stored with a model so that new customers are
//! transformed exactly as the training data was.

use serde::{Deserialize, Serialize};

use crate::Matrix;

/// How features are put on a common scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scaling {
    /// To [0, 1] by each column's minimum and range (scikit-learn's `MinMaxScaler`).
    MinMax,
    /// To mean 0 and standard deviation 1, population standard deviation
    /// (`StandardScaler`).
    ZScore,
    /// By median and interquartile range, insensitive to outliers (`RobustScaler`).
    Robust,
    /// Unchanged.
    None,
}

/// A fitted scaling: `scaled = (x - offset) / scale`, per column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub scaling: Scaling,
    pub offset: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Scaler {
    /// Learns the scaling of each column of `data`. A constant column gets scale 1 (as
    /// scikit-learn does), so it maps to 0 instead of dividing by zero.
    pub fn fit(data: &Matrix, scaling: Scaling) -> Scaler {
        let (n, d) = (data.rows(), data.cols());
        let column = |j: usize| -> Vec<f64> { data.iter_rows().map(|r| r[j]).collect() };
        let (offset, scale): (Vec<f64>, Vec<f64>) = (0..d)
            .map(|j| match scaling {
                Scaling::None => (0.0, 1.0),
                Scaling::MinMax => {
                    let c = column(j);
                    let min = c.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (min, max - min)
                }
                Scaling::ZScore => {
                    let c = column(j);
                    let mean = c.iter().sum::<f64>() / n as f64;
                    let var = c.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
                    (mean, var.sqrt())
                }
                Scaling::Robust => {
                    let mut c = column(j);
                    c.sort_by(f64::total_cmp);
                    let median = quantile(&c, 0.5);
                    (median, quantile(&c, 0.75) - quantile(&c, 0.25))
                }
            })
            .map(|(o, s)| (o, if s == 0.0 { 1.0 } else { s }))
            .unzip();
        Scaler {
            scaling,
            offset,
            scale,
        }
    }

    /// Scales one row in place.
    pub fn transform_row(&self, row: &mut [f64]) {
        for ((x, o), s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
            *x = (*x - o) / s;
        }
    }

    /// Back to original units, in place.
    pub fn inverse_row(&self, row: &mut [f64]) {
        for ((x, o), s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
            *x = *x * s + o;
        }
    }

    /// A scaled copy of `data`.
    pub fn transform(&self, data: &Matrix) -> Matrix {
        let mut out = data.clone();
        for i in 0..out.rows() {
            self.transform_row(out.row_mut(i));
        }
        out
    }

    /// `data` back in original units.
    pub fn inverse(&self, data: &Matrix) -> Matrix {
        let mut out = data.clone();
        for i in 0..out.rows() {
            self.inverse_row(out.row_mut(i));
        }
        out
    }
}

/// The `q` quantile of sorted values with linear interpolation (numpy's default).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_scaling_gives_its_shape() {
        let m = Matrix::from_rows(&[
            vec![1.0, 5.0],
            vec![3.0, 5.0],
            vec![5.0, 5.0],
            vec![100.0, 5.0],
        ])
        .unwrap();
        let s = Scaler::fit(&m, Scaling::MinMax);
        assert_eq!(
            s.transform(&m).row(3),
            &[1.0, 0.0],
            "a constant column maps to 0"
        );
        let z = Scaler::fit(&m, Scaling::ZScore).transform(&m);
        let mean: f64 = z.iter_rows().map(|r| r[0]).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12);
        let r = Scaler::fit(&m, Scaling::Robust);
        assert_eq!(r.offset[0], 4.0, "median of 1, 3, 5, 100");
        assert_eq!(
            r.scale[0],
            28.75 - 2.5,
            "interquartile range with interpolation"
        );
    }

    proptest! {
        #[test]
        fn scaling_round_trips(
            rows in prop::collection::vec(prop::collection::vec(-1e6f64..1e6, 3), 1..40),
            which in 0usize..4,
        ) {
            let m = Matrix::from_rows(&rows).unwrap();
            let scaling = [Scaling::MinMax, Scaling::ZScore, Scaling::Robust, Scaling::None][which];
            let s = Scaler::fit(&m, scaling);
            let back = s.inverse(&s.transform(&m));
            for (a, b) in back.as_slice().iter().zip(m.as_slice()) {
                prop_assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }
}
