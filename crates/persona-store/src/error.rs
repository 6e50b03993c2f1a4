//! Errors of profile storage.

use persona_core::ErrorKind;
use persona_core::profile::codec::DecodeError;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open.
    #[error(
        "the profile store {0} is in use by another process (is a server running on this data folder?)"
    )]
    Locked(String),
    /// The backend failed (I/O, corruption, connection).
    #[error("profile store: {0}")]
    Backend(String),
    /// A write failed in a way that stops the store (a full disk under its journal): it
    /// takes no more writes until it is opened again. Holds the first failure.
    #[error(
        "the profile store stopped after a failed write ({0}); it takes no more writes until persona restarts"
    )]
    Stopped(String),
    /// A stored profile could not be read.
    #[error("profile {id}: {source}")]
    Decode {
        id: u64,
        #[source]
        source: DecodeError,
    },
}

impl StoreError {
    /// Whose problem it is, for logs and HTTP status codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Locked(_) => ErrorKind::User,
            StoreError::Backend(_) | StoreError::Stopped(_) => ErrorKind::External,
            StoreError::Decode { .. } => ErrorKind::Internal,
        }
    }
}
