//! A fitted segmentation model as it is stored: the features it reads, the fitted scaling
//! and the centres, so a later stage assigns a new customer exactly as training did.

use serde::{Deserialize, Serialize};

use crate::{KMeans, Matrix, Scaler};

/// Features, scaling and centres (in scaled units) of a K-Means segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub features: Vec<String>,
    pub scaler: Scaler,
    pub centers: Matrix,
}

impl Model {
    pub fn new(features: Vec<String>, scaler: Scaler, kmeans: &KMeans) -> Self {
        Model {
            features,
            scaler,
            centers: kmeans.centers.clone(),
        }
    }

    /// The cluster of one customer, given its features in the model's order and in original
    /// units, and the squared distance to that centre in scaled units. Allocation-free for
    /// up to 64 features.
    pub fn assign(&self, row: &[f64]) -> (usize, f64) {
        let mut buf = [0.0; 64];
        let mut heap;
        let scaled: &mut [f64] = if row.len() <= buf.len() {
            &mut buf[..row.len()]
        } else {
            heap = vec![0.0; row.len()];
            &mut heap
        };
        scaled.copy_from_slice(row);
        self.scaler.transform_row(scaled);
        crate::kmeans::nearest(&self.centers, scaled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KMeansParams, Scaling};

    #[test]
    fn a_stored_model_assigns_as_training_did() {
        let rows: Vec<Vec<f64>> = (0..60)
            .map(|i| {
                let g = f64::from(i % 3);
                vec![
                    g * 100.0 + f64::from(i % 7),
                    g * 5.0 + f64::from(i % 4) * 0.1,
                ]
            })
            .collect();
        let raw = Matrix::from_rows(&rows).unwrap();
        let scaler = Scaler::fit(&raw, Scaling::ZScore);
        let fit = KMeansParams::new(3)
            .seed(1)
            .n_init(3)
            .fit(&scaler.transform(&raw))
            .unwrap();
        let model = Model::new(vec!["monetary".into(), "frequency".into()], scaler, &fit);
        // (serde_json reads floats to within an ulp unless its `float_roundtrip` feature is
        // on; MessagePack through rmp-serde, as the profile store uses, is exact.)
        let stored = serde_json::to_string(&model).unwrap();
        let back: Model = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.features, model.features);
        for (a, b) in back.centers.as_slice().iter().zip(model.centers.as_slice()) {
            assert!((a - b).abs() <= 1e-15 * b.abs().max(1.0));
        }
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(back.assign(row).0, fit.labels[i]);
        }
    }
}
