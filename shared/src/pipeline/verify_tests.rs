//! In-process tests of the vault keeper's runs (`verify`, and `extend`'s resumption) against
//! the in-memory catalog and vault and a manual clock: versions committed as the copier
//! commits them (content, then the record, each put locked by the rule, then the catalog).

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};

use super::keeper::{self, KeeperDeps};
use super::retention::{self, Policy};
use super::verify::verify;
use crate::clock::{Clock, ManualClock};
use crate::keys;
use crate::model::{
    ContainerId, ContainerRecord, ContentRef, ItemHead, ItemKind, ItemVersion, ObjectRef, SCHEMA_VERSION, Verification,
};
use crate::store::memory::{MemoryCatalog, MemoryVault};
use crate::store::{
    Containers, ItemHistory, Lock, LockMode, Multipart, ObjectInfo, StoreError, Stored, Vault, VaultKeeping,
};

const TENANT: &str = "tenant-1";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
}

/// When every version below was captured.
fn t0() -> DateTime<Utc> {
    at("2026-01-01T00:00:00Z")
}

/// A deadline no run reaches.
fn far() -> Instant {
    Instant::now() + StdDuration::from_secs(3600)
}

/// The memory vault, optionally slowed: while `slow_until` is set, every `head` and
/// `ensure_locked` first waits until then, so an invocation given a deadline just past it
/// finishes the batch it started and takes no other.
struct SlowVault {
    inner: Arc<MemoryVault>,
    slow_until: Mutex<Option<Instant>>,
}

impl SlowVault {
    async fn wait(&self) {
        let until = *self.slow_until.lock().expect("lock");
        if let Some(until) = until {
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        }
    }
}

#[async_trait]
impl Vault for SlowVault {
    async fn put_if_absent(&self, key: &str, body: Bytes, lock: &Lock) -> Result<Stored, StoreError> {
        self.inner.put_if_absent(key, body, lock).await
    }
    async fn start_multipart(&self, key: &str, lock: &Lock) -> Result<Multipart, StoreError> {
        self.inner.start_multipart(key, lock).await
    }
    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError> {
        self.inner.upload_part(upload, part_number, body).await
    }
    async fn complete_multipart(&self, upload: Multipart, lock: &Lock) -> Result<ObjectRef, StoreError> {
        self.inner.complete_multipart(upload, lock).await
    }
    async fn abort_multipart(&self, upload: Multipart) -> Result<(), StoreError> {
        self.inner.abort_multipart(upload).await
    }
    async fn ensure_locked(&self, object: &ObjectRef, lock: &Lock) -> Result<(), StoreError> {
        self.wait().await;
        self.inner.ensure_locked(object, lock).await
    }
    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, StoreError> {
        self.wait().await;
        self.inner.head(object).await
    }
    async fn get(&self, object: &ObjectRef) -> Result<Bytes, StoreError> {
        self.inner.get(object).await
    }
    async fn get_stream(
        &self,
        object: &ObjectRef,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        self.inner.get_stream(object).await
    }
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectRef>, StoreError> {
        self.inner.list_versions(prefix).await
    }
}

struct Fixture {
    catalog: Arc<MemoryCatalog>,
    vault: Arc<MemoryVault>,
    slow: Arc<SlowVault>,
    clock: Arc<ManualClock>,
    deps: KeeperDeps,
}

impl Fixture {
    fn new() -> Self {
        let catalog = Arc::new(MemoryCatalog::new());
        let vault = Arc::new(MemoryVault::new());
        let slow = Arc::new(SlowVault { inner: vault.clone(), slow_until: Mutex::new(None) });
        let clock = Arc::new(ManualClock::new(t0()));
        let deps = KeeperDeps {
            catalog: catalog.clone(),
            vault: slow.clone(),
            clock: clock.clone(),
            policy: Policy::new(LockMode::Governance, 35),
            tenant_id: TENANT.to_owned(),
            concurrency: 4,
        };
        Self { catalog, vault, slow, clock, deps }
    }

    /// A deadline the next invocation reaches once its first batch is done: the slowed vault
    /// holds that batch until the deadline's margin has begun.
    fn cut_after_one_batch(&self) -> Instant {
        let slack = StdDuration::from_secs(1);
        let deadline = Instant::now() + keeper::MARGIN + slack;
        *self.slow.slow_until.lock().expect("lock") = Some(deadline - keeper::MARGIN);
        deadline
    }

