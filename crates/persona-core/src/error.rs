//! Error vocabulary shared by the stages.

use serde::{Deserialize, Serialize};

/// Who is at fault for an error, and so whether a retry can help.
///
/// Stages classify their errors with this so that the API layer picks an HTTP status and a
/// client (or the scheduler) knows whether retrying makes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input was wrong; retrying the same input fails the same way.
    User,
    /// Something outside persona (disk, network, a broker) failed; a retry may succeed.
    External,
    /// A bug or broken invariant inside persona.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same request can succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::External)
    }
}

/// One problem with one field, as reported to clients.
///
/// `index` is the message's position in a batch (0 for single-message calls, the line
/// number minus one for imports). It is absent when the problem is with the request as a
/// whole (a batch-level `sentAt`, a query parameter), which names no message. `field` is a
/// dotted path such as `properties.revenue`, or empty when the problem is the whole
/// message (not an object, or too large).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl FieldError {
    /// A problem with message `index`.
    pub fn new(index: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A problem with the request as a whole rather than one of its messages.
    pub fn request(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            index: None,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(index) = self.index {
            write!(f, "message {index}: ")?;
        }
        match self.field.as_str() {
            // The message as a whole (not an object, too large): no field to name.
            "" => f.write_str(&self.reason),
            field => write!(f, "`{field}` {}", self.reason),
        }
    }
}
