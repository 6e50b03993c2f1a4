//! Cluster models in the live system: a trained model as stored (its settings, summary and
//! state), and the active model that places every changed customer in a cluster.

use chrono::{DateTime, Utc};
use persona_core::profile::{DAY_MS, ProfileView};
use persona_segment::pipeline::{Summary, TrainSpec};
use persona_segment::{Cell, Column, Model, Values};
use serde::{Deserialize, Serialize};

use crate::schema::{Field, Type};
use crate::value::Val;
use crate::{RuleError, rule};

/// The store's document kind for models.
pub const MODEL_DOCUMENT: &str = "model";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    Training,
    Ready,
    Failed,
}

/// A model as stored: what was asked, what training found, and the fitted model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelDoc {
    pub id: u64,
    pub name: String,
    /// 1 for the first model of its name, then one more for each.
    pub version: u64,
    pub status: ModelStatus,
    /// The one model of its name that assigns customers.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub trained_at: Option<DateTime<Utc>>,
    pub training_seconds: Option<f64>,
    /// Profiles trained on.
    pub profiles: Option<usize>,
    pub spec: TrainSpec,
    /// While training: what it is doing.
    pub progress: Option<String>,
    pub error: Option<String>,
    /// Metrics, curves, centres and cluster names.
    pub summary: Option<Summary>,
    pub model: Option<Model>,
}

/// A profile field a model reads, checked as a rule's fields are (`computed.monetary`,
/// `computed.events."Order Completed"`, `traits.age`).
pub fn feature(name: &str) -> Result<Field, RuleError> {
    let field = rule::parse_field(name)?;
    if field.ty() == Type::Time {
        return Err(RuleError {
            field: Some(name.to_owned()),
            reason: "is a time; cluster on a number of days instead, such as computed.recency_days or computed.days_since_last_seen".into(),
        });
    }
    Ok(field)
}

/// A field's value as a model's input: booleans as 0 and 1, times as days since 1970.
fn cell<'a>(v: &'a Val<'a>) -> Cell<'a> {
    match v {
        Val::Null => Cell::Missing,
        Val::Num(x) => Cell::Number(*x),
        Val::Bool(b) => Cell::Number(f64::from(u8::from(*b))),
        Val::Time(ms) => Cell::Number(*ms as f64 / DAY_MS as f64),
        Val::Text(t) => Cell::Text(t),
    }
}

/// The training table, built a profile at a time: one column per feature. A feature is
/// numeric until it meets text (or is named categorical), categorical from then on.
pub struct FeatureTable {
    columns: Vec<(String, Field, Values)>,
}

impl FeatureTable {
    pub fn new(features: Vec<(String, Field)>, categorical: &[String]) -> Self {
        let columns = features
            .into_iter()
            .map(|(name, field)| {
                let values = if categorical.contains(&name) || field.ty() == Type::Text {
                    Values::Categorical(Vec::new())
                } else {
                    Values::Numeric(Vec::new())
                };
                (name, field, values)
            })
            .collect();
        FeatureTable { columns }
    }

    pub fn push(&mut self, view: &ProfileView) {
        for (_, field, values) in &mut self.columns {
            let v = field.read(view);
            if let (Values::Numeric(nums), Cell::Text(_)) = (&*values, cell(&v)) {
                // The first text: the column is categorical after all.
                *values =
                    Values::Categorical(nums.iter().map(|x| x.map(|x| x.to_string())).collect());
            }
            match (values, cell(&v)) {
                (Values::Numeric(nums), Cell::Number(x)) => nums.push(Some(x)),
                (Values::Numeric(nums), _) => nums.push(None),
                (Values::Categorical(cats), Cell::Missing) => cats.push(None),
                (Values::Categorical(cats), Cell::Text(t)) => cats.push(Some(t.to_owned())),
                (Values::Categorical(cats), Cell::Number(x)) => cats.push(Some(x.to_string())),
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.2.len())
    }

    pub fn finish(self) -> Vec<Column> {
        self.columns
            .into_iter()
            .map(|(name, _, values)| Column { name, values })
            .collect()
    }
}

/// The active model of a name, ready to assign.
#[derive(Debug, Clone)]
pub struct LiveModel {
    pub id: u64,
    pub name: String,
    pub version: u64,
    fields: Vec<Field>,
    model: Model,
    /// The name of each cluster.
    names: Vec<String>,
}

impl LiveModel {
    /// The live form of a stored model; `None` unless it is active and trained.
    pub fn from_doc(doc: &ModelDoc) -> Result<Option<LiveModel>, RuleError> {
        let (Some(model), Some(summary), true) = (&doc.model, &doc.summary, doc.active) else {
            return Ok(None);
        };
        if doc.status != ModelStatus::Ready {
            return Ok(None);
        }
        let fields = model.columns().map(feature).collect::<Result<_, _>>()?;
        Ok(Some(LiveModel {
            id: doc.id,
            name: doc.name.clone(),
            version: doc.version,
            fields,
            model: model.clone(),
            names: summary.clusters.iter().map(|c| c.name.clone()).collect(),
        }))
    }

    /// The customer's cluster; `None` when a value cannot be used (a trait that held
    /// numbers in training now holds text).
    pub fn assign(&self, view: &ProfileView) -> Option<u32> {
        let vals: Vec<Val> = self.fields.iter().map(|f| f.read(view)).collect();
        let cells: Vec<Cell> = vals.iter().map(cell).collect();
        self.model
            .assign(&cells)
            .ok()
            .map(|(cluster, _)| cluster as u32)
    }

    /// Whether a feature is relative to `as_of`, so that time alone can move a customer.
    pub fn time_relative(&self) -> bool {
        self.fields.iter().any(Field::time_relative)
    }

    /// A cluster's name as events show it: "<model>: <cluster>".
    pub fn label(&self, cluster: u32) -> String {
        let name = self
            .names
            .get(cluster as usize)
            .map_or("unnamed", String::as_str);
        format!("{}: {name}", self.name)
    }

    pub fn cluster_name(&self, cluster: u32) -> Option<&str> {
        self.names.get(cluster as usize).map(String::as_str)
    }
}
