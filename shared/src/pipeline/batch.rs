//! Queue-batch semantics shared by the Lambda adapters and the local event-source runner:
//! parse each message, run the step, and report which messages must be retried (partial
//! batch failure is a value, not an error).

use futures::StreamExt;
use std::time::Instant;
use tracing::{Instrument, error, info_span, warn};

use super::PipelineError;
use super::copier::{self, BatchSlots, Copied, CopierDeps};
use super::enumerator::{self, EnumeratorDeps};
use super::restorer::{self, RestorerDeps};
use super::scheduler::{self, SchedulerDeps};
use crate::model::{ChangeJob, ItemJob, RestoreTask};

/// One received message: the queue's id for it and its body.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: String,
}

/// Runs one message's step inside the message's span: the id to retry, if it must be.
async fn handle(m: &Received, step: impl Future<Output = Result<(), PipelineError>>) -> Option<String> {
    async {
        match step.await {
            Ok(()) => None,
            Err(e) if e.is_retryable() => {
                warn!(error = %e, "will retry");
                Some(m.id.clone())
            }
            Err(e) => {
                // Left to the queue's redrive: the DLQ alarm makes it visible, reconcile
                // re-queues the item, nothing is lost.
                error!(error = %e, "cannot process message");
                Some(m.id.clone())
            }
        }
    }
    .instrument(info_span!("sqs_message", sqs_message_id = %m.id))
    .await
}

/// `items` / `items-large`: copies in parallel; returns the ids to retry. The batch takes the
/// mailbox slots its jobs need once, leased until `deadline` (the Lambda's), and gives them
/// back when its jobs of that mailbox are done ([`BatchSlots`]).
pub async fn copy_batch(
    deps: &CopierDeps,
    messages: &[Received],
    concurrency: usize,
    deadline: Instant,
) -> Vec<String> {
    let jobs: Vec<(Received, Result<ItemJob, String>)> = messages
        .iter()
        .map(|m| (m.clone(), serde_json::from_str::<ItemJob>(&m.body).map_err(|e| e.to_string())))
        .collect();
    let left = deadline.saturating_duration_since(Instant::now());
    let until = deps.clock.now() + chrono::Duration::from_std(left).unwrap_or(chrono::Duration::MAX);
    let containers = jobs.iter().filter_map(|(_, job)| job.as_ref().ok().map(|j| &j.container));
    let slots = BatchSlots::new(containers, until, copier::MAILBOX_SLOT_PATIENCE.min(left));
    let slots = &slots;
    // Owned messages: a borrowed item would make the future's lifetime higher-ranked,
    // which the Send bound of a boxed handler cannot express.
    let failed = futures::stream::iter(jobs)
        .map(|(m, job)| async move {
            let step = async {
                match job {
                    Ok(job) => copier::copy_in_batch(deps, &job, slots).await.map(|c| {
                        if let Copied::Failed(reason) = c {
                            warn!(%reason, "item reported as failed");
                        }
                    }),
                    Err(e) => Err(PipelineError::BadMessage(e)),
                }
            };
            handle(&m, step).await
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    slots.release_all(deps).await;
    failed
}

/// `changes` (FIFO): one at a time, in order; after a failure, the rest of the batch is
/// returned too, so a container's jobs never overtake each other.
pub async fn enumerate_batch(deps: &EnumeratorDeps, messages: &[Received], deadline: Instant) -> Vec<String> {
    let mut failed = Vec::new();
    for m in messages {
        if !failed.is_empty() {
            failed.push(m.id.clone());
            continue;
        }
        let step = async {
            match serde_json::from_str::<ChangeJob>(&m.body) {
                Ok(job) => enumerator::enumerate(deps, &job, deadline).await.map(|_| ()),
                Err(e) => Err(PipelineError::BadMessage(e.to_string())),
            }
        };
        failed.extend(handle(m, step).await);
    }
    failed
}

/// `lifecycle`: the scheduler's work queue: shares of discovery and renewal, and Graph
/// lifecycle events forwarded by the webhook. A share handles its users or subscriptions one
/// by one and re-sends what Graph throttled itself: it fails whole only on our side (the
/// catalog, the queue, our credentials), and is then retried whole (idempotent).
pub async fn scheduler_batch(deps: &SchedulerDeps, messages: &[Received]) -> Vec<String> {
    let mut failed = Vec::new();
    for m in messages {
        let step = async { scheduler::handle_message(deps, &m.body).await.map(|_| ()) };
        failed.extend(handle(m, step).await);
    }
    failed
}

/// `restores`: one plan step or chunk of items at a time, before `deadline` (the Lambda's:
/// an upload that would outlive it re-sends its chunk to carry on). The restorer re-sends a
/// step that failed or was throttled itself (bounded, `restorer::lifecycle`), so what comes
/// back here for SQS to redeliver is only a bad message, or a step whose outcome could not be
/// recorded or re-sent.
pub async fn restore_batch(deps: &RestorerDeps, messages: &[Received], deadline: Instant) -> Vec<String> {
    let mut failed = Vec::new();
    for m in messages {
        let step = async {
            match serde_json::from_str::<RestoreTask>(&m.body) {
                Ok(task) => restorer::handle(deps, &task, deadline).await,
                Err(e) => Err(PipelineError::BadMessage(e.to_string())),
            }
        };
        failed.extend(handle(m, step).await);
    }
    failed
}
