//! Where production is less kind than our emulators, the backup's core decisions still lose
//! nothing: items back from the recycle bin or given older times, two edits in one second,
//! enumerations that fail, reconciles asked mid-pass, bytes without a hash or unlike their
//! hash, deletions Graph does not list. Each test is named for its scenario.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::copier::{self, Copied};
use super::enumerator::{self, Enumeration};
use super::tests::{World, container, file, job, run_jobs, sha, world};
use crate::graph::{DriveItem, ItemKind, UnusableItem};
use crate::model::{ChangeJob, ChangeReason, ItemHead, Verification};
use crate::store::{Failures, ItemHistory, PointInTime, SyncStates};

async fn enumerate(w: &World, reason: ChangeReason) -> Result<Enumeration, super::PipelineError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    enumerator::enumerate(&w.enumerator, &ChangeJob::new(container(), reason, Utc::now()), deadline).await
}

/// A notification's enumeration, then every item job it queued.
async fn sync(w: &World) -> Enumeration {
    let out = enumerate(w, ChangeReason::Notification).await.expect("enumerate");
    run_jobs(w).await;
    out
}

async fn head(w: &World, id: &str) -> ItemHead {
    w.catalog.head(&container().item(id)).await.expect("head").expect("held")
}

/// Microsoft 365 times are whole seconds; our observations are milliseconds apart.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn folder(id: &str, parent: &str) -> DriveItem {
    DriveItem {
        kind: ItemKind::Folder,
        size: None,
        quick_xor_hash: None,
        ..file(id, id, &format!("{id}.1"), b"", parent)
    }
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(1)).expect("truncate")
}

#[tokio::test]
async fn an_item_restored_from_the_recycle_bin_becomes_current_again() {
    // Given a file backed up, then deleted
    let w = world();
    let original = w.drive.put("f1", "plan.docx", "e1", b"the plan");
    sync(&w).await;
    tick().await;
    let before_deletion = Utc::now();
    tick().await;
    w.drive.delete_reported("f1");
    sync(&w).await;
    tick().await;
    let while_deleted = Utc::now();
    tick().await;

    // When the recycle bin gives it back: same id, same eTag, same old modification time
    w.drive.put_item(original, b"the plan");
    sync(&w).await;

    // Then it is current again, from when we saw it back, in a row of its own
    let now = head(&w, "f1").await;
    assert!(!now.current.deleted, "the item is alive again");
    assert_eq!(now.current.version, "e1");
    assert!(now.current.current_from.is_some_and(|t| t > while_deleted));
    assert_eq!(now.current.content.as_ref().map(|c| c.sha256.clone()), Some(sha(b"the plan")));
    assert_eq!(w.catalog.versions(&container().item("f1"), 10).await.expect("versions").len(), 3);
    // And each moment reads what Microsoft 365 had then
    let key = container().item("f1");
    let at = |t| w.catalog.version_at(&key, t);
    assert!(!at(before_deletion).await.expect("read").expect("v").deleted);
    assert!(at(while_deleted).await.expect("read").expect("v").deleted);
    w.catalog.flush_index(); // as-of reads of a container go through an index
    let live = w.catalog.container_as_of(&container(), Utc::now()).await.expect("as of");
    assert!(live.iter().any(|v| v.key.item_id == "f1" && !v.deleted));
    // And it costs nothing more once held
    assert_eq!(sync(&w).await.jobs, 0);
}

#[tokio::test]
async fn a_file_copied_over_with_an_older_modification_time_becomes_current() {
    // Given a file backed up
    let w = world();
    w.drive.put("f1", "notes.txt", "e1", b"written today");
    sync(&w).await;
    tick().await;

    // When an older copy replaces it, keeping its modification time from a month ago
    let old = file("f1", "notes.txt", "e2", b"from last month", "root");
    w.drive.put_item(DriveItem { last_modified: Some(Utc::now() - TimeDelta::days(30)), ..old }, b"from last month");
    sync(&w).await;

    // Then the older copy is current, and as-of now agrees with the head
    let now = head(&w, "f1").await;
    assert_eq!(now.current.version, "e2");
    assert_eq!(now.current.content.as_ref().map(|c| c.sha256.clone()), Some(sha(b"from last month")));
    w.catalog.flush_index(); // as-of reads of a container go through an index
    let live = w.catalog.container_as_of(&container(), Utc::now() + TimeDelta::seconds(1)).await.expect("as of");
    assert_eq!(live.iter().find(|v| v.key.item_id == "f1").map(|v| v.version.as_str()), Some("e2"));
}

