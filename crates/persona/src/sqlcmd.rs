//! `persona sql`: one statement over a running server's warehouse, printed as a table,
//! JSON or CSV.

use std::io::{Read, Write};

use anyhow::Context;
use hyper::Method;
use serde_json::{Map, Value, json};

use crate::admin::AdminClient;
use crate::cli::{SqlArgs, SqlFormat};

/// Widest a table cell is printed; longer values (JSON columns) are cut with `…`.
const MAX_CELL_CHARS: usize = 60;

pub async fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let query = if args.query == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the query from standard input")?;
        text
    } else {
        args.query
    };
    let api = AdminClient::new(&args.server)?;
    let mut body = Map::new();
    body.insert("query".into(), Value::String(query));
    if let Some(limit) = args.limit {
        body.insert("limit".into(), json!(limit));
    }
    let answer = api
        .call(Method::POST, "/v1/sql", Some(Value::Object(body)))
        .await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        SqlFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?,
        SqlFormat::Csv => csv(&answer, &mut out)?,
        SqlFormat::Table => {
            table(&answer, &mut out)?;
            let rows = answer["row_count"].as_u64().unwrap_or(0);
            let mut footer = format!(
                "({rows} row{}, {:.1} ms)",
                if rows == 1 { "" } else { "s" },
                answer["elapsed_ms"].as_f64().unwrap_or(0.0)
            );
            if answer["truncated"].as_bool() == Some(true) {
                footer.push_str("; more rows were cut: raise --limit or aggregate");
            }
            writeln!(out, "{footer}")?;
        }
    }
    Ok(())
}

fn names(answer: &Value) -> Vec<String> {
    answer["columns"]
        .as_array()
        .map(|columns| {
            columns
                .iter()
                .map(|c| c["name"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn rows(answer: &Value) -> impl Iterator<Item = &Vec<Value>> {
    answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
}

/// A value as a person reads it: text unquoted, NULL spelled out.
fn shown(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(answer: &Value, out: &mut impl Write) -> anyhow::Result<()> {
    let names = names(answer);
    let cells: Vec<Vec<String>> = rows(answer)
        .map(|row| row.iter().map(|v| cut(&shown(v))).collect())
        .collect();
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |values: &[String]| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(&names))?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "{}", rule.join("-+-"))?;
    for row in &cells {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

fn cut(text: &str) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= MAX_CELL_CHARS {
        return one_line;
    }
    let mut kept: String = one_line.chars().take(MAX_CELL_CHARS - 1).collect();
    kept.push('…');
    kept
}

fn csv(answer: &Value, out: &mut impl Write) -> anyhow::Result<()> {
    let mut writer = ::csv::Writer::from_writer(out);
    writer.write_record(names(answer))?;
    for row in rows(answer) {
        // NULL is an empty field, as most CSV readers take it.
        writer.write_record(row.iter().map(|v| match v {
            Value::Null => String::new(),
            other => shown(other),
        }))?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Value {
        json!({
            "columns": [{"name": "event", "type": "Utf8"}, {"name": "n", "type": "Int64"}],
            "rows": [["Order Completed", 3], [null, 12]],
            "row_count": 2, "truncated": false, "elapsed_ms": 1.5
        })
    }

    #[test]
    fn a_table_aligns_columns_and_spells_out_null() {
        let mut out = Vec::new();
        table(&answer(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "event           | n\n----------------+---\nOrder Completed | 3\nNULL            | 12\n"
        );
    }

    #[test]
    fn csv_has_a_header_and_empty_nulls() {
        let mut out = Vec::new();
        csv(&answer(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event,n\nOrder Completed,3\n,12\n"
        );
    }
}
