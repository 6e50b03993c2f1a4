//! `persona cluster`: reads a feature table, scales it, clusters it and describes each
//! cluster in the units of the input.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, bail};
use persona_segment::matrix::squared_distance;
use persona_segment::prepare::PrepReport;
use persona_segment::{KMeans, Matrix, Model, Scaler, Scaling, metrics};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use crate::cli::ClusterArgs;

mod fit;
mod input;
mod report;

/// Features named per cluster.
const DISTINGUISHING: usize = 3;
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
    /// DBSCAN: rows in no cluster (labelled -1).
    noise: Option<usize>,
    calinski_harabasz: f64,
    davies_bouldin: f64,
    iterations: usize,
    /// Mean adjusted Rand index of refits on bootstrap resamples (1: perfectly stable); not
    /// for DBSCAN.
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
    /// Cohesion: the mean distance of the cluster's rows to its centre (scaled units).
    cohesion: f64,
    /// Separation: the distance from its centre to the nearest other centre (scaled units).
    separation: f64,
    /// Mean silhouette of its rows (of the sample, when the silhouette is sampled).
    silhouette: f64,
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let algorithm = fit::Algorithm::parse(&args)?;
    let scaling = match args.scale.as_str() {
        "minmax" => Scaling::MinMax,
        "zscore" => Scaling::ZScore,
        "robust" => Scaling::Robust,
        "none" => Scaling::None,
        other => bail!("--scale must be minmax, zscore, robust or none, got {other:?}"),
    };
    if args.model.is_some() && matches!(algorithm, fit::Algorithm::Dbscan { .. }) {
        bail!(
            "--model: DBSCAN has no centres to assign new customers to; use kmeans, minibatch-kmeans or hierarchical"
        );
    }
    let input::Features {
        preparation,
        report: prep_report,
        names: features,
        data: all_data,
    } = input::read(&args)?;
    let scaler = Scaler::fit(&all_data, scaling);
    let all_scaled = scaler.transform(&all_data);
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
        "{} on {} rows",
        args.algorithm,
        all_data.rows()
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let outcome = fit::run(&args, &algorithm, &all_scaled);
    spinner.finish_and_clear();
    let fit::Outcome {
        fit,
        kept,
        stability,
        curves,
    } = outcome?;
    let n = all_data.rows();
    // The rows in a cluster: all of them, or all but DBSCAN's noise.
    let (data, scaled) = match &kept {
        Some(rows) => (
            Cow::Owned(all_data.select(rows)),
            Cow::Owned(all_scaled.select(rows)),
        ),
        None => (Cow::Borrowed(&all_data), Cow::Borrowed(&all_scaled)),
    };
    let k = fit.centers.rows();
    let quality = quality(&scaled, &fit, args.seed)?;
    if k < 2 {
        eprintln!("warning: a single cluster; the quality metrics need two or more");
    }
    if let Some(stability) = stability
        && stability < fit::MIN_STABILITY
    {
        eprintln!(
            "warning: the clusters are unstable (bootstrap adjusted Rand index {stability:.2} < {}); k = {k} may not suit this data",
            fit::MIN_STABILITY
        );
    }
    let mut sizes = vec![0usize; k];
    for &l in &fit.labels {
        sizes[l] += 1;
    }
    let noise = kept.as_ref().map_or(0, |rows| n - rows.len());
    // The over-segmentation guard for a k given by hand (`auto` avoids such k itself).
    for (c, &size) in sizes.iter().enumerate() {
        if (size as f64) < fit::MIN_SHARE * n as f64 {
            eprintln!(
                "warning: cluster {c} holds {size} rows, under {:.0}% of the {n}; fewer clusters may serve better",
                fit::MIN_SHARE * 100.0
            );
        }
    }
    let mut centers = scaler.inverse(&fit.centers);
    for i in 0..centers.rows() {
        preparation.inverse_row(centers.row_mut(i));
    }
    let mut clusters = describe(&data, &fit.labels, &sizes, n, &features);
    for (c, (cohesion, separation, silhouette)) in clusters.iter_mut().zip(&quality.per_cluster) {
        (c.cohesion, c.separation, c.silhouette) = (*cohesion, *separation, *silhouette);
    }
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
        let mut at = fit.labels.iter();
        for i in 0..n {
            // DBSCAN's noise rows are not in `fit`: they are written as -1.
            match &kept {
                Some(rows) if rows.binary_search(&i).is_err() => writeln!(out, "-1")?,
                _ => writeln!(out, "{}", at.next().expect("a label per kept row"))?,
            }
        }
        out.flush()?;
    }
    let report = Report {
        algorithm: args.algorithm.clone(),
        k,
        rows: n,
        noise: kept.is_some().then_some(noise),
        scale: args.scale.clone(),
        preparation: prep_report,
        labels_path: args.output.as_ref().map(|p| p.display().to_string()),
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
            noise,
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
    if let Some(noise) = r.noise {
        println!(
            "  {noise} rows are noise, in no cluster (label -1); eps {}, min_samples {}",
            r.curves["eps"], r.curves["min_samples"]
        );
    }
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
            "cluster {}: {} ({} rows, {:.1}%; cohesion {:.3}, separation {:.3}, silhouette {:.3})",
            c.label,
            c.name,
            c.size,
            c.share * 100.0,
            c.cohesion,
            c.separation,
            c.silhouette
        );
    }
}

/// How well the clusters hold together and stand apart.
struct Quality {
    silhouette: f64,
    sampled: bool,
    /// Per cluster: cohesion, separation, mean silhouette.
    per_cluster: Vec<(f64, f64, f64)>,
}

/// The silhouette (on a seeded sample above [`fit::SILHOUETTE_SAMPLE`] rows), and each
/// cluster's cohesion, separation and mean silhouette.
fn quality(scaled: &Matrix, fit: &KMeans, seed: u64) -> anyhow::Result<Quality> {
    let k = fit.centers.rows();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let sampled = scaled.rows() > fit::SILHOUETTE_SAMPLE;
    let (rows, labels): (Cow<Matrix>, Vec<usize>) = if sampled {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let idx = sample(&mut rng, scaled.rows(), fit::SILHOUETTE_SAMPLE).into_vec();
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
        q.0 /= counts[c].0.max(1) as f64;
        q.2 /= counts[c].1.max(1) as f64;
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

/// Size, share and the features that set each cluster apart, with a name made of them.
fn describe(
    data: &Matrix,
    labels: &[usize],
    sizes: &[usize],
    total_rows: usize,
    features: &[String],
) -> Vec<ClusterSummary> {
    let d = data.cols();
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
                share: size as f64 / total_rows as f64,
                distinguishing: diffs,
                cohesion: f64::NAN,
                separation: f64::NAN,
                silhouette: f64::NAN,
            }
        })
        .collect()
}
