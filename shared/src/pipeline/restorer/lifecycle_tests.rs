//! Every restore job ends: bounded retries, throttle deferral, cancel, the watchdog. In
//! process, against the memory catalog and queue and a scripted Graph.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::graph::test_server::{Seen, TestServer, graph_error, json, reply};
use crate::model::{ContainerId, ItemKind, RestoreScope, RestoreStatus, SyncState};
use crate::store::memory::{MemoryCatalog, MemorySink};
use crate::store::{Coordination, ItemHistory, JobEnd, OutMessage, QueueName, RestoreJobs, SyncStates};

const DRIVE: &str = "d";

fn drive() -> ContainerId {
    ContainerId::new("t", DRIVE)
}

/// What the scripted Graph answers a folder's GET with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The folder as it was: the restore finds it unchanged.
    AsItWas,
    /// 500 on every call (the client does not retry: `max_retries` 0).
    Broken,
    /// 429 with `Retry-After: 120`.
    Throttled,
}

struct World {
    graph: TestServer,
    catalog: Arc<MemoryCatalog>,
    sink: Arc<MemorySink>,
    deps: RestorerDeps,
    clock: Arc<crate::clock::ManualClock>,
    /// Answers Graph gives from now on: 0 as it was, 1 broken, 2 throttled.
    answer: Arc<AtomicU32>,
}

impl World {
    fn set(&self, answer: Answer) {
        self.answer.store(answer as u32, Ordering::SeqCst);
    }

    /// Folder GETs Graph was asked for so far.
    fn folder_reads(&self) -> usize {
        self.graph.graph_requests().iter().filter(|s| s.path.contains("/items/")).count()
    }

    async fn job(&self) -> RestoreJob {
        self.catalog.restore_job("j").await.expect("read").expect("job")
    }

    /// Delivers every message the restorer has queued, once; returns how many there were.
    async fn deliver(&self) -> Vec<OutMessage> {
        let messages = self.sink.take(QueueName::Restores);
        for m in &messages {
            let task: RestoreTask = serde_json::from_str(&m.body).expect("task");
            handle(&self.deps, &task, far()).await.expect("handled");
        }
        messages
    }
}

fn folder(id: &str, modified: DateTime<Utc>) -> ItemVersion {
    ItemVersion { modified, captured_at: modified, ..super::outline::tests::version(id, ItemKind::Folder, id, "root") }
}

/// A drive of `folders` folders backed up an hour ago, an in-place restore job `j` of it as
/// of now, and a Graph whose answers the test sets.
async fn world(folders: usize) -> World {
    let answer = Arc::new(AtomicU32::new(Answer::AsItWas as u32));
    let script = answer.clone();
    let graph = TestServer::start(3600, move |seen: &Seen, _| {
        let id = seen.path.rsplit('/').next().unwrap_or_default().to_owned();
        match script.load(Ordering::SeqCst) {
            1 => graph_error(500, "generalException"),
            2 => reply(429, &[("retry-after", "120")], ""),
            _ => json(
                200,
                &serde_json::json!({"id": id, "name": id, "folder": {"childCount": 0},
                    "parentReference": {"id": "root", "driveId": DRIVE}}),
            ),
        }
    })
    .await;
    let catalog = Arc::new(MemoryCatalog::new());
    let sink = Arc::new(MemorySink::new());
    let backed_up = Utc::now() - chrono::Duration::hours(1);
    for i in 0..folders {
        let v = folder(&format!("f{i:02}"), backed_up);
        let record = crate::model::ObjectRef { key: format!("records/{i}"), version_id: "1".into() };
        catalog.commit_version(&v, &record).await.expect("commit");
    }
    let sync = SyncState { root_id: Some("root".into()), ..SyncState::default() };
    catalog.put_sync_state(&drive(), &sync).await.expect("sync");
    let job = RestoreJob::new("j", drive(), RestoreScope::Container, Utc::now(), RestoreTarget::InPlace, Utc::now());
    catalog.create_restore_job(&job).await.expect("create");
    let clock = Arc::new(crate::clock::ManualClock::new(Utc::now()));
    let deps =
        RestorerDeps::in_memory(graph.client_with(|c| c.max_retries = 0), catalog.clone(), sink.clone(), clock.clone());
    World { graph, catalog, sink, deps, clock, answer }
}

