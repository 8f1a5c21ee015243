//! The catalog's capabilities, one small trait per thing it holds: item history, point-in-time
//! reads, sync state, the container registry, coordination (throttles and slot leases), item
//! failures, restore jobs and export parts. A function asks only for the ones it uses; the
//! DynamoDB adapter (`crate::aws::catalog`) and the fake (`super::memory`) implement each in a
//! file of its own, and `super::contract` holds one test suite per trait that both pass.
//!
//! Each function's deps hold a bundle of exactly the capabilities it uses ([`CopierCatalog`],
//! [`EnumeratorCatalog`], [`SchedulerCatalog`], [`RestorerCatalog`], [`ApiCatalog`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Page, StoreError};
use crate::model::{
    ContainerId, ContainerRecord, ExportPart, ItemFailure, ItemHead, ItemKey, ItemVersion, ObjectRef,
    RestoreItemReport, RestoreJob, RestoreOutcome, RestorePlan, RestoreStatus, Service, SiteRecord, SyncState,
    Unresolved,
};

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

/// Each item's versions and its head (the newest version).
#[async_trait]
pub trait ItemHistory: Send + Sync {
    async fn head(&self, item: &ItemKey) -> Result<Option<ItemHead>, StoreError>;
    async fn heads(
        &self,
        container: &ContainerId,
        item_ids: &[String],
    ) -> Result<HashMap<String, ItemHead>, StoreError>;
    /// Every head of a container (current and deleted items).
    async fn list_heads(&self, container: &ContainerId) -> Result<Vec<ItemHead>, StoreError>;
    /// One page of [`list_heads`](Self::list_heads): at most `limit` heads in item id order,
    /// from after the last head of the page `cursor` ended (a restore plan reads a container of a
    /// million items this way, never all at once). A cursor from another listing, or an edited
    /// one, is [`StoreError::InvalidCursor`].
    async fn heads_page(
        &self,
        container: &ContainerId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemHead>, StoreError>;
    /// Writes the version row (conditional on absence) and advances the head unless the head
    /// is a row at or after it in the item's history (ordered by `ItemVersion::order_time`,
    /// then version marker: the order as-of reads use). At most two writes.
    async fn commit_version(&self, version: &ItemVersion, record: &ObjectRef) -> Result<Commit, StoreError>;
    /// Newest first.
    async fn versions(&self, item: &ItemKey, limit: usize) -> Result<Vec<ItemVersion>, StoreError>;
    async fn version_at(&self, item: &ItemKey, at: DateTime<Utc>) -> Result<Option<ItemVersion>, StoreError>;
}

/// Point-in-time reads. "As of T" (ARCHITECTURE.md, Time): per item, the newest version whose
/// Microsoft 365 time is <= T at millisecond precision; a tombstone current at T means the item
/// did not exist at T.
#[async_trait]
pub trait PointInTime: Send + Sync {
    /// The version current at `at` of every item of a container that had a version by then,
    /// tombstones included (so the caller sees deletions), in item order ([`item_order`]).
    /// Streams the container's version index: one paginated query over all its versions.
    ///
    /// [`item_order`]: super::item_order
    async fn container_as_of(&self, container: &ContainerId, at: DateTime<Utc>)
    -> Result<Vec<ItemVersion>, StoreError>;
    /// One page of [`container_as_of`](Self::container_as_of): the same versions in the same
    /// order (tombstones included), at most `limit` of them, from after the item the page
    /// `cursor` ended with. A cursor from another listing (other container or `at`) or an edited
    /// one is [`StoreError::InvalidCursor`]. A page's `next` may lead to an empty last page.
    async fn container_as_of_page(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemVersion>, StoreError>;
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
}

/// Each container's delta link, checkpoint and full-scan epoch, and what a full scan saw
/// (enumerator-owned).
#[async_trait]
pub trait SyncStates: Send + Sync {
    async fn sync_state(&self, container: &ContainerId) -> Result<SyncState, StoreError>;
    async fn put_sync_state(&self, container: &ContainerId, state: &SyncState) -> Result<(), StoreError>;
    /// Records that the full scan `epoch` saw these items alive, as [`seen_mark`]s: one write
    /// per [`SEEN_MARKS_PER_ROW`] items, never a write per item. Rows expire on their own.
    async fn record_seen(&self, container: &ContainerId, epoch: &str, item_ids: &[String]) -> Result<(), StoreError>;
    /// The marks of every item the full scan `epoch` recorded as seen, strongly consistent.
    async fn seen_in_scan(&self, container: &ContainerId, epoch: &str) -> Result<HashSet<String>, StoreError>;
}

/// Marks one seen-row holds (17 bytes each: about 17 KB a row, far below DynamoDB's 400 KB).
pub const SEEN_MARKS_PER_ROW: usize = 1000;

/// What a full scan keeps of an item it saw: 64 bits of the SHA-256 of its id. Two ids that
/// share a mark (about one chance in 10^10 in a drive of 10 million items) can only keep a
/// deletion unrecorded until the next scan, never record one.
pub fn seen_mark(item_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(item_id.as_bytes())[..8])
}

/// The registry of protected containers, per tenant (scheduler-owned), and the users'
/// drives and mailboxes discovery could not resolve.
#[async_trait]
pub trait Containers: Send + Sync {
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError>;
    /// The container whose [`ContainerId::tag`] is `tag` (what a lifecycle event names), by
    /// key: no listing of the tenant.
    async fn container_by_tag(&self, tenant_id: &str, tag: &str) -> Result<Option<ContainerRecord>, StoreError>;
    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError>;
    /// Callers write only what changed: a container's registration costs two writes.
    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError>;
    /// Registers a container only if no row has it yet; false when one does (another share
    /// registered it meanwhile: the same library reached through its site and its group).
    async fn create_container(&self, record: &ContainerRecord) -> Result<bool, StoreError>;
    /// The unresolved drives and mailboxes of the tenant (resolved ones are not listed).
    async fn list_unresolved(&self, tenant_id: &str) -> Result<Vec<Unresolved>, StoreError>;
    async fn put_unresolved(&self, unresolved: &Unresolved) -> Result<(), StoreError>;
    /// Marks a user's drive or mailbox resolved; nothing to do if it never was unresolved.
    async fn clear_unresolved(&self, tenant_id: &str, user_id: &str, service: Service) -> Result<(), StoreError>;
    /// The SharePoint sites discovery found or was given, deleted ones included.
    async fn list_sites(&self, tenant_id: &str) -> Result<Vec<SiteRecord>, StoreError>;
    async fn site(&self, tenant_id: &str, site_id: &str) -> Result<Option<SiteRecord>, StoreError>;
    async fn put_site(&self, site: &SiteRecord) -> Result<(), StoreError>;
    /// Where `/sites/delta` left off (a delta link, which carries its token).
    async fn sites_delta(&self, tenant_id: &str) -> Result<Option<String>, StoreError>;
    async fn put_sites_delta(&self, tenant_id: &str, link: &str) -> Result<(), StoreError>;
}

/// What every Lambda instance shares to go easy on Graph: throttle deadlines per resource and
/// concurrency slots on a resource.
#[async_trait]
pub trait Coordination: Send + Sync {
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
}

/// Items that failed to back up, with their attempts; cleared by flag, never deleted.
#[async_trait]
pub trait Failures: Send + Sync {
    async fn record_failure(&self, item: &ItemKey, reason: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn clear_failure(&self, item: &ItemKey) -> Result<(), StoreError>;
    async fn failures(&self, container: &ContainerId) -> Result<Vec<ItemFailure>, StoreError>;
}

/// The vault keeper's state (lock extension and verify): how far each head's objects are
/// locked, and each task's run, resumed across invocations.
#[async_trait]
pub trait VaultKeeping: Send + Sync {
    /// Records on the head that its version's objects are locked until `until`, unless the
    /// head has moved to another version since `head` was read (false: nothing written). A
    /// commit that moves the head clears it.
    async fn set_head_lock(&self, head: &ItemHead, until: DateTime<Utc>) -> Result<bool, StoreError>;
    /// The run of `task` as last saved (JSON) and its revision, read strongly consistent.
    async fn keeper_run(&self, tenant_id: &str, task: &str) -> Result<Option<(String, u64)>, StoreError>;
    /// Saves the run of `task` if the saved revision is still `revision` (`None`: none saved
    /// yet), as revision + 1; false when another invocation saved one since.
    async fn put_keeper_run(
        &self,
        tenant_id: &str,
        task: &str,
        run: &str,
        revision: Option<u64>,
    ) -> Result<bool, StoreError>;
}

/// Restore jobs and their per-item reports.
#[async_trait]
pub trait RestoreJobs: Send + Sync {
    /// Conditional on absence: [`StoreError::AlreadyExists`] if the id is taken.
    async fn create_restore_job(&self, job: &RestoreJob) -> Result<(), StoreError>;
    /// The job with its live status, plan and counters.
    async fn restore_job(&self, id: &str) -> Result<Option<RestoreJob>, StoreError>;
    /// A tenant's jobs, newest first.
    async fn list_restore_jobs(&self, tenant_id: &str, limit: usize) -> Result<Vec<RestoreJob>, StoreError>;
    /// Sets the status and, when given, the plan's totals, while the restorer still works on
    /// the job ([`RestoreStatus::WORKING`]): false, changing nothing, once it was cancelled,
    /// failed, finished or planned as a dry run. [`StoreError::NotFound`] if there is no such
    /// job. Every change of a job row stamps its `updated_at` (the progress heartbeat).
    async fn set_restore_status(
        &self,
        id: &str,
        status: RestoreStatus,
        plan: Option<RestorePlan>,
    ) -> Result<bool, StoreError>;
    /// Ends a job early (failed, cancelled): sets `end.to` and its reason, only while its
    /// status is one of `end.from` and, with `end.idle_since`, it has not changed after that
    /// moment (a job that made progress meanwhile is left alone). True if it was applied,
    /// false if the job had moved on; [`StoreError::NotFound`] if there is no such job.
    async fn end_restore_job(&self, id: &str, end: &JobEnd<'_>) -> Result<bool, StoreError>;
    /// The tenant's jobs that were active when last looked at: every job created since, and
    /// those not forgotten yet. One consistent read of one row (no index, so no
    /// lag); a job's id is added before its row is written.
    async fn active_restore_jobs(&self, tenant_id: &str) -> Result<Vec<ActiveJob>, StoreError>;
    /// Takes jobs off the tenant's active list (jobs that ended, or were never written).
    async fn forget_restore_jobs(&self, tenant_id: &str, jobs: &[ActiveJob]) -> Result<(), StoreError>;
    /// Records one item's outcome idempotently: the report is written unless an
    /// identical-or-better outcome is already there (see [`outcome_replaces`]), and the job's
    /// counters move with it atomically (a retry that turns `Failed` into `Restored` moves one
    /// from `failed` to `restored`). `CreatedAfter` counts as `skipped`, `Conflict` as
    /// `conflicts`; `bytes` are added to `bytes_restored` for `Restored` only. True if the
    /// counters changed.
    async fn record_restore_outcome(&self, report: &RestoreItemReport, bytes: u64) -> Result<bool, StoreError>;
    /// Finishes a job whose counters were recounted from its reports: sets the status and
    /// the four outcome counters to `counts` in one write, on the same condition as
    /// [`RestoreJobs::set_restore_status`]. Used only when the counters fall short of the
    /// reports (see the restorer's `finish_if_done`).
    async fn settle_restore_job(
        &self,
        id: &str,
        status: RestoreStatus,
        counts: OutcomeCounts,
    ) -> Result<bool, StoreError>;
    async fn restore_report(&self, job_id: &str, item_id: &str) -> Result<Option<RestoreItemReport>, StoreError>;
    /// A job's reports in item id order.
    async fn restore_reports(
        &self,
        job_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RestoreItemReport>, StoreError>;
}

/// The completed zips of export jobs, one record per part.
#[async_trait]
pub trait ExportParts: Send + Sync {
    /// Records a completed part, conditional on absence: false if that part was already
    /// recorded (a redelivered part task), and then the first record stands.
    async fn record_export_part(&self, job_id: &str, part: &ExportPart) -> Result<bool, StoreError>;
    /// The job's recorded parts, in part order (strongly consistent).
    async fn export_parts(&self, job_id: &str) -> Result<Vec<ExportPart>, StoreError>;
}

/// Declares what one function may touch in the catalog: a trait that is exactly these
/// capabilities, implemented for anything that has them. A function's deps hold its bundle,
/// so reading them tells what it can touch, as its IAM role does; the bundle's methods resolve
/// on `dyn Bundle` without importing the capability traits.
macro_rules! bundle {
    ($(#[$doc:meta])* $name:ident: $first:ident $(+ $rest:ident)*) => {
        $(#[$doc])*
        pub trait $name: $first $(+ $rest)* {}
        impl<T: ?Sized + $first $(+ $rest)*> $name for T {}
    };
}

bundle! {
    /// The copier: commits versions, shares throttling and mailbox slots, records failures.
    CopierCatalog: ItemHistory + Coordination + Failures
}
bundle! {
    /// The enumerators: read heads to decide, keep their sync state and what a full scan saw,
    /// share throttling, record items Graph sent unusable.
    EnumeratorCatalog: ItemHistory + SyncStates + Coordination + Failures
}
bundle! {
    /// The scheduler: the container registry and the sync state it reports and resets; the
    /// shared throttle, which sweeps defer to; restore jobs, which its watchdog ends when they
    /// stop making progress.
    SchedulerCatalog: Containers + SyncStates + Coordination + RestoreJobs
}
bundle! {
    /// The restorer: reads history as of T, shares mailbox slots, keeps restore jobs and
    /// export parts.
    RestorerCatalog: ItemHistory + PointInTime + SyncStates + Coordination + RestoreJobs + ExportParts
}
bundle! {
    /// The restore API: browses history, lists containers and their health, records jobs,
    /// reads the keeper's reports.
    ApiCatalog: ItemHistory + PointInTime + SyncStates + Containers + Failures + RestoreJobs + ExportParts + VaultKeeping + Coordination
}
bundle! {
    /// The vault keeper: walks the registry's heads, records how far their objects are
    /// locked, keeps its runs.
    KeeperCatalog: ItemHistory + Containers + VaultKeeping
}

/// A job on its tenant's active list: its id, and when it was created (a listed job whose row
/// is missing is forgotten only once it is old: its row may be on its way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveJob {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

/// A conditional end of a restore job ([`RestoreJobs::end_restore_job`]).
#[derive(Clone, Copy, Debug)]
pub struct JobEnd<'a> {
    /// The statuses the job may be in.
    pub from: &'a [RestoreStatus],
    pub to: RestoreStatus,
    /// Why, for the job's `reason`: no secrets.
    pub reason: &'a str,
    /// Only if the job's last change is no later than this (the watchdog's bound).
    pub idle_since: Option<DateTime<Utc>>,
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
