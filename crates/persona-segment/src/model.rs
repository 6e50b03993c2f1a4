//! A fitted segmentation model as it is stored: the preparation of the input columns, the
//! fitted scaling and the centres, so a later stage assigns a new customer exactly as
//! training did.

use serde::{Deserialize, Serialize};

use crate::prepare::{Cell, Preparation};
use crate::{KMeans, Matrix, Scaler, SegmentError};

/// Preparation, scaling and centres (in scaled units) of a K-Means segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub preparation: Preparation,
    pub scaler: Scaler,
    pub centers: Matrix,
}

impl Model {
    pub fn new(preparation: Preparation, scaler: Scaler, kmeans: &KMeans) -> Self {
        Model {
            preparation,
            scaler,
            centers: kmeans.centers.clone(),
        }
    }

    /// The input columns the model reads, in the order [`Self::assign`] takes them.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.preparation.columns.iter().map(|c| c.name())
    }

    /// The cluster of one customer, given its values of [`Self::columns`] in original
    /// units, and the squared distance to that centre in scaled units. Allocation-free for
    /// up to 64 features.
    pub fn assign(&self, cells: &[Cell]) -> Result<(usize, f64), SegmentError> {
        let width = self.preparation.width();
        let mut buf = [0.0; 64];
        let mut heap;
        let row: &mut [f64] = if width <= buf.len() {
            &mut buf[..width]
        } else {
            heap = vec![0.0; width];
            &mut heap
        };
        self.preparation.transform_row(cells, row)?;
        self.scaler.transform_row(row);
        Ok(crate::kmeans::nearest(&self.centers, row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::{Column, PrepOptions, Values};
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
        let columns: Vec<Column> = ["monetary", "frequency"]
            .iter()
            .enumerate()
            .map(|(j, name)| Column {
                name: (*name).into(),
                values: Values::Numeric(rows.iter().map(|r| Some(r[j])).collect()),
            })
            .collect();
        let (preparation, _) = Preparation::fit(&columns, &PrepOptions::default()).unwrap();
        let raw = preparation.transform(&columns).unwrap();
        let scaler = Scaler::fit(&raw, Scaling::ZScore);
        let fit = KMeansParams::new(3)
            .seed(1)
            .n_init(3)
            .fit(&scaler.transform(&raw))
            .unwrap();
        let model = Model::new(preparation, scaler, &fit);
        // (serde_json reads floats to within an ulp unless its `float_roundtrip` feature is
        // on; MessagePack through rmp-serde, as the profile store uses, is exact.)
        let stored = serde_json::to_string(&model).unwrap();
        let back: Model = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.preparation, model.preparation);
        for (a, b) in back.centers.as_slice().iter().zip(model.centers.as_slice()) {
            assert!((a - b).abs() <= 1e-15 * b.abs().max(1.0));
        }
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<Cell> = row.iter().map(|&x| Cell::Number(x)).collect();
            assert_eq!(back.assign(&cells).unwrap().0, fit.labels[i]);
        }
    }
}
