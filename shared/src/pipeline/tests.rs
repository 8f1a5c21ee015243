//! In-process tests of the enumerator and copier against the in-memory fakes and a fake
//! drive: what a backup's user cares about (bytes, versions, deletions, nothing twice).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::DriveReader;
use super::copier::{self, Copied, CopierDeps};
use super::enumerator::{self, EnumeratorDeps};
use crate::graph::{DeltaCursor, DeltaLink, DeltaPage, Download, DriveItem, GraphError, ItemKind, QuickXorHasher};
use crate::model::{ChangeJob, ChangeReason, ContainerId, ItemJob, SCHEMA_VERSION, Verification};
use crate::store::memory::{MemoryCatalog, MemorySink, MemoryVault};
use crate::store::{Coordination, ItemHistory, LockMode, QueueName, SyncStates};

/// A drive whose delta feed returns its whole current state in one page, plus the deletions
/// reported since the last page.
#[derive(Default)]
pub(super) struct FakeDrive {
    pub(super) items: Mutex<HashMap<String, (DriveItem, Bytes)>>,
    /// Deleted items the next delta page reports (then forgets).
    pub(super) reported_deletions: Mutex<Vec<DriveItem>>,
    /// The next downloads end after this many bytes.
    pub(super) truncate_next: AtomicU32,
    /// Serve these bytes instead of the item's (content changed behind Graph's back).
    pub(super) serve_instead: Mutex<Option<Bytes>>,
    /// Serve bytes that differ on every download.
    pub(super) serve_varying: AtomicBool,
    pub(super) downloads: AtomicU32,
    pub(super) deltas: AtomicU32,
    pub(super) throttle_next: AtomicU32,
    /// The next delta calls answer 401 (an expired reader secret).
    pub(super) refuse_next_deltas: AtomicU32,
    /// Items the next delta page has but cannot be read (malformed JSON).
    pub(super) unusable_next: Mutex<Vec<crate::graph::UnusableItem>>,
    /// Graph refuses the whole drive with this (a library deleted, a site archived).
    pub(super) refused: Mutex<Option<GraphError>>,
    /// The pause SharePoint's budget, as last reported, asks for.
    pub(super) budget_pause: Mutex<Option<Duration>>,
}

pub(super) fn qx(data: &[u8]) -> String {
    let mut h = QuickXorHasher::new();
    h.update(data);
    h.finalize()
}

impl FakeDrive {
    pub(super) fn put(&self, id: &str, name: &str, etag: &str, data: &[u8]) -> DriveItem {
        self.put_item(file(id, name, etag, data, "root"), data)
    }

    /// Puts an item as given (any kind, time, parent or hash).
    pub(super) fn put_item(&self, item: DriveItem, data: &[u8]) -> DriveItem {
        self.items.lock().expect("lock").insert(item.id.clone(), (item.clone(), Bytes::copy_from_slice(data)));
        item
    }

    pub(super) fn remove(&self, id: &str) {
        self.items.lock().expect("lock").remove(id);
    }

    /// Deletes an item, and the next delta page says so.
    pub(super) fn delete_reported(&self, id: &str) {
        if let Some((item, _)) = self.items.lock().expect("lock").remove(id) {
            let gone = DriveItem { deleted: true, name: None, etag: None, size: None, quick_xor_hash: None, ..item };
            self.reported_deletions.lock().expect("lock").push(gone);
        }
    }
}

/// A file as Graph describes it, created in 2020, modified now, with its quickXorHash.
pub(super) fn file(id: &str, name: &str, etag: &str, data: &[u8], parent: &str) -> DriveItem {
    DriveItem {
        id: id.into(),
        drive_id: "drive".into(),
        name: Some(name.into()),
        kind: ItemKind::File,
        size: Some(data.len() as u64),
        etag: Some(etag.into()),
        ctag: None,
        created: "2020-01-02T03:04:05Z".parse().ok(),
        last_modified: Some(Utc::now()),
        parent_id: Some(parent.into()),
        quick_xor_hash: Some(qx(data)),
        mime_type: None,
        deleted: false,
    }
}

#[async_trait]
impl DriveReader for FakeDrive {
    async fn delta(&self, _from: &DeltaCursor) -> Result<DeltaPage, GraphError> {
        if self.refuse_next_deltas.load(Ordering::SeqCst) > 0 {
            self.refuse_next_deltas.fetch_sub(1, Ordering::SeqCst);
            return Err(GraphError::Unauthorized { code: "InvalidAuthenticationToken".into() });
        }
        if let Some(e) = self.refused.lock().expect("lock").clone() {
            return Err(e);
        }
        self.deltas.fetch_add(1, Ordering::SeqCst);
        let mut items: Vec<DriveItem> = self.items.lock().expect("lock").values().map(|(i, _)| i.clone()).collect();
        items.append(&mut self.reported_deletions.lock().expect("lock"));
        Ok(DeltaPage {
            items,
            next: None,
            delta: Some(DeltaLink::new("https://graph.test/delta?token=x")),
            unusable: std::mem::take(&mut *self.unusable_next.lock().expect("lock")),
        })
    }