#[tokio::test]
async fn two_edits_in_one_second_leave_the_later_one_current_and_as_of_agrees() {
    // Given two states of a file with the same Microsoft 365 time, ",10" after ",9" (though it
    // sorts before it as text)
    let w = world();
    let t = whole_second(Utc::now());
    let edit =
        |etag: &str, data: &[u8]| DriveItem { last_modified: Some(t), ..file("f1", "a.txt", etag, data, "root") };
    let (ninth, tenth) = (edit("\"{6F2A},9\"", b"ninth"), edit("\"{6F2A},10\"", b"tenth"));

    // When the later edit is copied first and the earlier one's job arrives late
    let mut late = job(&ninth);
    late.observed_at = Utc::now() - TimeDelta::seconds(2);
    w.drive.put_item(tenth.clone(), b"tenth");
    copier::copy(&w.copier, &job(&tenth)).await.expect("copy");
    w.drive.put_item(ninth, b"ninth");
    *w.drive.serve_instead.lock().expect("lock") = Some(Bytes::from_static(b"ninth"));
    copier::copy(&w.copier, &late).await.expect("copy");

    // Then the later edit is current, and as of that second, too
    assert_eq!(head(&w, "f1").await.current.version, "\"{6F2A},10\"");
    let at_t = w.catalog.version_at(&container().item("f1"), t).await.expect("read").expect("v");
    assert_eq!(at_t.version, "\"{6F2A},10\"");
    assert_eq!(w.catalog.versions(&container().item("f1"), 10).await.expect("versions").len(), 2);
}

#[tokio::test]
async fn an_enumeration_whose_first_delta_call_fails_is_retried_not_coalesced() {
    // Given a drive backed up, then a change and its notification
    let w = world();
    w.drive.put("f1", "a.txt", "e1", b"one");
    sync(&w).await;
    w.drive.put("f2", "b.txt", "e1", b"two");
    let notification = ChangeJob::new(container(), ChangeReason::Notification, Utc::now());
    let deadline = Instant::now() + Duration::from_secs(60);

    // When the first delta call fails twice (an expired reader secret), then works
    w.drive.refuse_next_deltas.store(2, Ordering::SeqCst);
    for _ in 0..2 {
        let failed = enumerator::enumerate(&w.enumerator, &notification, deadline).await;
        assert!(failed.is_err(), "a failed enumeration is an error, for the queue to retry: {failed:?}");
    }
    let out = enumerator::enumerate(&w.enumerator, &notification, deadline).await.expect("third delivery");
    run_jobs(&w).await;

    // Then the redelivered notification ran (it was never acknowledged as covered)
    assert!(!out.coalesced);
    assert_eq!(head(&w, "f2").await.current.version, "e1");
}

#[tokio::test]
async fn a_reconcile_asked_during_an_incremental_pass_compares_in_full() {
    // Given a drive backed up, and an incremental pass in progress
    let w = world();
    w.drive.put("f1", "a.txt", "e1", b"one");
    w.drive.put("f2", "b.txt", "e1", b"two");
    sync(&w).await;
    let mut state = w.catalog.sync_state(&container()).await.expect("state");
    state.next_link = Some("https://graph.test/delta?page=2".into());
    state.enumeration_started_at = Some(Utc::now());
    w.catalog.put_sync_state(&container(), &state).await.expect("put");
    tick().await;

    // When an item vanishes without the feed saying so, and a reconcile is asked
    w.drive.remove("f2");
    let out = enumerate(&w, ChangeReason::Reconcile).await.expect("reconcile");
    run_jobs(&w).await;

    // Then the reconcile compared in full: the vanished item is recorded deleted
    assert!(out.full_scan);
    assert_eq!(out.tombstones, 1);
    assert!(head(&w, "f2").await.current.deleted);
    assert!(!head(&w, "f1").await.current.deleted);
}

#[tokio::test]
async fn a_job_without_a_hash_never_records_new_bytes_under_the_old_etag() {
    // Given a job for a file Graph gave no hash yet
    let w = world();
    let first = DriveItem { quick_xor_hash: None, ..file("f1", "a.txt", "e1", b"aaaa", "root") };
    w.drive.put_item(first.clone(), b"aaaa");
    let stale = job(&first);

    // When the file changes to other bytes of the same size before the copy
    w.drive.put_item(DriveItem { quick_xor_hash: None, ..file("f1", "a.txt", "e2", b"bbbb", "root") }, b"bbbb");
    let outcome = copier::copy(&w.copier, &stale).await.expect("copy");

    // Then nothing is recorded under e1: the feed brings e2
    assert_eq!(outcome, Copied::Superseded);
    assert!(w.catalog.head(&container().item("f1")).await.expect("head").is_none());
    sync(&w).await;
    let now = head(&w, "f1").await;
    assert_eq!((now.current.version.as_str(), now.current.verification), ("e2", Verification::Unverified));
    assert_eq!(now.current.content.map(|c| c.sha256), Some(sha(b"bbbb")));
}

