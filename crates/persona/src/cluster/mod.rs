//! `persona cluster`: reads a feature table and runs [`persona_segment::pipeline`] on it:
//! prepared, scaled, clustered and described in the units of the input.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use persona_segment::Model;
use persona_segment::pipeline::{self, NumberOr, Summary, TrainSpec};
use serde::Serialize;
use serde_json::Value;

use crate::cli::ClusterArgs;
use crate::client::progress_bar;
use crate::paths::same_file;
use crate::say::{self, say};

mod input;
mod report;

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    labels_path: Option<String>,
}

/// What `--model` writes: the model and the name of each of its clusters.
#[derive(Serialize)]
struct StoredModel<'a> {
    algorithm: &'a str,
    names: Vec<&'a str>,
    model: Model,
}

/// The flags as training settings; a bad one is named by its flag.
fn spec(args: &ClusterArgs) -> anyhow::Result<TrainSpec> {
    let spec = TrainSpec {
        features: args.features.clone(),
        categorical: args.categorical.clone(),
        impute: args.impute.clone(),
        log1p: args.log1p.clone(),
        algorithm: args.algorithm.clone(),
        linkage: args.linkage.clone().unwrap_or_else(|| "ward".into()),
        k: args.k.clone().map(NumberOr::Word),
        kmeans_variant: args.kmeans_variant.clone(),
        cut_height: args.cut_height,
        eps: args.eps.clone().map(NumberOr::Word),
        min_samples: args.min_samples,
        k_max: args.k_max,
        scale: args.scale.clone(),
        seed: args.seed,
        n_init: args.n_init,
    };
    if args.linkage.is_some() && args.algorithm != "hierarchical" {
        bail!("--linkage applies to the hierarchical algorithm only");
    }
    let plan = spec
        .plan()
        .map_err(|e| anyhow::anyhow!("--{} {}", e.field.replace('_', "-"), e.reason))?;
    if args.model.is_some() && !plan.assigns() {
        anyhow::bail!(
            "--model: DBSCAN has no centres to assign new customers to; use kmeans, minibatch-kmeans or hierarchical"
        );
    }
    Ok(spec)
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let spec = spec(&args)?;
    let outputs = outputs(&args)?;
    let input::Input { columns, ids } = input::read(&args)?;
    let rows = columns.first().map_or(0, |c| c.values.len());
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("{} on {rows} rows", args.algorithm));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut bar: Option<indicatif::ProgressBar> = None;
    let trained = pipeline::train(&columns, &spec, &mut |done, total| {
        bar.get_or_insert_with(|| progress_bar(total as u64, "trying k"))
            .set_position(done as u64);
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    spinner.finish_and_clear();
    let trained = trained.context(args.algorithm.clone())?;
    let summary = &trained.summary;
    for w in &summary.warnings {
        say!("warning: {w}");
    }
    // Every file is made in memory first, so that a failure leaves none of them half-made.
    let mut files: Vec<(&Path, Vec<u8>)> = Vec::new();
    if let Some(path) = &args.model {
        let stored = StoredModel {
            algorithm: &args.algorithm,
            names: summary.clusters.iter().map(|c| c.name.as_str()).collect(),
            model: trained.model().expect("checked: the algorithm has centres"),
        };
        files.push((path, serde_json::to_vec_pretty(&stored)?));
    }
    if let Some(path) = &args.output {
        // CSV-quoted: an id may hold a comma or a quote.
        let mut out = csv::Writer::from_writer(Vec::with_capacity(rows * 3 + 6));
        match &args.id {
            Some(id) => out.write_record([id.as_str(), "label"])?,
            None => out.write_record(["label"])?,
        }
        let mut at = trained.fit.labels.iter();
        for i in 0..rows {
            // DBSCAN's noise rows are not in `fit`: they are written as -1.
            let label = match &trained.kept {
                Some(kept) if kept.binary_search(&i).is_err() => "-1".to_owned(),
                _ => at.next().expect("a label per kept row").to_string(),
            };
            match &ids {
                Some(ids) => out.write_record([ids[i].as_str(), &label])?,
                None => out.write_record([label])?,
            }
        }
        files.push((path, out.into_inner().map_err(|e| e.into_error())?));
    }
    if let Some(path) = &args.report {
        let page = report::render(&report::ReportInput {
            title: format!("persona cluster: {}", args.input.display()),
            summary: format!(
                "{} with k = {} on {} rows and {} features ({} scaling): silhouette {}, Calinski-Harabasz {}, Davies-Bouldin {}.",
                summary.algorithm,
                summary.k,
                summary.rows,
                summary.features.len(),
                summary.scale,
                shown(summary.silhouette, 3),
                shown(summary.calinski_harabasz, 1),
                shown(summary.davies_bouldin, 3)
            ),
            features: &summary.features,
            curves: &summary.curves,
            chosen_k: summary.k,
            clusters: summary
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.size))
                .collect(),
            noise: summary.noise.unwrap_or(0),
            data: &trained.data,
            scaled: &trained.scaled,
            labels: &trained.fit.labels,
            centers: &trained.centers,
        });
        files.push((path, page.into_bytes()));
    }
    debug_assert_eq!(files.len(), outputs);
    for (path, bytes) in files {
        write_whole(path, &bytes)?;
    }
    if args.json {
        let report = Report {
            summary,
            labels_path: args.output.as_ref().map(|p| p.display().to_string()),
        };
        say::print_json(&report)
    } else {
        say::print_with(|out| print_table(summary, out))
    }
}

