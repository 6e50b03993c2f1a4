//! The feature table of `persona cluster`: columns read from CSV or Parquet and typed.

use anyhow::bail;
use persona_segment::{Column, Values};
use serde_json::Value;

use crate::cli::ClusterArgs;
use crate::say::say;
use crate::table;

/// What `cluster` reads: the chosen columns, numeric or categorical, and each row's value
/// of the `--id` column, when one is named (empty where the cell is).
pub struct Input {
    pub columns: Vec<Column>,
    pub ids: Option<Vec<String>>,
}

pub fn read(args: &ClusterArgs) -> anyhow::Result<Input> {
    let t = table::open(&args.input, table::NonFinite::Text)?;
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
        if let Some((j, i)) = table::first_repeat(names) {
            bail!(
                "{flag}: {:?} is named twice (names {} and {})",
                names[i],
                j + 1,
                i + 1
            );
        }
    }
    if let Some(id) = &args.id {
        if !t.columns.contains(id) {
            bail!(
                "--id: {} has no column {id:?}; its columns are: {}",
                args.input.display(),
                t.columns.join(", ")
            );
        }
        if args.features.contains(id) || args.categorical.contains(id) {
            bail!("--id: {id:?} identifies rows, so it cannot also be a feature");
        }
    }
    if !args.features.is_empty()
        && let Some(c) = args.categorical.iter().find(|c| !args.features.contains(c))
    {
        bail!(
            "--categorical: {c:?} is not among --features, so it would not be used; add it there"
        );
    }
    let chosen: Vec<String> = if args.features.is_empty() {
        t.columns
            .iter()
            .filter(|c| args.id.as_ref() != Some(*c))
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
    if args.features.is_empty() {
        for name in chosen.iter().filter(|c| looks_like_an_id(c, &rows)) {
            say!(
                "warning: column {name:?} looks like an identifier (a whole number, different in every row) and is clustered on as a feature; name it in --id to leave it out and have it written beside each label"
            );
        }
    }
    for name in &chosen {
        if let Some((i, v)) = first_cell(&rows, name, |v| v.is_array() || v.is_object()) {
            bail!(
                "row {i}: column {name:?} holds a list or a record ({v}), which cannot be a feature; flatten it into numbers first"
            );
        }
    }
    // A column that holds numbers and some text is a data problem (a stray "n/a"), not a
    // category: say where, unless --categorical asks for categories. Without --features,
    // every column that is mostly numbers is looked at, since one bad cell would otherwise
    // leave it out without a word (a text column with a number-like cell, a name "1984",
    // is left out, with a warning).
    let looked_at: Vec<&String> = if args.features.is_empty() {
        let mut mostly_numbers = Vec::new();
        for c in t
            .columns
            .iter()
            .filter(|c| !args.categorical.contains(c) && args.id.as_ref() != Some(*c))
        {
            let numbers = rows
                .iter()
                .filter(|r| r.get(c).is_some_and(Value::is_number))
                .count();
            let cells = rows.iter().filter(|r| r.get(c).is_some()).count();
            if 2 * numbers > cells {
                mostly_numbers.push(c);
            } else if numbers > 0 {
                say!(
                    "warning: column {c:?} holds some numbers but mostly text, and is left out; name it in --features to have each bad cell shown, or in --categorical to use it as categories"
                );
            }
        }
        mostly_numbers
    } else {
        args.features.iter().collect()
    };
    for name in looked_at
        .into_iter()
        .filter(|c| !args.categorical.contains(c))
    {
        if first_cell(&rows, name, Value::is_number).is_none() {
            continue;
        }
        if let Some((i, v)) = first_cell(&rows, name, |v| !v.is_number()) {
            let or = if args.features.is_empty() {
                "or choose the columns to use with --features"
            } else {
                "or name the column in --categorical"
            };
            bail!(
                "row {i}: column {name:?} holds both numbers and text (here {v}); fix the cell (an empty one is imputed), {or}"
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
    let ids = args.id.as_ref().map(|id| {
        rows.iter()
            .map(|r| match r.get(id) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            })
            .collect()
    });
    Ok(Input { columns, ids })
}

/// The first row (numbered from 1) whose cell in `column` passes `test`, with the cell.
fn first_cell<'r>(
    rows: &'r [table::Row],
    column: &str,
    test: impl Fn(&Value) -> bool,
) -> Option<(usize, &'r Value)> {
    rows.iter()
        .enumerate()
        .find_map(|(i, r)| r.get(column).filter(|v| test(v)).map(|v| (i + 1, v)))
}

/// A column named like an id (`id`, `customer_id`, `userId`) holding a different whole
/// number in every row: a key, which would split customers by their number.
fn looks_like_an_id(column: &str, rows: &[table::Row]) -> bool {
    let name = column.to_ascii_lowercase();
    if !(name == "id" || name.ends_with("_id") || column.ends_with("Id")) {
        return false;
    }
    let mut seen = std::collections::HashSet::new();
    rows.iter().all(|r| match r.get(column) {
        Some(Value::Number(n)) => n.as_i64().is_some_and(|i| seen.insert(i)),
        _ => false,
    })
}
