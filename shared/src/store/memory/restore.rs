//! Restore jobs and their per-item reports; an outcome and the counters it moves change together.

use async_trait::async_trait;
use chrono::Utc;

use super::index::{Changed, IndexedRows};
use super::{MemoryCatalog, millis};
use crate::model::{RestoreItemReport, RestoreJob, RestoreOutcome, RestorePlan, RestoreStatus};
use crate::store::{ActiveJob, JobEnd, Listing, OutcomeCounts, Page, RestoreJobs, StoreError, outcome_replaces};

/// The job row `id`, to change it; `NotFound` as DynamoDB's conditional writes answer.
fn job_mut<'t>(table: &'t mut IndexedRows, id: &str) -> Result<&'t mut RestoreJob, StoreError> {
    table.restore_jobs.get_mut(id).ok_or_else(|| StoreError::NotFound { key: format!("restore job {id}") })
}

/// The job counter an outcome counts in. `CreatedAfter` items were not restored: skipped.
fn counter(job: &mut RestoreJob, outcome: RestoreOutcome) -> &mut u64 {
    match outcome {
        RestoreOutcome::Restored => &mut job.restored,
        RestoreOutcome::Unchanged => &mut job.unchanged,
        RestoreOutcome::Skipped | RestoreOutcome::CreatedAfter => &mut job.skipped,
        RestoreOutcome::Failed => &mut job.failed,
        RestoreOutcome::Conflict => &mut job.conflicts,
    }
}

#[async_trait]
impl RestoreJobs for MemoryCatalog {
    async fn create_restore_job(&self, job: &RestoreJob) -> Result<(), StoreError> {
        let mut state = self.write();
        if state.table.restore_jobs.contains_key(&job.id) {
            return Err(StoreError::AlreadyExists { key: format!("restore job {}", job.id) });
        }
        // On the active list before the row exists, as on DynamoDB.
        state
            .active_restore_jobs
            .entry(job.container.tenant_id.clone())
            .or_default()
            .insert(job.id.clone(), job.created_at);
        let stored = RestoreJob { updated_at: Some(job.progressed_at()), ..job.clone() };
        state.table.restore_jobs.insert(job.id.clone(), stored);
        state.changed(Changed::Job(&job.id));
        Ok(())
    }

    async fn restore_job(&self, id: &str) -> Result<Option<RestoreJob>, StoreError> {
        Ok(self.read().table.restore_jobs.get(id).cloned())
    }

    /// An index read (`GSI1` `RJ#`).
    async fn list_restore_jobs(&self, tenant_id: &str, limit: usize) -> Result<Vec<RestoreJob>, StoreError> {
        let state = self.read();
        let mut jobs: Vec<&RestoreJob> =
            state.index().restore_jobs.values().filter(|j| j.container.tenant_id == tenant_id).collect();
        jobs.sort_by_cached_key(|j| std::cmp::Reverse((millis(j.created_at), j.id.clone())));
        Ok(jobs.into_iter().take(limit).cloned().collect())
    }

    async fn set_restore_status(
        &self,
        id: &str,
        status: RestoreStatus,
        plan: Option<RestorePlan>,
    ) -> Result<bool, StoreError> {
        let mut state = self.write();
        let job = job_mut(&mut state.table, id)?;
        if !job.status.is_working() {
            return Ok(false);
        }
        job.status = status;
        if let Some(plan) = plan {
            (job.planned_items, job.planned_bytes, job.conflicts) = (plan.items, plan.bytes, plan.conflicts);
        }
        job.updated_at = Some(Utc::now());
        state.changed(Changed::Job(id));
        Ok(true)
    }

    async fn end_restore_job(&self, id: &str, end: &JobEnd<'_>) -> Result<bool, StoreError> {
        let mut state = self.write();
        let job = job_mut(&mut state.table, id)?;
        let idle = end.idle_since.is_none_or(|since| job.updated_at.is_none_or(|u| u <= since));
        if !end.from.contains(&job.status) || !idle {
            return Ok(false);
        }
        job.status = end.to;
        job.reason = Some(end.reason.to_owned());
        job.updated_at = Some(Utc::now());
        state.changed(Changed::Job(id));
        Ok(true)
    }

    async fn active_restore_jobs(&self, tenant_id: &str) -> Result<Vec<ActiveJob>, StoreError> {
        let state = self.read();
        let Some(active) = state.active_restore_jobs.get(tenant_id) else { return Ok(Vec::new()) };
        Ok(active.iter().map(|(id, created_at)| ActiveJob { id: id.clone(), created_at: *created_at }).collect())
    }

    async fn forget_restore_jobs(&self, tenant_id: &str, jobs: &[ActiveJob]) -> Result<(), StoreError> {
        let mut state = self.write();
        if let Some(active) = state.active_restore_jobs.get_mut(tenant_id) {
            for job in jobs {
                active.remove(&job.id);
            }
        }
        Ok(())
    }

    async fn record_restore_outcome(&self, report: &RestoreItemReport, bytes: u64) -> Result<bool, StoreError> {
        let mut state = self.write();
        let key = (report.job_id.clone(), report.item_id.clone());
        let recorded = state.restore_reports.get(&key).map(|r| r.outcome);
        if !outcome_replaces(recorded, report.outcome) {
            return Ok(false);
        }
        let job = job_mut(&mut state.table, &report.job_id)?;
        if let Some(previous) = recorded {
            let count = counter(job, previous);
            *count = count.saturating_sub(1);
        }
        *counter(job, report.outcome) += 1;
        if report.outcome == RestoreOutcome::Restored {
            job.bytes_restored += bytes;
        }
        job.updated_at = Some(Utc::now());
        state.restore_reports.insert(key, report.clone());
        state.changed(Changed::Job(&report.job_id));
        Ok(true)
    }

    async fn settle_restore_job(
        &self,
        id: &str,
        status: RestoreStatus,
        counts: OutcomeCounts,
    ) -> Result<bool, StoreError> {
        let mut state = self.write();
        let job = job_mut(&mut state.table, id)?;
        if !job.status.is_working() {
            return Ok(false);
        }
        job.status = status;
        (job.restored, job.unchanged, job.skipped, job.failed) =
            (counts.restored, counts.unchanged, counts.skipped, counts.failed);
        job.updated_at = Some(Utc::now());
        state.changed(Changed::Job(id));
        Ok(true)
    }

    async fn restore_report(&self, job_id: &str, item_id: &str) -> Result<Option<RestoreItemReport>, StoreError> {
        Ok(self.read().restore_reports.get(&(job_id.to_owned(), item_id.to_owned())).cloned())
    }

    async fn restore_reports(
        &self,
        job_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RestoreItemReport>, StoreError> {
        let listing = Listing::restore_reports(job_id);
        let after = listing.resume(cursor)?;
        let state = self.read();
        let mut reports = state
            .restore_reports
            .range((job_id.to_owned(), String::new())..)
            .take_while(|((job, _), _)| job == job_id)
            .filter(|((_, item), _)| after.as_ref().is_none_or(|a| item > a))
            .map(|(_, r)| r);
        let items: Vec<RestoreItemReport> = reports.by_ref().take(limit.max(1)).cloned().collect();
        let more = reports.next().is_some();
        let next = items.last().filter(|_| more).map(|r| listing.cursor(&r.item_id));
        Ok(Page { items, next })
    }
}
