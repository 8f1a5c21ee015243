//! `PipelineError`: why a step failed, and whether another delivery is worth it.

use crate::graph::GraphError;
use crate::store::StoreError;

/// Errors of a pipeline step, classified for the queue adapters.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bytes (hash, size, or what Graph echoes back) differ from the state vouched for;
    /// retried, never recorded.
    #[error("content mismatch: {0}")]
    ContentMismatch(String),
    /// Something this step depends on is not in place yet (the parent folder is not restored
    /// yet, a folder Graph reports is not listed yet); retried.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A queue message that cannot be parsed, has an unknown schema version or names a step
    /// its job does not have.
    #[error("bad queue message: {0}")]
    BadMessage(String),
    /// What the job needs is not there and will not appear by retrying: the container was
    /// never enumerated, the restore job is unknown, a version has no content, an item has
    /// no eTag or no folder, a message's folder is gone from the mailbox.
    #[error("missing data: {0}")]
    MissingData(String),
    /// An invariant of our own code broke (serialising our own types, a closed upload).
    #[error("internal error: {0}")]
    Internal(String),
    /// Graph refuses what the deployment is configured to do (a tenant-wide listing to an app
    /// that may not list): the message says what to change. Retrying answers the same.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
    /// The restore job this step works for has ended (cancelled, or failed by the watchdog):
    /// the step stops between items. Nothing to retry.
    #[error("job ended: {0}")]
    JobEnded(String),
}

impl PipelineError {
    /// Worth another delivery of the same message.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Graph(e) => e.is_retryable(),
            PipelineError::Store(e) => e.is_retryable(),
            PipelineError::ContentMismatch(_) | PipelineError::NotReady(_) => true,
            PipelineError::BadMessage(_)
            | PipelineError::MissingData(_)
            | PipelineError::Internal(_)
            | PipelineError::Misconfigured(_)
            | PipelineError::JobEnded(_) => false,
        }
    }
}
