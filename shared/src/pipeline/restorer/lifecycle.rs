//! How a step that did not finish ends: re-sent with a backoff when another delivery may work
//! (bounded by [`MAX_ATTEMPTS`]), put off while Graph throttles the restore (bounded by
//! [`MAX_DEFERRALS`]), stopped when the job was cancelled, and given up with its reason
//! otherwise, so that every job ends. The restorer counts attempts itself: the queue adapter
//! never sees SQS's receive counts, and a throttled chunk must not burn them.

use std::time::Duration;

use tracing::{info, warn};

use super::job::{finish_if_done, rest_of, send_again};
use super::{Context, Done, RestorerDeps};
use crate::graph::GraphError;
use crate::model::{ContainerId, ContainerKind, RestoreJob, RestoreOutcome, RestoreStatus, RestoreStep, RestoreTask};
use crate::pipeline::PipelineError;
use crate::store::JobEnd;

/// Deliveries of a step that fails before it is given up: the plan fails the job, a chunk
/// reports its unfinished items failed.
pub const MAX_ATTEMPTS: u32 = 5;
/// Times a step is put off (Graph throttling, no mailbox slot free) before it is given up.
/// The delay grows by [`DEFERRAL_STEP`] per deferral up to SQS's cap, so this many come to
/// more than a day whatever `Retry-After` says.
pub const MAX_DEFERRALS: u32 = 200;
/// The least delay of the n-th deferral is n times this (at most [`MAX_DELAY`]).
pub const DEFERRAL_STEP: Duration = Duration::from_secs(5);
/// The first retry's delay; doubled per attempt.
pub const RETRY_DELAY: Duration = Duration::from_secs(30);
/// SQS caps `DelaySeconds` at 15 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// A job's reason is cut to this many characters.
const REASON_CHARS: usize = 300;

/// Where Graph's throttling of the restorer is shared. The restorer is its own Graph app
/// with its own budget: its rows are distinct from the backup's (`drive`, `mailbox.{id}`).
/// A mailbox restore is paced by the mailbox it writes to.
pub fn restore_resource(job: &RestoreJob) -> String {
    match job.container.kind {
        ContainerKind::Drive => "restore.drive".to_owned(),
        ContainerKind::Mailbox => {
            let target = ContainerId::mailbox(job.container.tenant_id.clone(), super::mail::target_user(job));
            format!("restore.mailbox.{}", crate::keys::opaque_id(&target.graph_id))
        }
    }
}

/// How long Graph still throttles this job's restores, if it does.
pub(super) async fn throttled(deps: &RestorerDeps, job: &RestoreJob) -> Result<Option<Duration>, PipelineError> {
    let now = deps.clock.now();
    let until = deps.catalog.throttled_until(&job.container.tenant_id, &restore_resource(job)).await?;
    Ok(until.filter(|u| *u > now).and_then(|u| (u - now).to_std().ok()))
}

/// Shares Graph's `Retry-After` with every step of the restorer that writes where this job
/// writes: they defer without calling Graph until it has passed.
pub(super) async fn share_throttle(deps: &RestorerDeps, job: &RestoreJob, wait: Duration) -> Result<(), PipelineError> {
    let until = deps.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
    deps.catalog.throttle(&job.container.tenant_id, &restore_resource(job), until).await?;
    Ok(())
}

/// What becomes of a step that returned `error`: the step is acknowledged (Ok) once it was
/// re-sent, put off or given up; only a bad message, or a failure to do any of that, is
/// returned for the queue to redeliver.
pub(super) async fn after_error(
    deps: &RestorerDeps,
    job: &RestoreJob,
    task: &RestoreTask,
    error: PipelineError,
) -> Result<(), PipelineError> {
    match error {
        PipelineError::JobEnded(why) => {
            info!(job = %job.id, %why, "restore step stopped: the job has ended");
            Ok(())
        }
        PipelineError::BadMessage(_) => Err(error),
        PipelineError::Graph(GraphError::Throttled { retry_after, .. }) => {
            share_throttle(deps, job, retry_after).await?;
            defer(deps, job, task, retry_after).await
        }
        e if e.is_retryable() && task.attempt + 1 < MAX_ATTEMPTS => {
            let delay = RETRY_DELAY.saturating_mul(1 << task.attempt.min(5)).min(MAX_DELAY);
            warn!(job = %job.id, attempt = task.attempt + 1, delay_s = delay.as_secs(), error = %e, "restore step failed; sent again");
            let again = RestoreTask { attempt: task.attempt + 1, ..task.clone() };
            send_again(deps, &again, delay).await
        }
        e => {
            let reason = if e.is_retryable() {
                format!("gave up after {MAX_ATTEMPTS} attempts: {}", reason_of(&e))
            } else {
                reason_of(&e)
            };
            give_up(deps, job, task, &reason).await
        }
    }
}

