//! Errors: one variant per rule a caller can break.

/// Why a computation cannot run on the given input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    #[error("the data has no rows")]
    Empty,
    #[error("row {row} has {got} values where {expected} were expected")]
    Ragged {
        row: usize,
        expected: usize,
        got: usize,
    },
    #[error("value at row {row}, column {col} is not a finite number")]
    NotFinite { row: usize, col: usize },
    #[error(transparent)]
    Spec(#[from] crate::pipeline::SpecError),
    /// The data held no cluster the algorithm could find (all DBSCAN noise).
    #[error("{0}")]
    NoCluster(String),
    #[error("k must be at least 1, got {0}")]
    ZeroK(usize),
    #[error("k = {k} is more than the {rows} rows")]
    TooFewRows { k: usize, rows: usize },
    #[error("{name} must be {rule}, got {value}")]
    Param {
        name: &'static str,
        rule: &'static str,
        value: String,
    },
    #[error("the initial centres are {got_rows}×{got_cols}, expected {k}×{cols}")]
    InitShape {
        k: usize,
        cols: usize,
        got_rows: usize,
        got_cols: usize,
    },
    #[error("{0} rows of labels for {1} rows of data")]
    LabelCount(usize, usize),
    #[error("the metric needs from 2 to n-1 clusters, got {0}")]
    ClusterCount(usize),
    #[error("column {column:?}{}: {reason}", row.map_or(String::new(), |r| format!(", row {}", r + 1)))]
    Column {
        column: String,
        /// Zero-based; shown one-based.
        row: Option<usize>,
        reason: String,
    },
    #[error("label {label} is out of range for {k} clusters")]
    LabelOutOfRange { label: usize, k: usize },
}
