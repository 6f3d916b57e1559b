//! The crate's error: each variant maps to one HTTP status in the API layer and names the
//! field or the rollout it is about.

use signalbox_control::error::ControlError;

/// Why a rollout operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Bad input: which field, and what was expected.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// No rollout of this service.
    #[error("no rollout of service `{0}`")]
    NotFound(String),
    /// The operation does not fit the rollout's state (one is already running, or it is
    /// finished).
    #[error("{0}")]
    Conflict(String),
    /// The target version has no healthy instance: nothing could serve its traffic.
    #[error("{field}: {message}")]
    NoHealthyInstance { field: String, message: String },
    /// The control store failed.
    #[error(transparent)]
    Control(#[from] ControlError),
}

impl RolloutError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RolloutError::Invalid { field: field.into(), message: message.into() }
    }
}

pub type Result<T> = std::result::Result<T, RolloutError>;