/// Puts the step off for `wait` plus a little jitter (at least the deferral's growing floor),
/// with only the items it has not finished; gives it up past [`MAX_DEFERRALS`]. Not an
/// attempt: the step did nothing wrong.
pub(super) async fn defer(
    deps: &RestorerDeps,
    job: &RestoreJob,
    task: &RestoreTask,
    wait: Duration,
) -> Result<(), PipelineError> {
    if task.deferrals >= MAX_DEFERRALS {
        let reason = format!("put off {MAX_DEFERRALS} times (Graph throttling or a busy mailbox); gave up");
        return give_up(deps, job, task, &reason).await;
    }
    let jitter = Duration::from_millis(u64::from(task.deferrals % 7) * 150);
    let floor = DEFERRAL_STEP.saturating_mul(task.deferrals + 1);
    let delay = (wait + jitter).max(floor).min(MAX_DELAY);
    let step = match &task.step {
        RestoreStep::Items { item_ids, .. } => {
            let left = unfinished(deps, job, item_ids).await?;
            if left.is_empty() {
                // Throttled after its last item was recorded: nothing to put off.
                return finish_if_done(deps, &job.id).await;
            }
            rest_of(task, &left, None)
        }
        other => other.clone(),
    };
    let again = RestoreTask { step, deferrals: task.deferrals + 1, ..task.clone() };
    info!(job = %job.id, deferrals = again.deferrals, delay_s = delay.as_secs(), "restore step put off");
    send_again(deps, &again, delay).await
}

/// The step will not work: a plan (or an export part) fails the job with the reason; a
/// chunk reports each item it did not finish as failed with the reason, and the job then
/// finishes (with errors) like any other.
async fn give_up(deps: &RestorerDeps, job: &RestoreJob, task: &RestoreTask, reason: &str) -> Result<(), PipelineError> {
    warn!(job = %job.id, %reason, "restore step given up");
    let RestoreStep::Items { item_ids, .. } = &task.step else {
        let end = JobEnd { from: &RestoreStatus::WORKING, to: RestoreStatus::Failed, reason, idle_since: None };
        deps.catalog.end_restore_job(&job.id, &end).await?;
        return Ok(());
    };
    let ctx = Context::new(deps, job);
    for id in unfinished(deps, job, item_ids).await? {
        let path = ctx.states(&id).await.map(|s| s.path).unwrap_or_default();
        ctx.record(&id, path, Done::new(RestoreOutcome::Failed, None).with_detail(reason)).await?;
    }
    finish_if_done(deps, &job.id).await
}

/// The chunk's items without a final outcome (one report read each: only when a chunk is
/// put off or given up).
async fn unfinished(deps: &RestorerDeps, job: &RestoreJob, item_ids: &[String]) -> Result<Vec<String>, PipelineError> {
    let mut left = Vec::new();
    for id in item_ids {
        let done = deps.catalog.restore_report(&job.id, id).await?;
        if !done.is_some_and(|r| super::is_final(r.outcome)) {
            left.push(id.clone());
        }
    }
    Ok(left)
}

/// An error's text as a job's reason: short, and without any link (Graph errors carry none;
/// this keeps it so whatever a future error says).
pub(super) fn reason_of(e: &PipelineError) -> String {
    let text = e.to_string();
    let words: Vec<&str> =
        text.split_whitespace().map(|word| if word.contains("://") { "<link>" } else { word }).collect();
    words.join(" ").chars().take(REASON_CHARS).collect()
}
