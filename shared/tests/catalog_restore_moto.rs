//! The catalog's point-in-time reads and restore bookkeeping on DynamoDB (a real moto server,
//! `.venv/bin/moto_server`, created by `make venv`), checked against `MemoryCatalog`, whose
//! answers are the specification.

mod common;

use std::time::Instant;

use chrono::{DateTime, Utc};
use common::{Moto, TABLE, catalog_table};
use shared::aws::DynamoCatalog;
use shared::model::{
    ConflictPolicy, ContainerId, ItemKind, ItemVersion, ObjectRef, RestoreItemReport, RestoreJob, RestoreOutcome,
    RestorePlan, RestoreScope, RestoreStatus, RestoreTarget, SCHEMA_VERSION, Verification,
};
use shared::store::memory::MemoryCatalog;
use shared::store::{Catalog, ItemHistory, OutcomeCounts, PointInTime, RestoreJobs, StoreError};

/// The catalog on a fresh table of `moto`.
async fn catalog(moto: &Moto) -> DynamoCatalog {
    let config = moto.config().await;
    catalog_table(&config).await;
    DynamoCatalog::new(&config, TABLE)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
}

fn container() -> ContainerId {
    ContainerId::new("tenant-1", "b!drive")
}

fn state(item: &str, etag: &str, parent: &str, modified: &str) -> ItemVersion {
    ItemVersion {
        v: SCHEMA_VERSION,
        key: container().item(item),
        version: etag.to_owned(),
        kind: ItemKind::File,
        name: Some(format!("{item}.txt")),
        parent_id: Some(parent.to_owned()),
        ctag: None,
        modified: at(modified),
        captured_at: at("2030-01-01T00:00:00Z"),
        deleted: false,
        content: None,
        verification: Verification::Unverified,
        mail: None,
    }
}

fn tombstone(item: &str, parent: Option<&str>, observed: &str) -> ItemVersion {
    ItemVersion {
        version: ItemVersion::tombstone_version(at(observed)),
        parent_id: parent.map(str::to_owned),
        name: None,
        deleted: true,
        verification: Verification::NoContent,
        ..state(item, "", "", observed)
    }
}

/// One at a time: moto's server does not make a conditional update atomic against a
/// concurrent one on the same item (DynamoDB does), so racing versions of one item could
/// leave moto's head on the older version and the comparison would test moto, not us.
async fn commit_all(catalog: &dyn Catalog, versions: &[ItemVersion]) {
    for v in versions {
        let record = ObjectRef { key: format!("records/{}/{}", v.key.item_id, v.version), version_id: "1".into() };
        catalog.commit_version(v, &record).await.expect("commit");
    }
}

/// Every child of `parent` at `t`, following cursors `limit` at a time: (item, version).
async fn all_children(catalog: &dyn Catalog, parent: &str, t: DateTime<Utc>, limit: usize) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = catalog.children_as_of(&container(), parent, t, cursor.as_deref(), limit).await.expect("page");
        assert!(page.items.len() <= limit, "a page of {} for a limit of {limit}", page.items.len());
        all.extend(page.items.into_iter().map(|v| (v.key.item_id, v.version)));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

fn ids(versions: Vec<ItemVersion>) -> Vec<(String, String)> {
    versions.into_iter().map(|v| (v.key.item_id, v.version)).collect()
}