/// The job planned and running, its chunk of `ids` about to be delivered.
async fn running(w: &World, items: usize) -> RestoreTask {
    let plan = crate::model::RestorePlan { items: items as u64, ..Default::default() };
    assert!(w.catalog.set_restore_status("j", RestoreStatus::Running, Some(plan)).await.expect("run"));
    let ids = (0..items).map(|i| format!("f{i:02}")).collect();
    RestoreTask::new("j", RestoreStep::Items { item_ids: ids, resume: None })
}

fn task_of(m: &OutMessage) -> RestoreTask {
    serde_json::from_str(&m.body).expect("task")
}

#[tokio::test]
async fn a_plan_that_fails_on_every_attempt_ends_the_job_failed_with_its_reason() {
    // Given a restore to another folder, whose plan lists that folder in Graph (an in-place
    // plan calls no Graph), and Graph failing every call
    let w = world(1).await;
    let target = RestoreTarget::Alternate { drive_id: DRIVE.into(), folder_id: "elsewhere".into() };
    let job = RestoreJob::new("k", drive(), RestoreScope::Container, Utc::now(), target, Utc::now());
    w.catalog.create_restore_job(&job).await.expect("create");
    w.set(Answer::Broken);
    handle(&w.deps, &RestoreTask::plan("k", false), far()).await.expect("first delivery acked");

    // When the restorer's own re-sends are delivered until none is left
    let mut attempts = vec![0];
    loop {
        let sent = w.sink.take(QueueName::Restores);
        let Some(m) = sent.first() else { break };
        assert_eq!(sent.len(), 1);
        let task = task_of(m);
        assert!(m.delay.is_some_and(|d| d >= Duration::from_secs(30)), "a backoff: {:?}", m.delay);
        attempts.push(task.attempt);
        handle(&w.deps, &task, far()).await.expect("acked");
    }

    // Then it was tried MAX_ATTEMPTS times in all, and the job failed saying why
    assert_eq!(attempts, (0..MAX_ATTEMPTS).collect::<Vec<_>>());
    let job = w.catalog.restore_job("k").await.expect("read").expect("job");
    assert_eq!(job.status, RestoreStatus::Failed);
    let reason = job.reason.unwrap_or_default();
    assert!(reason.starts_with("gave up after 5 attempts: transient Graph failure"), "{reason}");
    assert!(!reason.contains("http"), "no link in a reason: {reason}");
}

#[tokio::test]
async fn a_chunk_that_fails_on_every_attempt_reports_its_items_failed_and_the_job_completes_with_errors() {
    // Given a running job of three folders whose first is restored, then Graph breaks
    let w = world(3).await;
    let chunk = running(&w, 3).await;
    let first = RestoreTask::new("j", RestoreStep::Items { item_ids: vec!["f00".into()], resume: None });
    handle(&w.deps, &first, far()).await.expect("first folder");
    w.set(Answer::Broken);

    // When the chunk and each of its re-sends are delivered
    handle(&w.deps, &chunk, far()).await.expect("acked");
    let mut deliveries = 1;
    while !w.deliver().await.is_empty() {
        deliveries += 1;
    }

    // Then after MAX_ATTEMPTS deliveries its unfinished items are failed with the reason, the
    // finished one keeps its outcome, and the job ends completed with errors
    assert_eq!(deliveries, MAX_ATTEMPTS);
    let job = w.job().await;
    assert_eq!((job.status, job.unchanged, job.failed), (RestoreStatus::CompletedWithErrors, 1, 2));
    for id in ["f01", "f02"] {
        let report = w.catalog.restore_report("j", id).await.expect("read").expect("report");
        assert_eq!(report.outcome, RestoreOutcome::Failed);
        assert!(report.detail.unwrap_or_default().contains("gave up after 5 attempts"));
    }
    let kept = w.catalog.restore_report("j", "f00").await.expect("read").expect("report");
    assert_eq!(kept.outcome, RestoreOutcome::Unchanged);
}

#[tokio::test]
async fn an_item_that_never_existed_is_skipped_with_the_reason_and_the_job_finishes() {
    // Given a running job of two items, one of them an id the backup never held
    let w = world(1).await;
    running(&w, 2).await;
    let chunk =
        RestoreTask::new("j", RestoreStep::Items { item_ids: vec!["f00".into(), "ghost".into()], resume: None });

    // When the chunk is delivered
    handle(&w.deps, &chunk, far()).await.expect("handled");

    // Then the unknown item is skipped with the reason, nothing about it asked of Graph, and
    // the job finishes
    let report = w.catalog.restore_report("j", "ghost").await.expect("read").expect("report");
    assert_eq!(report.outcome, RestoreOutcome::Skipped);
    assert!(report.detail.unwrap_or_default().contains("not in the backup"));
    assert!(w.graph.graph_requests().iter().all(|s| !s.path.contains("ghost")));
    assert_eq!(w.job().await.status, RestoreStatus::Succeeded);
    assert!(w.sink.take(QueueName::Restores).is_empty());
}

