//! The restore watchdog: a job can still be lost (a step killed at the Lambda's timeout on
//! every delivery goes to the dead-letter queue; a plan message that was never sent). The
//! scheduler runs this every 15 minutes: a queued or running job whose row has not changed
//! for [`STUCK_AFTER`] is failed with a reason saying so. Any progress (a status, an item's
//! outcome) moves the row's `updated_at`, so a long job that moves is never taken for a stuck
//! one, and the conditional end leaves alone a job that moved since it was read.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::model::RestoreStatus;
use crate::pipeline::PipelineError;
use crate::store::{ActiveJob, JobEnd, RestoreJobs};

/// No progress for this long fails a job: well above a step's longest wait in the queue
/// (15 minutes of SQS delay) plus its longest run (the Lambda's 15-minute timeout).
pub const STUCK_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// What one pass of the watchdog did.
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// Jobs still at work, with recent progress.
    pub active: usize,
    /// Jobs failed for want of progress.
    pub failed: usize,
    /// Entries taken off the active list: ended jobs, dry runs, rows never written.
    pub forgotten: usize,
}

/// One pass over the tenant's active jobs (one row read, then one read per listed job).
pub async fn watch(catalog: &dyn RestoreJobs, tenant_id: &str, now: DateTime<Utc>) -> Result<Watch, PipelineError> {
    let bound = now - STUCK_AFTER;
    let mut watch = Watch::default();
    let mut forget: Vec<ActiveJob> = Vec::new();
    for listed in catalog.active_restore_jobs(tenant_id).await? {
        let Some(job) = catalog.restore_job(&listed.id).await? else {
            // Listed before its row is written: forgotten only once it is surely not coming.
            if listed.created_at < bound {
                forget.push(listed);
            }
            continue;
        };
        if !job.status.is_working() {
            forget.push(listed);
            continue;
        }
        let since = job.progressed_at();
        if since > bound {
            watch.active += 1;
            continue;
        }
        let minutes = (now - since).num_minutes();
        let reason = format!(
            "no progress for {minutes} minutes (last at {}): a step of the job was lost (timed out, or sent \
             to the dead-letter queue)",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let end = JobEnd {
            from: &RestoreStatus::WORKING,
            to: RestoreStatus::Failed,
            reason: &reason,
            idle_since: Some(bound),
        };
        if catalog.end_restore_job(&job.id, &end).await? {
            warn!(job = %job.id, minutes, "restore job failed by the watchdog: no progress");
            watch.failed += 1;
            forget.push(listed);
        } else {
            watch.active += 1;
        }
    }
    watch.forgotten = forget.len();
    catalog.forget_restore_jobs(tenant_id, &forget).await?;
    info!(tenant = %tenant_id, active = watch.active, failed = watch.failed, forgotten = watch.forgotten, "restore watchdog");
    Ok(watch)
}
