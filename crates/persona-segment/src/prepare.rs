//! Data preparation: from table columns (numbers and categories, with gaps) to the numeric
//! matrix the algorithms take. Missing values are imputed per column, skewed columns may be
//! log-transformed, categories are one-hot encoded. The fitted [`Preparation`] is stored with
//! a model, so a new customer is transformed exactly as the training rows were.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Matrix, SegmentError};

/// Categories a column may have before one-hot encoding refuses it: past this the column is
/// more likely an identifier than a category, and would swamp every distance.
pub const MAX_CATEGORIES: usize = 100;

/// The values of one input column, `None` where missing.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Numeric(Vec<Option<f64>>),
    Categorical(Vec<Option<String>>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Numeric(v) => v.len(),
            Values::Categorical(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named input column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// One value of one customer, for [`Preparation::transform_row`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

/// How a column's missing values are filled.
#[derive(Debug, Clone, PartialEq)]
pub enum Impute {
    /// Numeric columns' default: the median is not dragged by the long tails of money and
    /// count columns.
    Median,
    Mean,
    /// Categorical columns' default.
    MostFrequent,
    /// A fixed value: a number for a numeric column, any text for a categorical one.
    Constant(String),
}

impl std::str::FromStr for Impute {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "median" => Ok(Impute::Median),
            "mean" => Ok(Impute::Mean),
            "most_frequent" => Ok(Impute::MostFrequent),
            _ => match s.strip_prefix("constant:") {
                Some(v) => Ok(Impute::Constant(v.to_owned())),
                None => Err(format!(
                    "must be median, mean, most_frequent or constant:VALUE, got {s:?}"
                )),
            },
        }
    }
}

/// Choices for [`Preparation::fit`], each by column name.
#[derive(Debug, Clone, Default)]
pub struct PrepOptions {
    /// Imputation per column; columns not named get their type's default.
    pub impute: HashMap<String, Impute>,
    /// Columns to transform with `ln(1 + x)`.
    pub log1p: Vec<String>,
    /// Apply `ln(1 + x)` to every non-negative numeric column whose skewness exceeds
    /// [`AUTO_LOG1P_SKEW`].
    pub log1p_auto: bool,
}

/// Skewness above which `log1p_auto` transforms a column (2 is a common mark of a heavy right
/// tail, as order values and event counts have).
pub const AUTO_LOG1P_SKEW: f64 = 2.0;

/// The fitted preparation of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnPrep {
    Numeric {
        name: String,
        fill: f64,
        log1p: bool,
    },
    Categorical {
        name: String,
        fill: String,
        /// One output column per category, in this order.
        categories: Vec<String>,
    },
}

impl ColumnPrep {
    pub fn name(&self) -> &str {
        match self {
            ColumnPrep::Numeric { name, .. } | ColumnPrep::Categorical { name, .. } => name,
        }
    }

    fn width(&self) -> usize {
        match self {
            ColumnPrep::Numeric { .. } => 1,
            ColumnPrep::Categorical { categories, .. } => categories.len(),
        }
    }
}

/// What fitting did to each column, for the user to read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrepReport {
    /// Per column: how many values were missing and what filled them.
    pub imputed: Vec<(String, usize, String)>,
    /// Columns transformed with `ln(1 + x)`.
    pub log1p: Vec<String>,
    /// Categorical columns and their number of categories.
    pub one_hot: Vec<(String, usize)>,
}

/// A fitted preparation: input columns in, model features out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preparation {
    pub columns: Vec<ColumnPrep>,
}

impl Preparation {
    /// Learns fills, transforms and categories from the training columns.
    pub fn fit(columns: &[Column], opts: &PrepOptions) -> Result<(Self, PrepReport), SegmentError> {
        let rows = columns.first().ok_or(SegmentError::Empty)?.values.len();
        if rows == 0 {
            return Err(SegmentError::Empty);
        }
        for name in opts.impute.keys().chain(&opts.log1p) {
            if !columns.iter().any(|c| &c.name == name) {
                return Err(column_error(name, "is not one of the feature columns"));
            }
        }
        let mut report = PrepReport::default();
        let mut fitted = Vec::with_capacity(columns.len());
        for c in columns {
            if c.values.len() != rows {
                return Err(SegmentError::Ragged {
                    row: c.values.len().min(rows),
                    expected: rows,
                    got: c.values.len(),
                });
            }
            let rule = opts.impute.get(&c.name);
            let prep = match &c.values {
                Values::Numeric(v) => fit_numeric(c, v, rule, opts, &mut report)?,
                Values::Categorical(v) => fit_categorical(c, v, rule, &mut report)?,
            };
            fitted.push(prep);
        }
        Ok((Preparation { columns: fitted }, report))
    }

