//! The plan fans out (folders by depth, then files by folder) and chunks wait for their
//! folders: deferred while a folder has no outcome, failed when it failed. Graph is never
//! called by these: it answers 500 to anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::outline::tests::version;
use super::{CHUNK, DEFER_FIRST, FILES_AFTER, MAX_FOLDER_WAITS, RestorerDeps, files_after, handle};
use crate::graph::test_server::{TestServer, graph_error};
use crate::model::{
    ContainerId, ContentRef, ItemKind, ItemVersion, ObjectRef, RestoreItemReport, RestoreJob, RestoreOutcome,
    RestoreScope, RestoreStatus, RestoreStep, RestoreTarget, RestoreTask, SyncState,
};
use crate::store::memory::{MemoryCatalog, MemorySink};
use crate::store::{ItemHistory, OutMessage, QueueName, RestoreJobs, SyncStates};

fn t(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, hour, 0, 0).unwrap()
}

struct World {
    catalog: Arc<MemoryCatalog>,
    sink: Arc<MemorySink>,
    deps: RestorerDeps,
    graph: TestServer,
}

async fn world(versions: &[ItemVersion], status: RestoreStatus, planned: u64) -> World {
    let graph = TestServer::start(3600, |_, _| graph_error(500, "no Graph in a plan")).await;
    let catalog = Arc::new(MemoryCatalog::with_index_lag(crate::pipeline::tests::INDEX_LAG));
    let sink = Arc::new(MemorySink::new());
    let drive = ContainerId::new("t", "d");
    let state = SyncState { root_id: Some("root".into()), ..SyncState::default() };
    catalog.put_sync_state(&drive, &state).await.expect("sync state");
    for v in versions {
        let record = ObjectRef { key: format!("records/{}", v.key.item_id), version_id: "1".into() };
        catalog.commit_version(v, &record).await.expect("commit");
    }
    catalog.flush_index();
    let job = RestoreJob {
        status,
        planned_items: planned,
        ..RestoreJob::new("j", drive, RestoreScope::Container, t(12), RestoreTarget::InPlace, t(13))
    };
    catalog.create_restore_job(&job).await.expect("create");
    let deps = RestorerDeps::in_memory(graph.client(), catalog.clone(), sink.clone(), crate::clock::system());
    World { catalog, sink, deps, graph }
}

fn folder(id: &str, parent: &str) -> ItemVersion {
    ItemVersion { modified: t(10), ..version(id, ItemKind::Folder, id, parent) }
}

fn file(id: &str, parent: &str) -> ItemVersion {
    let object = ObjectRef { key: format!("content/{id}"), version_id: "1".into() };
    let content = ContentRef { object, size: 3, sha256: format!("{:0>64}", id.len()), quick_xor_hash: None };
    ItemVersion { modified: t(10), content: Some(content), ..version(id, ItemKind::File, &format!("{id}.txt"), parent) }
}

fn chunk(items: &[&str], deferrals: u32) -> RestoreTask {
    let item_ids = items.iter().map(|i| (*i).to_owned()).collect();
    RestoreTask { deferrals, ..RestoreTask::new("j", RestoreStep::Items { item_ids, resume: None }) }
}

fn task(message: &OutMessage) -> RestoreTask {
    serde_json::from_str(&message.body).expect("a restore task")
}

fn items(task: &RestoreTask) -> Vec<String> {
    match &task.step {
        RestoreStep::Items { item_ids, .. } => item_ids.clone(),
        other => panic!("not a chunk: {other:?}"),
    }
}

async fn report(catalog: &MemoryCatalog, item: &str, outcome: RestoreOutcome, target: Option<&str>) {
    let report = RestoreItemReport {
        job_id: "j".into(),
        item_id: item.into(),
        path: format!("/{item}"),
        outcome,
        detail: None,
        target_item_id: target.map(str::to_owned),
        at: Utc::now(),
    };
    catalog.record_restore_outcome(&report, 0).await.expect("record");
}

#[tokio::test]
async fn a_chunk_whose_folder_has_no_outcome_yet_comes_back_later_with_what_is_left() {
    // Given a running restore of F/a.txt and F/b.txt whose folder F has no outcome yet
    let w = world(&[folder("F", "root"), file("a", "F"), file("b", "F")], RestoreStatus::Running, 3).await;

    // When their chunk arrives
    handle(&w.deps, &chunk(&["a", "b"], 0), far()).await.expect("deferred, not failed");

    // Then it is re-sent whole, once deferred, after a short delay; nothing is reported
    let again = w.sink.take(QueueName::Restores);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delay, Some(DEFER_FIRST));
    let again = task(&again[0]);
    assert_eq!((items(&again), again.deferrals), (vec!["a".to_owned(), "b".to_owned()], 1));
    assert!(w.catalog.restore_report("j", "a").await.expect("read").is_none());
    assert!(w.graph.graph_requests().is_empty());

    // And each deferral waits twice as long as the one before
    handle(&w.deps, &again, far()).await.expect("deferred again");
    let third = w.sink.take(QueueName::Restores);
    assert_eq!(third[0].delay, Some(DEFER_FIRST * 2));
    assert_eq!(task(&third[0]).deferrals, 2);
}

