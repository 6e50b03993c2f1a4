//! Why a query gave no answer, sorted by whose fault it is.

use std::time::Duration;

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement does not parse, names something that does not exist, or fails on
    /// the data (a bad cast, say): the user's to fix.
    #[error("{0}")]
    Invalid(String),
    /// The statement would change something; the warehouse only reads.
    #[error("only queries are allowed ({0}); the warehouse is read-only")]
    ReadOnly(String),
    /// The query needs more memory than the warehouse's limit.
    #[error(
        "the query needs more memory than the warehouse allows ({0}); filter on date and hour, or aggregate before joining"
    )]
    TooExpensive(String),
    #[error("the query ran longer than the limit of {} s and was stopped", limit.as_secs_f64())]
    Timeout { limit: Duration },
    #[error("{running} queries are already running; try again shortly")]
    Busy { running: usize },
    /// Something failed that the query did not cause (reading a file, a bug).
    #[error("the query failed: {0}")]
    Internal(String),
}

impl QueryError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        QueryError::Internal(e.to_string())
    }

    /// A stable code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Invalid(_) => "invalid_sql",
            QueryError::ReadOnly(_) => "read_only",
            QueryError::TooExpensive(_) => "too_expensive",
            QueryError::Timeout { .. } => "timeout",
            QueryError::Busy { .. } => "busy",
            QueryError::Internal(_) => "internal",
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        let message = root.message().trim().to_string();
        match root {
            DataFusionError::ResourcesExhausted(_) => QueryError::TooExpensive(message),
            DataFusionError::Plan(_)
                if ["DDL", "DML", "Statement"]
                    .iter()
                    .any(|kind| message.starts_with(&format!("{kind} not supported"))) =>
            {
                QueryError::ReadOnly(message)
            }
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..)
            | DataFusionError::Configuration(_) => QueryError::Invalid(message),
            _ => QueryError::Internal(message),
        }
    }
}
