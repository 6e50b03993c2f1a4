//! Rows of a CSV or Parquet file as JSON objects, for `import-profiles` and `cluster`.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Number, Value};

/// One row: column name → value; empty CSV cells and Parquet nulls are left out.
pub type Row = Map<String, Value>;

/// A table file opened for reading rows.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Box<dyn Iterator<Item = anyhow::Result<Row>>>,
    /// Rows in the file, where cheap to know (Parquet's footer), for a progress bar.
    pub len: Option<u64>,
}

/// What a Parquet NaN or infinity reads as, which JSON has no number for.
#[derive(Clone, Copy)]
pub enum NonFinite {
    /// Left out, as a missing value: a CRM attribute that is not a number is not set.
    Missing,
    /// The text a CSV cell would hold (`NaN`, `inf`), for a reader that refuses it.
    Text,
}

/// Opens a `.csv` or `.parquet` file, chosen by its extension. Two columns of one name are
/// refused: rows are maps by name, and the second would silently replace the first.
pub fn open(path: &Path, non_finite: NonFinite) -> anyhow::Result<Table> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let table = match ext.as_deref() {
        Some("csv") => csv_table(path)?,
        Some("parquet") | Some("pq") => parquet_table(path, non_finite)?,
        _ => anyhow::bail!(
            "{}: unknown file type; give a .csv or .parquet file",
            path.display()
        ),
    };
    if let Some((j, i)) = first_repeat(&table.columns) {
        anyhow::bail!(
            "{}: columns {} and {} are both named {:?}; rename one",
            path.display(),
            j + 1,
            i + 1,
            table.columns[i]
        );
    }
    Ok(table)
}

/// The positions (from 0) of the first name in `names` that repeats an earlier one, and of
/// that earlier one: `(earlier, later)`.
pub fn first_repeat(names: &[String]) -> Option<(usize, usize)> {
    names
        .iter()
        .enumerate()
        .find_map(|(i, name)| Some((names[..i].iter().position(|n| n == name)?, i)))
}

fn csv_table(path: &Path) -> anyhow::Result<Table> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let columns: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let names = columns.clone();
    let rows = reader.into_records().map(move |record| {
        let record = record.context("cannot read a CSV row")?;
        Ok(names
            .iter()
            .zip(record.iter())
            .filter(|(_, cell)| !cell.trim().is_empty())
            .map(|(name, cell)| (name.clone(), typed(cell.trim())))
            .collect())
    });
    Ok(Table {
        columns,
        rows: Box::new(rows),
        len: None,
    })
}

/// A CSV cell as the JSON type it looks like: integer, decimal, boolean, else string.
fn typed(cell: &str) -> Value {
    if let Ok(i) = cell.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = cell.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    match cell {
        "true" | "TRUE" | "True" => Value::Bool(true),
        "false" | "FALSE" | "False" => Value::Bool(false),
        _ => Value::String(cell.to_owned()),
    }
}

fn parquet_table(path: &Path, non_finite: NonFinite) -> anyhow::Result<Table> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
    let meta = reader.metadata().file_metadata();
    let columns = meta
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let len = u64::try_from(meta.num_rows()).ok();
    let rows = reader.into_iter().map(move |row| {
        let row = row.context("cannot read a Parquet row")?;
        Ok(row
            .get_column_iter()
            .map(|(name, field)| (name.clone(), json_of(field, non_finite)))
            .filter(|(_, v)| !v.is_null())
            .collect())
    });
    Ok(Table {
        columns,
        rows: Box::new(rows),
        len,
    })
}

/// A Parquet value as JSON, NaN and infinities as `non_finite` says (a null is left out of
/// the row).
fn json_of(field: &parquet::record::Field, non_finite: NonFinite) -> Value {
    use parquet::record::Field;
    let text = |x: f64| match non_finite {
        NonFinite::Missing => Value::Null,
        NonFinite::Text => Value::String(x.to_string()),
    };
    match *field {
        Field::Float(x) if !x.is_finite() => text(f64::from(x)),
        Field::Double(x) if !x.is_finite() => text(x),
        _ => field.to_json_value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_get_their_types() {
        assert_eq!(typed("42"), Value::from(42));
        assert_eq!(typed("4.5"), Value::from(4.5));
        assert_eq!(typed("true"), Value::Bool(true));
        assert_eq!(typed("DE"), Value::from("DE"));
        assert_eq!(typed("0042a"), Value::from("0042a"));
    }

    /// For `cluster`, a Parquet NaN or infinity reads as the CSV cell `NaN` or `inf`
    /// would, so that it is refused the same way instead of taken for a missing value; for
    /// `import-profiles` it is a missing value.
    #[test]
    fn parquet_nan_and_infinity_read_as_csv_text_or_as_missing() {
        use parquet::record::Field;
        let text = |f: Field| json_of(&f, NonFinite::Text);
        assert_eq!(text(Field::Double(f64::NAN)), typed("NaN"));
        assert_eq!(text(Field::Float(f32::INFINITY)), typed("inf"));
        assert_eq!(text(Field::Double(f64::NEG_INFINITY)), typed("-inf"));
        assert_eq!(text(Field::Double(2.5)), Value::from(2.5));
        assert!(json_of(&Field::Double(f64::NAN), NonFinite::Missing).is_null());
    }
}