#[tokio::test]
async fn a_throttled_chunk_is_put_off_with_the_items_it_has_not_finished_and_restores_them_later() {
    // Given a running job of four folders; Graph throttles from the third one on
    let w = world(4).await;
    let chunk = running(&w, 4).await;
    handle(
        &w.deps,
        &RestoreTask::new("j", RestoreStep::Items { item_ids: vec!["f00".into(), "f01".into()], resume: None }),
        far(),
    )
    .await
    .expect("two folders");
    w.set(Answer::Throttled);

    // When the chunk runs into the 429
    handle(&w.deps, &chunk, far()).await.expect("put off, acked");

    // Then it is sent again after the Retry-After, with only the unfinished items, one more
    // deferral and no attempt counted; the pause is shared under the restorer's own name
    let sent = w.sink.take(QueueName::Restores);
    assert_eq!(sent.len(), 1);
    let again = task_of(&sent[0]);
    assert_eq!(again.step, RestoreStep::Items { item_ids: vec!["f02".into(), "f03".into()], resume: None });
    assert_eq!((again.attempt, again.deferrals), (0, 1));
    let delay = sent[0].delay.expect("delayed");
    assert!((Duration::from_secs(120)..Duration::from_secs(122)).contains(&delay), "{delay:?}");
    let until = w.catalog.throttled_until("t", "restore.drive").await.expect("read").expect("shared");
    assert!(until > Utc::now() + chrono::Duration::seconds(110));
    assert_eq!(w.catalog.throttled_until("t", "drive").await.expect("read"), None, "the backup's own budget");

    // And a chunk arriving while the pause lasts is put off without calling Graph
    let reads = w.folder_reads();
    handle(&w.deps, &again, far()).await.expect("put off at once");
    assert_eq!(w.folder_reads(), reads);
    let later = task_of(&w.sink.take(QueueName::Restores)[0]);
    assert_eq!((later.attempt, later.deferrals), (0, 2));

    // And once the pause is over and Graph answers, the rest is restored and the job ends
    w.clock.advance(chrono::Duration::minutes(3));
    w.set(Answer::AsItWas);
    handle(&w.deps, &later, far()).await.expect("the rest");
    let job = w.job().await;
    assert_eq!((job.status, job.unchanged, job.failed), (RestoreStatus::Succeeded, 4, 0));
}

#[tokio::test]
async fn a_step_put_off_too_many_times_gives_up_with_the_reason() {
    // Given a chunk already put off MAX_DEFERRALS times, and Graph still throttling
    let w = world(2).await;
    let chunk = RestoreTask { deferrals: MAX_DEFERRALS, ..running(&w, 2).await };
    w.set(Answer::Throttled);

    // When it is delivered again
    handle(&w.deps, &chunk, far()).await.expect("acked");

    // Then nothing is re-sent: its items are failed with the reason and the job ends
    assert!(w.sink.take(QueueName::Restores).is_empty());
    let job = w.job().await;
    assert_eq!((job.status, job.failed), (RestoreStatus::CompletedWithErrors, 2));
    let report = w.catalog.restore_report("j", "f00").await.expect("read").expect("report");
    assert!(report.detail.unwrap_or_default().contains("put off 200 times"));
}