    async fn get_item(&self, _drive: &str, item: &str) -> Result<Option<DriveItem>, GraphError> {
        Ok(self.items.lock().expect("lock").get(item).map(|(i, _)| i.clone()))
    }

    async fn download(&self, _drive: &str, item: &str, offset: u64) -> Result<Download, GraphError> {
        self.downloads.fetch_add(1, Ordering::SeqCst);
        if self.throttle_next.load(Ordering::SeqCst) > 0 {
            self.throttle_next.fetch_sub(1, Ordering::SeqCst);
            return Err(GraphError::Throttled { retry_after: Duration::from_secs(2), status: 429 });
        }
        let data = match self.serve_instead.lock().expect("lock").clone() {
            Some(other) => other,
            None => self.items.lock().expect("lock").get(item).map(|(_, d)| d.clone()).ok_or(GraphError::NotFound)?,
        };
        let data = match self.serve_varying.load(Ordering::SeqCst) {
            true => {
                Bytes::from(format!("{}-{}", String::from_utf8_lossy(&data), self.downloads.load(Ordering::SeqCst)))
            }
            false => data,
        };
        let total = data.len() as u64;
        let mut rest = data.slice(offset as usize..);
        let mut chunks: Vec<Result<Bytes, GraphError>> = Vec::new();
        if self.truncate_next.load(Ordering::SeqCst) > 0 && rest.len() > 3 {
            self.truncate_next.fetch_sub(1, Ordering::SeqCst);
            rest = rest.slice(..rest.len() / 2);
            chunks.push(Ok(rest));
            chunks.push(Err(GraphError::Transient { message: "connection reset".into() }));
        } else {
            chunks.push(Ok(rest));
        }
        Ok(Download { total_len: Some(total), offset, stream: Box::pin(futures::stream::iter(chunks)) })
    }

    fn budget_pause(&self) -> Option<Duration> {
        *self.budget_pause.lock().expect("lock")
    }
}

/// The pipeline tests' catalog answers index reads this many writes late, as DynamoDB's
/// eventually consistent GSIs may.
pub(super) const INDEX_LAG: usize = 3;

pub(super) struct World {
    pub(super) drive: Arc<FakeDrive>,
    pub(super) vault: Arc<MemoryVault>,
    pub(super) catalog: Arc<MemoryCatalog>,
    pub(super) sink: Arc<MemorySink>,
    pub(super) copier: CopierDeps,
    pub(super) enumerator: EnumeratorDeps,
}

pub(super) fn world() -> World {
    let drive = Arc::new(FakeDrive::default());
    let vault = Arc::new(MemoryVault::new());
    let catalog = Arc::new(MemoryCatalog::with_index_lag(INDEX_LAG));
    let sink = Arc::new(MemorySink::new());
    World {
        copier: CopierDeps {
            graph: drive.clone(),
            mail: Arc::new(super::mail_tests::FakeMailbox::default()),
            vault: vault.clone(),
            catalog: catalog.clone(),
            sink: sink.clone(),
            lock_mode: LockMode::Governance,
            retention_days: 30,
            large_item_bytes: 100 << 20,
            clock: crate::clock::system(),
        },
        enumerator: EnumeratorDeps {
            graph: drive.clone(),
            mail: Arc::new(super::mail_tests::FakeMailbox::default()),
            catalog: catalog.clone(),
            sink: sink.clone(),
            large_item_bytes: 100 << 20,
            reserve: Duration::from_secs(1),
            clock: crate::clock::system(),
        },
        drive,
        vault,
        catalog,
        sink,
    }
}

pub(super) fn container() -> ContainerId {
    ContainerId::new("tenant", "drive")
}

pub(super) fn job(item: &DriveItem) -> ItemJob {
    ItemJob {
        v: SCHEMA_VERSION,
        container: container(),
        item: super::item_state(item),
        observed_at: Utc::now(),
        scan_epoch: None,
        deferrals: 0,
        confirm_gone: false,
    }
}

