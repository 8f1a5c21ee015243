//! In-memory fakes of every store trait, with the semantics of the real adapters in
//! `crate::aws` (conditional creates, Object Lock that never shortens, a head that never
//! regresses, per-queue FIFO rules), request counters for tests that count writes, and fault
//! knobs for tests that exercise failure paths.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};

use super::{
    Commit, Containers, Coordination, ExportParts, Failures, ItemHistory, Listing, Lock, LockMode, MessageSink,
    Multipart, ObjectInfo, OutMessage, OutcomeCounts, Page, PointInTime, QueueName, RestoreJobs, SecretSource,
    SlotLease, StoreError, Stored, SyncStates, Vault, item_order, outcome_replaces,
};
use crate::model::{
    ContainerId, ContainerRecord, ExportPart, ItemFailure, ItemHead, ItemKey, ItemVersion, ObjectRef,
    RestoreItemReport, RestoreJob, RestoreOutcome, RestorePlan, RestoreStatus, SyncState,
};

/// S3's smallest part, except the last one.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
const STREAM_CHUNK: usize = 64 * 1024;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn injected(service: &'static str) -> StoreError {
    StoreError::Service { service, message: "injected fault".to_owned(), retryable: true }
}

/// Takes one unit from a fault budget; true when a fault should fire.
fn take_fault(budget: &mut u32) -> bool {
    let fire = *budget > 0;
    *budget = budget.saturating_sub(1);
    fire
}

// ---------------------------------------------------------------------------------------
// Vault

struct ObjectVersion {
    version_id: String,
    body: Bytes,
    lock_mode: Option<LockMode>,
    retain_until: Option<DateTime<Utc>>,
}

struct PendingUpload {
    key: String,
    parts: BTreeMap<i32, (String, Bytes)>,
}

#[derive(Default)]
struct VaultState {
    /// Versions per key, oldest first.
    objects: BTreeMap<String, Vec<ObjectVersion>>,
    uploads: HashMap<String, PendingUpload>,
    fail_puts: u32,
    drop_lock_on_multipart: bool,
    refuse_retention: bool,
}

impl VaultState {
    fn version(&self, object: &ObjectRef) -> Option<&ObjectVersion> {
        self.objects.get(&object.key)?.iter().find(|v| v.version_id == object.version_id)
    }

    fn add(&mut self, key: &str, body: Bytes, lock: Option<&Lock>) -> ObjectRef {
        let version_id = uuid::Uuid::new_v4().simple().to_string();
        self.objects.entry(key.to_owned()).or_default().push(ObjectVersion {
            version_id: version_id.clone(),
            body,
            lock_mode: lock.map(|l| l.mode),
            retain_until: lock.map(|l| l.retain_until),
        });
        ObjectRef { key: key.to_owned(), version_id }
    }
}

fn info(key: &str, v: &ObjectVersion) -> ObjectInfo {
    ObjectInfo {
        object: ObjectRef { key: key.to_owned(), version_id: v.version_id.clone() },
        size: v.body.len() as u64,
        lock_mode: v.lock_mode,
        retain_until: v.retain_until,
    }
}

/// Versioned, Object-Locked bucket: nothing is ever overwritten or deleted.
#[derive(Default)]
pub struct MemoryVault {
    state: Mutex<VaultState>,
    puts: AtomicU64,
    parts: AtomicU64,
    completes: AtomicU64,
    retention_puts: AtomicU64,
    heads: AtomicU64,
    gets: AtomicU64,
}

