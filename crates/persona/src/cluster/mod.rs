//! `persona cluster`: reads a feature table and runs [`persona_segment::pipeline`] on it:
//! prepared, scaled, clustered and described in the units of the input.

use std::io::Write;

use anyhow::Context;
use persona_segment::Model;
use persona_segment::pipeline::{self, NumberOr, Summary, TrainSpec};
use serde::Serialize;
use serde_json::Value;

use crate::cli::ClusterArgs;
use crate::client::progress_bar;

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
        linkage: args.linkage.clone(),
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
    let columns = input::read(&args)?;
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
        eprintln!("warning: {w}");
    }
    if let Some(path) = &args.model {
        let stored = StoredModel {
            algorithm: &args.algorithm,
            names: summary.clusters.iter().map(|c| c.name.as_str()).collect(),
            model: trained.model().expect("checked: the algorithm has centres"),
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
        let mut at = trained.fit.labels.iter();
        for i in 0..rows {
            // DBSCAN's noise rows are not in `fit`: they are written as -1.
            match &trained.kept {
                Some(kept) if kept.binary_search(&i).is_err() => writeln!(out, "-1")?,
                _ => writeln!(out, "{}", at.next().expect("a label per kept row"))?,
            }
        }
        out.flush()?;
    }
    if let Some(path) = &args.report {
        let page = report::render(&report::ReportInput {
            title: format!("persona cluster: {}", args.input.display()),
            summary: format!(
                "{} with k = {} on {} rows and {} features ({} scaling): silhouette {:.3}, Calinski-Harabasz {:.1}, Davies-Bouldin {:.3}.",
                summary.algorithm,
                summary.k,
                summary.rows,
                summary.features.len(),
                summary.scale,
                summary.silhouette,
                summary.calinski_harabasz,
                summary.davies_bouldin
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
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        let report = Report {
            summary,
            labels_path: args.output.as_ref().map(|p| p.display().to_string()),
        };
        crate::say::print_json(&report)?;
    } else {
        print_table(summary);
    }
    Ok(())
}

fn print_table(r: &Summary) {
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