    /// The model's feature names: a numeric column's own name, `column=category` for each
    /// one-hot column.
    pub fn feature_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.columns {
            match c {
                ColumnPrep::Numeric { name, .. } => out.push(name.clone()),
                ColumnPrep::Categorical {
                    name, categories, ..
                } => out.extend(categories.iter().map(|v| format!("{name}={v}"))),
            }
        }
        out
    }

    /// Width of a transformed row.
    pub fn width(&self) -> usize {
        self.columns.iter().map(ColumnPrep::width).sum()
    }

    /// Transforms whole columns (in the fitted order) into the feature matrix.
    pub fn transform(&self, columns: &[Column]) -> Result<Matrix, SegmentError> {
        if columns.len() != self.columns.len() {
            return Err(SegmentError::Ragged {
                row: 0,
                expected: self.columns.len(),
                got: columns.len(),
            });
        }
        let rows = columns.first().map_or(0, |c| c.values.len());
        let width = self.width();
        let mut data = vec![0.0; rows * width];
        let mut cells = Vec::with_capacity(columns.len());
        for i in 0..rows {
            cells.clear();
            cells.extend(columns.iter().map(|c| match &c.values {
                Values::Numeric(v) => v[i].map_or(Cell::Missing, Cell::Number),
                Values::Categorical(v) => v[i].as_deref().map_or(Cell::Missing, Cell::Text),
            }));
            self.transform_row(&cells, &mut data[i * width..(i + 1) * width])
                .map_err(|e| at_row(e, i))?;
        }
        Matrix::new(rows, width, data)
    }

    /// Transforms one customer's values (in the fitted column order) into `out`, which
    /// must be [`Self::width`] long. A category not seen in training encodes as all zeros.
    pub fn transform_row(&self, cells: &[Cell], out: &mut [f64]) -> Result<(), SegmentError> {
        let mut at = 0;
        for (prep, cell) in self.columns.iter().zip(cells) {
            match prep {
                ColumnPrep::Numeric { name, fill, log1p } => {
                    let x = match *cell {
                        Cell::Missing => *fill,
                        Cell::Number(x) if x.is_finite() => {
                            if *log1p {
                                log1p_checked(name, x)?
                            } else {
                                x
                            }
                        }
                        Cell::Number(x) => {
                            return Err(column_error(name, &format!("has the value {x}")));
                        }
                        Cell::Text(t) => {
                            return Err(column_error(
                                name,
                                &format!("must be a number, got {t:?}"),
                            ));
                        }
                    };
                    out[at] = x;
                    at += 1;
                }
                ColumnPrep::Categorical {
                    fill, categories, ..
                } => {
                    let n = categories.len();
                    out[at..at + n].fill(0.0);
                    let owned;
                    let value: &str = match *cell {
                        Cell::Missing => fill,
                        Cell::Text(t) => t,
                        Cell::Number(x) => {
                            owned = x.to_string();
                            &owned
                        }
                    };
                    if let Some(p) = categories.iter().position(|c| c == value) {
                        out[at + p] = 1.0;
                    }
                    at += n;
                }
            }
        }
        Ok(())
    }

    /// Feature values back in the input's units, in place: `expm1` undoes `log1p`; a one-hot
    /// column's value (a share of the category, for a centre) is left as it is.
    pub fn inverse_row(&self, row: &mut [f64]) {
        let mut at = 0;
        for c in &self.columns {
            if let ColumnPrep::Numeric { log1p: true, .. } = c {
                row[at] = row[at].exp_m1();
            }
            at += c.width();
        }
    }
}

