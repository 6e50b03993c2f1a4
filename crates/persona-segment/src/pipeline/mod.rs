//! A whole training run, shared by `persona cluster` and the live models of the server:
//! columns in; prepared, scaled, clustered (k given or chosen), judged and described; a
//! [`Model`] out that places a new customer exactly as training placed its rows.

mod fit;
pub mod spec;
mod summary;

pub use fit::{MIN_SHARE, MIN_STABILITY, SILHOUETTE_SAMPLE};
pub use spec::{NumberOr, Plan, SpecError, TrainSpec};
pub use summary::{ClusterSummary, Summary};

use crate::{Column, KMeans, Matrix, Model, Preparation, Scaler, SegmentError, metrics};

/// What a training run produced.
pub struct Trained {
    pub summary: Summary,
    pub preparation: Preparation,
    pub scaler: Scaler,
    /// The clusters of the rows in one (every row but DBSCAN's noise).
    pub fit: KMeans,
    /// The input row of each row of `fit`, when not every row is in a cluster.
    pub kept: Option<Vec<usize>>,
    /// The rows of `fit`, prepared (before scaling) and scaled.
    pub data: Matrix,
    pub scaled: Matrix,
    /// Cluster centres in the input's units.
    pub centers: Matrix,
}

impl Trained {
    /// The model that assigns new customers; `None` for DBSCAN, which has no centres.
    pub fn model(&self) -> Option<Model> {
        (self.summary.algorithm != "dbscan")
            .then(|| Model::new(self.preparation.clone(), self.scaler.clone(), &self.fit))
    }
}

/// Trains on `columns` as `spec` says. `progress(done, total)` follows the search over k.
pub fn train(
    columns: &[Column],
    spec: &TrainSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Trained, SegmentError> {
    let plan = spec.plan()?;
    let (preparation, prep_report) = Preparation::fit(columns, &plan.prep)?;
    let all_data = preparation.transform(columns)?;
    let features = preparation.feature_names();
    let scaler = Scaler::fit(&all_data, plan.scaling);
    let all_scaled = scaler.transform(&all_data);
    let fit::Outcome {
        fit,
        kept,
        stability,
        curves,
        mut warnings,
    } = fit::run(&plan, &all_scaled, progress)?;
    let n = all_data.rows();
    // The rows in a cluster: all of them, or all but DBSCAN's noise.
    let (data, scaled) = match &kept {
        Some(rows) => (all_data.select(rows), all_scaled.select(rows)),
        None => (all_data, all_scaled),
    };
    let k = fit.centers.rows();
    let quality = summary::quality(&scaled, &fit, plan.seed)?;
    if k < 2 {
        warnings.push("a single cluster; the quality metrics need two or more".into());
    }
    if let Some(stability) = stability
        && stability < MIN_STABILITY
    {
        warnings.push(format!(
            "the clusters are unstable (bootstrap adjusted Rand index {stability:.2} < {MIN_STABILITY}); k = {k} may not suit this data"
        ));
    }
    let mut sizes = vec![0usize; k];
    for &l in &fit.labels {
        sizes[l] += 1;
    }
    // The over-segmentation guard for a k given by hand (`auto` avoids such k itself).
    for (c, &size) in sizes.iter().enumerate() {
        if size == 0 {
            warnings.push(format!(
                "cluster {c} holds no rows: the rows have fewer distinct points than k = {k}"
            ));
        } else if (size as f64) < MIN_SHARE * n as f64 {
            warnings.push(format!(
                "cluster {c} holds {size} rows, under {:.0}% of the {n}; fewer clusters may serve better",
                MIN_SHARE * 100.0
            ));
        }
    }
    let mut centers = scaler.inverse(&fit.centers);
    for i in 0..centers.rows() {
        preparation.inverse_row(centers.row_mut(i));
    }
    let mut clusters = summary::describe(&data, &fit.labels, &sizes, n, &features);
    for (c, (cohesion, separation, silhouette)) in clusters.iter_mut().zip(&quality.per_cluster) {
        (c.cohesion, c.separation, c.silhouette) = (*cohesion, *separation, *silhouette);
    }
    let summary = Summary {
        algorithm: spec.algorithm.clone(),
        k,
        rows: n,
        noise: kept.as_ref().map(|rows| n - rows.len()),
        scale: spec.scale.clone(),
        preparation: prep_report,
        inertia: fit.inertia,
        silhouette: quality.silhouette,
        silhouette_sampled: quality.sampled,
        calinski_harabasz: metrics::calinski_harabasz(&scaled, &fit.labels).unwrap_or(f64::NAN),
        davies_bouldin: metrics::davies_bouldin(&scaled, &fit.labels).unwrap_or(f64::NAN),
        iterations: fit.iterations,
        stability,
        centers: centers
            .iter_rows()
            .map(|c| features.iter().cloned().zip(c.iter().copied()).collect())
            .collect(),
        sizes,
        curves,
        clusters,
        warnings,
        features,
    };
    Ok(Trained {
        summary,
        preparation,
        scaler,
        fit,
        kept,
        data,
        scaled,
        centers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Values;

    /// One cluster has no silhouette and no nearest other centre: the summary says so
    /// with `null` and still reads back, as a stored model must.
    #[test]
    fn undefined_metrics_survive_a_round_trip_through_json() {
        let columns = vec![Column {
            name: "a".into(),
            values: Values::Numeric(vec![Some(1.0); 20]),
        }];
        let spec: TrainSpec = serde_json::from_str(r#"{"k": 1}"#).unwrap();
        let summary = train(&columns, &spec, &mut |_, _| {}).unwrap().summary;
        assert!(summary.silhouette.is_nan());
        assert!(summary.clusters[0].separation.is_infinite());
        let json = serde_json::to_value(&summary).unwrap();
        assert!(json["silhouette"].is_null());
        assert!(json["clusters"][0]["separation"].is_null());
        let back: Summary = serde_json::from_value(json).unwrap();
        assert!(back.silhouette.is_nan() && back.clusters[0].separation.is_nan());
        assert_eq!(back.sizes, vec![20]);
    }

    /// Three distinct points and k = 5: two clusters stay empty. They are named `empty`,
    /// not after the zero vector's features, and their quality is undefined; every name
    /// is unique, since model segments are named after their clusters.
    #[test]
    fn empty_clusters_are_named_empty_and_every_name_is_unique() {
        let x = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0];
        let columns = vec![Column {
            name: "x".into(),
            values: Values::Numeric(x.iter().map(|&v| Some(v)).collect()),
        }];
        let spec: TrainSpec = serde_json::from_str(r#"{"k": 5, "seed": 1}"#).unwrap();
        let summary = train(&columns, &spec, &mut |_, _| {}).unwrap().summary;
        let empty: Vec<_> = summary.clusters.iter().filter(|c| c.size == 0).collect();
        assert_eq!(empty.len(), 2, "{:?}", summary.sizes);
        for c in &empty {
            assert!(c.name.starts_with("empty (cluster "), "{}", c.name);
            assert!(c.distinguishing.is_empty());
            assert!(c.silhouette.is_nan() && c.cohesion.is_nan());
        }
        let names: std::collections::HashSet<_> =
            summary.clusters.iter().map(|c| &c.name).collect();
        assert_eq!(names.len(), 5, "{:?}", summary.clusters);
        assert!(
            summary.warnings.iter().any(|w| w.contains("holds no rows")),
            "{:?}",
            summary.warnings
        );
    }
}