impl MemoryVault {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` `put_if_absent` calls fail with a retryable error, storing nothing.
    pub fn fail_next_puts(&self, n: u32) {
        locked(&self.state).fail_puts = n;
    }

    /// Completed multipart uploads carry no lock (moto's gap), so only the explicit
    /// retention set afterwards can lock them.
    pub fn drop_lock_on_multipart(&self, drop: bool) {
        locked(&self.state).drop_lock_on_multipart = drop;
    }

    /// Retention updates are accepted but not applied: verification must fail closed.
    pub fn refuse_retention(&self, refuse: bool) {
        locked(&self.state).refuse_retention = refuse;
    }

    /// Number of object versions stored.
    pub fn object_count(&self) -> usize {
        locked(&self.state).objects.values().map(Vec::len).sum()
    }

    pub fn all_objects(&self) -> Vec<(ObjectRef, ObjectInfo)> {
        let state = locked(&self.state);
        state
            .objects
            .iter()
            .flat_map(|(key, versions)| versions.iter().map(|v| info(key, v)))
            .map(|i| (i.object.clone(), i))
            .collect()
    }

    /// `put_if_absent` calls, including failed and deduplicated ones.
    pub fn put_count(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    pub fn part_count(&self) -> u64 {
        self.parts.load(Ordering::Relaxed)
    }

    pub fn complete_count(&self) -> u64 {
        self.completes.load(Ordering::Relaxed)
    }

    pub fn retention_put_count(&self) -> u64 {
        self.retention_puts.load(Ordering::Relaxed)
    }

    pub fn head_count(&self) -> u64 {
        self.heads.load(Ordering::Relaxed)
    }

    pub fn get_count(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Vault for MemoryVault {
    async fn put_if_absent(&self, key: &str, body: Bytes, lock: &Lock) -> Result<Stored, StoreError> {
        bump(&self.puts);
        let stored = {
            let mut state = locked(&self.state);
            if take_fault(&mut state.fail_puts) {
                return Err(injected("s3"));
            }
            match state.objects.get(key).and_then(|v| v.last()) {
                Some(current) => Stored {
                    object: ObjectRef { key: key.to_owned(), version_id: current.version_id.clone() },
                    created: false,
                },
                None => Stored { object: state.add(key, body, Some(lock)), created: true },
            }
        };
        self.ensure_locked(&stored.object, lock).await?;
        Ok(stored)
    }

    async fn start_multipart(&self, key: &str, _lock: &Lock) -> Result<Multipart, StoreError> {
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let pending = PendingUpload { key: key.to_owned(), parts: BTreeMap::new() };
        locked(&self.state).uploads.insert(upload_id.clone(), pending);
        Ok(Multipart { key: key.to_owned(), upload_id, parts: Vec::new() })
    }

    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError> {
        bump(&self.parts);
        if !(1..=10_000).contains(&part_number) {
            return Err(StoreError::Malformed(format!("part number {part_number} out of range")));
        }
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
        let mut state = locked(&self.state);
        let pending =
            state.uploads.get_mut(&upload.upload_id).ok_or_else(|| StoreError::NotFound { key: upload.key.clone() })?;
        pending.parts.insert(part_number, (etag.clone(), body));
        upload.parts.retain(|(n, _)| *n != part_number);
        upload.parts.push((part_number, etag));
        Ok(())
    }

    async fn complete_multipart(&self, upload: Multipart, lock: &Lock) -> Result<ObjectRef, StoreError> {
        bump(&self.completes);
        let object = {
            let mut state = locked(&self.state);
            let pending =
                state.uploads.get(&upload.upload_id).ok_or_else(|| StoreError::NotFound { key: upload.key.clone() })?;
            let mut listed = upload.parts.clone();
            listed.sort_by_key(|(n, _)| *n);
            if listed.is_empty() {
                return Err(StoreError::Malformed("a multipart upload needs at least one part".to_owned()));
            }
            let mut body = Vec::new();
            for (i, (n, etag)) in listed.iter().enumerate() {
                let (stored_etag, part) = pending
                    .parts
                    .get(n)
                    .filter(|(e, _)| e == etag)
                    .ok_or_else(|| StoreError::Malformed(format!("part {n} was not uploaded as listed")))?;
                debug_assert_eq!(stored_etag, etag);
                if i + 1 < listed.len() && part.len() < MIN_PART_SIZE {
                    return Err(StoreError::Malformed(format!("part {n} is smaller than 5 MiB (EntityTooSmall)")));
                }
                body.extend_from_slice(part);
            }
            let key = pending.key.clone();
            state.uploads.remove(&upload.upload_id);
            let lock_on_create = (!state.drop_lock_on_multipart).then_some(lock);
            state.add(&key, Bytes::from(body), lock_on_create)
        };
        self.ensure_locked(&object, lock).await?;
        Ok(object)
    }

    async fn abort_multipart(&self, upload: Multipart) -> Result<(), StoreError> {
        locked(&self.state).uploads.remove(&upload.upload_id);
        Ok(())
    }

    async fn ensure_locked(&self, object: &ObjectRef, lock: &Lock) -> Result<(), StoreError> {
        let mut state = locked(&self.state);
        let refuse = state.refuse_retention;
        let version = state
            .objects
            .get_mut(&object.key)
            .and_then(|vs| vs.iter_mut().find(|v| v.version_id == object.version_id))
            .ok_or_else(|| StoreError::NotFound { key: object.key.clone() })?;
        if info(&object.key, version).satisfies(lock) {
            return Ok(());
        }
        bump(&self.retention_puts);
        if !refuse {
            // Never shorten, never weaken COMPLIANCE.
            if version.lock_mode != Some(LockMode::Compliance) {
                version.lock_mode = Some(lock.mode);
            }
            version.retain_until = Some(version.retain_until.map_or(lock.retain_until, |t| t.max(lock.retain_until)));
        }
        let after = info(&object.key, version);
        if after.satisfies(lock) {
            Ok(())
        } else {
            Err(StoreError::NotLocked {
                key: object.key.clone(),
                detail: format!("reads back mode {:?} until {:?}", after.lock_mode, after.retain_until),
            })
        }
    }

    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, StoreError> {
        bump(&self.heads);
        Ok(locked(&self.state).version(object).map(|v| info(&object.key, v)))
    }

    async fn get(&self, object: &ObjectRef) -> Result<Bytes, StoreError> {
        bump(&self.gets);
        let state = locked(&self.state);
        let version = state.version(object).ok_or_else(|| StoreError::NotFound { key: object.key.clone() })?;
        Ok(version.body.clone())
    }

    async fn get_stream(
        &self,
        object: &ObjectRef,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let body = self.get(object).await?;
        let chunks: Vec<Result<Bytes, StoreError>> = (0..body.len())
            .step_by(STREAM_CHUNK)
            .map(|start| Ok(body.slice(start..(start + STREAM_CHUNK).min(body.len()))))
            .collect();
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectRef>, StoreError> {
        let state = locked(&self.state);
        Ok(state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .flat_map(|(key, versions)| {
                versions.iter().rev().map(|v| ObjectRef { key: key.clone(), version_id: v.version_id.clone() })
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// Catalog

/// Same ordering as the DynamoDB sort key: Microsoft 365 time at millisecond precision,
/// then the version marker.
fn version_sort_key(modified: DateTime<Utc>, version: &str) -> (String, String) {
    (millis(modified), version.to_owned())
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The job counter an outcome counts in. `CreatedAfter` items were not restored: skipped.
fn counter(job: &mut RestoreJob, outcome: RestoreOutcome) -> &mut u64 {
    match outcome {
        RestoreOutcome::Restored => &mut job.restored,
        RestoreOutcome::Unchanged => &mut job.unchanged,
        RestoreOutcome::Skipped | RestoreOutcome::CreatedAfter => &mut job.skipped,
        RestoreOutcome::Failed => &mut job.failed,
        RestoreOutcome::Conflict => &mut job.conflicts,
    }
}

struct HeadRow {
    head: ItemHead,
    modified: String,
}

struct FailureRow {
    reason: String,
    attempts: u32,
    last_attempt: DateTime<Utc>,
    resolved: bool,
}

#[derive(Default)]
struct CatalogState {
    versions: BTreeMap<ItemKey, BTreeMap<(String, String), ItemVersion>>,
    heads: BTreeMap<ItemKey, HeadRow>,
    sync: HashMap<ContainerId, SyncState>,
    containers: BTreeMap<ContainerId, ContainerRecord>,
    throttles: HashMap<(String, String), DateTime<Utc>>,
    slots: HashMap<(String, String, u32), DateTime<Utc>>,
    failures: BTreeMap<ItemKey, FailureRow>,
    restore_jobs: BTreeMap<String, RestoreJob>,
    /// By (job id, item id).
    restore_reports: BTreeMap<(String, String), RestoreItemReport>,
    /// By (job id, part).
    export_parts: BTreeMap<(String, u32), ExportPart>,
    fail_head_updates: u32,
}

impl CatalogState {
    /// The version of each item of `container` current at `bound` (milliseconds), in item order.
    fn as_of(&self, container: &ContainerId, bound: &str) -> Vec<&ItemVersion> {
        let mut current: Vec<&ItemVersion> = self
            .versions
            .iter()
            .filter(|(k, _)| &k.container == container)
            .filter_map(|(_, history)| history.iter().rev().find(|((t, _), _)| t.as_str() <= bound).map(|(_, v)| v))
            .collect();
        current.sort_by_cached_key(|v| item_order(&v.key.item_id));
        current
    }
}

/// The catalog with the DynamoDB adapter's conditional semantics.
#[derive(Default)]
pub struct MemoryCatalog {
    state: Mutex<CatalogState>,
    writes: AtomicU64,
    reads: AtomicU64,
}

impl MemoryCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Write requests, counted like DynamoDB bills them (failed conditions included).
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub fn read_count(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The next `n` head updates fail after the version row was written: a crash between
    /// the two writes of a commit.
    pub fn fail_next_head_updates(&self, n: u32) {
        locked(&self.state).fail_head_updates = n;
    }

    fn read(&self) -> MutexGuard<'_, CatalogState> {
        bump(&self.reads);
        locked(&self.state)
    }

    fn write(&self) -> MutexGuard<'_, CatalogState> {
        bump(&self.writes);
        locked(&self.state)
    }
}

#[async_trait]
impl ItemHistory for MemoryCatalog {
    async fn head(&self, item: &ItemKey) -> Result<Option<ItemHead>, StoreError> {
        Ok(self.read().heads.get(item).map(|row| row.head.clone()))
    }

    async fn heads(
        &self,
        container: &ContainerId,
        item_ids: &[String],
    ) -> Result<HashMap<String, ItemHead>, StoreError> {
        let state = self.read();
        Ok(item_ids
            .iter()
            .filter_map(|id| state.heads.get(&container.item(id.as_str())).map(|row| (id.clone(), row.head.clone())))
            .collect())
    }

    async fn list_heads(&self, container: &ContainerId) -> Result<Vec<ItemHead>, StoreError> {
        let state = self.read();
        Ok(state.heads.iter().filter(|(k, _)| &k.container == container).map(|(_, row)| row.head.clone()).collect())
    }

    async fn commit_version(&self, version: &ItemVersion, record: &ObjectRef) -> Result<Commit, StoreError> {
        let sort_key = version_sort_key(version.modified, &version.version);
        let commit = {
            let mut state = self.write();
            let history = state.versions.entry(version.key.clone()).or_default();
            if history.contains_key(&sort_key) {
                Commit::AlreadyCommitted
            } else {
                history.insert(sort_key.clone(), version.clone());
                Commit::Created
            }
        };
        let mut state = self.write();
        if take_fault(&mut state.fail_head_updates) {
            return Err(injected("dynamodb"));
        }
        // As in DynamoDB: a first commit advances unless the head is newer; a redelivery
        // re-advances (repairing a crash between the writes) only past an older head.
        let advance = match state.heads.get(&version.key) {
            None => true,
            Some(row) if commit == Commit::Created => row.modified <= sort_key.0,
            Some(row) => row.modified < sort_key.0,
        };
        if advance {
            let seen_epoch = state.heads.get(&version.key).and_then(|r| r.head.seen_epoch.clone());
            let head = ItemHead { current: version.clone(), record: record.clone(), seen_epoch };
            state.heads.insert(version.key.clone(), HeadRow { head, modified: sort_key.0 });
        }
        Ok(commit)
    }

    async fn versions(&self, item: &ItemKey, limit: usize) -> Result<Vec<ItemVersion>, StoreError> {
        let state = self.read();
        Ok(state.versions.get(item).map(|h| h.values().rev().take(limit).cloned().collect()).unwrap_or_default())
    }

    async fn version_at(&self, item: &ItemKey, at: DateTime<Utc>) -> Result<Option<ItemVersion>, StoreError> {
        let bound = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let state = self.read();
        Ok(state
            .versions
            .get(item)
            .and_then(|h| h.iter().rev().find(|((t, _), _)| *t <= bound))
            .map(|(_, v)| v.clone()))
    }

    async fn mark_seen(&self, container: &ContainerId, item_ids: &[String], epoch: &str) -> Result<(), StoreError> {
        for id in item_ids {
            if let Some(row) = self.write().heads.get_mut(&container.item(id.as_str())) {
                row.head.seen_epoch = Some(epoch.to_owned());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PointInTime for MemoryCatalog {
    async fn container_as_of(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        Ok(self.read().as_of(container, &millis(at)).into_iter().cloned().collect())
    }

    async fn children_as_of(
        &self,
        container: &ContainerId,
        parent_id: &str,
        at: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemVersion>, StoreError> {
        let listing = Listing::children(container, parent_id, at);
        let after = listing.resume(cursor)?.map(|id| item_order(&id));
        let state = self.read();
        let mut children = state
            .as_of(container, &millis(at))
            .into_iter()
            .filter(|v| !v.deleted && v.parent_id.as_deref() == Some(parent_id))
            .filter(|v| after.as_ref().is_none_or(|a| item_order(&v.key.item_id) > *a));
        let items: Vec<ItemVersion> = children.by_ref().take(limit.max(1)).cloned().collect();
        let more = children.next().is_some();
        let next = items.last().filter(|_| more).map(|v| listing.cursor(&v.key.item_id));
        Ok(Page { items, next })
    }

    async fn changes_between(
        &self,
        container: &ContainerId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        let (lo, hi) = (millis(from), millis(to));
        let state = self.read();
        let mut found: Vec<&ItemVersion> = state
            .versions
            .iter()
            .filter(|(k, _)| &k.container == container)
            .flat_map(|(_, history)| history.iter())
            .filter(|((t, _), _)| lo <= *t && t <= &hi)
            .map(|(_, v)| v)
            .collect();
        found.sort_by_cached_key(|v| (millis(v.modified), item_order(&v.key.item_id), v.version.clone()));
        Ok(found.into_iter().take(limit).cloned().collect())
    }
}

#[async_trait]
impl SyncStates for MemoryCatalog {
    async fn sync_state(&self, container: &ContainerId) -> Result<SyncState, StoreError> {
        Ok(self.read().sync.get(container).cloned().unwrap_or_default())
    }

    async fn put_sync_state(&self, container: &ContainerId, state: &SyncState) -> Result<(), StoreError> {
        self.write().sync.insert(container.clone(), state.clone());
        Ok(())
    }
}

#[async_trait]
impl Containers for MemoryCatalog {
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError> {
        Ok(self.read().containers.get(container).cloned())
    }

    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError> {
        let state = self.read();
        Ok(state.containers.values().filter(|r| r.container.tenant_id == tenant_id).cloned().collect())
    }

    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError> {
        self.write().containers.insert(record.container.clone(), record.clone());
        Ok(())
    }
}

#[async_trait]
impl Coordination for MemoryCatalog {
    async fn throttled_until(&self, tenant_id: &str, resource: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.read().throttles.get(&(tenant_id.to_owned(), resource.to_owned())).copied())
    }

    async fn throttle(&self, tenant_id: &str, resource: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.write();
        let current = state.throttles.entry((tenant_id.to_owned(), resource.to_owned())).or_insert(until);
        *current = (*current).max(until);
        Ok(())
    }

    async fn acquire_slot(
        &self,
        tenant_id: &str,
        resource: &str,
        slots: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SlotLease>, StoreError> {
        let mut state = self.write();
        for slot in 0..slots {
            let key = (tenant_id.to_owned(), resource.to_owned(), slot);
            if state.slots.get(&key).is_none_or(|held| *held < now) {
                state.slots.insert(key, until);
                let (tenant_id, resource) = (tenant_id.to_owned(), resource.to_owned());
                return Ok(Some(SlotLease { tenant_id, resource, slot, until }));
            }
        }
        Ok(None)
    }

    async fn release_slot(&self, lease: &SlotLease) -> Result<(), StoreError> {
        let mut state = self.write();
        let key = (lease.tenant_id.clone(), lease.resource.clone(), lease.slot);
        if state.slots.get(&key) == Some(&lease.until) {
            state.slots.remove(&key);
        }
        Ok(())
    }
}

#[async_trait]
impl Failures for MemoryCatalog {
    async fn record_failure(&self, item: &ItemKey, reason: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.write();
        let row = state.failures.entry(item.clone()).or_insert(FailureRow {
            reason: String::new(),
            attempts: 0,
            last_attempt: at,
            resolved: false,
        });
        row.reason = reason.to_owned();
        row.attempts += 1;
        row.last_attempt = at;
        row.resolved = false;
        Ok(())
    }

    async fn clear_failure(&self, item: &ItemKey) -> Result<(), StoreError> {
        if let Some(row) = self.write().failures.get_mut(item) {
            row.resolved = true;
        }
        Ok(())
    }

    async fn failures(&self, container: &ContainerId) -> Result<Vec<ItemFailure>, StoreError> {
        let state = self.read();
        Ok(state
            .failures
            .iter()
            .filter(|(k, row)| &k.container == container && !row.resolved)
            .map(|(k, row)| ItemFailure {
                key: k.clone(),
                reason: row.reason.clone(),
                attempts: row.attempts,
                last_attempt: row.last_attempt,
            })
            .collect())
    }
}

#[async_trait]
impl RestoreJobs for MemoryCatalog {
    async fn create_restore_job(&self, job: &RestoreJob) -> Result<(), StoreError> {
        let mut state = self.write();
        if state.restore_jobs.contains_key(&job.id) {
            return Err(StoreError::AlreadyExists { key: format!("restore job {}", job.id) });
        }
        state.restore_jobs.insert(job.id.clone(), job.clone());
        Ok(())
    }

    async fn restore_job(&self, id: &str) -> Result<Option<RestoreJob>, StoreError> {
        Ok(self.read().restore_jobs.get(id).cloned())
    }

    async fn list_restore_jobs(&self, tenant_id: &str, limit: usize) -> Result<Vec<RestoreJob>, StoreError> {
        let state = self.read();
        let mut jobs: Vec<&RestoreJob> =
            state.restore_jobs.values().filter(|j| j.container.tenant_id == tenant_id).collect();
        jobs.sort_by_cached_key(|j| std::cmp::Reverse((millis(j.created_at), j.id.clone())));
        Ok(jobs.into_iter().take(limit).cloned().collect())
    }

    async fn set_restore_status(
        &self,
        id: &str,
        status: RestoreStatus,
        plan: Option<RestorePlan>,
    ) -> Result<(), StoreError> {
        let mut state = self.write();
        let job =
            state.restore_jobs.get_mut(id).ok_or_else(|| StoreError::NotFound { key: format!("restore job {id}") })?;
        job.status = status;
        if let Some(plan) = plan {
            (job.planned_items, job.planned_bytes, job.conflicts) = (plan.items, plan.bytes, plan.conflicts);
        }
        Ok(())
    }

    async fn record_restore_outcome(&self, report: &RestoreItemReport, bytes: u64) -> Result<bool, StoreError> {
        let mut state = self.write();
        let key = (report.job_id.clone(), report.item_id.clone());
        let recorded = state.restore_reports.get(&key).map(|r| r.outcome);
        if !outcome_replaces(recorded, report.outcome) {
            return Ok(false);
        }
        let job = state
            .restore_jobs
            .get_mut(&report.job_id)
            .ok_or_else(|| StoreError::NotFound { key: format!("restore job {}", report.job_id) })?;
        if let Some(previous) = recorded {
            let count = counter(job, previous);
            *count = count.saturating_sub(1);
        }
        *counter(job, report.outcome) += 1;
        if report.outcome == RestoreOutcome::Restored {
            job.bytes_restored += bytes;
        }
        state.restore_reports.insert(key, report.clone());
        Ok(true)
    }

    async fn settle_restore_job(
        &self,
        id: &str,
        status: RestoreStatus,
        counts: OutcomeCounts,
    ) -> Result<(), StoreError> {
        let mut state = self.write();
        let job =
            state.restore_jobs.get_mut(id).ok_or_else(|| StoreError::NotFound { key: format!("restore job {id}") })?;
        job.status = status;
        (job.restored, job.unchanged, job.skipped, job.failed) =
            (counts.restored, counts.unchanged, counts.skipped, counts.failed);
        Ok(())
    }

    async fn restore_report(&self, job_id: &str, item_id: &str) -> Result<Option<RestoreItemReport>, StoreError> {
        Ok(self.read().restore_reports.get(&(job_id.to_owned(), item_id.to_owned())).cloned())
    }

    async fn restore_reports(
        &self,
        job_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RestoreItemReport>, StoreError> {
        let listing = Listing::restore_reports(job_id);
        let after = listing.resume(cursor)?;
        let state = self.read();
        let mut reports = state
            .restore_reports
            .range((job_id.to_owned(), String::new())..)
            .take_while(|((job, _), _)| job == job_id)
            .filter(|((_, item), _)| after.as_ref().is_none_or(|a| item > a))
            .map(|(_, r)| r);
        let items: Vec<RestoreItemReport> = reports.by_ref().take(limit.max(1)).cloned().collect();
        let more = reports.next().is_some();
        let next = items.last().filter(|_| more).map(|r| listing.cursor(&r.item_id));
        Ok(Page { items, next })
    }
}

#[async_trait]
impl ExportParts for MemoryCatalog {
    async fn record_export_part(&self, job_id: &str, part: &ExportPart) -> Result<bool, StoreError> {
        let mut state = self.write();
        let key = (job_id.to_owned(), part.part);
        if state.export_parts.contains_key(&key) {
            return Ok(false);
        }
        state.export_parts.insert(key, part.clone());
        Ok(true)
    }

    async fn export_parts(&self, job_id: &str) -> Result<Vec<ExportPart>, StoreError> {
        let state = self.read();
        Ok(state
            .export_parts
            .range((job_id.to_owned(), 0)..)
            .take_while(|((job, _), _)| job == job_id)
            .map(|(_, p)| p.clone())
            .collect())
    }
}

pub use super::exports_memory::MemoryExports;

// ---------------------------------------------------------------------------------------
// Queues and secrets

/// Records messages per queue. `changes` is FIFO: its messages need a group id.
#[derive(Default)]
pub struct MemorySink {
    queues: Mutex<BTreeMap<QueueName, Vec<OutMessage>>>,
    fail_sends: Mutex<u32>,
    sends: AtomicU64,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns everything sent to `queue`, oldest first.
    pub fn take(&self, queue: QueueName) -> Vec<OutMessage> {
        locked(&self.queues).remove(&queue).unwrap_or_default()
    }

    /// Everything sent to `queue` and not yet taken.
    pub fn messages(&self, queue: QueueName) -> Vec<OutMessage> {
        locked(&self.queues).get(&queue).cloned().unwrap_or_default()
    }

    /// The next `n` `send` calls fail with a retryable error, sending nothing.
    pub fn fail_next_sends(&self, n: u32) {
        *locked(&self.fail_sends) = n;
    }

    /// `send` calls, including failed ones.
    pub fn send_count(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl MessageSink for MemorySink {
    async fn send(&self, queue: QueueName, messages: Vec<OutMessage>) -> Result<(), StoreError> {
        bump(&self.sends);
        if take_fault(&mut locked(&self.fail_sends)) {
            return Err(injected("sqs"));
        }
        if queue == QueueName::Changes && messages.iter().any(|m| m.group_id.is_none()) {
            return Err(StoreError::Malformed("a message to a FIFO queue needs a group id".to_owned()));
        }
        locked(&self.queues).entry(queue).or_default().extend(messages);
        Ok(())
    }
}

/// Secrets by id.
#[derive(Default)]
pub struct MemorySecrets {
    values: Mutex<HashMap<String, String>>,
    gets: AtomicU64,
}

impl MemorySecrets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(self, id: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(id, value);
        self
    }

    pub fn insert(&self, id: impl Into<String>, value: impl Into<String>) {
        locked(&self.values).insert(id.into(), value.into());
    }

    pub fn get_count(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl SecretSource for MemorySecrets {
    async fn secret(&self, id: &str) -> Result<String, StoreError> {
        bump(&self.gets);
        locked(&self.values).get(id).cloned().ok_or_else(|| StoreError::NotFound { key: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ItemKind, SCHEMA_VERSION, Verification};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
    }

    fn lock(until: &str) -> Lock {
        Lock { mode: LockMode::Governance, retain_until: at(until) }
    }

    fn version(item: &ItemKey, etag: &str, modified: &str) -> ItemVersion {
        ItemVersion {
            v: SCHEMA_VERSION,
            key: item.clone(),
            version: etag.to_owned(),
            kind: ItemKind::File,
            name: Some("report.docx".to_owned()),
            parent_id: None,
            ctag: None,
            modified: at(modified),
            captured_at: at("2030-01-01T00:00:00Z"),
            deleted: false,
            content: None,
            verification: Verification::Unverified,
            mail: None,
        }
    }

    fn record(etag: &str) -> ObjectRef {
        ObjectRef { key: format!("records/{etag}"), version_id: "1".to_owned() }
    }

    #[tokio::test]
    async fn a_second_put_of_the_same_key_is_a_locked_no_op() {
        let vault = MemoryVault::new();
        let l = lock("2031-01-01T00:00:00Z");
        let first = vault.put_if_absent("blob", Bytes::from_static(b"one"), &l).await.expect("first put");
        let second = vault.put_if_absent("blob", Bytes::from_static(b"two"), &l).await.expect("second put");
        assert!(first.created && !second.created);
        assert_eq!(first.object, second.object);
        assert_eq!(vault.object_count(), 1);
        assert_eq!(vault.get(&first.object).await.expect("get"), Bytes::from_static(b"one"));
        let (_, info) = &vault.all_objects()[0];
        assert!(info.satisfies(&l));
    }

    #[tokio::test]
    async fn injected_put_faults_store_nothing_and_are_retryable() {
        let vault = MemoryVault::new();
        vault.fail_next_puts(1);
        let err = vault.put_if_absent("k", Bytes::from_static(b"x"), &lock("2031-01-01T00:00:00Z")).await;
        assert!(err.is_err_and(|e| e.is_retryable()));
        assert_eq!(vault.object_count(), 0);
        assert!(vault.put_if_absent("k", Bytes::from_static(b"x"), &lock("2031-01-01T00:00:00Z")).await.is_ok());
        assert_eq!(vault.put_count(), 2);
    }

    #[tokio::test]
    async fn multipart_without_lock_on_create_ends_locked_or_fails_closed() {
        let vault = MemoryVault::new();
        vault.drop_lock_on_multipart(true);
        let l = lock("2031-01-01T00:00:00Z");
        let big = Bytes::from(vec![7u8; MIN_PART_SIZE]);
        let mut upload = vault.start_multipart("large", &l).await.expect("start");
        vault.upload_part(&mut upload, 1, big.clone()).await.expect("part 1");
        vault.upload_part(&mut upload, 2, Bytes::from_static(b"tail")).await.expect("part 2");
        let object = vault.complete_multipart(upload, &l).await.expect("complete");
        let info = vault.head(&object).await.expect("head").expect("exists");
        assert!(info.satisfies(&l));
        assert_eq!(info.size, MIN_PART_SIZE as u64 + 4);
        assert_eq!(vault.retention_put_count(), 1);

        vault.refuse_retention(true);
        let mut upload = vault.start_multipart("large2", &l).await.expect("start");
        vault.upload_part(&mut upload, 1, Bytes::from_static(b"small")).await.expect("part");
        let err = vault.complete_multipart(upload, &l).await;
        assert!(matches!(err, Err(StoreError::NotLocked { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn small_middle_parts_are_rejected_and_retention_never_shortens() {
        let vault = MemoryVault::new();
        let l = lock("2031-01-01T00:00:00Z");
        let mut upload = vault.start_multipart("large", &l).await.expect("start");
        vault.upload_part(&mut upload, 1, Bytes::from_static(b"tiny")).await.expect("part 1");
        vault.upload_part(&mut upload, 2, Bytes::from_static(b"tail")).await.expect("part 2");
        assert!(vault.complete_multipart(upload, &l).await.is_err());

        let stored =
            vault.put_if_absent("k", Bytes::from_static(b"x"), &lock("2032-01-01T00:00:00Z")).await.expect("put");
        vault.ensure_locked(&stored.object, &l).await.expect("already longer");
        let info = vault.head(&stored.object).await.expect("head").expect("exists");
        assert_eq!(info.retain_until, Some(at("2032-01-01T00:00:00Z")));
    }

    #[tokio::test]
    async fn redelivered_commit_is_already_committed_and_heads_never_regress() {
        let catalog = MemoryCatalog::new();
        let item = ContainerId::new("t", "d").item("i");
        let old = version(&item, "e1", "2024-05-01T10:00:00Z");
        let new = version(&item, "e2", "2024-05-02T10:00:00Z");
        assert_eq!(catalog.commit_version(&new, &record("e2")).await.expect("new"), Commit::Created);
        assert_eq!(catalog.commit_version(&old, &record("e1")).await.expect("late old"), Commit::Created);
        assert_eq!(catalog.commit_version(&old, &record("e1")).await.expect("again"), Commit::AlreadyCommitted);
        let head = catalog.head(&item).await.expect("head").expect("exists");
        assert_eq!(head.current.version, "e2");
        assert_eq!(head.record, record("e2"));
        let history: Vec<_> =
            catalog.versions(&item, 10).await.expect("versions").into_iter().map(|v| v.version).collect();
        assert_eq!(history, ["e2", "e1"]);
        assert_eq!(catalog.write_count(), 6);
    }

    #[tokio::test]
    async fn a_crash_between_the_two_writes_is_repaired_by_redelivery() {
        let catalog = MemoryCatalog::new();
        let item = ContainerId::new("t", "d").item("i");
        let v = version(&item, "e1", "2024-05-01T10:00:00Z");
        catalog.fail_next_head_updates(1);
        assert!(catalog.commit_version(&v, &record("e1")).await.is_err());
        assert_eq!(catalog.head(&item).await.expect("head"), None);
        assert_eq!(catalog.commit_version(&v, &record("e1")).await.expect("redelivery"), Commit::AlreadyCommitted);
        assert_eq!(catalog.head(&item).await.expect("head").map(|h| h.current.version).as_deref(), Some("e1"));
    }

    #[tokio::test]
    async fn version_at_includes_versions_modified_exactly_then() {
        let catalog = MemoryCatalog::new();
        let item = ContainerId::new("t", "d").item("i");
        for (etag, t) in [("e1", "2024-05-01T10:00:00Z"), ("e2", "2024-05-02T10:00:00.500Z")] {
            catalog.commit_version(&version(&item, etag, t), &record(etag)).await.expect("commit");
        }
        let as_of = |t: &'static str| {
            let catalog = &catalog;
            let item = &item;
            async move { catalog.version_at(item, at(t)).await.expect("version_at").map(|v| v.version) }
        };
        assert_eq!(as_of("2024-05-01T09:59:59.999Z").await, None);
        assert_eq!(as_of("2024-05-01T10:00:00Z").await.as_deref(), Some("e1"));
        assert_eq!(as_of("2024-05-02T10:00:00.499Z").await.as_deref(), Some("e1"));
        assert_eq!(as_of("2024-05-02T10:00:00.500Z").await.as_deref(), Some("e2"));
    }

    #[tokio::test]
    async fn throttle_only_moves_later_and_failures_clear_without_deleting() {
        let catalog = MemoryCatalog::new();
        catalog.throttle("t", "drive", at("2024-05-01T10:05:00Z")).await.expect("throttle");
        catalog.throttle("t", "drive", at("2024-05-01T10:01:00Z")).await.expect("earlier");
        assert_eq!(catalog.throttled_until("t", "drive").await.expect("read"), Some(at("2024-05-01T10:05:00Z")));

        let c = ContainerId::new("t", "d");
        catalog.record_failure(&c.item("a"), "timeout", at("2024-05-01T10:00:00Z")).await.expect("fail a");
        catalog.record_failure(&c.item("a"), "timeout", at("2024-05-01T10:01:00Z")).await.expect("fail a again");
        catalog.record_failure(&c.item("b"), "403", at("2024-05-01T10:00:00Z")).await.expect("fail b");
        catalog.clear_failure(&c.item("b")).await.expect("clear b");
        let failures = catalog.failures(&c).await.expect("failures");
        assert_eq!(failures.len(), 1);
        assert_eq!((failures[0].key.item_id.as_str(), failures[0].attempts), ("a", 2));
    }

    #[tokio::test]
    async fn fifo_messages_need_a_group() {
        let sink = MemorySink::new();
        let msg = OutMessage { body: "{}".to_owned(), group_id: None, delay: None };
        assert!(sink.send(QueueName::Changes, vec![msg.clone()]).await.is_err());
        sink.send(QueueName::Items, vec![msg.clone()]).await.expect("standard");
        assert_eq!(sink.take(QueueName::Items), vec![msg]);
        assert!(sink.take(QueueName::Items).is_empty());
    }
}