fn fit_numeric(
    c: &Column,
    values: &[Option<f64>],
    rule: Option<&Impute>,
    opts: &PrepOptions,
    report: &mut PrepReport,
) -> Result<ColumnPrep, SegmentError> {
    let mut present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        return Err(column_error(&c.name, "has no values"));
    }
    if let Some(x) = present.iter().find(|x| !x.is_finite()) {
        return Err(column_error(&c.name, &format!("has the value {x}")));
    }
    let log1p = opts.log1p.contains(&c.name)
        || (opts.log1p_auto
            && present.iter().all(|&x| x >= 0.0)
            && skewness(&present) > AUTO_LOG1P_SKEW);
    if log1p {
        for x in &mut present {
            *x = log1p_checked(&c.name, *x)?;
        }
        report.log1p.push(c.name.clone());
    }
    let rule = rule.cloned().unwrap_or(Impute::Median);
    let fill = match &rule {
        Impute::Median => {
            present.sort_by(f64::total_cmp);
            let h = present.len() / 2;
            if present.len() % 2 == 1 {
                present[h]
            } else {
                (present[h - 1] + present[h]) / 2.0
            }
        }
        Impute::Mean => present.iter().sum::<f64>() / present.len() as f64,
        Impute::MostFrequent => {
            return Err(column_error(
                &c.name,
                "is numeric: impute it with median, mean or constant:NUMBER",
            ));
        }
        Impute::Constant(v) => {
            let x: f64 = v
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| {
                    column_error(
                        &c.name,
                        &format!("is numeric, so its constant fill must be a number, got {v:?}"),
                    )
                })?;
            if log1p { log1p_checked(&c.name, x)? } else { x }
        }
    };
    let missing = values.len() - present.len();
    if missing > 0 {
        report
            .imputed
            .push((c.name.clone(), missing, describe_rule(&rule)));
    }
    Ok(ColumnPrep::Numeric {
        name: c.name.clone(),
        fill,
        log1p,
    })
}

fn fit_categorical(
    c: &Column,
    values: &[Option<String>],
    rule: Option<&Impute>,
    report: &mut PrepReport,
) -> Result<ColumnPrep, SegmentError> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in values.iter().flatten() {
        *counts.entry(v).or_default() += 1;
    }
    if counts.is_empty() {
        return Err(column_error(&c.name, "has no values"));
    }
    let rule = rule.cloned().unwrap_or(Impute::MostFrequent);
    let fill = match &rule {
        Impute::MostFrequent => {
            // Ties go to the alphabetically first value, so the fill does not depend on
            // the hash map's order.
            let (v, _) = counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .expect("not empty");
            (*v).to_owned()
        }
        Impute::Constant(v) => v.clone(),
        Impute::Median | Impute::Mean => {
            return Err(column_error(
                &c.name,
                "is categorical: impute it with most_frequent or constant:VALUE",
            ));
        }
    };
    let mut categories: Vec<String> = counts.keys().map(|s| (*s).to_owned()).collect();
    if !categories.contains(&fill) {
        categories.push(fill.clone());
    }
    if categories.len() > MAX_CATEGORIES {
        return Err(column_error(
            &c.name,
            &format!(
                "has {} distinct values, more than the {MAX_CATEGORIES} one-hot encoding takes; leave it out or group its values",
                categories.len()
            ),
        ));
    }
    categories.sort();
    let missing = values.iter().filter(|v| v.is_none()).count();
    if missing > 0 {
        report
            .imputed
            .push((c.name.clone(), missing, describe_rule(&rule)));
    }
    report.one_hot.push((c.name.clone(), categories.len()));
    Ok(ColumnPrep::Categorical {
        name: c.name.clone(),
        fill,
        categories,
    })
}

fn describe_rule(rule: &Impute) -> String {
    match rule {
        Impute::Median => "median".into(),
        Impute::Mean => "mean".into(),
        Impute::MostFrequent => "most frequent value".into(),
        Impute::Constant(v) => format!("constant {v}"),
    }
}

fn log1p_checked(name: &str, x: f64) -> Result<f64, SegmentError> {
    if x <= -1.0 {
        return Err(column_error(
            name,
            &format!("has the value {x}, where log1p is undefined (it needs values above -1)"),
        ));
    }
    Ok(x.ln_1p())
}

/// Sample skewness (the third standardised moment).
fn skewness(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let (m2, m3) = values.iter().fold((0.0, 0.0), |(m2, m3), x| {
        let d = x - mean;
        (m2 + d * d, m3 + d * d * d)
    });
    let (m2, m3) = (m2 / n, m3 / n);
    if m2 == 0.0 { 0.0 } else { m3 / m2.powf(1.5) }
}

fn column_error(name: &str, reason: &str) -> SegmentError {
    SegmentError::Column {
        column: name.to_owned(),
        row: None,
        reason: reason.to_owned(),
    }
}

