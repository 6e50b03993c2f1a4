//! `json_get(json, key, ...)`: a value inside the JSON text columns (`properties`,
//! `traits`, `context`), as text.
//!
//! Each key goes one level down: an object's member by name, or an array's element by a
//! number (`json_get(context, 'library', 'name')`, `json_get(properties, 'items', '0')`).
//! A string comes back unquoted, a number or `true`/`false` as written, an object or array
//! as JSON text, and anything missing, `null` or not JSON as NULL. Cast the answer for
//! arithmetic: `CAST(json_get(properties, 'price') AS DOUBLE)`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

pub(crate) fn udf() -> ScalarUDF {
    ScalarUDF::from(JsonGet {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonGet {
    signature: Signature,
}

impl ScalarUDFImpl for JsonGet {
    fn name(&self) -> &str {
        "json_get"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 2 {
            return plan_err!(
                "json_get takes a JSON text and at least one key, as in json_get(properties, 'plan'); it was given {} argument(s)",
                arg_types.len()
            );
        }
        Ok(vec![DataType::Utf8; arg_types.len()])
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns = args
            .args
            .into_iter()
            .map(|a| a.into_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let texts: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            if texts.iter().any(|t| t.is_null(row)) {
                out.append_null();
                continue;
            }
            let keys = texts[1..].iter().map(|t| t.value(row));
            out.append_option(get(texts[0].value(row), keys));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The value at `keys` in `json`, as text.
fn get<'k>(json: &str, keys: impl Iterator<Item = &'k str>) -> Option<String> {
    let root: Value = serde_json::from_str(json).ok()?;
    let mut at = &root;
    for key in keys {
        at = match at {
            Value::Object(members) => members.get(key)?,
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match at {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::get;

    #[test]
    fn walks_objects_and_arrays_and_gives_text() {
        let j = r#"{"plan":"pro","price":12.5,"ok":true,"items":[{"sku":"a"}],"none":null}"#;
        assert_eq!(get(j, ["plan"].into_iter()).as_deref(), Some("pro"));
        assert_eq!(get(j, ["price"].into_iter()).as_deref(), Some("12.5"));
        assert_eq!(get(j, ["ok"].into_iter()).as_deref(), Some("true"));
        assert_eq!(
            get(j, ["items", "0", "sku"].into_iter()).as_deref(),
            Some("a")
        );
        assert_eq!(
            get(j, ["items"].into_iter()).as_deref(),
            Some(r#"[{"sku":"a"}]"#)
        );
        assert_eq!(get(j, ["none"].into_iter()), None);
        assert_eq!(get(j, ["missing"].into_iter()), None);
        assert_eq!(get(j, ["plan", "deeper"].into_iter()), None);
        assert_eq!(get("not json", ["plan"].into_iter()), None);
    }
}
