//! Capability traits for the AWS services the pipeline uses, each with a real adapter in
//! `crate::aws` and an in-memory fake in [`memory`] for in-process tests. A function asks
//! only for the traits matching its IAM policy.

pub mod catalog;
#[cfg(test)]
mod contract;
pub mod memory;
mod page;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub(crate) use self::catalog::outcome_replaces;
pub use self::catalog::{
    ActiveJob, ApiCatalog, Commit, Containers, Coordination, CopierCatalog, EnumeratorCatalog, ExportParts, Failures,
    ItemHistory, JobEnd, KeeperCatalog, OutcomeCounts, PointInTime, RestoreJobs, RestorerCatalog, SEEN_MARKS_PER_ROW,
    SchedulerCatalog, SlotLease, SyncStates, VaultKeeping, seen_mark,
};
pub use self::page::Page;
pub(crate) use self::page::{Listing, item_order};
use crate::model::ObjectRef;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{service} request failed: {message}")]
    Service { service: &'static str, message: String, retryable: bool },
    /// The vault did not confirm the retention we asked for: fail closed.
    #[error("object {key} is not locked as required: {detail}")]
    NotLocked { key: String, detail: String },
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    /// A conditional create found the row already there.
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    /// A page cursor that this listing did not hand out (tampered, truncated, or from another
    /// listing): the caller's mistake, a 400, never a server error.
    #[error("invalid page cursor")]
    InvalidCursor,
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Service { retryable, .. } => *retryable,
            StoreError::NotLocked { .. } => true,
            StoreError::NotFound { .. }
            | StoreError::Malformed(_)
            | StoreError::AlreadyExists { .. }
            | StoreError::InvalidCursor => false,
        }
    }
}

/// S3 Object Lock mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// Retention to apply to an object we create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    pub retain_until: DateTime<Utc>,
}

/// What the vault reports about one object version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub object: ObjectRef,
    pub size: u64,
    pub lock_mode: Option<LockMode>,
    pub retain_until: Option<DateTime<Utc>>,
}

impl ObjectInfo {
    /// Locked at least as strongly and as long as `lock` asks.
    pub fn satisfies(&self, lock: &Lock) -> bool {
        let mode_ok = matches!(
            (self.lock_mode, lock.mode),
            (Some(LockMode::Compliance), _) | (Some(LockMode::Governance), LockMode::Governance)
        );
        mode_ok && self.retain_until.is_some_and(|t| t >= lock.retain_until)
    }
}

/// Outcome of a conditional create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub object: ObjectRef,
    /// False when the key already existed (content-addressed dedup).
    pub created: bool,
}

/// A multipart upload in progress.
#[derive(Clone, Debug)]
pub struct Multipart {
    pub key: String,
    pub upload_id: String,
    pub parts: Vec<(i32, String)>,
}

/// The write-once vault. No method deletes or overwrites an existing version.
#[async_trait]
pub trait Vault: Send + Sync {
    /// Create `key` only if absent (`If-None-Match: *`), locked; when it already exists,
    /// return its current version. Either way the returned version is verified locked.
    async fn put_if_absent(&self, key: &str, body: Bytes, lock: &Lock) -> Result<Stored, StoreError>;
    async fn start_multipart(&self, key: &str, lock: &Lock) -> Result<Multipart, StoreError>;
    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError>;
    /// Completes the upload, then sets and verifies retention on the new version.
    async fn complete_multipart(&self, upload: Multipart, lock: &Lock) -> Result<ObjectRef, StoreError>;
    async fn abort_multipart(&self, upload: Multipart) -> Result<(), StoreError>;
    /// Retention at least `lock` on that version, verified by reading it back (fail closed).
    async fn ensure_locked(&self, object: &ObjectRef, lock: &Lock) -> Result<(), StoreError>;
    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, StoreError>;
    async fn get(&self, object: &ObjectRef) -> Result<Bytes, StoreError>;
    async fn get_stream(&self, object: &ObjectRef)
    -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError>;
    /// `len` bytes from `start` of that version (restores feed upload fragments from it).
    /// The default reads through the stream; adapters with ranged reads override it.
    async fn get_range(&self, object: &ObjectRef, start: u64, len: u64) -> Result<Bytes, StoreError> {
        use futures::StreamExt;
        let mut stream = self.get_stream(object).await?;
        let (mut pos, end) = (0u64, start + len);
        let mut out = bytes::BytesMut::with_capacity(len as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let (from, to) = (pos, pos + chunk.len() as u64);
            if to > start && from < end {
                let a = start.saturating_sub(from) as usize;
                let b = (end.min(to) - from) as usize;
                out.extend_from_slice(&chunk[a..b]);
            }
            pos = to;
            if pos >= end {
                break;
            }
        }
        Ok(out.freeze())
    }
    /// Every version of every key under `prefix` (for verification and the demo).
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectRef>, StoreError>;
}

/// The exports bucket: temporary zips of backed-up content, outside the vault (no Object
/// Lock, expired by a lifecycle rule). Write-only for the restorer: it never reads or deletes
/// an export, and it has no way to reach the vault through this trait.
#[async_trait]
pub trait ExportStore: Send + Sync {
    async fn start_upload(&self, key: &str) -> Result<Multipart, StoreError>;
    /// Every part but the last must be at least 5 MiB (S3's rule).
    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError>;
    async fn complete_upload(&self, upload: Multipart) -> Result<(), StoreError>;
    /// Frees the parts of an upload that will not complete (a lifecycle rule is the backstop).
    async fn abort_upload(&self, upload: Multipart) -> Result<(), StoreError>;
}

/// The queues the pipeline sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueName {
    Changes,
    Items,
    ItemsLarge,
    Lifecycle,
    Restores,
}

/// One message to send. `group_id` is required by (and only used for) FIFO queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMessage {
    pub body: String,
    pub group_id: Option<String>,
    pub delay: Option<Duration>,
}

#[async_trait]
pub trait MessageSink: Send + Sync {
    /// Sends every message or fails; batches and retries partial batch failures itself.
    async fn send(&self, queue: QueueName, messages: Vec<OutMessage>) -> Result<(), StoreError>;
}

/// Secrets resolved once at start-up.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn secret(&self, id: &str) -> Result<String, StoreError>;
}