pub(super) fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
async fn a_new_file_is_stored_locked_and_recorded_once() {
    // Given a file in Microsoft 365
    let w = world();
    let item = w.drive.put("f1", "report.docx", "e1", b"quarterly numbers");

    // When its job is delivered twice
    let first = copier::copy(&w.copier, &job(&item)).await.expect("copy");
    let writes = w.catalog.write_count();
    let second = copier::copy(&w.copier, &job(&item)).await.expect("copy");

    // Then one verified version holds its bytes, and the redelivery wrote nothing
    assert_eq!(first, Copied::Committed { bytes: 17 });
    assert_eq!(second, Copied::AlreadyHeld);
    assert_eq!(w.catalog.write_count(), writes);
    let head = w.catalog.head(&container().item("f1")).await.expect("head").expect("some");
    let content = head.current.content.expect("content");
    assert_eq!(content.sha256, sha(b"quarterly numbers"));
    assert_eq!(head.current.verification, Verification::QuickXor);
    assert!(head.current.created.is_some() && head.current.created == item.created, "its creation time, for restores");
    use crate::store::Vault;
    assert_eq!(w.vault.get(&content.object).await.expect("get"), Bytes::from_static(b"quarterly numbers"));
    assert!(w.vault.all_objects().iter().all(|(_, info)| info.lock_mode.is_some()));
}

#[tokio::test]
async fn a_rename_is_recorded_without_downloading() {
    let w = world();
    let item = w.drive.put("f1", "a.txt", "e1", b"same bytes");
    copier::copy(&w.copier, &job(&item)).await.expect("copy");
    let downloads = w.drive.downloads.load(Ordering::SeqCst);

    let renamed = w.drive.put("f1", "b.txt", "e2", b"same bytes");
    let outcome = copier::copy(&w.copier, &job(&renamed)).await.expect("copy");

    assert_eq!(outcome, Copied::Committed { bytes: 0 });
    assert_eq!(w.drive.downloads.load(Ordering::SeqCst), downloads);
    let versions = w.catalog.versions(&container().item("f1"), 10).await.expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].name.as_deref(), Some("b.txt"));
    assert_eq!(versions[0].content, versions[1].content);
}

#[tokio::test]
async fn a_truncated_download_is_resumed_and_never_recorded_short() {
    let w = world();
    let data = vec![7u8; 50_000];
    let item = w.drive.put("f1", "big.bin", "e1", &data);
    w.drive.truncate_next.store(2, Ordering::SeqCst);

    copier::copy(&w.copier, &job(&item)).await.expect("copy");

    let head = w.catalog.head(&container().item("f1")).await.expect("head").expect("some");
    assert_eq!(head.current.content.expect("content").sha256, sha(&data));
    assert!(w.drive.downloads.load(Ordering::SeqCst) >= 3, "resumed with Range");
}

#[tokio::test]
async fn content_that_changed_since_enumeration_is_recorded_as_the_state_it_matches() {
    let w = world();
    let old = w.drive.put("f1", "a.txt", "e1", b"version one");
    w.drive.put("f1", "a.txt", "e2", b"version two!");

    copier::copy(&w.copier, &job(&old)).await.expect("copy");

    let head = w.catalog.head(&container().item("f1")).await.expect("head").expect("some");
    assert_eq!(head.current.version, "e2");
    assert_eq!(head.current.content.expect("content").sha256, sha(b"version two!"));
}

#[tokio::test]
async fn deletions_become_tombstones_and_a_late_older_state_never_regresses_them() {
    let w = world();
    let item = w.drive.put("f1", "a.txt", "e1", b"bytes");
    copier::copy(&w.copier, &job(&item)).await.expect("copy");
    let mut deleted = job(&item);
    deleted.item.deleted = true;
    deleted.item.etag = None;

    assert_eq!(copier::copy(&w.copier, &deleted).await.expect("tombstone"), Copied::Committed { bytes: 0 });
    assert_eq!(copier::copy(&w.copier, &deleted).await.expect("again"), Copied::AlreadyHeld);

    let head = w.catalog.head(&container().item("f1")).await.expect("head").expect("some");
    assert!(head.current.deleted);
    assert_eq!(head.current.name.as_deref(), Some("a.txt"), "a tombstone keeps where the item lived");
    let history = w.catalog.versions(&container().item("f1"), 10).await.expect("versions");
    assert!(history.iter().any(|v| v.content.is_some()), "the backed-up bytes stay");
}

#[tokio::test]
async fn throttling_defers_the_job_with_a_delay_and_shares_the_deadline() {
    let w = world();
    let item = w.drive.put("f1", "a.txt", "e1", b"bytes");
    w.drive.throttle_next.store(1, Ordering::SeqCst);

    let outcome = copier::copy(&w.copier, &job(&item)).await.expect("deferred");

    assert!(matches!(outcome, Copied::Deferred(d) if d >= Duration::from_secs(2)));
    let resent = w.sink.take(QueueName::Items);
    assert_eq!(resent.len(), 1);
    assert!(resent[0].delay.is_some());
    let until = w.catalog.throttled_until("tenant", super::DRIVE_RESOURCE).await.expect("read");
    assert!(until.is_some_and(|u| u > Utc::now()), "other copiers see the throttle");
    // And the next copier defers without calling Graph.
    let downloads = w.drive.downloads.load(Ordering::SeqCst);
    assert!(matches!(copier::copy(&w.copier, &job(&item)).await.expect("deferred"), Copied::Deferred(_)));
    assert_eq!(w.drive.downloads.load(Ordering::SeqCst), downloads);
}

