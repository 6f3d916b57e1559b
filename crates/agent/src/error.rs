//! The crate's one error type.

use signalbox_core::config::Problems;
use std::path::PathBuf;

/// Why the agent could not start or had to stop. Delivery failures are not errors: the agent
/// retries them until it is stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The config has problems; each names its key path.
    #[error("invalid agent config: {}", list(.0))]
    Config(Problems),
    /// A file or directory under `data_dir` could not be used.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another agent holds the lock on `data_dir`.
    #[error("{} is in use by another agent", .0.display())]
    Locked(PathBuf),
    /// The `/metrics` listener could not be bound.
    #[error("metrics listener {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A background task ended abnormally.
    #[error("agent task failed: {0}")]
    Task(String),
}

impl AgentError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AgentError {
        let path = path.into();
        move |source| AgentError::Io { op, path, source }
    }
}

fn list(p: &Problems) -> String {
    p.list.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
}
