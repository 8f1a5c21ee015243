//! Point-in-time reads and restore bookkeeping of the catalog, on [`MemoryCatalog`] (the same
//! scenarios run against DynamoDB in `tests/catalog_restore_moto.rs`).

use chrono::{DateTime, Utc};

use super::memory::MemoryCatalog;
use super::{ItemHistory, PointInTime, RestoreJobs, StoreError};
use crate::model::{
    ConflictPolicy, ContainerId, ItemKind, ItemVersion, ObjectRef, RestoreItemReport, RestoreJob, RestoreOutcome,
    RestorePlan, RestoreScope, RestoreStatus, RestoreTarget, SCHEMA_VERSION, Verification,
};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
}

fn container() -> ContainerId {
    ContainerId::new("t", "d")
}

fn state(item: &str, etag: &str, parent: &str, name: &str, modified: &str) -> ItemVersion {
    ItemVersion {
        v: SCHEMA_VERSION,
        key: container().item(item),
        version: etag.to_owned(),
        kind: ItemKind::File,
        name: Some(name.to_owned()),
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
        ..state(item, "", "", "", observed)
    }
}

async fn commit(catalog: &MemoryCatalog, versions: &[ItemVersion]) {
    for v in versions {
        let record = ObjectRef { key: format!("records/{}/{}", v.key.item_id, v.version), version_id: "1".to_owned() };
        catalog.commit_version(v, &record).await.expect("commit");
    }
}

/// A morning in folder A: an edited and renamed document, an item moved out to B, one moved
/// in from B, one deleted, one created late.
fn morning() -> Vec<ItemVersion> {
    vec![
        state("doc", "d1", "A", "draft.docx", "2024-05-01T10:00:00Z"),
        state("doc", "d2", "A", "final.docx", "2024-05-01T11:00:00Z"),
        state("doc", "d3", "A", "final.docx", "2024-05-01T12:00:00Z"),
        state("out", "o1", "A", "leaving.txt", "2024-05-01T10:00:00Z"),
        state("out", "o2", "B", "leaving.txt", "2024-05-01T11:00:00Z"),
        state("in", "i1", "B", "arriving.txt", "2024-05-01T10:00:00Z"),
        state("in", "i2", "A", "arriving.txt", "2024-05-01T11:30:00Z"),
        state("gone", "g1", "A", "gone.txt", "2024-05-01T10:00:00Z"),
        tombstone("gone", Some("A"), "2024-05-01T11:00:00Z"),
        state("late", "l1", "A", "late.txt", "2024-05-01T13:00:00Z"),
    ]
}

