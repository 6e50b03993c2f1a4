//! What to train, as a person writes it: the settings `persona cluster` takes as flags and
//! `POST /v1/models` as JSON, with the same names and defaults, checked into a [`Plan`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::hierarchical::Linkage;
use crate::kmeans;
use crate::prepare::{Impute, PrepOptions};
use crate::scale::Scaling;

/// A number, or a word such as `auto`. JSON sends `"k": 8` or `"k": "auto"`; the command
/// line sends text, which is read as a number when it is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumberOr<T> {
    Number(T),
    Word(String),
}

impl<T: std::str::FromStr> NumberOr<T> {
    /// `None` for `auto`, the number otherwise; anything else is not a setting.
    fn auto_or_number(&self) -> Result<Option<T>, ()>
    where
        T: Clone,
    {
        match self {
            NumberOr::Number(n) => Ok(Some(n.clone())),
            NumberOr::Word(w) if w == "auto" => Ok(None),
            NumberOr::Word(w) => w.parse().map(Some).map_err(|_| ()),
        }
    }
}

/// The training settings. Every field has the default `persona cluster` has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSpec {
    /// Feature columns; empty for every numeric column (the command line only).
    pub features: Vec<String>,
    /// Columns to one-hot encode although they hold numbers.
    pub categorical: Vec<String>,
    /// `COLUMN=median|mean|most_frequent|constant:VALUE`.
    pub impute: Vec<String>,
    /// Columns to transform with ln(1 + x), or `auto`.
    pub log1p: Vec<String>,
    /// kmeans, minibatch-kmeans, hierarchical or dbscan.
    pub algorithm: String,
    /// ward, complete, average or single.
    pub linkage: String,
    /// A number of clusters or `auto`; not for DBSCAN.
    pub k: Option<NumberOr<usize>>,
    /// lloyd or hamerly.
    pub kmeans_variant: String,
    /// Hierarchical: cut the tree at this merge height instead of at k clusters.
    pub cut_height: Option<f64>,
    /// DBSCAN's radius in scaled units, or `auto`.
    pub eps: Option<NumberOr<f64>>,
    pub min_samples: Option<usize>,
    /// Largest k tried by `auto`.
    pub k_max: usize,
    /// minmax, zscore, robust or none.
    pub scale: String,
    pub seed: u64,
    /// K-Means initialisations; the lowest inertia is kept.
    pub n_init: usize,
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            features: Vec::new(),
            categorical: Vec::new(),
            impute: Vec::new(),
            log1p: Vec::new(),
            algorithm: "kmeans".into(),
            linkage: "ward".into(),
            k: None,
            kmeans_variant: "lloyd".into(),
            cut_height: None,
            eps: None,
            min_samples: None,
            k_max: 10,
            scale: "minmax".into(),
            seed: 0,
            n_init: 4,
        }
    }
}

/// A setting that cannot be used, named as in JSON (`cut_height`); the command line
/// shows it as its flag (`--cut-height`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct SpecError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field,
        reason: reason.into(),
    }
}

/// The clustering algorithm with its own settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    KMeans(kmeans::Algorithm),
    MiniBatch,
    Hierarchical(Linkage),
    Dbscan {
        /// `None`: read off the knee of the k-distance curve.
        eps: Option<f64>,
        min_samples: Option<usize>,
    },
}

/// How many clusters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KPlan {
    Fixed(usize),
    /// Try 2..=max and choose.
    Auto {
        max: usize,
    },
    /// Hierarchical: where the tree is cut.
    CutHeight(f64),
    /// DBSCAN finds it.
    Found,
}

/// A checked [`TrainSpec`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub algorithm: Algorithm,
    pub k: KPlan,
    pub scaling: Scaling,
    pub prep: PrepOptions,
    pub seed: u64,
    pub n_init: usize,
}

impl Plan {
    /// Whether the model can place a new customer: every algorithm but DBSCAN has centres.
    pub fn assigns(&self) -> bool {
        !matches!(self.algorithm, Algorithm::Dbscan { .. })
    }
}