#[tokio::test]
async fn an_item_whose_folder_failed_is_reported_failed_instead_of_waiting() {
    // Given a running restore whose folder F failed
    let w = world(&[folder("F", "root"), file("a", "F")], RestoreStatus::Running, 2).await;
    report(&w.catalog, "F", RestoreOutcome::Failed, None).await;

    // When the chunk of its file arrives
    handle(&w.deps, &chunk(&["a"], 0), far()).await.expect("handled");

    // Then the file is reported failed for that reason, nothing waits, and the job finishes
    let a = w.catalog.restore_report("j", "a").await.expect("read").expect("reported");
    assert_eq!(a.outcome, RestoreOutcome::Failed);
    assert!(a.detail.unwrap_or_default().contains(super::drive::FOLDER_FAILED));
    assert!(w.sink.take(QueueName::Restores).is_empty());
    let job = w.catalog.restore_job("j").await.expect("read").expect("job");
    assert_eq!(job.status, RestoreStatus::CompletedWithErrors);
}

#[tokio::test]
async fn an_item_that_waited_too_long_for_its_folder_is_reported_failed() {
    // Given a chunk deferred the most times allowed, its folder still without an outcome
    let w = world(&[folder("F", "root"), file("a", "F")], RestoreStatus::Running, 2).await;

    // When it arrives once more
    handle(&w.deps, &chunk(&["a"], MAX_FOLDER_WAITS), far()).await.expect("handled");

    // Then the file is reported failed and the chunk is not re-sent
    let a = w.catalog.restore_report("j", "a").await.expect("read").expect("reported");
    assert_eq!(a.outcome, RestoreOutcome::Failed);
    assert!(a.detail.unwrap_or_default().contains("never restored"));
    assert!(w.sink.take(QueueName::Restores).is_empty());
}

#[tokio::test]
async fn the_plan_sends_folders_parents_first_then_files_by_folder_without_calling_graph() {
    // Given a drive of 30 top folders, each with 4 nested levels of one folder, and 10 files
    // in every folder (read by the plan a page at a time)
    let mut versions = Vec::new();
    for top in 0..30 {
        let mut parent = "root".to_owned();
        for level in 0..5 {
            let id = format!("f{top:02}-{level}");
            versions.push(folder(&id, &parent));
            for n in 0..10 {
                versions.push(file(&format!("{id}-file{n}"), &id));
            }
            parent = id;
        }
    }
    let w = world(&versions, RestoreStatus::Queued, 0).await;

    // When the plan runs
    handle(&w.deps, &RestoreTask::plan("j", false), far()).await.expect("plan");

    // Then it counted every item, called Graph for none, and sent 150 folders in 3 chunks
    // at once, then 1,500 files in 30 chunks held back for the folders
    let job = w.catalog.restore_job("j").await.expect("read").expect("job");
    assert_eq!((job.status, job.planned_items), (RestoreStatus::Running, 1_650));
    assert!(w.graph.graph_requests().is_empty());
    let sent = w.sink.take(QueueName::Restores);
    assert_eq!(sent.len(), 150usize.div_ceil(CHUNK) + 1_500usize.div_ceil(CHUNK));
    let (folders, files) = sent.split_at(3);
    assert!(folders.iter().all(|m| m.delay.is_none()));
    // (2 s per folder chunk: 6 s; a restore of 750 folders or more waits the full 30 s)
    assert!(files.iter().all(|m| m.delay == Some(Duration::from_secs(6))), "{:?}", files[0].delay);
    assert_eq!(
        (files_after(1), files_after(50), files_after(51), files_after(20_000)),
        (Duration::from_secs(2), Duration::from_secs(2), Duration::from_secs(4), FILES_AFTER)
    );

    // And every item comes after its parent in the order sent: chunk by chunk, a folder's
    // chunk never follows one of its children's
    let position: HashMap<String, usize> =
        sent.iter().enumerate().flat_map(|(i, m)| items(&task(m)).into_iter().map(move |id| (id, i))).collect();
    assert_eq!(position.len(), 1_650);
    for v in &versions {
        let parent = v.parent_id.as_deref().unwrap_or_default();
        if let Some(p) = position.get(parent) {
            assert!(*p <= position[&v.key.item_id], "{} sent before its folder {parent}", v.key.item_id);
        }
    }
    // And files go in the order of their folders, so the first file chunks need the first
    // folders restored
    let parent_of: HashMap<&str, &str> =
        versions.iter().map(|v| (v.key.item_id.as_str(), v.parent_id.as_deref().unwrap_or_default())).collect();
    let folder_rank: HashMap<String, usize> =
        folders.iter().flat_map(|m| items(&task(m))).enumerate().map(|(i, id)| (id, i)).collect();
    let ranks: Vec<usize> =
        files.iter().flat_map(|m| items(&task(m))).map(|id| folder_rank[parent_of[id.as_str()]]).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "files out of their folders' order");
}

/// A deadline no test reaches.
fn far() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(3600)
}
