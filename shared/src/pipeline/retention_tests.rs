//! The retention rule over simulated years: the real copier and the keeper's tasks against
//! the in-memory vault and catalog, on a clock that moves a day at a time.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};

use super::copier::{self, Copied};
use super::keeper::KeeperDeps;
use super::retention::{self, Policy, RECYCLE_BIN_DAYS};
use super::tests::{World, container, file, job, world};
use crate::clock::{Clock, ManualClock};
use crate::graph::DriveItem;
use crate::model::{ContainerRecord, ItemHead, ItemVersion, ObjectRef};
use crate::store::{Containers, ItemHistory, Vault};

/// The world's `RetentionDays` (`tests::world`'s copier).
const RETENTION: i64 = 30;

struct Years {
    w: World,
    clock: Arc<ManualClock>,
    keeper: KeeperDeps,
    day0: DateTime<Utc>,
}

impl Years {
    async fn new() -> Self {
        let day0 = Utc::now();
        let clock = Arc::new(ManualClock::new(day0));
        let mut w = world();
        w.copier.clock = clock.clone();
        assert_eq!(w.copier.retention_days, RETENTION as u32);
        w.catalog
            .put_container(&ContainerRecord {
                container: container(),
                user_id: "user".into(),
                user_principal_name: None,
                discovered_at: day0,
                subscription_id: None,
                subscription_expires: None,
                problem: None,
                site: None,
            })
            .await
            .expect("register");
        let keeper = KeeperDeps {
            catalog: w.catalog.clone(),
            vault: w.vault.clone(),
            clock: clock.clone(),
            policy: Policy::new(w.copier.lock_mode, w.copier.retention_days),
            tenant_id: container().tenant_id,
            concurrency: 4,
        };
        Self { w, clock, keeper, day0 }
    }

    fn day(&self, n: i64) -> DateTime<Utc> {
        self.day0 + Duration::days(n)
    }

    fn today(&self) -> i64 {
        (self.clock.now() - self.day0).num_days()
    }

    async fn copy(&self, item: &DriveItem) {
        let copied = copier::copy(&self.w.copier, &job(item)).await.expect("copy");
        assert!(matches!(copied, Copied::Committed { .. }), "{copied:?}");
    }

    async fn delete(&self, item: &DriveItem) {
        let gone = DriveItem { deleted: true, etag: None, size: None, quick_xor_hash: None, ..item.clone() };
        self.w.drive.remove(&item.id);
        self.copy(&gone).await;
    }

    /// Moves the clock to day `n`, running the hourly-scheduled extension once a day.
    async fn live_until(&self, n: i64) {
        while self.today() < n {
            self.clock.advance(Duration::days(1));
            let far = Instant::now() + StdDuration::from_secs(600);
            let run = retention::extend(&self.keeper, far).await.expect("extend");
            assert!(run.finished_at.is_some(), "a small tenant's run ends in one invocation");
            assert_eq!(run.report.failed, 0, "{:?}", run.report.problems);
        }
    }

    async fn head(&self, id: &str) -> ItemHead {
        self.w.catalog.head(&container().item(id)).await.expect("head").expect("held")
    }

    /// The oldest version of an item and its record.
    async fn first_version(&self, id: &str) -> (ItemVersion, ObjectRef) {
        let versions = self.w.catalog.versions(&container().item(id), 10).await.expect("versions");
        let first = versions.last().expect("a version").clone();
        let record = self
            .w
            .vault
            .list_versions(&crate::keys::record_key(&first.key, &first.row_id()))
            .await
            .expect("list")
            .pop()
            .expect("a record");
        (first, record)
    }

    async fn lock_end(&self, object: &ObjectRef) -> DateTime<Utc> {
        let info = self.w.vault.head(object).await.expect("head").expect("the object exists");
        info.retain_until.expect("locked")
    }
}

#[tokio::test]
async fn a_file_never_changed_stays_locked_and_restorable_after_400_days_and_so_does_the_blob_a_deleted_item_shared() {
    // Given two files with the same bytes (one blob), backed up on day 0
    let y = Years::new().await;
    let kept = y.w.drive.put("kept", "kept.txt", "k1", b"the same bytes");
    let other = y.w.drive.put("other", "other.txt", "o1", b"the same bytes");
    y.copy(&kept).await;
    y.copy(&other).await;
    let blob = y.head("kept").await.current.content.expect("content").object;
    assert_eq!(y.head("other").await.current.content.expect("content").object, blob, "one blob");

    // When the other file is deleted on day 10 and 400 days pass
    y.live_until(10).await;
    y.delete(&other).await;
    y.live_until(400).await;

    // Then the never-changed file's bytes and record are still locked beyond what the rule
    // needs today, and restorable
    let now = y.day(400);
    let head = y.head("kept").await;
    for object in head.objects() {
        assert!(y.lock_end(object).await >= now + Duration::days(RETENTION), "{object:?}");
    }
    assert_eq!(y.w.vault.get(&blob).await.expect("restorable"), &b"the same bytes"[..]);
    let record: ItemVersion =
        serde_json::from_slice(&y.w.vault.get(&head.record).await.expect("record")).expect("a version record");
    assert_eq!(record, head.current);
    // And the deleted file's last version is the shared blob, locked as long as the kept
    // file needs it, while its record was locked for the recycle bins' reach after day 10
    let (deleted_version, deleted_record) = y.first_version("other").await;
    assert_eq!(deleted_version.content.expect("content").object, blob);
    let record_end = y.lock_end(&deleted_record).await;
    assert!(record_end >= y.day(10) + Duration::days(RECYCLE_BIN_DAYS + RETENTION));
    assert!(record_end < y.day(11) + Duration::days(RECYCLE_BIN_DAYS + RETENTION), "not extended after deletion");
}