    fn fast(&self) {
        *self.slow.slow_until.lock().expect("lock") = None;
    }

    async fn register(&self, drive: &str) -> ContainerId {
        let container = ContainerId::new(TENANT, drive);
        let record = ContainerRecord {
            container: container.clone(),
            user_id: format!("user-{drive}"),
            user_principal_name: None,
            discovered_at: t0(),
            subscription_id: None,
            subscription_expires: None,
            problem: None,
            site: None,
        };
        self.catalog.put_container(&record).await.expect("register");
        container
    }

    /// Backs up `body` as the current state of `item`, as the copier does: the content under
    /// its hash, then the record, both locked as a new version is, then the catalog.
    async fn file(&self, container: &ContainerId, item: &str, body: &[u8]) -> ItemHead {
        let now = self.clock.now();
        let lock = self.deps.policy.new_version(now);
        let sha256 = hex::encode(Sha256::digest(body));
        let content = self
            .vault
            .put_if_absent(&keys::blob_key(TENANT, &sha256), Bytes::copy_from_slice(body), &lock)
            .await
            .expect("content")
            .object;
        let version = ItemVersion {
            content: Some(ContentRef { object: content, size: body.len() as u64, sha256, quick_xor_hash: None }),
            verification: Verification::Sha256,
            ..version(container, item, &format!("\"{{{item}}},1\""), now)
        };
        self.commit(version, &lock).await
    }

    /// Records `item`'s deletion: its tombstone's record locked for the recycle bins' reach.
    async fn deletion(&self, container: &ContainerId, item: &str) -> ItemHead {
        let now = self.clock.now();
        let version = ItemVersion {
            deleted: true,
            verification: Verification::NoContent,
            ..version(container, item, &ItemVersion::tombstone_version(now), now)
        };
        self.commit(version, &self.deps.policy.deletion(now)).await
    }

    async fn commit(&self, version: ItemVersion, lock: &Lock) -> ItemHead {
        let body = serde_json::to_vec(&version).expect("record");
        let key = keys::record_key(&version.key, &version.row_id());
        let record = self.vault.put_if_absent(&key, Bytes::from(body), lock).await.expect("record").object;
        self.catalog.commit_version(&version, &record).await.expect("commit");
        self.catalog.head(&version.key).await.expect("head").expect("committed")
    }

    /// Three drives: d1 with files a and b and a deleted z, d2 with x, d3 with y (9 objects).
    async fn backed_up(&self) -> Vec<ItemHead> {
        let (d1, d2, d3) = (self.register("d1").await, self.register("d2").await, self.register("d3").await);
        vec![
            self.file(&d1, "a", b"alpha").await,
            self.file(&d1, "b", b"bravo!").await,
            self.deletion(&d1, "z").await,
            self.file(&d2, "x", b"x-ray").await,
            self.file(&d3, "y", b"yankee").await,
        ]
    }
}

fn version(container: &ContainerId, item: &str, etag: &str, captured: DateTime<Utc>) -> ItemVersion {
    ItemVersion {
        created: None,
        v: SCHEMA_VERSION,
        key: container.item(item),
        version: etag.to_owned(),
        kind: ItemKind::File,
        name: Some(format!("{item}.txt")),
        parent_id: Some("root".to_owned()),
        ctag: None,
        modified: captured - Duration::minutes(5),
        captured_at: captured,
        deleted: false,
        content: None,
        verification: Verification::Unverified,
        mail: None,
        observed_at: None,
        current_from: None,
        note: None,
    }
}

fn content(head: &ItemHead) -> &ObjectRef {
    &head.current.content.as_ref().expect("a file").object
}

/// (item, key, problem's first word) of each problem.
fn problems(report: &crate::model::VerifyReport) -> Vec<(String, String, String)> {
    let word = |p: &str| p.split(':').next().unwrap_or_default().to_owned();
    report.problems.iter().map(|p| (p.item_id.clone(), p.key.clone(), word(&p.problem))).collect()
}

