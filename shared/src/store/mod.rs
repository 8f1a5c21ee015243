//! Capability traits for the AWS services the pipeline uses, each with a real adapter in
//! `crate::aws` and an in-memory fake in [`memory`] for in-process tests. A function asks
//! only for the traits matching its IAM policy.

#[cfg(test)]
mod catalog_tests;
mod exports_memory;
pub mod memory;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::model::{
    ContainerId, ContainerRecord, ExportPart, ItemFailure, ItemHead, ItemKey, ItemVersion, ObjectRef,
    RestoreItemReport, RestoreJob, RestoreOutcome, RestorePlan, RestoreStatus, SyncState,
};

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

/// Result of committing a version to the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    Created,
    /// The same (item, version) was already committed: a harmless redelivery.
    AlreadyCommitted,
}

/// One of a few concurrency slots on a shared resource (an Exchange mailbox allows four
/// concurrent requests per app), held by one worker until it releases it or `until` passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLease {
    pub tenant_id: String,
    pub resource: String,
    pub slot: u32,
    pub until: DateTime<Utc>,
}

/// One page of a listing. `next` resumes right after it; `None` means the listing is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Listings by item id follow the index order, where an id is compared as `{id}#`: the same as
/// plain id order except that an id sorts after its extensions starting with a character
/// below `#` (`a!1` before `a`), which Graph ids essentially never have.
pub(crate) fn item_order(item_id: &str) -> String {
    format!("{item_id}#")
}

/// Body of a page cursor (base64url JSON). It holds the last item id handed out and a digest
/// of the listing it belongs to. Nothing in it widens what a request reads (the partition
/// always comes from the request), and a cursor that was edited or comes from another listing
/// is [`StoreError::InvalidCursor`].
#[derive(Serialize, Deserialize)]
struct CursorDoc {
    v: u32,
    listing: String,
    after: String,
}

const CURSOR_VERSION: u32 = 1;
const MAX_CURSOR_LEN: usize = 2048;

/// A paginated listing: hands out cursors and checks the ones it gets back.
pub(crate) struct Listing(String);

impl Listing {
    /// A folder's children as of a moment (the moment is part of the listing: a cursor does
    /// not carry over to another `at`).
    pub(crate) fn children(container: &ContainerId, parent_id: &str, at: DateTime<Utc>) -> Self {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Self::named(&["children", &container.tenant_id, &container.graph_id, parent_id, &at])
    }

    pub(crate) fn restore_reports(job_id: &str) -> Self {
        Self::named(&["restore-reports", job_id])
    }

    fn named(parts: &[&str]) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        Self(hex::encode(&hash.finalize()[..12]))
    }

    pub(crate) fn cursor(&self, after: &str) -> String {
        use base64::Engine;
        let doc = CursorDoc { v: CURSOR_VERSION, listing: self.0.clone(), after: after.to_owned() };
        // Serialising a struct of strings cannot fail.
        let json = serde_json::to_vec(&doc).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The item id to resume after, or `None` for the first page.
    pub(crate) fn resume(&self, cursor: Option<&str>) -> Result<Option<String>, StoreError> {
        use base64::Engine;
        let Some(cursor) = cursor else { return Ok(None) };
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(StoreError::InvalidCursor);
        }
        let json =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
        let doc: CursorDoc = serde_json::from_slice(&json).map_err(|_| StoreError::InvalidCursor)?;
        let id_ok = !doc.after.is_empty() && !doc.after.chars().any(|c| c == '#' || c.is_control());
        if doc.v != CURSOR_VERSION || doc.listing != self.0 || !id_ok {
            return Err(StoreError::InvalidCursor);
        }
        Ok(Some(doc.after))
    }
}

/// Whether `new` replaces the outcome already recorded for an item: the first outcome always
/// does; a failure is replaced by any other outcome (a retry that worked); a final outcome, or
/// a repeated failure, stays, so a redelivered item never counts twice.
pub(crate) fn outcome_replaces(recorded: Option<RestoreOutcome>, new: RestoreOutcome) -> bool {
    match recorded {
        None => true,
        Some(RestoreOutcome::Failed) => new != RestoreOutcome::Failed,
        Some(_) => false,
    }
}