#[tokio::test]
async fn an_edit_backdated_to_2001_leaves_the_version_it_superseded_locked_for_the_retention_from_its_capture() {
    // Given a file backed up on day 0 and kept locked while current
    let y = Years::new().await;
    let clean = y.w.drive.put("doc", "report.docx", "d1", b"clean text");
    y.copy(&clean).await;
    y.live_until(10).await;

    // When on day 10 ransomware rewrites it and dates the edit 2001
    let mut attacked = file("doc", "report.docx", "d2", b"encrypted!", "root");
    attacked.last_modified = Some(DateTime::parse_from_rfc3339("2001-01-01T00:00:00Z").expect("time").to_utc());
    let attacked = y.w.drive.put_item(attacked, b"encrypted!");
    y.copy(&attacked).await;
    assert_eq!(y.head("doc").await.current.version, "d2", "the backdated edit is current");

    // Then the clean version stays locked RetentionDays from the capture of the edit (our
    // day 10, not Microsoft 365's 2001), through days of extension runs that no longer touch it
    let (clean_version, clean_record) = y.first_version("doc").await;
    let clean_content = clean_version.content.expect("content").object;
    let needed = y.keeper.policy.superseded(clean_version.captured_at, y.day(10));
    assert_eq!(needed, y.day(10) + Duration::days(RETENTION));
    y.live_until(10 + RETENTION - 1).await;
    for object in [&clean_content, &clean_record] {
        let end = y.lock_end(object).await;
        assert!(end >= needed, "{object:?} locked until {end}, needed {needed}");
        assert!(end > y.clock.now(), "still locked on day {}", y.today());
    }
    let end_before = y.lock_end(&clean_content).await;
    y.live_until(200).await;
    assert_eq!(y.lock_end(&clean_content).await, end_before, "a superseded version is not extended again");
}

#[tokio::test]
async fn a_file_deleted_on_day_10_stays_locked_93_days_plus_the_retention() {
    // Given a file backed up on day 0 and deleted on day 10
    let y = Years::new().await;
    let doomed = y.w.drive.put("gone", "gone.txt", "g1", b"last words");
    y.copy(&doomed).await;
    y.live_until(10).await;
    y.delete(&doomed).await;
    assert!(y.head("gone").await.current.deleted);

    // When the days pass up to just before the rule's date
    let until = y.day(10) + Duration::days(RECYCLE_BIN_DAYS + RETENTION);
    y.live_until(10 + RECYCLE_BIN_DAYS + RETENTION - 1).await;

    // Then its last version (bytes and record) and the tombstone are locked until then
    let (version, record) = y.first_version("gone").await;
    let tombstone = y.head("gone").await.record;
    for object in [&version.content.expect("content").object, &record, &tombstone] {
        let end = y.lock_end(object).await;
        assert!(end >= until, "{object:?} locked until {end}, the rule says {until}");
    }
}

#[tokio::test]
async fn bytes_of_an_old_version_that_become_current_again_are_locked_as_a_current_version_before_the_commit() {
    // Given a file whose first bytes were superseded the same day, so never extended
    let y = Years::new().await;
    let first = y.w.drive.put("plan", "plan.txt", "p1", b"first draft");
    y.copy(&first).await;
    let old_bytes = y.head("plan").await.current.content.expect("content").object;
    let second = y.w.drive.put("plan", "plan.txt", "p2", b"second draft");
    y.copy(&second).await;
    y.live_until(100).await;
    assert!(y.lock_end(&old_bytes).await < y.clock.now(), "the first draft's lock ran out as the rule allows");

    // When on day 100 someone copies the first draft back over it, with its old date
    let mut back = file("plan", "plan.txt", "p3", b"first draft", "root");
    back.last_modified = Some(y.day(0));
    let back = y.w.drive.put_item(back, b"first draft");
    y.copy(&back).await;

    // Then the current version reuses the bytes held, locked again as a current version's
    // before it was recorded (no extension run in between)
    let head = y.head("plan").await;
    assert_eq!(head.current.content.expect("content").object, old_bytes, "no second copy of the bytes");
    assert!(y.lock_end(&old_bytes).await >= y.clock.now() + Duration::days(RETENTION));
}
