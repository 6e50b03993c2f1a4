//! The feature table of `persona cluster`: columns read from CSV or Parquet and typed.

use anyhow::bail;
use persona_segment::{Column, Values};
use serde_json::Value;

use crate::cli::ClusterArgs;
use crate::table;

/// The chosen columns, numeric or categorical.
pub fn read(args: &ClusterArgs) -> anyhow::Result<Vec<Column>> {
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
    Ok(columns)
}
