//! `persona cluster`: reads a feature table, scales it, clusters it and describes each
//! cluster in the units of the input.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, bail};
use persona_segment::hierarchical::{Linkage, linkage};
use persona_segment::prepare::PrepReport;
use persona_segment::stability::bootstrap_stability;
use persona_segment::{
    KMeans, KMeansParams, KPoint, Matrix, Model, Scaler, Scaling, choose_k, metrics,
};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use crate::cli::ClusterArgs;
use crate::client::progress_bar;

mod input;
mod report;

/// Rows the silhouette is computed on; above this it is estimated on a seeded sample, as
/// the exact value costs time quadratic in rows.
const SILHOUETTE_SAMPLE: usize = 10_000;
/// Features named per cluster.
const DISTINGUISHING: usize = 3;
/// The over-segmentation guard: `--k auto` avoids a k with a cluster below this share.
const MIN_SHARE: f64 = 0.02;
/// Bootstrap refits for the stability figure, and the figure below which a warning is given.
const STABILITY_RESAMPLES: usize = 5;
const STABILITY_WARN: f64 = 0.75;

#[derive(Serialize)]
struct Report {
    algorithm: String,
    k: usize,
    rows: usize,
    features: Vec<String>,
    scale: String,
    /// Missing values filled, log1p and one-hot encoding, per column.
    preparation: PrepReport,
    labels_path: Option<String>,
    inertia: f64,
    silhouette: f64,
    silhouette_sampled: bool,
    calinski_harabasz: f64,
    davies_bouldin: f64,
    iterations: usize,
    /// Mean adjusted Rand index of refits on bootstrap resamples (1: perfectly stable);
    /// K-Means only so far.
    stability: Option<f64>,
    sizes: Vec<usize>,
    /// Cluster centres in the input's units.
    centers: Vec<BTreeMap<String, f64>>,
    curves: BTreeMap<String, Value>,
    clusters: Vec<ClusterSummary>,
}

/// What `--model` writes: the model and the name of each of its clusters.
#[derive(Serialize)]
struct StoredModel<'a> {
    algorithm: &'a str,
    names: Vec<&'a str>,
    model: Model,
}

