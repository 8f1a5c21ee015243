//! A job's accounting: its items fanned out to the queue in chunks (folders first, parents
//! before children, then files), chunks whose items wait for their folder re-sent with a
//! delay, and the job finished once every planned item has an outcome (settled from the
//! reports when the counters fall behind).

use std::time::Duration;

use tracing::{info, warn};

use super::{Context, Done, Paused, RestorerDeps, restore_item};
use crate::model::{RestoreJob, RestoreOutcome, RestoreStatus, RestoreStep, RestoreTask, UploadResume};
use crate::pipeline::PipelineError;
use crate::store::{OutMessage, OutcomeCounts, QueueName, RestorerCatalog};

/// Items per fan-out task.
pub const CHUNK: usize = 50;
/// How long file chunks wait in the queue behind each folder chunk sent with them, up to
/// [`FILES_AFTER`]: a head start for the folders, so the first file chunks rarely find their
/// folder missing, that a restore of a few folders does not pay in full.
pub const FILES_AFTER_PER_FOLDER_CHUNK: Duration = Duration::from_secs(2);
/// The longest head start the folders get.
pub const FILES_AFTER: Duration = Duration::from_secs(30);
/// A chunk whose items wait for their folder comes back after this, doubled at each
/// deferral up to [`DEFER_MAX`].
pub const DEFER_FIRST: Duration = Duration::from_secs(5);
pub const DEFER_MAX: Duration = Duration::from_secs(120);
/// After this many deferrals (about two hours), an item still waiting for its folder is
/// reported failed: that folder's chunk was lost, and waiting longer would never end.
pub const MAX_FOLDER_WAITS: u32 = 60;

/// What the plan sends: folder chunks at once, in the order given (parents before
/// children), then file chunks after the folders' head start (none without folders).
/// Then finishes the job if nothing was left to queue.
pub(super) async fn fan_out(
    deps: &RestorerDeps,
    job: &RestoreJob,
    folders: &[String],
    files: &[String],
) -> Result<(), PipelineError> {
    let files_delay = (!folders.is_empty()).then(|| files_after(folders.len()));
    let messages: Vec<OutMessage> = folders
        .chunks(CHUNK)
        .map(|chunk| chunk_message(job, chunk, None))
        .chain(files.chunks(CHUNK).map(|chunk| chunk_message(job, chunk, files_delay)))
        .collect();
    let sent = messages.len();
    if !messages.is_empty() {
        deps.sink.send(QueueName::Restores, messages).await?;
    }
    info!(job = %job.id, folders = folders.len(), files = files.len(), messages = sent, "restore fanned out");
    finish_if_done(deps, &job.id).await
}

/// Sends `task` to the restores queue again after `delay` (at most SQS's 15 minutes): a
/// retry, a deferral, or a step's continuation. The delivery that sends it is then acked.
pub(super) async fn send_again(deps: &RestorerDeps, task: &RestoreTask, delay: Duration) -> Result<(), PipelineError> {
    let body = serde_json::to_string(task).map_err(|e| PipelineError::Internal(format!("restore task: {e}")))?;
    let delay = delay.min(Duration::from_secs(900));
    deps.sink.send(QueueName::Restores, vec![OutMessage { body, group_id: None, delay: Some(delay) }]).await?;
    Ok(())
}

/// The head start of `folders` folders: [`FILES_AFTER_PER_FOLDER_CHUNK`] per chunk of them,
/// at most [`FILES_AFTER`].
pub fn files_after(folders: usize) -> Duration {
    FILES_AFTER_PER_FOLDER_CHUNK.saturating_mul(folders.div_ceil(CHUNK) as u32).min(FILES_AFTER)
}

fn chunk_message(job: &RestoreJob, item_ids: &[String], delay: Option<Duration>) -> OutMessage {
    let task = RestoreTask::new(job.id.clone(), RestoreStep::Items { item_ids: item_ids.to_vec(), resume: None });
    OutMessage { body: serde_json::to_string(&task).unwrap_or_default(), group_id: None, delay }
}

