//! [`RestoreJobs`]: jobs, their counters and their per-item reports.

use super::{at, is_invalid_cursor, job, report};
use crate::model::{ContainerId, RestoreOutcome, RestorePlan, RestoreStatus};
use crate::store::{JobEnd, OutcomeCounts, RestoreJobs, StoreError};

contract_tests!(
    a_job_ends_once_and_an_ended_job_never_moves_again,
    the_watchdog_ends_only_a_job_idle_since_its_bound_and_lists_active_jobs_without_an_index,
    an_outcome_counts_once_however_often_it_is_delivered_and_a_retry_turns_a_failure_into_a_restore,
    jobs_list_newest_first_per_tenant,
    reports_page_by_item_and_a_cursor_stays_with_its_job,
);

async fn an_outcome_counts_once_however_often_it_is_delivered_and_a_retry_turns_a_failure_into_a_restore(
    catalog: &impl RestoreJobs,
) {
    use RestoreOutcome::{CreatedAfter, Failed, Restored, Skipped, Unchanged};

    // Given a job, created once, then planned
    catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await.expect("create");
    let again = catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
    catalog
        .set_restore_status("j1", RestoreStatus::Running, Some(RestorePlan { items: 6, bytes: 900, conflicts: 2 }))
        .await
        .expect("plan");

    // When an item fails, is redelivered, then its retry restores it, and others finish once
    let record = |item: &'static str, outcome, bytes| async move {
        catalog.record_restore_outcome(&report("j1", item, outcome), bytes).await.expect("record")
    };
    assert!(record("a", Failed, 0).await);
    assert!(!record("a", Failed, 0).await);
    assert!(record("a", Restored, 300).await);
    assert!(!record("a", Restored, 300).await);
    assert!(!record("a", Failed, 0).await, "a late failure must not undo a restore");
    assert!(record("b", Unchanged, 0).await);
    assert!(!record("b", Restored, 200).await, "a final outcome stays");
    assert!(record("c", Skipped, 0).await);
    assert!(record("d", CreatedAfter, 0).await);

    // And ten deliveries of one item, half of them failures, one after another
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
    let a = catalog.restore_report("j1", "a").await.expect("report").expect("exists");
    assert_eq!(a.outcome, Restored);
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

async fn jobs_list_newest_first_per_tenant(catalog: &impl RestoreJobs) {
    // Given three jobs of tenant-1 created out of order, and a later one of tenant-2
    for (id, created) in
        [("j1", "2024-05-02T08:00:00Z"), ("j3", "2024-05-02T10:00:00Z"), ("j2", "2024-05-02T09:00:00Z")]
    {
        catalog.create_restore_job(&job(id, created)).await.expect("create");
    }
    let mut other = job("x", "2024-05-02T11:00:00Z");
    other.container = ContainerId::new("tenant-2", "d");
    catalog.create_restore_job(&other).await.expect("create");
    catalog.set_restore_status("j2", RestoreStatus::CompletedWithErrors, None).await.expect("status");

    // Then tenant-1's list is its own, newest first, with live statuses, cut at the limit
    let listed = catalog.list_restore_jobs("tenant-1", 10).await.expect("list");
    let order: Vec<&str> = listed.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(order, ["j3", "j2", "j1"]);
    assert_eq!(listed[1].status, RestoreStatus::CompletedWithErrors);
    let first_two = catalog.list_restore_jobs("tenant-1", 2).await.expect("list");
    assert_eq!(first_two.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["j3", "j2"]);
    assert!(catalog.list_restore_jobs("tenant-1", 0).await.expect("list").is_empty());
    assert!(catalog.list_restore_jobs("tenant-3", 10).await.expect("list").is_empty());
}

