//! The clustering step of `persona cluster`: the algorithm named on the command line, k
//! given or chosen, and the bootstrap stability of the result.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use persona_segment::dbscan::suggest_eps;
use persona_segment::hierarchical::{Linkage, linkage};
use persona_segment::kmeans;
use persona_segment::select_k::{KRules, SILHOUETTE_TIE};
use persona_segment::stability::bootstrap_stability;
use persona_segment::{
    DbscanParams, KMeans, KMeansParams, KPoint, Matrix, MiniBatchParams, SegmentError, choose_k,
};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::cli::ClusterArgs;
use crate::client::progress_bar;

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

/// The algorithm and its own settings.
pub enum Algorithm {
    KMeans,
    MiniBatch,
    Hierarchical(Linkage),
    Dbscan {
        eps: Option<f64>,
        min_samples: Option<usize>,
    },
}

impl Algorithm {
    pub fn parse(args: &ClusterArgs) -> anyhow::Result<Algorithm> {
        let algorithm = match args.algorithm.as_str() {
            "kmeans" => Algorithm::KMeans,
            "minibatch-kmeans" => Algorithm::MiniBatch,
            "hierarchical" => Algorithm::Hierarchical(match args.linkage.as_str() {
                "ward" => Linkage::Ward,
                "complete" => Linkage::Complete,
                "average" => Linkage::Average,
                "single" => Linkage::Single,
                other => {
                    bail!("--linkage must be ward, complete, average or single, got {other:?}")
                }
            }),
            "dbscan" => Algorithm::Dbscan {
                eps: match args.eps.as_deref() {
                    None | Some("auto") => None,
                    Some(v) => Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|e| e.is_finite() && *e > 0.0)
                            .with_context(|| {
                                format!("--eps must be a positive number or auto, got {v:?}")
                            })?,
                    ),
                },
                min_samples: args.min_samples,
            },
            other => bail!(
                "--algorithm must be kmeans, minibatch-kmeans, hierarchical or dbscan, got {other:?}"
            ),
        };
        if args.cut_height.is_some() && !matches!(algorithm, Algorithm::Hierarchical(_)) {
            bail!("--cut-height applies to --algorithm hierarchical only");
        }
        if let Some(h) = args.cut_height
            && !(h.is_finite() && h >= 0.0)
        {
            bail!("--cut-height must be a number of at least 0, got {h}");
        }
        match (&algorithm, &args.k) {
            (Algorithm::Hierarchical(_), None) if args.cut_height.is_some() => {}
            (Algorithm::Dbscan { .. }, Some(_)) => {
                bail!("--k does not apply to dbscan, which finds the number of clusters itself")
            }
            (Algorithm::Dbscan { .. }, None) => {}
            (_, None) => bail!("--k is required for --algorithm {}", args.algorithm),
            (_, Some(k)) if k == "auto" || k.parse::<usize>().is_ok() => {}
            (_, Some(k)) => bail!("--k must be a whole number or auto, got {k:?}"),
        }
        if args.min_samples.is_some() && !matches!(algorithm, Algorithm::Dbscan { .. }) {
            bail!("--min-samples applies to --algorithm dbscan only");
        }
        Ok(algorithm)
    }
}

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
}

pub fn run(args: &ClusterArgs, algorithm: &Algorithm, scaled: &Matrix) -> anyhow::Result<Outcome> {
    if let Algorithm::Dbscan { eps, min_samples } = algorithm {
        return dbscan(scaled, *eps, *min_samples);
    }
    let variant = match args.kmeans_variant.as_str() {
        "hamerly" => kmeans::Algorithm::Hamerly,
        "lloyd" => kmeans::Algorithm::Lloyd,
        other => bail!("--kmeans-variant must be hamerly or lloyd, got {other:?}"),
    };
    // A hierarchical tree is built once and cut at every k tried.
    let tree = match algorithm {
        Algorithm::Hierarchical(method) => Some(linkage(scaled, *method)?),
        _ => None,
    };
    if let (Some(tree), Some(height)) = (&tree, args.cut_height) {
        let (labels, k) = tree.cut_at(height);
        let fit = KMeans::from_labels(scaled, labels, k)?;
        return Ok(Outcome {
            fit,
            kept: None,
            stability: None,
            curves: BTreeMap::from([("cut_height".into(), height.into())]),
        });
    }
    let fit_k = |k: usize, m: &Matrix| -> Result<KMeans, SegmentError> {
        match algorithm {
            Algorithm::MiniBatch => MiniBatchParams::new(k).seed(args.seed).fit(m),
            Algorithm::Hierarchical(method) => {
                let labels = match &tree {
                    // The tree is of `scaled` itself, not of a resample of it.
                    Some(t) if std::ptr::eq(m, scaled) => t.cut(k)?,
                    _ => linkage(m, *method)?.cut(k)?,
                };
                KMeans::from_labels(m, labels, k)
            }
            _ => KMeansParams::new(k)
                .algorithm(variant)
                .n_init(args.n_init)
                .seed(args.seed)
                .fit(m),
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
            scaled
                .select(&sample(&mut ChaCha8Rng::seed_from_u64(args.seed ^ 1), n, limit).into_vec())
        } else {
            scaled.clone()
        }
    };
    let measure_stability = |k: usize| {
        bootstrap_stability(
            &stability_rows,
            |m| fit_k(k, m),
            STABILITY_RESAMPLES,
            args.seed,
        )
    };
    let mut curves = BTreeMap::new();
    let requested = args.k.as_deref().unwrap_or("auto");
    let (k, stability) = match requested.parse::<usize>() {
        Ok(k) => (k, None),
        Err(_) => {
            let bar = progress_bar((args.k_max.saturating_sub(1)) as u64, "trying k");
            let rules = KRules {
                silhouette_rows: SILHOUETTE_SAMPLE,
                min_share: MIN_SHARE,
                min_stability: MIN_STABILITY,
                seed: args.seed,
            };
            let choice = choose_k(
                scaled,
                2..=args.k_max,
                |k| fit_k(k, scaled),
                &measure_stability,
                &rules,
                |_| bar.inc(1),
            )?;
            bar.finish_and_clear();
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
                eprintln!(
                    "warning: no k from 2 to {} keeps every cluster above {:.0}% of the rows with a stability of at least {MIN_STABILITY}; taking k = {} by silhouette alone",
                    args.k_max,
                    MIN_SHARE * 100.0,
                    choice.k
                );
            }
            let measured = choice
                .curve
                .iter()
                .find(|p| p.k == choice.k)
                .and_then(|p| p.stability);
            (choice.k, measured)
        }
    };
    let fit = fit_k(k, scaled).context(args.algorithm.clone())?;
    let stability = match stability {
        Some(s) => s,
        None => measure_stability(k)?,
    };
    Ok(Outcome {
        fit,
        kept: None,
        stability: Some(stability),
        curves,
    })
}

fn dbscan(
    scaled: &Matrix,
    eps: Option<f64>,
    min_samples: Option<usize>,
) -> anyhow::Result<Outcome> {
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
        bail!(
            "DBSCAN found no cluster: all {} rows are noise at eps = {eps:.4} and min_samples = {min_samples}; raise --eps or lower --min-samples",
            scaled.rows()
        );
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
    })
}
