//! The clustering step: the planned algorithm, k given or chosen, and the bootstrap
//! stability of the result.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::spec::{Algorithm, KPlan, Plan};
use crate::dbscan::suggest_eps;
use crate::hierarchical::linkage;
use crate::select_k::{KRules, SILHOUETTE_TIE};
use crate::stability::bootstrap_stability;
use crate::{
    DbscanParams, KMeans, KMeansParams, KPoint, Matrix, MiniBatchParams, SegmentError, choose_k,
};

/// Rows the silhouette is computed on; above this it is estimated on a seeded sample, as
/// the exact value costs time quadratic in rows.
pub const SILHOUETTE_SAMPLE: usize = 10_000;
/// The over-segmentation guard: `--k auto` avoids a k with a cluster below this share...
pub const MIN_SHARE: f64 = 0.02;
/// ...or a k whose bootstrap stability is below this (a common bar for the adjusted Rand
/// index between refits), which is also where a warning is given.
pub const MIN_STABILITY: f64 = 0.75;
/// Bootstrap refits for the stability figure.
const STABILITY_RESAMPLES: usize = 5;
/// Rows the stability is measured on: each resample is a refit. Hierarchical clustering
/// costs time quadratic in rows, so it gets fewer.
const STABILITY_ROWS: usize = 20_000;
const STABILITY_ROWS_HIERARCHICAL: usize = 5_000;
/// Rows whose k-distances make the curve `--eps` is read from.
const EPS_SAMPLE: usize = 10_000;

/// What the clustering step produced.
pub struct Outcome {
    /// The clusters of the rows that belong to one (all rows, except DBSCAN's noise), with
    /// centres as the means of their rows where the algorithm has none of its own.
    pub fit: KMeans,
    /// The input row of each row of `fit`, when not every row is in a cluster.
    pub kept: Option<Vec<usize>>,
    /// Mean adjusted Rand index of refits on bootstrap resamples.
    pub stability: Option<f64>,
    /// Curves over k (`--k auto`) or the k-distance curve (DBSCAN), for the report.
    pub curves: BTreeMap<String, Value>,
    /// What a person should know about the result.
    pub warnings: Vec<String>,
}

