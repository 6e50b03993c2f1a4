//! A query's answer as JSON: the columns with their types, and the rows as arrays (so
//! that two columns of one name, as in a join, both survive).

use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{self as types, DataType, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;
use serde_json::{Number, Value};

use crate::QueryError;

#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    /// The Arrow type, as DataFusion names it (`Int64`, `Utf8`, `Timestamp(µs, "UTC")`).
    #[serde(rename = "type")]
    pub data_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    pub row_count: usize,
    /// Whether the answer had more rows than were asked for.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

impl QueryResult {
    pub(crate) fn from_batches(
        schema: &Schema,
        batches: &[RecordBatch],
        max_rows: usize,
        elapsed: Duration,
    ) -> Result<Self, QueryError> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
            })
            .collect();
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut rows = Vec::with_capacity(total.min(max_rows));
        'batches: for batch in batches {
            for row in 0..batch.num_rows() {
                if rows.len() == max_rows {
                    break 'batches;
                }
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .map(|c| cell(c.as_ref(), row))
                        .collect::<Result<_, _>>()?,
                );
            }
        }
        Ok(QueryResult {
            columns,
            row_count: rows.len(),
            rows,
            truncated: total > max_rows,
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
        })
    }
}

/// One value as JSON: numbers and booleans as such, lists as arrays, everything else
/// (text, times, intervals) as Arrow displays it.
fn cell(array: &dyn Array, row: usize) -> Result<Value, QueryError> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    macro_rules! integer {
        ($t:ty) => {
            Value::from(array.as_primitive::<$t>().value(row))
        };
    }
    let real =
        |f: f64| Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number);
    Ok(match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => integer!(types::Int8Type),
        DataType::Int16 => integer!(types::Int16Type),
        DataType::Int32 => integer!(types::Int32Type),
        DataType::Int64 => integer!(types::Int64Type),
        DataType::UInt8 => integer!(types::UInt8Type),
        DataType::UInt16 => integer!(types::UInt16Type),
        DataType::UInt32 => integer!(types::UInt32Type),
        DataType::UInt64 => integer!(types::UInt64Type),
        DataType::Float32 => real(array.as_primitive::<types::Float32Type>().value(row).into()),
        DataType::Float64 => real(array.as_primitive::<types::Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_owned()),
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref())?,
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref())?,
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let text = display(array, row)?;
            text.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or(Value::String(text), Value::Number)
        }
        _ => Value::String(display(array, row)?),
    })
}

fn list(items: &dyn Array) -> Result<Value, QueryError> {
    (0..items.len())
        .map(|i| cell(items, i))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn display(array: &dyn Array, row: usize) -> Result<String, QueryError> {
    let formatter =
        ArrayFormatter::try_new(array, &FormatOptions::default()).map_err(QueryError::internal)?;
    Ok(formatter.value(row).to_string())
}