pub(super) async fn run_jobs(w: &World) {
    for m in w.sink.take(QueueName::Items) {
        let job: ItemJob = serde_json::from_str(&m.body).expect("job");
        copier::copy(&w.copier, &job).await.expect("copy");
    }
}

#[tokio::test]
async fn notifications_enqueued_before_an_enumeration_started_are_coalesced() {
    let w = world();
    w.drive.put("f1", "a.txt", "e1", b"bytes");
    let before = Utc::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = ChangeJob::new(container(), ChangeReason::Notification, before);
    enumerator::enumerate(&w.enumerator, &first, deadline).await.expect("enumerate");
    let deltas = w.drive.deltas.load(Ordering::SeqCst);

    let storm = ChangeJob::new(container(), ChangeReason::Notification, before);
    let out = enumerator::enumerate(&w.enumerator, &storm, deadline).await.expect("enumerate");

    assert!(out.coalesced);
    assert_eq!(w.drive.deltas.load(Ordering::SeqCst), deltas, "a storm costs one enumeration");
    let later = ChangeJob::new(container(), ChangeReason::Notification, Utc::now());
    assert!(!enumerator::enumerate(&w.enumerator, &later, deadline).await.expect("enumerate").coalesced);
}

/// A library deleted midway (404), or its site archived (423): the drive is reported
/// unavailable, nothing it holds is tombstoned, and the job is done rather than retried to the
/// dead-letter queue; when Graph serves it again, it is back in sync.
#[tokio::test]
async fn a_drive_graph_refuses_whole_is_unavailable_and_keeps_every_version() {
    let w = world();
    let deadline = Instant::now() + Duration::from_secs(60);
    w.drive.put("f1", "a.txt", "e1", b"one");
    let sweep = || ChangeJob::new(container(), ChangeReason::Sweep, Utc::now());
    enumerator::enumerate(&w.enumerator, &sweep(), deadline).await.expect("crawl");
    run_jobs(&w).await;

    for refusal in
        [GraphError::NotFound, GraphError::Http { status: 423, code: "resourceLocked".into(), message: String::new() }]
    {
        *w.drive.refused.lock().expect("lock") = Some(refusal.clone());
        let reconcile = ChangeJob::new(container(), ChangeReason::Reconcile, Utc::now());
        let out = enumerator::enumerate(&w.enumerator, &reconcile, deadline).await.expect("not an error");

        assert!(out.unavailable && out.tombstones == 0, "{refusal}");
        let state = w.catalog.sync_state(&container()).await.expect("state");
        assert!(state.unavailable.as_ref().is_some_and(|u| u.reason == refusal.to_string()), "{:?}", state.unavailable);
        assert!(state.full_scan.is_none(), "a refused first page leaves no scan to judge later passes");
        assert!(w.sink.messages(QueueName::Items).is_empty());
        let head = w.catalog.head(&container().item("f1")).await.expect("head").expect("kept");
        assert!(!head.current.deleted);
    }

    *w.drive.refused.lock().expect("lock") = None;
    enumerator::enumerate(&w.enumerator, &sweep(), deadline).await.expect("back");
    assert!(w.catalog.sync_state(&container()).await.expect("state").unavailable.is_none());
}

#[tokio::test]
async fn a_reconcile_requeues_nothing_held_and_tombstones_what_graph_lost() {
    // Given two files backed up
    let w = world();
    let deadline = Instant::now() + Duration::from_secs(60);
    w.drive.put("f1", "a.txt", "e1", b"one");
    w.drive.put("f2", "b.txt", "e1", b"two");
    enumerator::enumerate(&w.enumerator, &ChangeJob::new(container(), ChangeReason::Sweep, Utc::now()), deadline)
        .await
        .expect("crawl");
    run_jobs(&w).await;
    w.catalog.flush_index(); // reconciles run a day apart: the index has long caught up

    // When one disappears without the delta feed saying so, and a reconcile runs
    w.drive.remove("f2");
    let out = enumerator::enumerate(
        &w.enumerator,
        &ChangeJob::new(container(), ChangeReason::Reconcile, Utc::now()),
        deadline,
    )
    .await
    .expect("reconcile");

    // Then only the lost item gets a job: a tombstone
    assert!(out.full_scan);
    assert_eq!(out.tombstones, 1);
    let jobs: Vec<ItemJob> =
        w.sink.messages(QueueName::Items).iter().map(|m| serde_json::from_str(&m.body).expect("job")).collect();
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].item.deleted && jobs[0].item.id == "f2");
    run_jobs(&w).await;
    assert!(w.catalog.head(&container().item("f2")).await.expect("head").expect("some").current.deleted);
}