fn at_row(e: SegmentError, row: usize) -> SegmentError {
    match e {
        SegmentError::Column { column, reason, .. } => SegmentError::Column {
            column,
            row: Some(row),
            reason,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(name: &str, v: &[Option<f64>]) -> Column {
        Column {
            name: name.into(),
            values: Values::Numeric(v.to_vec()),
        }
    }

    fn cat(name: &str, v: &[Option<&str>]) -> Column {
        Column {
            name: name.into(),
            values: Values::Categorical(v.iter().map(|s| s.map(str::to_owned)).collect()),
        }
    }

    #[test]
    fn gaps_are_filled_by_each_columns_rule_and_reported() {
        let cols = [
            num("monetary", &[Some(1.0), None, Some(3.0), Some(10.0)]),
            num("age", &[None, Some(20.0), Some(40.0), Some(60.0)]),
            cat("country", &[Some("DE"), Some("FR"), None, Some("DE")]),
        ];
        let opts = PrepOptions {
            impute: HashMap::from([("age".into(), Impute::Mean)]),
            ..Default::default()
        };
        let (prep, report) = Preparation::fit(&cols, &opts).unwrap();
        assert_eq!(
            prep.feature_names(),
            ["monetary", "age", "country=DE", "country=FR"]
        );
        let m = prep.transform(&cols).unwrap();
        assert_eq!(m.row(1), [3.0, 20.0, 0.0, 1.0]);
        assert_eq!(m.row(0), [1.0, 40.0, 1.0, 0.0]);
        assert_eq!(m.row(2), [3.0, 40.0, 1.0, 0.0]);
        assert_eq!(
            report.imputed,
            [
                ("monetary".into(), 1, "median".into()),
                ("age".into(), 1, "mean".into()),
                ("country".into(), 1, "most frequent value".into())
            ]
        );
        assert_eq!(report.one_hot, [("country".into(), 2)]);
    }

    #[test]
    fn log1p_applies_to_named_or_skewed_columns_and_inverts() {
        let mut skewed = vec![Some(1.0); 50];
        skewed.push(Some(10_000.0));
        let flat: Vec<Option<f64>> = (0..51).map(|i| Some(f64::from(i))).collect();
        let cols = [num("monetary", &skewed), num("tenure", &flat)];
        let opts = PrepOptions {
            log1p_auto: true,
            ..Default::default()
        };
        let (prep, report) = Preparation::fit(&cols, &opts).unwrap();
        assert_eq!(report.log1p, ["monetary"]);
        let m = prep.transform(&cols).unwrap();
        assert!((m.row(50)[0] - 10_001f64.ln()).abs() < 1e-12);
        assert_eq!(m.row(50)[1], 50.0);
        let mut row = m.row(50).to_vec();
        prep.inverse_row(&mut row);
        assert!((row[0] - 10_000.0).abs() < 1e-9);
    }

    #[test]
    fn an_unseen_category_encodes_as_zeros_and_a_text_in_a_number_is_refused() {
        let cols = [
            num("x", &[Some(1.0), Some(2.0)]),
            cat("c", &[Some("a"), Some("b")]),
        ];
        let (prep, _) = Preparation::fit(&cols, &PrepOptions::default()).unwrap();
        let mut out = [9.0; 3];
        prep.transform_row(&[Cell::Number(5.0), Cell::Text("zz")], &mut out)
            .unwrap();
        assert_eq!(out, [5.0, 0.0, 0.0]);
        let err = prep
            .transform_row(&[Cell::Text("five"), Cell::Missing], &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }

    #[test]
    fn bad_choices_name_the_column() {
        let cols = [
            num("x", &[Some(-2.0), Some(2.0)]),
            cat("c", &[Some("a"), None]),
        ];
        let bad = |opts: PrepOptions| Preparation::fit(&cols, &opts).unwrap_err().to_string();
        let e = bad(PrepOptions {
            log1p: vec!["x".into()],
            ..Default::default()
        });
        assert!(e.contains("\"x\"") && e.contains("log1p"), "{e}");
        let e = bad(PrepOptions {
            impute: HashMap::from([("c".into(), Impute::Median)]),
            ..Default::default()
        });
        assert!(e.contains("\"c\"") && e.contains("categorical"), "{e}");
        let e = bad(PrepOptions {
            impute: HashMap::from([("nope".into(), Impute::Mean)]),
            ..Default::default()
        });
        assert!(e.contains("\"nope\""), "{e}");
        let many: Vec<Option<String>> = (0..=MAX_CATEGORIES).map(|i| Some(i.to_string())).collect();
        let ids = [Column {
            name: "id".into(),
            values: Values::Categorical(many),
        }];
        let e = Preparation::fit(&ids, &PrepOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"id\"") && e.contains("distinct"), "{e}");
    }
}