/// Edits, renames, moves both ways between folders, a deletion and a late creation; items with
/// many versions so a folder's index rows span pages of two children.
fn history() -> Vec<ItemVersion> {
    let mut versions = vec![
        state("doc", "d1", "A", "2024-05-01T10:00:00Z"),
        state("doc", "d2", "A", "2024-05-01T11:00:00Z"),
        state("doc", "d3", "A", "2024-05-01T12:00:00Z"),
        state("out", "o1", "A", "2024-05-01T10:00:00Z"),
        state("out", "o2", "B", "2024-05-01T11:00:00Z"),
        state("in", "i1", "B", "2024-05-01T10:00:00Z"),
        state("in", "i2", "A", "2024-05-01T11:30:00Z"),
        state("gone", "g1", "A", "2024-05-01T10:00:00Z"),
        tombstone("gone", Some("A"), "2024-05-01T11:00:00Z"),
        state("late", "l1", "A", "2024-05-01T13:00:00Z"),
        // Away and back again: in A, then B, then A.
        state("boomerang", "b1", "A", "2024-05-01T10:00:00Z"),
        state("boomerang", "b2", "B", "2024-05-01T10:30:00Z"),
        state("boomerang", "b3", "A", "2024-05-01T11:15:00Z"),
    ];
    for i in 0..7 {
        let item = format!("busy{i}");
        for edit in 0..4 {
            versions.push(state(&item, &format!("e{edit}"), "A", &format!("2024-05-01T1{edit}:0{i}:00Z")));
        }
    }
    versions
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn a_folder_and_a_drive_as_of_any_moment_match_the_specification() {
    // Given the same history in DynamoDB and in memory
    let moto = Moto::start();
    let dynamo = catalog(&moto).await;
    let memory = MemoryCatalog::new();
    commit_all(&dynamo, &history()).await;
    commit_all(&memory, &history()).await;

    // Then every folder at every moment, read two at a time, has the same children
    let moments = [
        "2024-05-01T09:00:00Z",
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:45:00Z",
        "2024-05-01T11:00:00Z",
        "2024-05-01T11:45:00Z",
        "2024-05-01T12:03:00Z",
        "2024-05-01T14:00:00Z",
    ];
    for t in moments.map(at) {
        for parent in ["A", "B", "C"] {
            let expected = all_children(&memory, parent, t, 100).await;
            assert_eq!(all_children(&dynamo, parent, t, 2).await, expected, "{parent} at {t}");
            assert_eq!(all_children(&dynamo, parent, t, 100).await, expected, "{parent} at {t}");
        }
        let drive = ids(dynamo.container_as_of(&container(), t).await.expect("as of"));
        assert_eq!(drive, ids(memory.container_as_of(&container(), t).await.expect("as of")), "drive at {t}");
    }

    // And the answers are the ones a person expects
    let a = |t| all_children(&dynamo, "A", at(t), 3);
    assert!(a("2024-05-01T09:00:00Z").await.is_empty());
    let at_1045: Vec<String> = a("2024-05-01T10:45:00Z").await.into_iter().map(|(i, _)| i).collect();
    assert!(at_1045.contains(&"out".to_owned()) && at_1045.contains(&"gone".to_owned()));
    assert!(!at_1045.contains(&"boomerang".to_owned()) && !at_1045.contains(&"in".to_owned()));
    let at_1145 = a("2024-05-01T11:45:00Z").await;
    for (item, version) in [("boomerang", "b3"), ("doc", "d2"), ("in", "i2")] {
        assert!(at_1145.contains(&(item.to_owned(), version.to_owned())), "{item} {version} in {at_1145:?}");
    }
    assert!(!at_1145.iter().any(|(i, _)| i == "out" || i == "gone" || i == "late"));
    let drive = dynamo.container_as_of(&container(), at("2024-05-01T11:45:00Z")).await.expect("as of");
    assert!(drive.iter().any(|v| v.key.item_id == "gone" && v.deleted), "deletions are visible");

    // And the change history agrees on its window edges and its limit
    for (from, to, limit) in [
        ("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", 100),
        ("2024-05-01T10:00:00.001Z", "2024-05-01T10:59:59.999Z", 100),
        ("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", 5),
        ("2024-05-02T00:00:00Z", "2024-05-03T00:00:00Z", 5),
    ] {
        let got = dynamo.changes_between(&container(), at(from), at(to), limit).await.expect("changes");
        let want = memory.changes_between(&container(), at(from), at(to), limit).await.expect("changes");
        assert_eq!(ids(got), ids(want), "[{from}, {to}] limit {limit}");
    }

    // And a cursor only works for the listing that handed it out
    let t = at("2024-05-01T14:00:00Z");
    let page = dynamo.children_as_of(&container(), "A", t, None, 2).await.expect("page");
    let cursor = page.next.expect("a next page");
    let foreign = dynamo.children_as_of(&container(), "B", t, Some(&cursor), 2).await;
    assert!(matches!(foreign, Err(StoreError::InvalidCursor)), "{foreign:?}");
    let edited = dynamo.children_as_of(&container(), "A", t, Some(&cursor[1..]), 2).await;
    assert!(matches!(edited, Err(StoreError::InvalidCursor)), "{edited:?}");
}

fn job(id: &str, created: &str) -> RestoreJob {
    RestoreJob {
        v: SCHEMA_VERSION,
        id: id.to_owned(),
        container: container(),
        scope: RestoreScope::Container,
        as_of: at("2024-05-01T11:45:00Z"),
        target: RestoreTarget::InPlace,
        conflict: ConflictPolicy::Rename,
        quarantine_new_items: false,
        status: RestoreStatus::Planned,
        created_at: at(created),
        planned_items: 0,
        planned_bytes: 0,
        conflicts: 0,
        restored: 0,
        unchanged: 0,
        skipped: 0,
        failed: 0,
        bytes_restored: 0,
    }
}

fn report(job_id: &str, item: &str, outcome: RestoreOutcome) -> RestoreItemReport {
    RestoreItemReport {
        job_id: job_id.to_owned(),
        item_id: item.to_owned(),
        path: format!("/A/{item}"),
        outcome,
        detail: (outcome == RestoreOutcome::Failed).then(|| "503 from Graph".to_owned()),
        target_item_id: Some(item.to_owned()),
        at: at("2024-05-02T09:00:00Z"),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn restore_outcomes_count_once_even_when_redelivered_concurrently() {
    use RestoreOutcome::{CreatedAfter, Failed, Restored, Skipped, Unchanged};
    let moto = Moto::start();
    let catalog = catalog(&moto).await;

    // Given a job, created once
    catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await.expect("create");
    let again = catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
    catalog
        .set_restore_status("j1", RestoreStatus::Running, Some(RestorePlan { items: 6, bytes: 900, conflicts: 2 }))
        .await
        .expect("plan");

    // When an item fails, is redelivered, then its retry restores it
    let record = |item: &'static str, outcome, bytes| {
        let catalog = &catalog;
        async move { catalog.record_restore_outcome(&report("j1", item, outcome), bytes).await.expect("record") }
    };
    assert!(record("a", Failed, 0).await);
    assert!(!record("a", Failed, 0).await);
    assert!(record("a", Restored, 300).await);
    assert!(!record("a", Restored, 300).await);
    assert!(!record("a", Failed, 0).await, "a late failure must not undo a restore");
    assert!(record("b", Unchanged, 0).await);
    assert!(record("c", Skipped, 0).await);
    assert!(record("d", CreatedAfter, 0).await);

    // And ten deliveries of one item, half of them failures (one after another: moto does not
    // make a conditional transaction atomic against a concurrent one, which DynamoDB does, so
    // a race here would test moto)
    let mut redelivered = Vec::new();
    for i in 0..10 {
        redelivered.push(record("e", if i % 2 == 0 { Failed } else { Restored }, 100).await);
    }
    assert_eq!(redelivered.iter().filter(|changed| **changed).count(), 2, "{redelivered:?}");

    // Then every item counts exactly once, in its best outcome
    let job = catalog.restore_job("j1").await.expect("read").expect("exists");
    assert_eq!((job.status, job.planned_items, job.planned_bytes, job.conflicts), (RestoreStatus::Running, 6, 900, 2));
    assert_eq!((job.restored, job.unchanged, job.skipped, job.failed, job.bytes_restored), (2, 1, 2, 0, 400));
    assert_eq!(job.as_of, at("2024-05-01T11:45:00Z"));
    let e = catalog.restore_report("j1", "e").await.expect("report").expect("exists");
    assert_eq!(e.outcome, Restored);
    assert_eq!(catalog.restore_report("j1", "zz").await.expect("report"), None);

    // And a job settled from recounted reports takes those counts and its final status,
    // keeping its plan and bytes
    let counts = OutcomeCounts { restored: 3, unchanged: 1, skipped: 2, failed: 0 };
    catalog.settle_restore_job("j1", RestoreStatus::Succeeded, counts).await.expect("settle");
    let job = catalog.restore_job("j1").await.expect("read").expect("exists");
    assert_eq!((job.status, job.planned_items, job.bytes_restored), (RestoreStatus::Succeeded, 6, 400));
    assert_eq!((job.restored, job.unchanged, job.skipped, job.failed), (3, 1, 2, 0));
    let settled = catalog.settle_restore_job("nope", RestoreStatus::Succeeded, counts).await;
    assert!(matches!(settled, Err(StoreError::NotFound { .. })), "{settled:?}");

    // And unknown jobs are refused rather than half-created
    let orphan = catalog.record_restore_outcome(&report("nope", "a", Restored), 1).await;
    assert!(matches!(orphan, Err(StoreError::NotFound { .. })), "{orphan:?}");
    assert_eq!(catalog.restore_report("nope", "a").await.expect("report"), None);
    let status = catalog.set_restore_status("nope", RestoreStatus::Failed, None).await;
    assert!(matches!(status, Err(StoreError::NotFound { .. })), "{status:?}");
    assert_eq!(catalog.restore_job("nope").await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn jobs_list_newest_first_per_tenant_and_reports_page_by_item() {
    let moto = Moto::start();
    let catalog = catalog(&moto).await;
    for (id, created) in
        [("j1", "2024-05-02T08:00:00Z"), ("j3", "2024-05-02T10:00:00Z"), ("j2", "2024-05-02T09:00:00Z")]
    {
        catalog.create_restore_job(&job(id, created)).await.expect("create");
    }
    let mut other = job("x", "2024-05-02T11:00:00Z");
    other.container = ContainerId::new("tenant-2", "d");
    catalog.create_restore_job(&other).await.expect("create");
    catalog.set_restore_status("j2", RestoreStatus::CompletedWithErrors, None).await.expect("status");

    let listed = catalog.list_restore_jobs("tenant-1", 10).await.expect("list");
    let order: Vec<&str> = listed.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(order, ["j3", "j2", "j1"]);
    assert_eq!(listed[1].status, RestoreStatus::CompletedWithErrors);
    assert_eq!(catalog.list_restore_jobs("tenant-1", 2).await.expect("list").len(), 2);
    assert!(catalog.list_restore_jobs("tenant-3", 10).await.expect("list").is_empty());

    // Reports of one job, paged three at a time, none of another job's
    for i in 0..8 {
        let r = report("j1", &format!("i{i}"), RestoreOutcome::Restored);
        catalog.record_restore_outcome(&r, 1).await.expect("record");
    }
    catalog.record_restore_outcome(&report("j2", "i0", RestoreOutcome::Failed), 0).await.expect("other job");
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut cursors = Vec::new();
    loop {
        let page = catalog.restore_reports("j1", cursor.as_deref(), 3).await.expect("page");
        assert!(page.items.len() <= 3);
        items.extend(page.items.into_iter().map(|r| r.item_id));
        match page.next {
            Some(next) => {
                cursors.push(next.clone());
                cursor = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(items, ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"]);
    assert_eq!(cursors.len(), 2);
    let foreign = catalog.restore_reports("j2", Some(&cursors[0]), 3).await;
    assert!(matches!(foreign, Err(StoreError::InvalidCursor)), "{foreign:?}");
    let job = catalog.restore_job("j1").await.expect("read").expect("exists");
    assert_eq!((job.restored, job.bytes_restored), (8, 8));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn export_parts_are_recorded_once_listed_in_order_and_kept_out_of_the_reports() {
    // Given a job with one report, on DynamoDB and on the in-memory specification
    let moto = Moto::start();
    let dynamo = catalog(&moto).await;
    let memory = MemoryCatalog::new();
    for catalog in [&dynamo as &dyn Catalog, &memory] {
        catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await.expect("create");
        catalog.record_restore_outcome(&report("j1", "m1", RestoreOutcome::Restored), 1).await.expect("record");
        let part = |n: u32, sha: &str| shared::model::ExportPart {
            part: n,
            of: 11,
            key: format!("exports/j1/part-{n}.zip"),
            bytes: u64::from(n) * 100,
            sha256: sha.to_owned(),
            messages: 1,
            failed: 0,
            completed_at: at("2024-05-02T09:00:00Z"),
        };

        // When parts 11, 2 and 1 are recorded, and part 2 again (a redelivered part task)
        for n in [11, 2, 1] {
            assert!(catalog.record_export_part("j1", &part(n, "first")).await.expect("record"));
        }
        let again = catalog.record_export_part("j1", &part(2, "second")).await.expect("record again");

        // Then the second record of part 2 changes nothing, parts list in part order, and
        // the report listing still holds the one report
        assert!(!again);
        let parts = catalog.export_parts("j1").await.expect("parts");
        let listed: Vec<(u32, &str)> = parts.iter().map(|p| (p.part, p.sha256.as_str())).collect();
        assert_eq!(listed, [(1, "first"), (2, "first"), (11, "first")]);
        let reports = catalog.restore_reports("j1", None, 10).await.expect("reports");
        assert_eq!(reports.items.iter().map(|r| r.item_id.as_str()).collect::<Vec<_>>(), ["m1"]);
        assert!(catalog.export_parts("j2").await.expect("none").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn timing_of_a_folder_of_two_thousand_children() {
    // Given 2,000 files in one folder, 200 of them edited again after the moment we read
    let moto = Moto::start();
    let catalog = catalog(&moto).await;
    let mut versions = Vec::new();
    for i in 0..2_000 {
        let item = format!("file{i:05}");
        versions.push(state(&item, "1", "big", "2024-05-01T10:00:00Z"));
        if i % 10 == 0 {
            versions.push(state(&item, "2", "big", "2024-05-01T12:00:00Z"));
        }
    }
    let started = Instant::now();
    commit_all(&catalog, &versions).await;
    println!("committed {} versions in {:?}", versions.len(), started.elapsed());

    // When the folder is read a page at a time, before and after the later edits
    for (label, t, limit) in [
        ("heads older than T", "2024-05-01T13:00:00Z", 200),
        ("10% changed since T", "2024-05-01T11:00:00Z", 200),
        ("heads older than T", "2024-05-01T13:00:00Z", 1_000),
        ("10% changed since T", "2024-05-01T11:00:00Z", 1_000),
    ] {
        let started = Instant::now();
        let first = catalog.children_as_of(&container(), "big", at(t), None, limit).await.expect("page");
        let first_page = started.elapsed();
        let all = all_children(&catalog, "big", at(t), limit).await;
        println!(
            "children_as_of on moto, {label}, limit {limit}: first page {first_page:?}, all 2,000 in {:?}",
            started.elapsed() - first_page
        );
        assert_eq!(first.items.len(), limit);
        assert_eq!(all.len(), 2_000);
    }
    // For scale: moto answers every Query by scanning the whole table, so each `version_at`
    // (one per child changed since T) costs far more here than on DynamoDB.
    let started = Instant::now();
    for i in (0..2_000).step_by(100) {
        let item = container().item(format!("file{i:05}"));
        catalog.version_at(&item, at("2024-05-01T11:00:00Z")).await.expect("version_at").expect("exists");
    }
    println!("version_at on moto: {:?} each, sequentially", started.elapsed() / 20);
    let started = Instant::now();
    let drive = catalog.container_as_of(&container(), at("2024-05-01T11:00:00Z")).await.expect("as of");
    println!("container_as_of on moto, 2,200 versions: {:?}", started.elapsed());
    assert_eq!(drive.len(), 2_000);
}
