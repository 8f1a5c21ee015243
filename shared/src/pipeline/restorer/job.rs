//! A job's accounting: its items fanned out to the queue in chunks, and the job finished once
//! every planned item has an outcome (settled from the reports when the counters fall behind).

use std::time::Duration;

use tracing::{info, warn};

use super::RestorerDeps;
use crate::model::{RestoreJob, RestoreStatus, RestoreStep, RestoreTask, SCHEMA_VERSION, UploadResume};
use crate::pipeline::PipelineError;
use crate::store::{OutMessage, OutcomeCounts, QueueName, RestorerCatalog};

/// The longest delay SQS gives a message.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Files per fan-out task.
pub const CHUNK: usize = 50;
/// Queues the items in chunks of [`CHUNK`] to the restores queue, then finishes the job if
/// nothing was left to queue.
pub(super) async fn fan_out(deps: &RestorerDeps, job: &RestoreJob, item_ids: &[String]) -> Result<(), PipelineError> {
    let messages: Vec<OutMessage> = item_ids
        .chunks(CHUNK)
        .map(|chunk| {
            let task = RestoreTask {
                v: SCHEMA_VERSION,
                job_id: job.id.clone(),
                step: RestoreStep::Items { item_ids: chunk.to_vec(), resume: None },
            };
            OutMessage { body: serde_json::to_string(&task).unwrap_or_default(), group_id: None, delay: None }
        })
        .collect();
    if !messages.is_empty() {
        deps.sink.send(QueueName::Restores, messages).await?;
    }
    finish_if_done(deps, &job.id).await
}

/// Sends the rest of a chunk again (`item_ids`, the first one carrying its unfinished upload),
/// after `delay` (SQS takes at most 15 minutes). The delivery that sends it ends well: no
/// receive of the message is burnt.
pub(super) async fn send_again(
    deps: &RestorerDeps,
    job: &RestoreJob,
    item_ids: &[String],
    resume: Option<UploadResume>,
    delay: Option<Duration>,
) -> Result<(), PipelineError> {
    let task = RestoreTask {
        v: SCHEMA_VERSION,
        job_id: job.id.clone(),
        step: RestoreStep::Items { item_ids: item_ids.to_vec(), resume },
    };
    let body = serde_json::to_string(&task).map_err(|e| PipelineError::Internal(e.to_string()))?;
    let delay = delay.map(|d| d.min(MAX_DELAY));
    info!(job = %job.id, items = item_ids.len(), delay_s = delay.map(|d| d.as_secs()), "restore chunk sent again");
    deps.sink.send(QueueName::Restores, vec![OutMessage { body, group_id: None, delay }]).await?;
    Ok(())
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
        deps.catalog.set_restore_status(job_id, status, None).await?;
        info!(job = %job_id, restored = job.restored, unchanged = job.unchanged, failed = job.failed, "restore finished");
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
    use crate::model::{ContainerId, RestoreItemReport, RestoreOutcome, RestoreScope, RestoreTarget};
    use crate::store::RestoreJobs;
    use crate::store::memory::{MemoryCatalog, MemorySink, MemoryVault};

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
        let deps = RestorerDeps {
            graph: graph.client(),
            vault: Arc::new(MemoryVault::new()),
            catalog: catalog.clone(),
            sink: Arc::new(MemorySink::new()),
            exports: Arc::new(crate::store::memory::MemoryExports::new()),
            clock: crate::clock::system(),
        };
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