#[tokio::test]
async fn a_version_recorded_without_a_hash_is_verified_later_by_an_added_record() {
    // Given a file backed up before Graph had its hash
    let w = world();
    let with_hash = file("f1", "a.txt", "e1", b"contents", "root");
    w.drive.put_item(DriveItem { quick_xor_hash: None, ..with_hash.clone() }, b"contents");
    sync(&w).await;
    let unverified = head(&w, "f1").await;
    assert_eq!(unverified.current.verification, Verification::Unverified);

    // When Graph gives the hash, same eTag
    w.drive.put_item(with_hash, b"contents");
    tick().await;
    let out = sync(&w).await;

    // Then a verification row is added (the unverified one stays), without downloading, and
    // the item is never queued again
    assert_eq!(out.jobs, 1);
    let verified = head(&w, "f1").await;
    assert_eq!(verified.current.verification, Verification::QuickXor);
    assert!(verified.current.current_from.is_some());
    assert_ne!(verified.record, unverified.record, "a record of its own");
    let history = w.catalog.versions(&container().item("f1"), 10).await.expect("versions");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].verification, Verification::Unverified);
    assert_eq!(sync(&w).await.jobs, 0);
}

#[tokio::test]
async fn bytes_graph_serves_unlike_its_size_and_hash_are_recorded_as_served_once() {
    // Given a file whose downloads always serve other bytes than Graph describes
    let w = world();
    let item = w.drive.put("f1", "labelled.docx", "e1", b"what graph reports");
    *w.drive.serve_instead.lock().expect("lock") = Some(Bytes::from_static(b"what graph serves, encrypted"));

    // When it is copied
    let outcome = copier::copy(&w.copier, &job(&item)).await.expect("copy");

    // Then the served bytes are kept as an "as served" state with the reason, reported, and
    // never retried
    assert_eq!(outcome, Copied::Committed { bytes: 28 });
    let held = head(&w, "f1").await.current;
    assert_eq!(held.verification, Verification::AsServed);
    assert_eq!(held.content.map(|c| c.sha256), Some(sha(b"what graph serves, encrypted")));
    assert!(held.note.is_some_and(|n| n.contains("18 bytes")));
    let failures = w.catalog.failures(&container()).await.expect("failures");
    assert!(failures.iter().any(|f| f.key.item_id == "f1" && f.reason.starts_with("recorded as served")));
    assert_eq!(sync(&w).await.jobs, 0);
}

#[tokio::test]
async fn bytes_that_differ_on_every_download_are_retried_never_recorded() {
    let w = world();
    let item = w.drive.put("f1", "a.txt", "e1", b"original");
    w.drive.serve_varying.store(true, Ordering::SeqCst);

    let err = copier::copy(&w.copier, &job(&item)).await.expect_err("mismatch");

    assert!(err.is_retryable());
    assert!(w.catalog.head(&container().item("f1")).await.expect("head").is_none());
}

#[tokio::test]
async fn a_deleted_folders_descendants_are_tombstoned_when_delta_omits_them() {
    // Given a folder tree backed up: F holds a, G and b; G holds c
    let w = world();
    for f in [folder("F", "root"), folder("G", "F")] {
        w.drive.put_item(f, b"");
    }
    for (id, parent) in [("a", "F"), ("b", "F"), ("c", "G"), ("z", "root")] {
        w.drive.put_item(file(id, id, "e1", id.as_bytes(), parent), id.as_bytes());
    }
    sync(&w).await;
    w.catalog.flush_index(); // the heads index catches up within a second

    // When b moves out, then F is deleted and the feed lists only F's own deletion
    w.drive.put_item(file("b", "b", "e2", b"b", "root"), b"b");
    for id in ["a", "G", "c"] {
        w.drive.remove(id);
    }
    w.drive.delete_reported("F");
    let out = sync(&w).await;

    // Then every descendant is recorded deleted, and what moved out is not
    assert_eq!(out.tombstones, 3);
    for id in ["F", "G", "a", "c"] {
        assert!(head(&w, id).await.current.deleted, "{id} is recorded deleted");
    }
    for id in ["b", "z"] {
        assert!(!head(&w, id).await.current.deleted, "{id} is alive");
    }
}