#[tokio::test]
async fn a_clean_vault_verifies_with_no_problem_and_a_full_run_hashes_every_object() {
    // Given four files and a deletion backed up in three drives
    let fx = Fixture::new();
    let heads = fx.backed_up().await;

    // When a full verification runs an hour later
    fx.clock.advance(Duration::hours(1));
    let run = verify(&fx.deps, true, false, far()).await.expect("verify");

    // Then it finished in one invocation, found nothing wrong, and counted every head and object
    let report = &run.report;
    assert_eq!((run.finished_at, run.cursor.clone(), run.invocations), (Some(fx.clock.now()), None, 1));
    assert!(run.full);
    assert_eq!(report.problem_count(), 0, "{:?}", report.problems);
    assert_eq!(crate::metrics::recorded(crate::metrics::VAULT_PROBLEMS), [0], "a clean run leaves the alarm quiet");
    assert!(report.problems.is_empty());
    assert_eq!((report.containers, report.versions, report.objects), (3, 5, 9));
    // And it read back every content and every record (the tombstone's too)
    assert_eq!(report.hashed, 9);
    let records: u64 = futures::future::join_all(heads.iter().map(|h| fx.vault.get(&h.record)))
        .await
        .into_iter()
        .map(|b| b.expect("record").len() as u64)
        .sum();
    assert_eq!(report.bytes_hashed, records + (5 + 6 + 5 + 6));
    // And the earliest lock is a new version's: the rule's floor plus the grace
    assert_eq!(report.earliest_lock_end, Some(t0() + Duration::days(35 + retention::GRACE_DAYS)));
    // And the run is kept as the catalog's verify run
    let (doc, _) = fx.catalog.keeper_run(TENANT, keeper::VERIFY).await.expect("read").expect("saved");
    assert_eq!(serde_json::from_str::<crate::model::KeeperRun<_>>(&doc).expect("run"), run);
}

#[tokio::test]
async fn a_sampled_run_checks_every_lock_and_hashes_at_most_what_a_full_one_does() {
    let fx = Fixture::new();
    fx.backed_up().await;
    let run = verify(&fx.deps, false, false, far()).await.expect("verify");
    assert!(!run.full);
    assert_eq!((run.report.versions, run.report.objects, run.report.problem_count()), (5, 9, 0));
    assert!(run.report.hashed <= 9);
}

#[tokio::test]
async fn altered_bytes_are_found_in_contents_and_records() {
    // Given b's content encrypted in place and x's record rewritten
    let fx = Fixture::new();
    let heads = fx.backed_up().await;
    let (b, x) = (&heads[1], &heads[3]);
    assert!(fx.vault.tamper(content(b), Bytes::from_static(b"ENCRYPTED")));
    let mut forged = x.current.clone();
    forged.name = Some("forged.txt".to_owned());
    assert!(fx.vault.tamper(&x.record, Bytes::from(serde_json::to_vec(&forged).expect("json"))));

    // When a full verification runs
    let run = verify(&fx.deps, true, false, far()).await.expect("verify");

    // Then both are altered, named with their objects, and nothing else is wrong
    let report = &run.report;
    assert_eq!((report.altered, report.missing, report.lock_short), (2, 0, 0));
    let mut found = problems(report);
    found.sort();
    assert_eq!(
        found,
        [
            ("b".to_owned(), content(b).key.clone(), "altered".to_owned()),
            ("x".to_owned(), x.record.key.clone(), "altered".to_owned()),
        ]
    );
    let named = report.problems.iter().find(|p| p.item_id == "b").expect("b");
    assert_eq!((&named.container, &named.version_id), (&b.current.key.container, &content(b).version_id));
    // And the count the `VaultProblemsAlarm` watches (Sum >= 1) says so
    assert_eq!(crate::metrics::recorded(crate::metrics::VAULT_PROBLEMS), [2]);
}