#[tokio::test]
async fn a_cancelled_job_stops_between_items_and_stays_cancelled() {
    // Given a running job of 30 folders, its chunk three folders in
    let w = world(30).await;
    let chunk = running(&w, 30).await;
    let RestoreStep::Items { item_ids, .. } = &chunk.step else { unreachable!() };
    let job = w.job().await;
    let mut ctx = Context::new(&w.deps, &job);
    for id in &item_ids[..3] {
        restore_item(&mut ctx, id).await.expect("restored");
    }

    // When the job is cancelled, and the chunk goes on
    let cancel =
        JobEnd { from: &RestoreStatus::ACTIVE, to: RestoreStatus::Cancelled, reason: "by request", idle_since: None };
    assert!(w.catalog.end_restore_job("j", &cancel).await.expect("cancel"));
    let mut stopped = None;
    for (i, id) in item_ids.iter().enumerate().skip(3) {
        if let Err(e) = restore_item(&mut ctx, id).await {
            stopped = Some((i, e));
            break;
        }
    }

    // Then it stops before its next status check passes, restoring nothing after it
    let (at, error) = stopped.expect("stopped");
    assert!(matches!(error, PipelineError::JobEnded(_)), "{error}");
    assert!(at < CANCEL_CHECK_ITEMS as usize, "stopped at item {at}");
    assert_eq!(w.job().await.unchanged, at as u64);

    // And a redelivered chunk does nothing, a finish changes nothing: the job stays cancelled
    let reads = w.folder_reads();
    handle(&w.deps, &chunk, far()).await.expect("a chunk of a cancelled job is dropped");
    assert_eq!(w.folder_reads(), reads);
    job::finish_if_done(&w.deps, "j").await.expect("finish");
    let job = w.job().await;
    assert_eq!(
        (job.status, job.reason.as_deref(), job.unchanged),
        (RestoreStatus::Cancelled, Some("by request"), at as u64)
    );
    assert!(w.sink.take(QueueName::Restores).is_empty());
}

#[tokio::test]
async fn the_status_is_read_again_once_per_ten_items_not_per_item() {
    // Given a running job of 50 folders (a whole chunk)
    let w = world(50).await;
    let chunk = running(&w, 50).await;

    // When the chunk runs
    let before = w.catalog.read_count();
    handle(&w.deps, &chunk, far()).await.expect("chunk");
    let reads = w.catalog.read_count() - before;

    // Then it restored all 50, re-reading the job 5 times on top of the item's own reads
    let job = w.job().await;
    assert_eq!((job.status, job.unchanged), (RestoreStatus::Succeeded, 50));
    let status_reads = 50 / CANCEL_CHECK_ITEMS as u64;
    println!("catalog reads for a chunk of 50: {reads}, of which {status_reads} status checks");
    assert!(status_reads * 100 / reads < 5, "status checks are under 5% of the reads: {status_reads}/{reads}");
}

#[tokio::test]
async fn the_watchdog_fails_a_job_without_progress_and_leaves_a_moving_one_alone() {
    // Given a job stuck since two hours ago, one created as long ago that just made progress,
    // and a finished one
    let catalog = MemoryCatalog::new();
    let long_ago = Utc::now() - chrono::Duration::hours(2);
    for id in ["stuck", "moving", "done"] {
        let job = RestoreJob::new(id, drive(), RestoreScope::Container, long_ago, RestoreTarget::InPlace, long_ago);
        catalog.create_restore_job(&job).await.expect("create");
    }
    catalog.settle_restore_job("done", RestoreStatus::Succeeded, Default::default()).await.expect("done");
    let outcome = crate::model::RestoreItemReport {
        job_id: "moving".into(),
        item_id: "a".into(),
        path: "/a".into(),
        outcome: RestoreOutcome::Restored,
        detail: None,
        target_item_id: None,
        at: Utc::now(),
    };
    catalog.record_restore_outcome(&outcome, 1).await.expect("progress");

    // When the watchdog runs
    let watched = watch(&catalog, "t", Utc::now()).await.expect("watch");

    // Then only the stuck one failed, saying why; the ended ones leave the active list
    assert_eq!(watched, Watch { active: 1, failed: 1, forgotten: 2 });
    let stuck = catalog.restore_job("stuck").await.expect("read").expect("job");
    assert_eq!(stuck.status, RestoreStatus::Failed);
    assert!(stuck.reason.unwrap_or_default().starts_with("no progress for 120 minutes"));
    let moving = catalog.restore_job("moving").await.expect("read").expect("job");
    assert_eq!(moving.status, RestoreStatus::Queued);
    let left: Vec<String> = catalog.active_restore_jobs("t").await.expect("active").into_iter().map(|j| j.id).collect();
    assert_eq!(left, ["moving"]);

    // And an hour later without progress, the other fails too
    let later = watch(&catalog, "t", Utc::now() + STUCK_AFTER).await.expect("watch");
    assert_eq!(later, Watch { active: 0, failed: 1, forgotten: 1 });
}

/// A deadline no test reaches.
fn far() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(3600)
}