/// Checks the output files before training rather than after it, which may be long:
/// each one's folder exists, none is a folder, the input or another output. Returns how
/// many there are.
fn outputs(args: &ClusterArgs) -> anyhow::Result<usize> {
    let named = [
        ("--output", &args.output),
        ("--report", &args.report),
        ("--model", &args.model),
    ];
    let mut seen: Vec<(&str, &Path)> = vec![("--input", &args.input)];
    for (flag, path) in named {
        let Some(path) = path else { continue };
        if path.is_dir() {
            bail!("{flag}: {} is a folder; name a file in it", path.display());
        }
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !folder.is_dir() {
            bail!(
                "{flag}: the folder {} does not exist, so {} cannot be written",
                folder.display(),
                path.display()
            );
        }
        if let Some((other, _)) = seen.iter().find(|(_, p)| same_file(p, path)) {
            bail!("{flag}: {} is also the file of {other}", path.display());
        }
        seen.push((flag, path));
    }
    Ok(seen.len() - 1)
}

/// Writes `bytes` to a file beside `path` and renames it over `path`, so that the file is
/// either the old one or the whole new one.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".partial-{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// A metric with `decimals` decimals, or `n/a` where it is undefined (the silhouette of one
/// cluster, the separation of a cluster with no neighbour).
fn shown(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "n/a".to_owned()
    }
}

fn print_table(r: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{}, k = {}, {} rows, {} features ({} scaling): inertia {}, silhouette {}{}, Calinski-Harabasz {}, Davies-Bouldin {}, {} iterations{}",
        r.algorithm,
        r.k,
        r.rows,
        r.features.len(),
        r.scale,
        shown(r.inertia, 4),
        shown(r.silhouette, 4),
        if r.silhouette_sampled {
            " (sampled)"
        } else {
            ""
        },
        shown(r.calinski_harabasz, 2),
        shown(r.davies_bouldin, 4),
        r.iterations,
        r.stability
            .map_or_else(String::new, |s| format!(", stability {s:.2}"))
    )?;
    if let Some(noise) = r.noise {
        writeln!(
            out,
            "  {noise} rows are noise, in no cluster (label -1); eps {}, min_samples {}",
            r.curves["eps"], r.curves["min_samples"]
        )?;
    }
    for (name, n, fill) in &r.preparation.imputed {
        writeln!(out, "  {n} missing values of {name} filled with its {fill}")?;
    }
    if !r.preparation.log1p.is_empty() {
        writeln!(
            out,
            "  ln(1 + x) applied to {}",
            r.preparation.log1p.join(", ")
        )?;
    }
    for (name, n) in &r.preparation.one_hot {
        writeln!(out, "  {name} one-hot encoded into {n} columns")?;
    }
    if let Some(Value::Array(ks)) = r.curves.get("k") {
        writeln!(
            out,
            "{:>4} {:>14} {:>11} {:>18} {:>15}",
            "k", "inertia", "silhouette", "Calinski-Harabasz", "Davies-Bouldin"
        )?;
        for (i, k) in ks.iter().enumerate() {
            let v = |name: &str, decimals| {
                shown(r.curves[name][i].as_f64().unwrap_or(f64::NAN), decimals)
            };
            writeln!(
                out,
                "{k:>4} {:>14} {:>11} {:>18} {:>15}",
                v("inertia", 4),
                v("silhouette", 4),
                v("calinski_harabasz", 2),
                v("davies_bouldin", 4)
            )?;
        }
        writeln!(
            out,
            "chosen k = {} ({}); elbow of the inertia curve: {}",
            r.k,
            r.curves["rule"].as_str().unwrap_or(""),
            r.curves["elbow_k"]
        )?;
    }
    for c in &r.clusters {
        writeln!(
            out,
            "cluster {}: {} ({} rows, {:.1}%; cohesion {}, separation {}, silhouette {})",
            c.label,
            c.name,
            c.size,
            c.share * 100.0,
            shown(c.cohesion, 3),
            shown(c.separation, 3),
            shown(c.silhouette, 3)
        )?;
    }
    Ok(())
}