impl TrainSpec {
    /// Checks every setting and how they combine.
    pub fn plan(&self) -> Result<Plan, SpecError> {
        let algorithm = match self.algorithm.as_str() {
            "kmeans" => Algorithm::KMeans(match self.kmeans_variant.as_str() {
                "lloyd" => kmeans::Algorithm::Lloyd,
                "hamerly" => kmeans::Algorithm::Hamerly,
                other => {
                    return Err(bad(
                        "kmeans_variant",
                        format!("must be hamerly or lloyd, got {other:?}"),
                    ));
                }
            }),
            "minibatch-kmeans" => Algorithm::MiniBatch,
            "hierarchical" => Algorithm::Hierarchical(match self.linkage.as_str() {
                "ward" => Linkage::Ward,
                "complete" => Linkage::Complete,
                "average" => Linkage::Average,
                "single" => Linkage::Single,
                other => {
                    return Err(bad(
                        "linkage",
                        format!("must be ward, complete, average or single, got {other:?}"),
                    ));
                }
            }),
            "dbscan" => Algorithm::Dbscan {
                eps: match &self.eps {
                    None => None,
                    Some(e) => match e.auto_or_number() {
                        Ok(None) => None,
                        Ok(Some(e)) if e.is_finite() && e > 0.0 => Some(e),
                        _ => {
                            return Err(bad(
                                "eps",
                                format!("must be a positive number or auto, got {}", show(e)),
                            ));
                        }
                    },
                },
                min_samples: self.min_samples,
            },
            other => {
                return Err(bad(
                    "algorithm",
                    format!(
                        "must be kmeans, minibatch-kmeans, hierarchical or dbscan, got {other:?}"
                    ),
                ));
            }
        };
        let hierarchical = matches!(algorithm, Algorithm::Hierarchical(_));
        let dbscan = matches!(algorithm, Algorithm::Dbscan { .. });
        if self.eps.is_some() && !dbscan {
            return Err(bad("eps", "applies to the dbscan algorithm only"));
        }
        if self.min_samples.is_some() && !dbscan {
            return Err(bad("min_samples", "applies to the dbscan algorithm only"));
        }
        if self.min_samples == Some(0) {
            return Err(bad(
                "min_samples",
                "must be at least 1 (it counts the row itself)",
            ));
        }
        if let Some(h) = self.cut_height {
            if !hierarchical {
                return Err(bad(
                    "cut_height",
                    "applies to the hierarchical algorithm only",
                ));
            }
            if !(h.is_finite() && h >= 0.0) {
                return Err(bad(
                    "cut_height",
                    format!("must be a number of at least 0, got {h}"),
                ));
            }
            if self.k.is_some() {
                return Err(bad("cut_height", "and k cannot both be given"));
            }
        }
        let k = match (&self.k, dbscan) {
            (Some(_), true) => {
                return Err(bad(
                    "k",
                    "does not apply to dbscan, which finds the number of clusters itself",
                ));
            }
            (None, true) => KPlan::Found,
            (None, false) => match self.cut_height {
                Some(h) => KPlan::CutHeight(h),
                None => {
                    return Err(bad(
                        "k",
                        format!("is required for the {} algorithm", self.algorithm),
                    ));
                }
            },
            (Some(k), false) => match k.auto_or_number() {
                Ok(None) => KPlan::Auto { max: self.k_max },
                Ok(Some(0)) | Err(()) => {
                    return Err(bad(
                        "k",
                        format!(
                            "must be a whole number of at least 1 or auto, got {}",
                            show(k)
                        ),
                    ));
                }
                Ok(Some(k)) => KPlan::Fixed(k),
            },
        };
        if matches!(k, KPlan::Auto { .. }) && self.k_max < 2 {
            return Err(bad(
                "k_max",
                format!("must be at least 2, got {}", self.k_max),
            ));
        }
        if self.n_init == 0 {
            return Err(bad("n_init", "must be at least 1"));
        }
        let scaling = match self.scale.as_str() {
            "minmax" => Scaling::MinMax,
            "zscore" => Scaling::ZScore,
            "robust" => Scaling::Robust,
            "none" => Scaling::None,
            other => {
                return Err(bad(
                    "scale",
                    format!("must be minmax, zscore, robust or none, got {other:?}"),
                ));
            }
        };
        Ok(Plan {
            algorithm,
            k,
            scaling,
            prep: self.prep_options()?,
            seed: self.seed,
            n_init: self.n_init,
        })
    }

    fn prep_options(&self) -> Result<PrepOptions, SpecError> {
        let mut impute = HashMap::new();
        for spec in &self.impute {
            let (column, rule) = spec
                .split_once('=')
                .ok_or_else(|| bad("impute", format!("{spec:?} must be COLUMN=RULE")))?;
            let rule: Impute = rule
                .parse()
                .map_err(|e| bad("impute", format!("{column}: {e}")))?;
            impute.insert(column.to_owned(), rule);
        }
        Ok(PrepOptions {
            impute,
            log1p: self
                .log1p
                .iter()
                .filter(|c| *c != "auto")
                .cloned()
                .collect(),
            log1p_auto: self.log1p.iter().any(|c| c == "auto"),
        })
    }
}

fn show<T: std::fmt::Display>(v: &NumberOr<T>) -> String {
    match v {
        NumberOr::Number(n) => n.to_string(),
        NumberOr::Word(w) => format!("{w:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_flags_read_alike() {
        let from_json: TrainSpec =
            serde_json::from_str(r#"{"k": 8, "eps": null, "features": ["a"]}"#).unwrap();
        let from_flags = TrainSpec {
            k: Some(NumberOr::Word("8".into())),
            features: vec!["a".into()],
            ..TrainSpec::default()
        };
        assert_eq!(from_json.plan().unwrap().k, KPlan::Fixed(8));
        assert_eq!(from_flags.plan().unwrap().k, KPlan::Fixed(8));
        let auto: TrainSpec = serde_json::from_str(r#"{"k": "auto", "k_max": 6}"#).unwrap();
        assert_eq!(auto.plan().unwrap().k, KPlan::Auto { max: 6 });
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (json, field) in [
            (r#"{"k": "many"}"#, "k"),
            (r#"{"k": 0}"#, "k"),
            (r#"{}"#, "k"),
            (r#"{"k": 3, "algorithm": "magic"}"#, "algorithm"),
            (r#"{"algorithm": "dbscan", "k": 3}"#, "k"),
            (r#"{"algorithm": "dbscan", "eps": -1}"#, "eps"),
            (
                r#"{"algorithm": "dbscan", "min_samples": 0}"#,
                "min_samples",
            ),
            (r#"{"k": 3, "cut_height": 2}"#, "cut_height"),
            (r#"{"k": 3, "scale": "log"}"#, "scale"),
            (r#"{"k": 3, "impute": ["x"]}"#, "impute"),
        ] {
            let spec: TrainSpec = serde_json::from_str(json).unwrap();
            assert_eq!(spec.plan().unwrap_err().field, field, "{json}");
        }
        assert!(serde_json::from_str::<TrainSpec>(r#"{"kk": 3}"#).is_err());
    }
}