#[tokio::test]
async fn a_lapsed_lock_is_lock_short() {
    // Given a's content lock made to lapse yesterday, and y's record locked short of the floor
    let fx = Fixture::new();
    let heads = fx.backed_up().await;
    let (a, y) = (&heads[0], &heads[4]);
    let yesterday = t0() - Duration::days(1);
    assert!(fx.vault.set_retention_unchecked(content(a), Some(yesterday)));
    assert!(fx.vault.set_retention_unchecked(&y.record, Some(t0() + Duration::days(34))));

    // When a sampled verification runs (locks are checked on every version)
    let run = verify(&fx.deps, false, false, far()).await.expect("verify");

    // Then both are lock_short, named, and the earliest lock end is the lapsed one
    let report = &run.report;
    assert_eq!((report.lock_short, report.missing, report.altered), (2, 0, 0));
    let mut found = problems(report);
    found.sort();
    assert_eq!(
        found,
        [
            ("a".to_owned(), content(a).key.clone(), "lock short".to_owned()),
            ("y".to_owned(), y.record.key.clone(), "lock short".to_owned()),
        ]
    );
    assert_eq!(report.earliest_lock_end, Some(yesterday));
}

#[tokio::test]
async fn a_version_the_vault_does_not_hold_is_missing() {
    // Given a head whose record names a version id the vault never had
    let fx = Fixture::new();
    fx.backed_up().await;
    let d2 = ContainerId::new(TENANT, "d2");
    let ghost = ObjectRef { key: keys::record_key(&d2.item("w"), "e1"), version_id: "no-such-version".to_owned() };
    let w = version(&d2, "w", "e1", t0());
    fx.catalog.commit_version(&w, &ghost).await.expect("commit");

    // When a full verification runs
    let run = verify(&fx.deps, true, false, far()).await.expect("verify");

    // Then it is missing (not also altered), and the rest is fine
    let report = &run.report;
    assert_eq!((report.versions, report.objects), (6, 10));
    assert_eq!((report.missing, report.altered, report.lock_short), (1, 0, 0));
    assert_eq!(problems(report), [("w".to_owned(), ghost.key.clone(), "missing".to_owned())]);
    assert_eq!(report.problems[0].version_id, "no-such-version");
}

#[tokio::test]
async fn a_run_stopped_at_once_resumes_in_the_next_invocation() {
    // Given a vault backed up, and an invocation whose deadline has already come
    let fx = Fixture::new();
    fx.backed_up().await;
    let started = fx.clock.now();
    let stopped = verify(&fx.deps, true, false, Instant::now()).await.expect("verify");
    assert_eq!((stopped.finished_at, stopped.cursor.clone(), stopped.invocations), (None, None, 1));
    assert_eq!(stopped.report.versions, 0);

    // When the next invocation comes a minute later (not asked for a full run)
    fx.clock.advance(Duration::minutes(1));
    let run = verify(&fx.deps, false, false, far()).await.expect("verify");

    // Then it carried the same run to its end: full as started, every head once
    assert_eq!((run.started_at, run.invocations, run.full), (started, 2, true));
    assert_eq!(run.finished_at, Some(fx.clock.now()));
    assert_eq!((run.report.containers, run.report.versions, run.report.objects, run.report.hashed), (3, 5, 9, 9));
}

#[tokio::test]
async fn a_run_cut_between_batches_resumes_from_its_cursor_and_counts_each_head_once() {
    // Given a vault backed up in three drives, and an invocation cut after its first batch
    let fx = Fixture::new();
    fx.backed_up().await;
    let deadline = fx.cut_after_one_batch();
    let cut = verify(&fx.deps, true, false, deadline).await.expect("verify");

    // Then it walked d1 only (a batch holds one container's heads) and saved where it stopped
    assert_eq!(cut.finished_at, None);
    assert_eq!((cut.report.containers, cut.report.versions, cut.report.objects), (1, 3, 5));
    let cursor = cut.cursor.clone().expect("a cursor");
    assert_eq!((cursor.container.graph_id.as_str(), cursor.after_item.as_deref()), ("d1", Some("z")));
    let (doc, _) = fx.catalog.keeper_run(TENANT, keeper::VERIFY).await.expect("read").expect("saved");
    assert_eq!(serde_json::from_str::<crate::model::KeeperRun<_>>(&doc).expect("run"), cut);

    // When the next invocation runs to the end
    fx.fast();
    let heads_before = fx.vault.head_count();
    let run = verify(&fx.deps, true, false, far()).await.expect("verify");

    // Then the run took two invocations, counted each head and object exactly once, and the
    // second asked the vault only about d2's and d3's objects
    assert_eq!((run.started_at, run.invocations), (cut.started_at, 2));
    assert!(run.finished_at.is_some() && run.cursor.is_none());
    assert_eq!((run.report.containers, run.report.versions, run.report.objects), (3, 5, 9));
    assert_eq!((run.report.hashed, run.report.problem_count()), (9, 0));
    assert_eq!(fx.vault.head_count() - heads_before, 4);
}