#[derive(Serialize)]
struct ClusterSummary {
    label: usize,
    name: String,
    size: usize,
    share: f64,
    /// Standardised difference of the cluster's mean from the overall mean, largest first.
    distinguishing: Vec<(String, f64)>,
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let hierarchical = match args.algorithm.as_str() {
        "kmeans" => false,
        "hierarchical" => true,
        "minibatch-kmeans" | "dbscan" => bail!(
            "--algorithm {}: not available yet (kmeans and hierarchical are)",
            args.algorithm
        ),
        other => bail!(
            "--algorithm must be kmeans, minibatch-kmeans, hierarchical or dbscan, got {other:?}"
        ),
    };
    let method = match args.linkage.as_str() {
        "ward" => Linkage::Ward,
        "complete" => Linkage::Complete,
        "average" => Linkage::Average,
        "single" => Linkage::Single,
        other => bail!("--linkage must be ward, complete, average or single, got {other:?}"),
    };
    let auto = args.k == "auto";
    if auto && hierarchical {
        bail!("--k auto works with --algorithm kmeans so far; give a number for hierarchical");
    }
    let fixed_k: Option<usize> = match args.k.parse() {
        Ok(k) => Some(k),
        Err(_) if auto => None,
        Err(_) => bail!("--k must be a whole number or auto, got {:?}", args.k),
    };
    let scaling = match args.scale.as_str() {
        "minmax" => Scaling::MinMax,
        "zscore" => Scaling::ZScore,
        "robust" => Scaling::Robust,
        "none" => Scaling::None,
        other => bail!("--scale must be minmax, zscore, robust or none, got {other:?}"),
    };
    let input::Features {
        preparation,
        report: prep_report,
        names: features,
        data,
    } = input::read(&args)?;
    let scaler = Scaler::fit(&data, scaling);
    let scaled = scaler.transform(&data);
    let fit_k = |k: usize| {
        KMeansParams::new(k)
            .n_init(args.n_init)
            .seed(args.seed)
            .fit(&scaled)
    };
    let mut curves = BTreeMap::new();
    let k = match fixed_k {
        Some(k) => k,
        None => {
            let bar = progress_bar((args.k_max.saturating_sub(1)) as u64, "trying k");
            let choice = choose_k(
                &scaled,
                2..=args.k_max,
                fit_k,
                SILHOUETTE_SAMPLE,
                MIN_SHARE,
                args.seed,
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
            curves.insert("elbow_k".into(), choice.elbow.into());
            curves.insert(
                "rule".into(),
                format!(
                    "highest silhouette among k whose smallest cluster holds at least {:.0}% of rows; silhouettes within {} of the best are tied, and the highest Calinski-Harabasz breaks the tie",
                    MIN_SHARE * 100.0,
                    persona_segment::select_k::SILHOUETTE_TIE
                )
                .into(),
            );
            if choice.guarded_out {
                eprintln!(
                    "warning: every k from 2 to {} has a cluster under {:.0}% of the rows; taking k = {}",
                    args.k_max,
                    MIN_SHARE * 100.0,
                    choice.k
                );
            }
            choice.k
        }
    };
    let fit = if hierarchical {
        let labels = linkage(&scaled, method)?.cut(k)?;
        KMeans::from_labels(&scaled, labels, k)?
    } else {
        KMeansParams::new(k)
            .n_init(args.n_init)
            .seed(args.seed)
            .fit(&scaled)
            .context("K-Means")?
    };
    let n = data.rows();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let (silhouette, sampled) = if n > SILHOUETTE_SAMPLE {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let idx = sample(&mut rng, n, SILHOUETTE_SAMPLE).into_vec();
        let labels: Vec<usize> = idx.iter().map(|&i| fit.labels[i]).collect();
        (
            metrics::silhouette(&scaled.select(&idx), &labels, threads)?,
            true,
        )
    } else {
        (metrics::silhouette(&scaled, &fit.labels, threads)?, false)
    };
    // Bootstrap stability on at most 20,000 rows (each resample is a refit).
    let stability_rows = if n > 20_000 {
        scaled.select(&sample(&mut ChaCha8Rng::seed_from_u64(args.seed ^ 1), n, 20_000).into_vec())
    } else {
        scaled.clone()
    };
    let stability = if hierarchical {
        None
    } else {
        Some(bootstrap_stability(
            &stability_rows,
            |m| {
                KMeansParams::new(k)
                    .n_init(args.n_init)
                    .seed(args.seed)
                    .fit(m)
            },
            STABILITY_RESAMPLES,
            args.seed,
        )?)
    };
    if let Some(stability) = stability
        && stability < STABILITY_WARN
    {
        eprintln!(
            "warning: the clusters are unstable (bootstrap adjusted Rand index {stability:.2} < {STABILITY_WARN}); k = {k} may not suit this data"
        );
    }
    let mut sizes = vec![0usize; k];
    for &l in &fit.labels {
        sizes[l] += 1;
    }
    let mut centers = scaler.inverse(&fit.centers);
    for i in 0..centers.rows() {
        preparation.inverse_row(centers.row_mut(i));
    }
    let clusters = describe(&data, &fit.labels, &sizes, &features);
    if let Some(path) = &args.model {
        let stored = StoredModel {
            algorithm: &args.algorithm,
            names: clusters.iter().map(|c| c.name.as_str()).collect(),
            model: Model::new(preparation.clone(), scaler.clone(), &fit),
        };
        std::fs::write(path, serde_json::to_vec_pretty(&stored)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.output {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        writeln!(out, "label")?;
        for l in &fit.labels {
            writeln!(out, "{l}")?;
        }
        out.flush()?;
    }
    let report = Report {
        algorithm: args.algorithm.clone(),
        k,
        rows: n,
        scale: args.scale.clone(),
        preparation: prep_report,
        labels_path: args.output.as_ref().map(|p| p.display().to_string()),
        inertia: fit.inertia,
        silhouette,
        silhouette_sampled: sampled,
        calinski_harabasz: metrics::calinski_harabasz(&scaled, &fit.labels)?,
        davies_bouldin: metrics::davies_bouldin(&scaled, &fit.labels)?,
        iterations: fit.iterations,
        stability,
        centers: centers
            .iter_rows()
            .map(|c| features.iter().cloned().zip(c.iter().copied()).collect())
            .collect(),
        sizes,
        curves,
        clusters,
        features,
    };
    if let Some(path) = &args.report {
        let page = report::render(&report::ReportInput {
            title: format!("persona cluster: {}", args.input.display()),
            summary: format!(
                "{} with k = {} on {} rows and {} features ({} scaling): silhouette {:.3}, Calinski-Harabasz {:.1}, Davies-Bouldin {:.3}.",
                report.algorithm,
                report.k,
                report.rows,
                report.features.len(),
                report.scale,
                report.silhouette,
                report.calinski_harabasz,
                report.davies_bouldin
            ),
            features: &report.features,
            curves: &report.curves,
            chosen_k: report.k,
            clusters: report
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.size))
                .collect(),
            data: &data,
            scaled: &scaled,
            labels: &fit.labels,
            centers: &centers,
        });
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "{}, k = {}, {} rows, {} features ({} scaling): inertia {:.4}, silhouette {:.4}{}, Calinski-Harabasz {:.2}, Davies-Bouldin {:.4}, {} iterations{}",
        r.algorithm,
        r.k,
        r.rows,
        r.features.len(),
        r.scale,
        r.inertia,
        r.silhouette,
        if r.silhouette_sampled {
            " (sampled)"
        } else {
            ""
        },
        r.calinski_harabasz,
        r.davies_bouldin,
        r.iterations,
        r.stability
            .map_or_else(String::new, |s| format!(", stability {s:.2}"))
    );
    for (name, n, fill) in &r.preparation.imputed {
        println!("  {n} missing values of {name} filled with its {fill}");
    }
    if !r.preparation.log1p.is_empty() {
        println!("  ln(1 + x) applied to {}", r.preparation.log1p.join(", "));
    }
    for (name, n) in &r.preparation.one_hot {
        println!("  {name} one-hot encoded into {n} columns");
    }
    if let Some(Value::Array(ks)) = r.curves.get("k") {
        println!(
            "{:>4} {:>14} {:>11} {:>18} {:>15}",
            "k", "inertia", "silhouette", "Calinski-Harabasz", "Davies-Bouldin"
        );
        for (i, k) in ks.iter().enumerate() {
            let v = |name: &str| r.curves[name][i].as_f64().unwrap_or(f64::NAN);
            println!(
                "{k:>4} {:>14.4} {:>11.4} {:>18.2} {:>15.4}",
                v("inertia"),
                v("silhouette"),
                v("calinski_harabasz"),
                v("davies_bouldin")
            );
        }
        println!(
            "chosen k = {} ({}); elbow of the inertia curve: {}",
            r.k,
            r.curves["rule"].as_str().unwrap_or(""),
            r.curves["elbow_k"]
        );
    }
    for c in &r.clusters {
        println!(
            "cluster {}: {} ({} rows, {:.1}%)",
            c.label,
            c.name,
            c.size,
            c.share * 100.0
        );
    }
}

/// Size, share and the features that set each cluster apart, with a name made of them.
fn describe(
    data: &Matrix,
    labels: &[usize],
    sizes: &[usize],
    features: &[String],
) -> Vec<ClusterSummary> {
    let (n, d) = (data.rows(), data.cols());
    let z = Scaler::fit(data, Scaling::ZScore);
    let (_, means) = metrics::cluster_means(data, labels, sizes.len());
    means
        .iter()
        .enumerate()
        .map(|(label, mean)| {
            let size = sizes[label];
            let mut diffs: Vec<(String, f64)> = (0..d)
                .map(|j| (features[j].clone(), (mean[j] - z.offset[j]) / z.scale[j]))
                .collect();
            diffs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            diffs.truncate(DISTINGUISHING);
            let name = diffs
                .iter()
                .filter(|(_, v)| v.abs() >= 0.25)
                .map(|(f, v)| format!("{} {f}", if *v > 0.0 { "high" } else { "low" }))
                .collect::<Vec<_>>()
                .join(", ");
            ClusterSummary {
                label,
                name: if name.is_empty() {
                    "average".into()
                } else {
                    name
                },
                size,
                share: size as f64 / n as f64,
                distinguishing: diffs,
            }
        })
        .collect()
}
