//! What a trained clustering says about itself: quality overall and per cluster, and the
//! features that set each cluster apart, with a name made of them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fit::SILHOUETTE_SAMPLE;
use crate::matrix::squared_distance;
use crate::prepare::PrepReport;
use crate::{KMeans, Matrix, Scaler, Scaling, SegmentError, metrics};

/// Features named per cluster.
const DISTINGUISHING: usize = 3;
/// A feature names a cluster when its mean is this many standard deviations from the
/// overall mean.
const NAMING_GAP: f64 = 0.25;

/// A metric that may be undefined (the silhouette of one cluster, the separation of a
/// cluster with no neighbour). JSON has no NaN or infinity: such a value is written as
/// `null` and read back as NaN, so that a stored model always reads back.
mod metric {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        match x.is_finite() {
            true => s.serialize_f64(*x),
            false => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// The result of a training run, as `persona cluster --json` prints it and
/// `GET /v1/models/{id}` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub algorithm: String,
    pub k: usize,
    pub rows: usize,
    pub features: Vec<String>,
    pub scale: String,
    /// Missing values filled, log1p and one-hot encoding, per column.
    pub preparation: PrepReport,
    #[serde(with = "metric")]
    pub inertia: f64,
    #[serde(with = "metric")]
    pub silhouette: f64,
    pub silhouette_sampled: bool,
    /// DBSCAN: rows in no cluster (labelled -1).
    pub noise: Option<usize>,
    #[serde(with = "metric")]
    pub calinski_harabasz: f64,
    #[serde(with = "metric")]
    pub davies_bouldin: f64,
    pub iterations: usize,
    /// Mean adjusted Rand index of refits on bootstrap resamples (1: perfectly stable); not
    /// for DBSCAN.
    pub stability: Option<f64>,
    pub sizes: Vec<usize>,
    /// Cluster centres in the input's units.
    pub centers: Vec<BTreeMap<String, f64>>,
    pub curves: BTreeMap<String, Value>,
    pub clusters: Vec<ClusterSummary>,
    /// What a person should know before using the clusters.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSummary {
    pub label: usize,
    pub name: String,
    pub size: usize,
    pub share: f64,
    /// Standardised difference of the cluster's mean from the overall mean, largest first.
    pub distinguishing: Vec<(String, f64)>,
    /// Cohesion: the mean distance of the cluster's rows to its centre (scaled units).
    #[serde(with = "metric")]
    pub cohesion: f64,
    /// Separation: the distance from its centre to the nearest other centre (scaled units).
    #[serde(with = "metric")]
    pub separation: f64,
    /// Mean silhouette of its rows (of the sample, when the silhouette is sampled).
    #[serde(with = "metric")]
    pub silhouette: f64,
}

/// How well the clusters hold together and stand apart.
pub(super) struct Quality {
    pub silhouette: f64,
    pub sampled: bool,
    /// Per cluster: cohesion, separation, mean silhouette.
    pub per_cluster: Vec<(f64, f64, f64)>,
}

/// The silhouette (on a seeded sample above [`SILHOUETTE_SAMPLE`] rows), and each
/// cluster's cohesion, separation and mean silhouette.
pub(super) fn quality(scaled: &Matrix, fit: &KMeans, seed: u64) -> Result<Quality, SegmentError> {
    let k = fit.centers.rows();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let sampled = scaled.rows() > SILHOUETTE_SAMPLE;
    let (rows, labels): (Cow<Matrix>, Vec<usize>) = if sampled {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let idx = sample(&mut rng, scaled.rows(), SILHOUETTE_SAMPLE).into_vec();
        let labels = idx.iter().map(|&i| fit.labels[i]).collect();
        (Cow::Owned(scaled.select(&idx)), labels)
    } else {
        (Cow::Borrowed(scaled), fit.labels.clone())
    };
    // A sample can miss a small cluster; with fewer than two clusters in it (or one row a
    // cluster) the silhouette is undefined and reported as such, not as a failure.
    let distinct = labels
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let each = if k < 2 || distinct < 2 || distinct >= labels.len() {
        vec![f64::NAN; labels.len()]
    } else {
        metrics::silhouette_samples(&rows, &labels, threads)?
    };
    let mut per_cluster = vec![(0.0, f64::INFINITY, 0.0); k];
    let mut counts = vec![(0usize, 0usize); k];
    for (row, &l) in scaled.iter_rows().zip(&fit.labels) {
        per_cluster[l].0 += squared_distance(row, fit.centers.row(l)).sqrt();
        counts[l].0 += 1;
    }
    for (&s, &l) in each.iter().zip(&labels) {
        per_cluster[l].2 += s;
        counts[l].1 += 1;
    }
    for (c, q) in per_cluster.iter_mut().enumerate() {
        // An empty cluster (K-Means asked for more clusters than the rows have distinct
        // points) holds nothing together: undefined, not 0.
        q.0 = mean_or_nan(q.0, counts[c].0);
        q.2 = mean_or_nan(q.2, counts[c].1);
        for o in (0..k).filter(|&o| o != c) {
            q.1 =
                q.1.min(squared_distance(fit.centers.row(c), fit.centers.row(o)).sqrt());
        }
    }
    Ok(Quality {
        silhouette: each.iter().sum::<f64>() / each.len() as f64,
        sampled,
        per_cluster,
    })
}

fn mean_or_nan(sum: f64, n: usize) -> f64 {
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Size, share and the features that set each cluster apart, with a name made of them:
/// unique, since model segments are named after their clusters, and `empty` for a cluster
/// with no rows (whose mean says nothing).
pub(super) fn describe(
    data: &Matrix,
    labels: &[usize],
    sizes: &[usize],
    total_rows: usize,
    features: &[String],
) -> Vec<ClusterSummary> {
    let d = data.cols();
    let z = Scaler::fit(data, Scaling::ZScore);
    let (_, means) = metrics::cluster_means(data, labels, sizes.len());
    let mut clusters: Vec<ClusterSummary> = means
        .iter()
        .enumerate()
        .map(|(label, mean)| {
            let size = sizes[label];
            let mut diffs: Vec<(String, f64)> = (0..d)
                .map(|j| (features[j].clone(), (mean[j] - z.offset[j]) / z.scale[j]))
                .collect();
            diffs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            diffs.truncate(if size == 0 { 0 } else { DISTINGUISHING });
            let name = diffs
                .iter()
                .filter(|(_, v)| v.abs() >= NAMING_GAP)
                .map(|(f, v)| format!("{} {f}", if *v > 0.0 { "high" } else { "low" }))
                .collect::<Vec<_>>()
                .join(", ");
            ClusterSummary {
                label,
                name: match (size, name.is_empty()) {
                    (0, _) => "empty".into(),
                    (_, true) => "average".into(),
                    _ => name,
                },
                size,
                share: size as f64 / total_rows as f64,
                distinguishing: diffs,
                cohesion: f64::NAN,
                separation: f64::NAN,
                silhouette: f64::NAN,
            }
        })
        .collect();
    // Two clusters that read alike keep the name, each followed by its number.
    let mut times: HashMap<String, usize> = HashMap::new();
    for c in &clusters {
        *times.entry(c.name.clone()).or_default() += 1;
    }
    for c in &mut clusters {
        if times[&c.name] > 1 {
            c.name = format!("{} (cluster {})", c.name, c.label);
        }
    }
    clusters
}