async fn children(catalog: &MemoryCatalog, parent: &str, t: &str) -> Vec<(String, String)> {
    let page = catalog.children_as_of(&container(), parent, at(t), None, 100).await.expect("children");
    assert_eq!(page.next, None);
    page.items.into_iter().map(|v| (v.key.item_id, v.version)).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(i, v)| ((*i).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn a_folder_as_of_a_moment_follows_edits_renames_moves_and_deletions() {
    // Given a morning of changes in folders A and B
    let catalog = MemoryCatalog::new();
    commit(&catalog, &morning()).await;

    // Then before anything existed, A is empty
    assert!(children(&catalog, "A", "2024-05-01T09:59:59.999Z").await.is_empty());
    // At 10:30 A holds the draft, the item that later leaves, and the one later deleted
    assert_eq!(
        children(&catalog, "A", "2024-05-01T10:30:00Z").await,
        pairs(&[("doc", "d1"), ("gone", "g1"), ("out", "o1")])
    );
    assert_eq!(children(&catalog, "B", "2024-05-01T10:30:00Z").await, pairs(&[("in", "i1")]));
    // At 11:45 the moved-out item is B's, the moved-in one A's, the deleted one nobody's
    assert_eq!(children(&catalog, "A", "2024-05-01T11:45:00Z").await, pairs(&[("doc", "d2"), ("in", "i2")]));
    assert_eq!(children(&catalog, "B", "2024-05-01T11:45:00Z").await, pairs(&[("out", "o2")]));
    // A version modified exactly at T counts; the late item appears only once it exists
    assert_eq!(
        children(&catalog, "A", "2024-05-01T13:00:00Z").await,
        pairs(&[("doc", "d3"), ("in", "i2"), ("late", "l1")])
    );
    let renamed = catalog.children_as_of(&container(), "A", at("2024-05-01T11:00:00Z"), None, 10).await;
    assert_eq!(renamed.expect("children").items[0].name.as_deref(), Some("final.docx"));
}

#[tokio::test]
async fn a_drive_as_of_a_moment_shows_deletions_and_omits_items_not_yet_created() {
    let catalog = MemoryCatalog::new();
    commit(&catalog, &morning()).await;
    let as_of = |t: &'static str| {
        let catalog = &catalog;
        async move {
            let all = catalog.container_as_of(&container(), at(t)).await.expect("as of");
            all.into_iter().map(|v| (v.key.item_id, v.version)).collect::<Vec<_>>()
        }
    };
    assert!(as_of("2024-05-01T09:00:00Z").await.is_empty());
    assert_eq!(
        as_of("2024-05-01T11:45:00Z").await,
        pairs(&[("doc", "d2"), ("gone", "deleted@2024-05-01T11:00:00.000Z"), ("in", "i2"), ("out", "o2"),])
    );
    assert_eq!(as_of("2024-05-01T13:00:00Z").await.len(), 5);
}

#[tokio::test]
async fn pages_of_children_resume_where_the_cursor_says_and_reject_foreign_cursors() {
    // Given 25 files in A at 10:00, of which every fifth moved to B at 11:00
    let catalog = MemoryCatalog::new();
    let mut versions = Vec::new();
    for i in 0..25 {
        let id = format!("f{i:02}");
        versions.push(state(&id, "1", "A", &id, "2024-05-01T10:00:00Z"));
        if i % 5 == 0 {
            versions.push(state(&id, "2", "B", &id, "2024-05-01T11:00:00Z"));
        }
    }
    commit(&catalog, &versions).await;

    // When A is read at noon ten at a time
    let t = at("2024-05-01T12:00:00Z");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = catalog.children_as_of(&container(), "A", t, cursor.as_deref(), 10).await.expect("page");
        pages += 1;
        seen.extend(page.items.into_iter().map(|v| v.key.item_id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }

    // Then every child comes exactly once, in order, and none that moved away
    let expected: Vec<String> = (0..25).filter(|i| i % 5 != 0).map(|i| format!("f{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 2);

    // And a cursor is refused on another folder, at another time, or edited
    let first = catalog.children_as_of(&container(), "A", t, None, 10).await.expect("page");
    let cursor = first.next.expect("a second page");
    let elsewhere = catalog.children_as_of(&container(), "B", t, Some(&cursor), 10).await;
    assert!(matches!(elsewhere, Err(StoreError::InvalidCursor)), "{elsewhere:?}");
    let other_time = catalog.children_as_of(&container(), "A", at("2024-05-01T12:00:01Z"), Some(&cursor), 10).await;
    assert!(matches!(other_time, Err(StoreError::InvalidCursor)));
    for bad in ["", "not base64!", "eyJ2IjoxfQ", &format!("{cursor}x")] {
        let page = catalog.children_as_of(&container(), "A", t, Some(bad), 10).await;
        assert!(matches!(page, Err(StoreError::InvalidCursor)), "{bad}: {page:?}");
    }
    assert!(!StoreError::InvalidCursor.is_retryable());
}

#[tokio::test]
async fn the_change_history_window_includes_both_edges_oldest_first() {
    let catalog = MemoryCatalog::new();
    commit(
        &catalog,
        &[
            state("a", "a1", "A", "a", "2024-05-01T10:00:00Z"),
            state("b", "b1", "A", "b", "2024-05-01T10:00:00.500Z"),
            state("a", "a2", "A", "a", "2024-05-01T10:30:00Z"),
            tombstone("b", None, "2024-05-01T11:00:00Z"),
            state("c", "c1", "A", "c", "2024-05-01T11:00:00.001Z"),
        ],
    )
    .await;
    let changes = |from: &'static str, to: &'static str, limit: usize| {
        let catalog = &catalog;
        async move {
            let found = catalog.changes_between(&container(), at(from), at(to), limit).await.expect("changes");
            found.into_iter().map(|v| v.version).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        changes("2024-05-01T10:00:00.500Z", "2024-05-01T11:00:00Z", 10).await,
        ["b1", "a2", "deleted@2024-05-01T11:00:00.000Z"]
    );
    assert_eq!(changes("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", 2).await, ["a1", "b1"]);
    assert!(changes("2024-05-01T11:00:00.002Z", "2024-05-02T00:00:00Z", 10).await.is_empty());
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
        detail: None,
        target_item_id: Some(item.to_owned()),
        at: at("2024-05-02T09:00:00Z"),
    }
}

#[tokio::test]
async fn redelivered_outcomes_count_once_and_a_retry_moves_a_failure_to_restored() {
    use RestoreOutcome::{CreatedAfter, Failed, Restored, Skipped, Unchanged};
    let catalog = MemoryCatalog::new();
    catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await.expect("create");
    let again = catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
    catalog
        .set_restore_status("j1", RestoreStatus::Running, Some(RestorePlan { items: 5, bytes: 900, conflicts: 0 }))
        .await
        .expect("plan");

    // When one item fails (twice, redelivered), then its retry works, and others finish once
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
    assert!(!record("b", Restored, 200).await);
    assert!(record("c", Skipped, 0).await);
    assert!(record("d", CreatedAfter, 0).await);

    // Then the counters say what happened to each item exactly once
    let job = catalog.restore_job("j1").await.expect("read").expect("exists");
    assert_eq!((job.status, job.planned_items, job.planned_bytes), (RestoreStatus::Running, 5, 900));
    assert_eq!((job.restored, job.unchanged, job.skipped, job.failed, job.bytes_restored), (1, 1, 2, 0, 300));
    let a = catalog.restore_report("j1", "a").await.expect("report").expect("exists");
    assert_eq!(a.outcome, Restored);
    assert_eq!(catalog.restore_report("j1", "zz").await.expect("report"), None);

    // And outcomes of unknown jobs and statuses of unknown jobs are refused
    let orphan = catalog.record_restore_outcome(&report("nope", "a", Restored), 1).await;
    assert!(matches!(orphan, Err(StoreError::NotFound { .. })), "{orphan:?}");
    let status = catalog.set_restore_status("nope", RestoreStatus::Failed, None).await;
    assert!(matches!(status, Err(StoreError::NotFound { .. })), "{status:?}");
}

#[tokio::test]
async fn jobs_list_newest_first_and_reports_page_by_item() {
    let catalog = MemoryCatalog::new();
    for (id, created) in
        [("j1", "2024-05-02T08:00:00Z"), ("j3", "2024-05-02T10:00:00Z"), ("j2", "2024-05-02T09:00:00Z")]
    {
        catalog.create_restore_job(&job(id, created)).await.expect("create");
    }
    let mut other = job("x", "2024-05-02T11:00:00Z");
    other.container = ContainerId::new("other-tenant", "d");
    catalog.create_restore_job(&other).await.expect("create");
    let listed: Vec<String> =
        catalog.list_restore_jobs("t", 10).await.expect("list").into_iter().map(|j| j.id).collect();
    assert_eq!(listed, ["j3", "j2", "j1"]);
    assert_eq!(catalog.list_restore_jobs("t", 2).await.expect("list").len(), 2);

    for i in 0..7 {
        catalog.record_restore_outcome(&report("j1", &format!("i{i}"), RestoreOutcome::Restored), 1).await.expect("r");
    }
    catalog.record_restore_outcome(&report("j2", "i0", RestoreOutcome::Restored), 1).await.expect("other job");
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = catalog.restore_reports("j1", cursor.as_deref(), 3).await.expect("page");
        assert!(page.items.len() <= 3);
        items.extend(page.items.into_iter().map(|r| r.item_id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(items, ["i0", "i1", "i2", "i3", "i4", "i5", "i6"]);
    let cursor = cursor.expect("more than one page");
    let foreign = catalog.restore_reports("j2", Some(&cursor), 3).await;
    assert!(matches!(foreign, Err(StoreError::InvalidCursor)));
}