/// Restores a chunk's items in order. The first item whose folder has no outcome yet stops
/// the chunk: it and the rest are re-sent with a delay (chunks are in folder order, so what
/// follows would mostly wait too), unless the chunk waited [`MAX_FOLDER_WAITS`] times already;
/// then the waiting items are reported failed. Returns whether the chunk is done here.
pub(super) async fn restore_items(
    ctx: &mut Context<'_>,
    task: &RestoreTask,
    item_ids: &[String],
) -> Result<bool, PipelineError> {
    for (i, id) in item_ids.iter().enumerate() {
        let why = match restore_item(ctx, id).await {
            Ok(()) => {
                if let Some(Paused { resume, delay }) = ctx.paused.take() {
                    carry_on(ctx.deps, ctx.job, task, &item_ids[i..], resume, delay).await?;
                    return Ok(false);
                }
                continue;
            }
            Err(PipelineError::NotReady(why)) => why,
            Err(e) => return Err(e),
        };
        if task.deferrals >= MAX_FOLDER_WAITS {
            warn!(job = %ctx.job.id, item = %id, deferrals = task.deferrals, "gave up waiting for the folder");
            let path = ctx.states(id).await?.path;
            let done =
                Done::new(RestoreOutcome::Failed, None).with_detail(format!("its folder was never restored: {why}"));
            ctx.record(id, path, done).await?;
            continue;
        }
        wait_for_folders(ctx.deps, task, &item_ids[i..]).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Re-sends `task` with only `item_ids`, one deferral more, after a delay that doubles with
/// each deferral: not a failed attempt, the received message is done with.
async fn wait_for_folders(deps: &RestorerDeps, task: &RestoreTask, item_ids: &[String]) -> Result<(), PipelineError> {
    let deferrals = task.deferrals.saturating_add(1);
    let delay = DEFER_FIRST.saturating_mul(1 << task.deferrals.min(16)).min(DEFER_MAX);
    let again = RestoreTask { deferrals, step: rest_of(task, item_ids, None), ..task.clone() };
    send_again(deps, &again, delay).await?;
    info!(job = %task.job_id, items = item_ids.len(), deferrals, delay_s = delay.as_secs(), "chunk waits for its folders");
    Ok(())
}

/// Re-sends the rest of a chunk whose upload of `item_ids[0]` paused, carrying its session:
/// at once when the invocation ran out of time (progress, not a deferral), after `delay` when
/// Graph throttled the upload (a deferral, shared like any other throttle).
async fn carry_on(
    deps: &RestorerDeps,
    job: &RestoreJob,
    task: &RestoreTask,
    item_ids: &[String],
    resume: UploadResume,
    delay: Option<Duration>,
) -> Result<(), PipelineError> {
    if let Some(wait) = delay {
        super::lifecycle::share_throttle(deps, job, wait).await?;
    }
    let deferrals = task.deferrals + u32::from(delay.is_some());
    let again = RestoreTask { deferrals, step: rest_of(task, item_ids, Some(resume)), ..task.clone() };
    info!(job = %task.job_id, items = item_ids.len(), delay_s = delay.map(|d| d.as_secs()), "restore chunk carries its upload on");
    send_again(deps, &again, delay.unwrap_or_default()).await
}

/// The step that restores `item_ids`, the rest of `task`'s chunk: with `resume` if given, else
/// with the task's own unfinished upload if its item is still among them.
pub(super) fn rest_of(task: &RestoreTask, item_ids: &[String], resume: Option<UploadResume>) -> RestoreStep {
    let kept = match &task.step {
        RestoreStep::Items { resume: Some(r), .. } if item_ids.contains(&r.item_id) => Some(r.clone()),
        _ => None,
    };
    RestoreStep::Items { item_ids: item_ids.to_vec(), resume: resume.or(kept) }
}

/// Marks the job finished once every planned item has an outcome.
///
/// The counters move in the same transaction as each report, so on DynamoDB they never fall
/// behind the reports. An emulator that applies concurrent transactions non-atomically (moto
/// does, under load) can lose an increment, and the job would then wait forever on its last
/// chunk. So when the counters are within one chunk of the plan, the reports are counted
/// (one paged read of the job's report rows) and the job is settled from them.
pub(super) async fn finish_if_done(deps: &RestorerDeps, job_id: &str) -> Result<(), PipelineError> {
    let Some(job) = deps.catalog.restore_job(job_id).await? else { return Ok(()) };
    if job.status != RestoreStatus::Running {
        return Ok(());
    }
    let done = job.restored + job.unchanged + job.skipped + job.failed;
    if done >= job.planned_items {
        let status = if job.failed > 0 { RestoreStatus::CompletedWithErrors } else { RestoreStatus::Succeeded };
        if deps.catalog.set_restore_status(job_id, status, None).await? {
            info!(job = %job_id, restored = job.restored, unchanged = job.unchanged, failed = job.failed, "restore finished");
        }
        return Ok(());
    }
    if job.planned_items - done > CHUNK as u64 {
        return Ok(());
    }
    let counts = count_reports(deps.catalog.as_ref(), job_id).await?;
    if counts.done() >= job.planned_items {
        let status = if counts.failed > 0 { RestoreStatus::CompletedWithErrors } else { RestoreStatus::Succeeded };
        warn!(job = %job_id, counted = done, reported = counts.done(), "restore counters behind the reports; settled from the reports");
        deps.catalog.settle_restore_job(job_id, status, counts).await?;
        info!(job = %job_id, restored = counts.restored, unchanged = counts.unchanged, failed = counts.failed, "restore finished");
    }
    Ok(())
}

/// The job's outcomes counted from its report rows.
async fn count_reports(catalog: &dyn RestorerCatalog, job_id: &str) -> Result<OutcomeCounts, PipelineError> {
    let mut counts = OutcomeCounts::default();
    let mut cursor: Option<String> = None;
    loop {
        let page = catalog.restore_reports(job_id, cursor.as_deref(), 1_000).await?;
        for report in &page.items {
            counts.count(report.outcome);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(counts),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::graph::test_server::{TestServer, graph_error};
    use crate::model::{ContainerId, RestoreItemReport, RestoreScope, RestoreTarget};
    use crate::store::RestoreJobs;
    use crate::store::memory::{MemoryCatalog, MemorySink};

    /// A running in-place job of `planned` items, its catalog, and deps whose Graph answers
    /// nothing useful (finishing a job must not call Graph).
    async fn running(planned: u64) -> (Arc<MemoryCatalog>, RestorerDeps, TestServer) {
        let graph = TestServer::start(3600, |_, _| graph_error(500, "unused")).await;
        let catalog = Arc::new(MemoryCatalog::with_index_lag(crate::pipeline::tests::INDEX_LAG));
        let job = RestoreJob {
            status: RestoreStatus::Running,
            planned_items: planned,
            ..RestoreJob::new(
                "j",
                ContainerId::new("t", "d"),
                RestoreScope::Container,
                Utc::now(),
                RestoreTarget::InPlace,
                Utc::now(),
            )
        };
        catalog.create_restore_job(&job).await.expect("create");
        let deps = RestorerDeps::in_memory(
            graph.client(),
            catalog.clone(),
            Arc::new(MemorySink::new()),
            crate::clock::system(),
        );
        (catalog, deps, graph)
    }

    async fn report(catalog: &MemoryCatalog, item: &str, outcome: RestoreOutcome) {
        let report = RestoreItemReport {
            job_id: "j".into(),
            item_id: item.into(),
            path: format!("/{item}"),
            outcome,
            detail: None,
            target_item_id: None,
            at: Utc::now(),
        };
        catalog.record_restore_outcome(&report, 1).await.expect("record");
    }

    #[tokio::test]
    async fn a_job_whose_counters_lost_an_increment_is_settled_from_its_reports() {
        // Given a running job of three items, all three reported, whose counters say two
        // (what a non-atomic emulator leaves when two transactions race on the job row)
        let (catalog, deps, graph) = running(3).await;
        report(&catalog, "a", RestoreOutcome::Restored).await;
        report(&catalog, "b", RestoreOutcome::Restored).await;
        report(&catalog, "c", RestoreOutcome::Failed).await;
        let lost = OutcomeCounts { restored: 1, failed: 1, ..OutcomeCounts::default() };
        catalog.settle_restore_job("j", RestoreStatus::Running, lost).await.expect("settle");

        // When a chunk finishes
        finish_if_done(&deps, "j").await.expect("finish");

        // Then the job is finished with the counts of its reports
        let job = catalog.restore_job("j").await.expect("read").expect("job");
        assert_eq!(job.status, RestoreStatus::CompletedWithErrors);
        assert_eq!((job.restored, job.failed), (2, 1));
        assert!(graph.graph_requests().is_empty());
    }

    #[tokio::test]
    async fn a_job_with_items_still_unreported_keeps_running() {
        // Given a running job of three items with two reports
        let (catalog, deps, _graph) = running(3).await;
        report(&catalog, "a", RestoreOutcome::Unchanged).await;
        report(&catalog, "b", RestoreOutcome::Unchanged).await;

        // When a chunk finishes, the job is still running
        finish_if_done(&deps, "j").await.expect("finish");
        assert_eq!(catalog.restore_job("j").await.expect("read").expect("job").status, RestoreStatus::Running);

        // And once the third is reported, it succeeds
        report(&catalog, "c", RestoreOutcome::Restored).await;
        finish_if_done(&deps, "j").await.expect("finish");
        assert_eq!(catalog.restore_job("j").await.expect("read").expect("job").status, RestoreStatus::Succeeded);
    }
}