async fn reports_page_by_item_and_a_cursor_stays_with_its_job(catalog: &impl RestoreJobs) {
    // Given eight reports of j1 and one of j2
    for id in ["j1", "j2"] {
        catalog.create_restore_job(&job(id, "2024-05-02T08:00:00Z")).await.expect("create");
    }
    for i in 0..8 {
        let r = report("j1", &format!("i{i}"), RestoreOutcome::Restored);
        catalog.record_restore_outcome(&r, 1).await.expect("record");
    }
    catalog.record_restore_outcome(&report("j2", "i0", RestoreOutcome::Failed), 0).await.expect("other job");

    // When j1's reports are read three at a time
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

    // Then each comes once, in item order, none of j2's, and j2 refuses j1's cursors
    assert_eq!(items, ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"]);
    assert_eq!(cursors.len(), 2);
    for cursor in &cursors {
        let foreign = catalog.restore_reports("j2", Some(cursor), 3).await;
        assert!(is_invalid_cursor(&foreign), "{foreign:?}");
    }
    let job = catalog.restore_job("j1").await.expect("read").expect("exists");
    assert_eq!((job.restored, job.bytes_restored), (8, 8));
}

async fn a_job_ends_once_and_an_ended_job_never_moves_again(catalog: &impl RestoreJobs) {
    use RestoreStatus::{Cancelled, Failed, Planned, Queued, Running, Succeeded};
    // Given a running job with one outcome, and a dry run that ended planned
    catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await.expect("create");
    assert!(catalog.set_restore_status("j1", Running, Some(RestorePlan::default())).await.expect("run"));
    catalog.record_restore_outcome(&report("j1", "a", RestoreOutcome::Restored), 10).await.expect("record");
    catalog.create_restore_job(&job("dry", "2024-05-02T08:00:00Z")).await.expect("create");
    assert!(catalog.set_restore_status("dry", Planned, None).await.expect("plan"));
    let cancel =
        JobEnd { from: &RestoreStatus::ACTIVE, to: Cancelled, reason: "cancelled by request", idle_since: None };

    // When both are cancelled, then cancelled again
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    assert!(catalog.end_restore_job("j1", &cancel).await.expect("cancel"));
    assert!(catalog.end_restore_job("dry", &cancel).await.expect("cancel dry run"));
    assert!(!catalog.end_restore_job("j1", &cancel).await.expect("again"), "a job ends once");

    // Then each is cancelled with its reason and counters, its row stamped by the change
    let j1 = catalog.restore_job("j1").await.expect("read").expect("exists");
    assert_eq!((j1.status, j1.reason.as_deref(), j1.restored), (Cancelled, Some("cancelled by request"), 1));
    assert!(j1.updated_at.is_some_and(|u| u >= before), "{:?}", j1.updated_at);
    assert_eq!(catalog.restore_job("dry").await.expect("read").expect("exists").status, Cancelled);

    // And nothing the restorer does moves it again: a late finish, a settle, a failure
    assert!(!catalog.set_restore_status("j1", Succeeded, None).await.expect("finish"));
    let counts = OutcomeCounts { restored: 1, ..OutcomeCounts::default() };
    assert!(!catalog.settle_restore_job("j1", Succeeded, counts).await.expect("settle"));
    let fail = JobEnd { from: &RestoreStatus::WORKING, to: Failed, reason: "plan failed", idle_since: None };
    assert!(!catalog.end_restore_job("j1", &fail).await.expect("fail"));
    assert!(!catalog.set_restore_status("dry", Running, None).await.expect("a planned dry run stays"));
    let j1 = catalog.restore_job("j1").await.expect("read").expect("exists");
    assert_eq!((j1.status, j1.reason.as_deref()), (Cancelled, Some("cancelled by request")));

    // And a queued job fails with its reason; an unknown one is not found
    catalog.create_restore_job(&job("j2", "2024-05-02T08:00:00Z")).await.expect("create");
    assert!(catalog.end_restore_job("j2", &fail).await.expect("fail"));
    let j2 = catalog.restore_job("j2").await.expect("read").expect("exists");
    assert_eq!((j2.status, j2.reason.as_deref()), (Failed, Some("plan failed")));
    assert!(!catalog.set_restore_status("j2", Queued, None).await.expect("stays failed"));
    let unknown = catalog.end_restore_job("nope", &cancel).await;
    assert!(matches!(unknown, Err(StoreError::NotFound { .. })), "{unknown:?}");
}

async fn the_watchdog_ends_only_a_job_idle_since_its_bound_and_lists_active_jobs_without_an_index(
    catalog: &impl RestoreJobs,
) {
    // Given two jobs created long ago, one of which makes progress now, and another tenant's
    for id in ["idle", "busy"] {
        catalog.create_restore_job(&job(id, "2024-05-02T08:00:00Z")).await.expect("create");
        assert!(catalog.set_restore_status(id, RestoreStatus::Running, None).await.expect("run"));
    }
    let mut other = job("x", "2024-05-02T08:00:00Z");
    other.container = ContainerId::new("tenant-2", "d");
    catalog.create_restore_job(&other).await.expect("create");
    let ids = |jobs: Vec<crate::store::ActiveJob>| {
        let mut ids: Vec<String> = jobs.into_iter().map(|j| j.id).collect();
        ids.sort();
        ids
    };
    let listed = catalog.active_restore_jobs("tenant-1").await.expect("active");
    assert!(listed.iter().all(|j| j.created_at == at("2024-05-02T08:00:00Z")), "{listed:?}");
    assert_eq!(ids(listed), ["busy", "idle"], "listed at once: no index lag");
    let bound = chrono::Utc::now();
    catalog.record_restore_outcome(&report("busy", "a", RestoreOutcome::Restored), 1).await.expect("progress");

    // When the watchdog ends the jobs that have not changed since the bound
    let end = JobEnd {
        from: &RestoreStatus::WORKING,
        to: RestoreStatus::Failed,
        reason: "no progress",
        idle_since: Some(bound - chrono::Duration::milliseconds(1)),
    };
    let ended_idle = catalog.end_restore_job("idle", &JobEnd { idle_since: Some(bound), ..end }).await;
    let ended_busy = catalog.end_restore_job("busy", &end).await;

    // Then only the idle one failed; the one that progressed after the bound runs on
    assert!(ended_idle.expect("idle"));
    assert!(!ended_busy.expect("busy"));
    assert_eq!(catalog.restore_job("busy").await.expect("read").expect("exists").status, RestoreStatus::Running);

    // And forgetting takes ids off the tenant's active list only
    let active = |id: &str| crate::store::ActiveJob { id: id.to_owned(), created_at: at("2024-05-02T08:00:00Z") };
    catalog.forget_restore_jobs("tenant-1", &[active("idle")]).await.expect("forget");
    assert_eq!(ids(catalog.active_restore_jobs("tenant-1").await.expect("active")), ["busy"]);
    assert_eq!(ids(catalog.active_restore_jobs("tenant-2").await.expect("active")), ["x"]);
    catalog.forget_restore_jobs("tenant-1", &[active("busy"), active("never")]).await.expect("forget");
    assert!(catalog.active_restore_jobs("tenant-1").await.expect("active").is_empty());
}