#[tokio::test]
async fn a_finished_run_is_not_restarted_within_a_day_unless_fresh() {
    // Given a clean run finished at t0
    let fx = Fixture::new();
    let heads = fx.backed_up().await;
    let first = verify(&fx.deps, true, false, far()).await.expect("verify");
    assert_eq!(first.report.problem_count(), 0);

    // When a's bytes are altered and the schedule fires 19 hours later
    assert!(fx.vault.tamper(content(&heads[0]), Bytes::from_static(b"ENCRYPTED")));
    fx.clock.advance(Duration::hours(19));
    let heads_before = fx.vault.head_count();
    let again = verify(&fx.deps, true, false, far()).await.expect("verify");

    // Then the finished run is answered as it was, with no vault request
    assert_eq!(again, first);
    assert_eq!(fx.vault.head_count(), heads_before);

    // When an operator asks for a fresh run
    let fresh = verify(&fx.deps, true, true, far()).await.expect("verify");

    // Then a new run starts now and finds the altered bytes, keeping the clean run it
    // replaced as the last finished one
    assert_eq!((fresh.started_at, fresh.invocations), (fx.clock.now(), 1));
    assert_eq!(fresh.report.altered, 1);
    assert_eq!(fresh.last_finished, first.finished());
    assert!(first.finished().is_some_and(|done| done.report.problem_count() == 0));

    // And once that one is more than 20 hours old, the schedule starts the next run itself
    fx.clock.advance(keeper::RUN_EVERY + Duration::minutes(1));
    let next = verify(&fx.deps, true, false, far()).await.expect("verify");
    assert_eq!((next.started_at, next.report.altered), (fx.clock.now(), 1));
    assert_eq!(next.last_finished.map(|done| done.report.altered), Some(1), "the run before it");
}

#[tokio::test]
async fn lock_extension_cut_between_batches_resumes_from_its_cursor() {
    // Given a vault backed up, and an extension cut after its first batch
    let fx = Fixture::new();
    let heads = fx.backed_up().await;
    fx.clock.advance(Duration::hours(1));
    let deadline = fx.cut_after_one_batch();
    let cut = retention::extend(&fx.deps, deadline).await.expect("extend");

    // Then d1's two files were extended and its tombstone left, d1 recorded as done
    assert_eq!(cut.finished_at, None);
    let report = &cut.report;
    assert_eq!((report.containers, report.heads, report.extended, report.tombstones), (1, 3, 2, 1));
    assert_eq!(cut.cursor.as_ref().map(|c| c.container.graph_id.as_str()), Some("d1"));

    // When the next invocation runs to the end
    fx.fast();
    let run = retention::extend(&fx.deps, far()).await.expect("extend");

    // Then the one run counted each head once and extended every current version
    assert_eq!((run.started_at, run.invocations), (cut.started_at, 2));
    assert!(run.finished_at.is_some() && run.cursor.is_none());
    let report = &run.report;
    assert_eq!((report.containers, report.heads, report.extended, report.tombstones), (3, 5, 4, 1));
    assert_eq!((report.fresh, report.moved, report.failed, report.objects), (0, 0, 0, 8));

    // And each file's head and objects are locked to the extension's date; the tombstone's
    // record keeps its own
    let until = fx.deps.policy.extension(cut.started_at).retain_until;
    for head in heads.iter().filter(|h| !h.current.deleted) {
        let now = fx.catalog.head(&head.current.key).await.expect("head").expect("exists");
        assert_eq!(now.locked_until, Some(until), "{}", head.current.key.item_id);
        for object in head.objects() {
            let info = fx.vault.head(object).await.expect("head").expect("exists");
            assert_eq!(info.retain_until, Some(until));
        }
    }
    let z = fx.catalog.head(&heads[2].current.key).await.expect("head").expect("exists");
    assert_eq!(z.locked_until, None);
}