/// The DynamoDB catalog: history per item, heads, container state, throttling, failures.
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn head(&self, item: &ItemKey) -> Result<Option<ItemHead>, StoreError>;
    async fn heads(
        &self,
        container: &ContainerId,
        item_ids: &[String],
    ) -> Result<HashMap<String, ItemHead>, StoreError>;
    /// Every head of a container (current and deleted items).
    async fn list_heads(&self, container: &ContainerId) -> Result<Vec<ItemHead>, StoreError>;
    /// Writes the version row (conditional on absence) and advances the head unless a newer
    /// version is already current. At most two writes.
    async fn commit_version(&self, version: &ItemVersion, record: &ObjectRef) -> Result<Commit, StoreError>;
    /// Newest first.
    async fn versions(&self, item: &ItemKey, limit: usize) -> Result<Vec<ItemVersion>, StoreError>;
    async fn version_at(&self, item: &ItemKey, at: DateTime<Utc>) -> Result<Option<ItemVersion>, StoreError>;
    async fn mark_seen(&self, container: &ContainerId, item_ids: &[String], epoch: &str) -> Result<(), StoreError>;

    async fn sync_state(&self, container: &ContainerId) -> Result<SyncState, StoreError>;
    async fn put_sync_state(&self, container: &ContainerId, state: &SyncState) -> Result<(), StoreError>;
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError>;
    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError>;
    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError>;

    async fn throttled_until(&self, tenant_id: &str, resource: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Only ever moves the deadline later.
    async fn throttle(&self, tenant_id: &str, resource: &str, until: DateTime<Utc>) -> Result<(), StoreError>;
    /// Takes a free (or expired) one of `slots` leases on `resource` until `until`; `None`
    /// when all are held. Shared by every Lambda instance.
    async fn acquire_slot(
        &self,
        tenant_id: &str,
        resource: &str,
        slots: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SlotLease>, StoreError>;
    /// Gives a lease back; a lease that expired and was taken over is left to its new holder.
    async fn release_slot(&self, lease: &SlotLease) -> Result<(), StoreError>;

    async fn record_failure(&self, item: &ItemKey, reason: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn clear_failure(&self, item: &ItemKey) -> Result<(), StoreError>;
    async fn failures(&self, container: &ContainerId) -> Result<Vec<ItemFailure>, StoreError>;

    // Point-in-time reads. "As of T" (ARCHITECTURE.md, Time): per item, the newest version
    // whose Microsoft 365 time is <= T at millisecond precision; a tombstone current at T means
    // the item did not exist at T.

    /// The version current at `at` of every item of a container that had a version by then,
    /// tombstones included (so the caller sees deletions), in item order ([`item_order`]).
    /// Streams the container's version index: one paginated query over all its versions.
    async fn container_as_of(&self, container: &ContainerId, at: DateTime<Utc>)
    -> Result<Vec<ItemVersion>, StoreError>;
    /// One page of a folder's children as of `at`, in item order: items whose current version
    /// at `at` is alive and has `parent_id` as parent (items deleted by then, or moved elsewhere
    /// by then, are not children). `cursor` is a previous page's `next`; a cursor from another
    /// listing (other folder or `at`) or an edited one is [`StoreError::InvalidCursor`].
    async fn children_as_of(
        &self,
        container: &ContainerId,
        parent_id: &str,
        at: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemVersion>, StoreError>;
    /// Versions of a container whose Microsoft 365 time lies in `[from, to]`, oldest first (ties
    /// in item order), at most `limit`: the change history a person reads to find when a
    /// ransomware encryption started. Reads the container's whole version index (cost grows
    /// with its history, not with the window).
    async fn changes_between(
        &self,
        container: &ContainerId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ItemVersion>, StoreError>;

    // Restore jobs and their per-item reports.

    /// Conditional on absence: [`StoreError::AlreadyExists`] if the id is taken.
    async fn create_restore_job(&self, job: &RestoreJob) -> Result<(), StoreError>;
    /// The job with its live status, plan and counters.
    async fn restore_job(&self, id: &str) -> Result<Option<RestoreJob>, StoreError>;
    /// A tenant's jobs, newest first.
    async fn list_restore_jobs(&self, tenant_id: &str, limit: usize) -> Result<Vec<RestoreJob>, StoreError>;
    /// Sets the status and, when given, the plan's totals. [`StoreError::NotFound`] if there is
    /// no such job.
    async fn set_restore_status(
        &self,
        id: &str,
        status: RestoreStatus,
        plan: Option<RestorePlan>,
    ) -> Result<(), StoreError>;
    /// Records one item's outcome idempotently: the report is written unless an
    /// identical-or-better outcome is already there (see [`outcome_replaces`]), and the job's
    /// counters move with it atomically (a retry that turns `Failed` into `Restored` moves one
    /// from `failed` to `restored`). `CreatedAfter` counts as `skipped`, `Conflict` as
    /// `conflicts`; `bytes` are added to `bytes_restored` for `Restored` only. True if the
    /// counters changed.
    async fn record_restore_outcome(&self, report: &RestoreItemReport, bytes: u64) -> Result<bool, StoreError>;
    /// Finishes a job whose counters were recounted from its reports: sets the status and
    /// the four outcome counters to `counts` in one write. Used only when the counters fall
    /// short of the reports (see the restorer's `finish_if_done`).
    async fn settle_restore_job(
        &self,
        id: &str,
        status: RestoreStatus,
        counts: OutcomeCounts,
    ) -> Result<(), StoreError>;
    async fn restore_report(&self, job_id: &str, item_id: &str) -> Result<Option<RestoreItemReport>, StoreError>;
    /// A job's reports in item id order.
    async fn restore_reports(
        &self,
        job_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RestoreItemReport>, StoreError>;

    // Export jobs: one row per completed zip.

    /// Records a completed part, conditional on absence: false if that part was already
    /// recorded (a redelivered part task), and then the first record stands.
    async fn record_export_part(&self, job_id: &str, part: &ExportPart) -> Result<bool, StoreError>;
    /// The job's recorded parts, in part order (strongly consistent).
    async fn export_parts(&self, job_id: &str) -> Result<Vec<ExportPart>, StoreError>;
}

/// A restore job's outcome counters, as recounted from its item reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub restored: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl OutcomeCounts {
    /// Counts one report's outcome in the counter the job counts it in. Conflicts (dry runs)
    /// are not outcomes of a restore.
    pub fn count(&mut self, outcome: RestoreOutcome) {
        match outcome {
            RestoreOutcome::Restored => self.restored += 1,
            RestoreOutcome::Unchanged => self.unchanged += 1,
            RestoreOutcome::Skipped | RestoreOutcome::CreatedAfter => self.skipped += 1,
            RestoreOutcome::Failed => self.failed += 1,
            RestoreOutcome::Conflict => {}
        }
    }

    pub fn done(&self) -> u64 {
        self.restored + self.unchanged + self.skipped + self.failed
    }
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