#[tokio::test]
async fn an_inferred_deletion_of_an_item_graph_still_has_records_its_state_instead() {
    // Given a file backed up, and a tombstone job inferred for it (a scan that missed it)
    let w = world();
    let item = w.drive.put("f1", "a.txt", "e1", b"one");
    sync(&w).await;
    let mut inferred = job(&item);
    (inferred.item.deleted, inferred.confirm_gone) = (true, true);

    // When the copier runs it, Graph still has the file
    copier::copy(&w.copier, &inferred).await.expect("copy");

    // Then no tombstone is written
    assert!(!head(&w, "f1").await.current.deleted);
    assert_eq!(w.catalog.versions(&container().item("f1"), 10).await.expect("versions").len(), 1);
}

#[tokio::test]
async fn a_full_scan_never_tombstones_an_item_graph_still_has_whatever_the_index_lag() {
    // Given 40 files backed up, and a heads index that lags by more writes than a scan makes
    let w = world();
    for i in 0..40 {
        let id = format!("f{i:02}");
        w.drive.put(&id, &id, "e1", id.as_bytes());
    }
    sync(&w).await;
    w.catalog.flush_index();
    w.catalog.set_index_lag(500);
    w.drive.remove("f07");

    // When a reconcile compares Graph with the catalog, and its jobs run
    let out = enumerate(&w, ChangeReason::Reconcile).await.expect("reconcile");
    run_jobs(&w).await;

    // Then only the file Graph lost is recorded deleted
    assert!(out.full_scan);
    assert!(head(&w, "f07").await.current.deleted);
    for i in (0..40).filter(|i| *i != 7) {
        assert!(!head(&w, &format!("f{i:02}")).await.current.deleted, "f{i:02} is alive in Graph");
    }
}

#[tokio::test]
async fn a_reconcile_of_an_unchanged_drive_writes_a_row_per_page_not_per_item() {
    // Given a drive of 10,000 files (FIGURE_ITEMS), all backed up
    let w = world();
    let n: usize = std::env::var("FIGURE_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    for i in 0..n {
        let id = format!("f{i:06}");
        w.drive.put(&id, &id, "e1", b"x");
    }
    sync(&w).await;
    w.catalog.flush_index();

    // When a reconcile finds nothing changed (one delta page here)
    let before = w.catalog.write_count();
    let out = enumerate(&w, ChangeReason::Reconcile).await.expect("reconcile");

    // Then it wrote its sync state and its marks (1,000 items a row), not a row per item
    let writes = w.catalog.write_count() - before;
    eprintln!("reconcile of an unchanged {n}-file drive: {writes} catalog writes, {} jobs", out.jobs);
    assert_eq!(out.jobs, 0);
    assert!(writes as usize <= n.div_ceil(1000) + 3, "{writes} writes");
}

#[tokio::test]
async fn an_unusable_item_in_a_delta_page_is_its_own_failure_and_the_page_goes_on() {
    // Given a file backed up
    let w = world();
    w.drive.put("f1", "a.txt", "e1", b"one");
    sync(&w).await;

    // When a page brings a new file and an item Graph sent malformed (the held file's), in a
    // full scan
    w.drive.put("f2", "b.txt", "e1", b"two");
    w.drive.remove("f1");
    let reason = "`size` is a string, expected u64".to_owned();
    *w.drive.unusable_next.lock().expect("lock") = vec![UnusableItem { id: Some("f1".into()), reason }];
    let out = enumerate(&w, ChangeReason::Reconcile).await.expect("reconcile");
    run_jobs(&w).await;

    // Then the rest of the page is backed up, the unusable item is a failure with its reason,
    // and what we hold of it is not taken for deleted
    assert_eq!(out.tombstones, 0);
    assert_eq!(head(&w, "f2").await.current.version, "e1");
    assert!(!head(&w, "f1").await.current.deleted);
    let failures = w.catalog.failures(&container()).await.expect("failures");
    assert!(failures.iter().any(|f| f.key.item_id == "f1" && f.reason.contains("`size` is a string")));
}

#[tokio::test]
async fn descendants_graph_does_list_as_deleted_are_not_inferred_twice() {
    // Given a folder with a file, backed up
    let w = world();
    w.drive.put_item(folder("F", "root"), b"");
    w.drive.put_item(file("a", "a", "e1", b"a", "F"), b"a");
    sync(&w).await;
    w.catalog.flush_index();

    // When the folder is deleted and the feed lists both deletions
    w.drive.delete_reported("a");
    w.drive.delete_reported("F");
    let out = sync(&w).await;

    // Then both are recorded deleted by their own jobs, none inferred
    assert_eq!(out.tombstones, 0);
    assert!(head(&w, "F").await.current.deleted && head(&w, "a").await.current.deleted);
}