/// Clusters `scaled` as `plan` says; `progress(done, total)` follows a search over k.
pub fn run(
    plan: &Plan,
    scaled: &Matrix,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Outcome, SegmentError> {
    if let Algorithm::Dbscan { eps, min_samples } = plan.algorithm {
        return dbscan(scaled, eps, min_samples);
    }
    let seed = plan.seed;
    // A hierarchical tree is built once and cut at every k tried.
    let tree = match plan.algorithm {
        Algorithm::Hierarchical(method) => Some(linkage(scaled, method)?),
        _ => None,
    };
    if let (Some(tree), KPlan::CutHeight(height)) = (&tree, plan.k) {
        let (labels, k) = tree.cut_at(height);
        let fit = KMeans::from_labels(scaled, labels, k)?;
        return Ok(Outcome {
            fit,
            kept: None,
            stability: None,
            curves: BTreeMap::from([("cut_height".into(), height.into())]),
            warnings: Vec::new(),
        });
    }
    let fit_k = |k: usize, m: &Matrix| -> Result<KMeans, SegmentError> {
        match plan.algorithm {
            Algorithm::MiniBatch => MiniBatchParams::new(k).seed(seed).fit(m),
            Algorithm::Hierarchical(method) => {
                let labels = match &tree {
                    // The tree is of `scaled` itself, not of a resample of it.
                    Some(t) if std::ptr::eq(m, scaled) => t.cut(k)?,
                    _ => linkage(m, method)?.cut(k)?,
                };
                KMeans::from_labels(m, labels, k)
            }
            Algorithm::KMeans(variant) => KMeansParams::new(k)
                .algorithm(variant)
                .n_init(plan.n_init)
                .seed(seed)
                .fit(m),
            Algorithm::Dbscan { .. } => unreachable!("handled above"),
        }
    };
    let stability_rows = {
        let limit = if tree.is_some() {
            STABILITY_ROWS_HIERARCHICAL
        } else {
            STABILITY_ROWS
        };
        let n = scaled.rows();
        if n > limit {
            scaled.select(&sample(&mut ChaCha8Rng::seed_from_u64(seed ^ 1), n, limit).into_vec())
        } else {
            scaled.clone()
        }
    };
    let measure_stability =
        |k: usize| bootstrap_stability(&stability_rows, |m| fit_k(k, m), STABILITY_RESAMPLES, seed);
    let mut curves = BTreeMap::new();
    let mut warnings = Vec::new();
    let (k, stability) = match plan.k {
        KPlan::Fixed(k) => (k, None),
        KPlan::Auto { max } => {
            let rules = KRules {
                silhouette_rows: SILHOUETTE_SAMPLE,
                min_share: MIN_SHARE,
                min_stability: MIN_STABILITY,
                seed,
            };
            let total = max.saturating_sub(1);
            let mut done = 0;
            let choice = choose_k(
                scaled,
                2..=max,
                |k| fit_k(k, scaled),
                &measure_stability,
                &rules,
                |_| {
                    done += 1;
                    progress(done, total)
                },
            )?;
            let series = |f: fn(&KPoint) -> Value| {
                Value::from(choice.curve.iter().map(f).collect::<Vec<_>>())
            };
            curves.insert("k".into(), series(|p| p.k.into()));
            curves.insert("inertia".into(), series(|p| p.inertia.into()));
            curves.insert("silhouette".into(), series(|p| p.silhouette.into()));
            curves.insert(
                "calinski_harabasz".into(),
                series(|p| p.calinski_harabasz.into()),
            );
            curves.insert("davies_bouldin".into(), series(|p| p.davies_bouldin.into()));
            curves.insert("min_share".into(), series(|p| p.min_share.into()));
            curves.insert("stability".into(), series(|p| p.stability.into()));
            curves.insert("elbow_k".into(), choice.elbow.into());
            curves.insert(
                "rule".into(),
                format!(
                    "highest silhouette among k whose smallest cluster holds at least {:.0}% of rows; silhouettes within {SILHOUETTE_TIE} of the best are tied, and the highest Calinski-Harabasz breaks the tie; a k whose bootstrap stability is below {MIN_STABILITY} is passed over",
                    MIN_SHARE * 100.0,
                )
                .into(),
            );
            if choice.guarded_out {
                warnings.push(format!(
                    "no k from 2 to {max} keeps every cluster above {:.0}% of the rows with a stability of at least {MIN_STABILITY}; taking k = {} by silhouette alone",
                    MIN_SHARE * 100.0,
                    choice.k
                ));
            }
            let measured = choice
                .curve
                .iter()
                .find(|p| p.k == choice.k)
                .and_then(|p| p.stability);
            (choice.k, measured)
        }
        KPlan::CutHeight(_) | KPlan::Found => {
            unreachable!("the plan pairs these with their algorithms")
        }
    };
    let fit = fit_k(k, scaled)?;
    let stability = match stability {
        Some(s) => s,
        None => measure_stability(k)?,
    };
    Ok(Outcome {
        fit,
        kept: None,
        stability: Some(stability),
        curves,
        warnings,
    })
}

fn dbscan(
    scaled: &Matrix,
    eps: Option<f64>,
    min_samples: Option<usize>,
) -> Result<Outcome, SegmentError> {
    // Twice the dimensions: the usual advice for min_samples (Schubert et al. 2017).
    let min_samples = min_samples.unwrap_or((2 * scaled.cols()).max(3));
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut curves = BTreeMap::new();
    let eps = match eps {
        Some(eps) => eps,
        None => {
            let s = suggest_eps(scaled, min_samples.min(scaled.rows()), EPS_SAMPLE, threads)?;
            curves.insert("k_distance".into(), Value::from(s.curve));
            curves.insert(
                "rule".into(),
                Value::from(format!(
                    "eps is the knee of the sorted distances of up to {EPS_SAMPLE} rows to their {min_samples}th nearest row (scaled units)"
                )),
            );
            s.eps
        }
    };
    curves.insert("eps".into(), eps.into());
    curves.insert("min_samples".into(), min_samples.into());
    let found = DbscanParams::new(eps, min_samples).fit(scaled)?;
    if found.clusters == 0 {
        return Err(SegmentError::NoCluster(format!(
            "DBSCAN found no cluster: all {} rows are noise at eps = {eps:.4} and min_samples = {min_samples}; raise eps or lower min_samples",
            scaled.rows()
        )));
    }
    let kept: Vec<usize> = (0..scaled.rows())
        .filter(|&i| found.labels[i].is_some())
        .collect();
    let labels = kept.iter().filter_map(|&i| found.labels[i]).collect();
    let fit = KMeans::from_labels(&scaled.select(&kept), labels, found.clusters)?;
    Ok(Outcome {
        fit,
        kept: (kept.len() < scaled.rows()).then_some(kept),
        stability: None,
        curves,
        warnings: Vec::new(),
    })
}
