//! The feature table of `persona cluster`: columns read from CSV or Parquet, typed, and put
//! through a fitted [`Preparation`].

use std::collections::HashMap;

use anyhow::{Context, bail};
use persona_segment::prepare::{Impute, PrepOptions, PrepReport};
use persona_segment::{Column, Matrix, Preparation, Values};
use serde_json::Value;

use crate::cli::ClusterArgs;
use crate::table;

/// The prepared input: the fitted preparation, what it did, and the feature matrix in
/// prepared (not yet scaled) units.
pub struct Features {
    pub preparation: Preparation,
    pub report: PrepReport,
    pub names: Vec<String>,
    pub data: Matrix,
}

pub fn read(args: &ClusterArgs) -> anyhow::Result<Features> {
    let opts = options(args)?;
    let t = table::open(&args.input)?;
    let rows: Vec<table::Row> = t.rows.collect::<anyhow::Result<_>>()?;
    if rows.is_empty() {
        bail!("{} has no rows", args.input.display());
    }
    let numeric = |c: &str| rows.iter().all(|r| r.get(c).is_none_or(Value::is_number));
    for (flag, names) in [
        ("--features", &args.features),
        ("--categorical", &args.categorical),
    ] {
        if let Some(f) = names.iter().find(|f| !t.columns.contains(f)) {
            bail!(
                "{flag}: {} has no column {f:?}; its columns are: {}",
                args.input.display(),
                t.columns.join(", ")
            );
        }
    }
    let chosen: Vec<String> = if args.features.is_empty() {
        t.columns
            .iter()
            .filter(|c| args.categorical.contains(c) || numeric(c))
            .filter(|c| rows.iter().any(|r| r.get(*c).is_some()))
            .cloned()
            .collect()
    } else {
        args.features.clone()
    };
    if chosen.is_empty() {
        bail!(
            "{} has no numeric column to cluster on",
            args.input.display()
        );
    }
    // A column named in --features that holds numbers and some text is a data problem (a
    // stray "n/a"), not a category: say where, unless --categorical asks for categories.
    for name in &args.features {
        if args.categorical.contains(name) || numeric(name) {
            continue;
        }
        let has_number = rows
            .iter()
            .any(|r| r.get(name).is_some_and(Value::is_number));
        if let Some((i, v)) = rows
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.get(name).filter(|v| !v.is_number()).map(|v| (i, v)))
            .filter(|_| has_number)
        {
            bail!(
                "row {}: column {name:?} holds numbers, but here {v}; fix the cell, or name the column in --categorical",
                i + 1
            );
        }
    }
    let columns: Vec<Column> = chosen
        .iter()
        .map(|name| {
            let cell = |r: &table::Row| r.get(name).filter(|v| !v.is_null()).cloned();
            let values = if args.categorical.contains(name) || !numeric(name) {
                Values::Categorical(
                    rows.iter()
                        .map(|r| {
                            cell(r).map(|v| match v {
                                Value::String(s) => s,
                                other => other.to_string(),
                            })
                        })
                        .collect(),
                )
            } else {
                Values::Numeric(
                    rows.iter()
                        .map(|r| cell(r).and_then(|v| v.as_f64()))
                        .collect(),
                )
            };
            Column {
                name: name.clone(),
                values,
            }
        })
        .collect();
    let (preparation, report) = Preparation::fit(&columns, &opts)?;
    let data = preparation.transform(&columns)?;
    Ok(Features {
        names: preparation.feature_names(),
        preparation,
        report,
        data,
    })
}

fn options(args: &ClusterArgs) -> anyhow::Result<PrepOptions> {
    let mut impute = HashMap::new();
    for spec in &args.impute {
        let (column, rule) = spec
            .split_once('=')
            .with_context(|| format!("--impute: {spec:?} must be COLUMN=RULE"))?;
        let rule: Impute = rule
            .parse()
            .map_err(|e| anyhow::anyhow!("--impute {column}: {e}"))?;
        impute.insert(column.to_owned(), rule);
    }
    let log1p_auto = args.log1p.iter().any(|c| c == "auto");
    Ok(PrepOptions {
        impute,
        log1p: args
            .log1p
            .iter()
            .filter(|c| *c != "auto")
            .cloned()
            .collect(),
        log1p_auto,
    })
}
