//! Control-plane errors. Each maps to an HTTP status in the API layer and names the field
//! or resource it is about; storage failures never leak their internals to callers.

/// An error of a control-plane operation.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Bad input: which field, and what was expected.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A compare-and-set lost: the current version is given.
    #[error("version conflict: the current version is {current}")]
    Conflict { current: u64 },
    /// A size or count limit was reached.
    #[error("{field}: {message}")]
    Limit { field: String, message: String },
    /// The operation is refused in the current state (switching traffic to a version with
    /// no healthy instance); nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The embedded store failed; the operation did not happen.
    #[error("storage error: {0}")]
    Storage(String),
    /// The replicated control state (etcd) did not answer or confirm in time: a write may or
    /// may not have been applied. Retrying is safe (writes are idempotent or compare-and-set).
    #[error("control state unavailable: {0}")]
    Unavailable(String),
}

impl ControlError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ControlError::Invalid { field: field.into(), message: message.into() }
    }
    pub fn limit(field: impl Into<String>, message: impl Into<String>) -> Self {
        ControlError::Limit { field: field.into(), message: message.into() }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ControlError {
            fn from(e: $t) -> Self {
                ControlError::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error,
    tokio::task::JoinError
);

pub type Result<T> = std::result::Result<T, ControlError>;
