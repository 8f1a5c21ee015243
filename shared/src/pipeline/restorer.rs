//! Restores a drive, folder or file as of a moment. The default is an in-place rollback:
//! an item that still exists gets the old bytes as a new version of the same item (its id
//! and sharing stay) and its name and parent put back; a missing item is recreated on its
//! path; an item created after that moment is reported (and quarantined if asked), never
//! deleted. A file's bytes are hashed as they are sent and Graph commits them only if they
//! match the backed-up SHA-256 (`upload`); every restored file is then read back from Graph
//! and hashed against the backup. An upload that would outlive the invocation (`deadline`) or
//! that Graph throttles pauses, and its chunk is sent again carrying the session to resume.
//!
//! A job runs as a plan step (the compact `outline` of the container read a page at a time,
//! counts, conflicts) that fans folders and then files out in chunks to the same queue; no
//! Graph call per item happens in the plan. Each chunk records per-item outcomes
//! idempotently, so a redelivered or re-run chunk changes nothing that is already restored;
//! an item whose folder is not restored yet sends the rest of its chunk back with a delay.
//!
//! This module dispatches a job's steps and keeps what every kind of restore shares: the
//! per-invocation `Context` and the per-item wrapper `restore_item`. Drives are restored
//! by `drive`, mailboxes by `mail`, both planned over the `outline`; `job` fans chunks out,
//! defers them and finishes jobs. Export jobs (target `export`) never write to Microsoft 365 and are `export`'s: zips
//! of `.eml` files in the exports bucket.
//!
//! Every job ends (`lifecycle`): a step that fails is re-sent with a backoff a bounded number
//! of times, then given up with its reason; a step Graph throttles is put off (shared in a
//! `THROTTLE#` row of the restorer's own resources, no attempt counted); a cancelled job's
//! steps stop between items; and the scheduler's `watchdog` fails a job that stops moving.

mod conflicts;
mod drive;
mod export;
#[cfg(test)]
mod export_tests;
mod job;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
mod mail;
mod outline;
#[cfg(test)]
mod plan_tests;
mod tree;
mod upload;
mod watchdog;

pub use drive::{CONFLICTS_LISTED, QUARANTINE_FOLDER};
pub use export::{PART_BYTES, PART_MESSAGES, WHOLE_READ_MAX};
pub use job::{
    CHUNK, DEFER_FIRST, DEFER_MAX, FILES_AFTER, FILES_AFTER_PER_FOLDER_CHUNK, MAX_FOLDER_WAITS, files_after,
};
pub use lifecycle::{DEFERRAL_STEP, MAX_ATTEMPTS, MAX_DEFERRALS, restore_resource};
pub use mail::MAILBOX_RESTORE_SLOTS;
pub use outline::PLAN_PAGE;
pub use upload::{DEADLINE_MARGIN, FRAGMENT};
pub use watchdog::{STUCK_AFTER, Watch, watch};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::PipelineError;
use crate::clock::Clock;
use crate::graph::{DriveItem, GraphClient, GraphError};
use crate::model::{
    ItemKind, ItemVersion, RestoreItemReport, RestoreJob, RestoreOutcome, RestoreStatus, RestoreStep, RestoreTarget,
    RestoreTask, SCHEMA_VERSION, UploadResume,
};
use crate::store::{ExportStore, MessageSink, RestorerCatalog, Vault};
use job::finish_if_done;

pub struct RestorerDeps {
    /// The restore app identity: the only one with write scopes.
    pub graph: GraphClient,
    pub vault: Arc<dyn Vault>,
    pub catalog: Arc<dyn RestorerCatalog>,
    pub sink: Arc<dyn MessageSink>,
    /// Export jobs write their zips here (write-only: never the vault).
    pub exports: Arc<dyn ExportStore>,
    pub clock: Arc<dyn Clock>,
}

#[cfg(test)]
impl RestorerDeps {
    /// What a test of the restorer runs on beside its Graph, catalog, queue and clock: an
    /// empty in-memory vault and exports bucket.
    fn in_memory(
        graph: GraphClient,
        catalog: Arc<crate::store::memory::MemoryCatalog>,
        sink: Arc<crate::store::memory::MemorySink>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            graph,
            vault: Arc::new(crate::store::memory::MemoryVault::new()),
            catalog,
            sink,
            exports: Arc::new(crate::store::memory::MemoryExports::new()),
            clock,
        }
    }
}

/// A running step re-reads its job's status after this many items, or this long, whichever
/// comes first, to stop between items once the job is cancelled.
pub const CANCEL_CHECK_ITEMS: u32 = 10;
pub const CANCEL_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// One delivery of a job's step, before `deadline` (the invocation's: an upload that would
/// outlive it stops between fragments and its chunk is sent again to carry on). Whatever the
/// step comes to, the job moves towards an end: see `lifecycle` (only a bad message, or a
/// catalog or queue that cannot take the outcome, is returned for the queue to redeliver).
pub async fn handle(deps: &RestorerDeps, task: &RestoreTask, deadline: Instant) -> Result<(), PipelineError> {
    if task.v != SCHEMA_VERSION {
        return Err(PipelineError::BadMessage(format!("unknown schema version {}", task.v)));
    }
    let job = deps
        .catalog
        .restore_job(&task.job_id)
        .await?
        .ok_or_else(|| PipelineError::MissingData(format!("no restore job {}", task.job_id)))?;
    if matches!(job.status, RestoreStatus::Cancelled | RestoreStatus::Failed) {
        info!(job = %job.id, status = ?job.status, "restore step dropped: the job has ended");
        return Ok(());
    }
    if job.target != RestoreTarget::Export
        && let Some(wait) = lifecycle::throttled(deps, &job).await?
    {
        return lifecycle::defer(deps, &job, task, wait).await;
    }
    match run(deps, &job, task, deadline).await {
        Ok(()) => Ok(()),
        Err(e) => lifecycle::after_error(deps, &job, task, e).await,
    }
}

async fn run(
    deps: &RestorerDeps,
    job: &RestoreJob,
    task: &RestoreTask,
    deadline: Instant,
) -> Result<(), PipelineError> {
    if job.target == RestoreTarget::Export {
        return export::handle(deps, job, task).await;
    }
    if job.container.is_mailbox() {
        return match &task.step {
            RestoreStep::Plan { dry_run } => mail::plan(deps, job, *dry_run).await,
            RestoreStep::Items { item_ids, .. } => mail::restore_chunk(deps, job, task, item_ids).await,
            RestoreStep::ExportPart { .. } => Err(not_an_export()),
        };
    }
    match &task.step {
        RestoreStep::Plan { dry_run } => drive::plan(deps, job, *dry_run).await,
        RestoreStep::Items { item_ids, resume } => {
            let mut ctx = Context::new(deps, job);
            ctx.deadline = deadline;
            ctx.resume = resume.clone();
            if job::restore_items(&mut ctx, task, item_ids).await? {
                finish_if_done(deps, &job.id).await?;
            }
            Ok(())
        }
        RestoreStep::ExportPart { .. } => Err(not_an_export()),
    }
}

fn not_an_export() -> PipelineError {
    PipelineError::BadMessage("an export step for a job that is not an export".into())
}

/// Per-invocation state: the job, and where restored folders went.
struct Context<'a> {
    deps: &'a RestorerDeps,
    job: &'a RestoreJob,
    root_id: Option<String>,
    targets: HashMap<String, String>,
    children: HashMap<String, Vec<DriveItem>>,
    quarantine: Option<String>,
    /// Mail: per target folder, the internet message ids it holds and their message ids.
    present: HashMap<String, HashMap<String, String>>,
    /// When the job's status was last read, and items begun since.
    checked: (Instant, u32),
    /// The invocation's deadline: uploads pause before it.
    deadline: Instant,
    /// An upload an earlier delivery of this chunk left unfinished.
    resume: Option<UploadResume>,
    /// Set when an upload paused: the chunk is sent again from that item.
    paused: Option<Paused>,
}

/// An upload stopped between fragments, to carry on after `delay`.
struct Paused {
    resume: UploadResume,
    delay: Option<Duration>,
}

impl<'a> Context<'a> {
    fn new(deps: &'a RestorerDeps, job: &'a RestoreJob) -> Self {
        Self {
            deps,
            job,
            root_id: None,
            targets: HashMap::new(),
            children: HashMap::new(),
            quarantine: None,
            present: HashMap::new(),
            checked: (Instant::now(), 0),
            // A Lambda's longest run; the Items step sets the invocation's own.
            deadline: Instant::now() + Duration::from_secs(15 * 60),
            resume: None,
            paused: None,
        }
    }

    /// Stops the step once its job is no longer at work (cancelled, failed by the watchdog):
    /// re-reads the status every [`CANCEL_CHECK_ITEMS`] items or [`CANCEL_CHECK_INTERVAL`].
    async fn still_wanted(&mut self) -> Result<(), PipelineError> {
        let (at, items) = self.checked;
        if items + 1 < CANCEL_CHECK_ITEMS && at.elapsed() < CANCEL_CHECK_INTERVAL {
            self.checked.1 += 1;
            return Ok(());
        }
        self.checked = (Instant::now(), 0);
        match self.deps.catalog.restore_job(&self.job.id).await? {
            Some(job) if job.status.is_working() => Ok(()),
            Some(job) => Err(PipelineError::JobEnded(format!("job {} is {:?}", job.id, job.status))),
            None => Err(PipelineError::MissingData(format!("no restore job {}", self.job.id))),
        }
    }

    /// The item's version at the restore time and now, and its path.
    async fn states(&self, item_id: &str) -> Result<ItemStates, PipelineError> {
        let key = self.job.container.item(item_id.to_owned());
        let at = self
            .deps
            .catalog
            .version_at(&key, self.job.as_of)
            .await?
            .filter(|v| !v.deleted && v.kind != ItemKind::Root);
        let now = self.deps.catalog.head(&key).await?.map(|h| h.current).filter(|v| !v.deleted);
        let path = at.as_ref().or(now.as_ref()).and_then(|v| v.name.clone()).unwrap_or_default();
        Ok(ItemStates { at, now, path })
    }

    async fn record(&self, item_id: &str, path: String, done: Done) -> Result<(), PipelineError> {
        let report = RestoreItemReport {
            job_id: self.job.id.clone(),
            item_id: item_id.to_owned(),
            path,
            outcome: done.outcome,
            detail: done.detail,
            target_item_id: done.target_item_id,
            at: self.deps.clock.now(),
        };
        self.deps.catalog.record_restore_outcome(&report, done.bytes).await?;
        Ok(())
    }
}

fn is_final(outcome: RestoreOutcome) -> bool {
    outcome != RestoreOutcome::Failed
}

/// Restores one item of a drive or a mailbox, unless an earlier delivery finished it;
/// per-item failures are reported, not raised (only transient infrastructure errors are, so
/// the chunk is retried, and [`PipelineError::NotReady`]: its folder has no outcome yet, so the
/// chunk defers it).
async fn restore_item(ctx: &mut Context<'_>, item_id: &str) -> Result<(), PipelineError> {
    ctx.still_wanted().await?;
    if let Some(done) = ctx.deps.catalog.restore_report(&ctx.job.id, item_id).await?
        && is_final(done.outcome)
    {
        if let Some(t) = done.target_item_id {
            ctx.targets.insert(item_id.to_owned(), t);
        }
        return Ok(());
    }
    let ItemStates { at, now, path } = ctx.states(item_id).await?;
    if at.is_none() && now.is_none() {
        // Not a state of this container at the restore time nor now (an id that never
        // existed, or one since deleted): nothing to put back, nothing to set aside.
        let done =
            Done::new(RestoreOutcome::Skipped, None).with_detail("not in the backup at the restore time, nor now");
        return ctx.record(item_id, path, done).await;
    }
    let result = if ctx.job.container.is_mailbox() {
        mail::restore(ctx, at, now).await
    } else {
        drive::restore(ctx, item_id, at, now).await
    };
    if ctx.paused.is_some() {
        // Not done: the chunk is sent again from this item.
        return Ok(());
    }
    match result {
        Ok(done) => {
            if let Some(t) = &done.target_item_id {
                ctx.targets.insert(item_id.to_owned(), t.clone());
            }
            ctx.record(item_id, path, done).await
        }
        Err(PipelineError::Graph(e)) if e.is_retryable() => Err(PipelineError::Graph(e)),
        Err(PipelineError::Store(e)) if e.is_retryable() => Err(PipelineError::Store(e)),
        Err(e @ PipelineError::NotReady(_)) => Err(e),
        Err(e) => {
            warn!(job = %ctx.job.id, item = %item_id, error = %e, "item not restored");
            ctx.record(item_id, path, Done::new(RestoreOutcome::Failed, None).with_detail(failure_reason(&e))).await
        }
    }
}

/// Why an item was not restored, in the words its report shows.
fn failure_reason(e: &PipelineError) -> String {
    match e {
        PipelineError::Graph(GraphError::Forbidden { .. }) => "access denied: the restore may not write there".into(),
        PipelineError::Graph(GraphError::InsufficientStorage) => "target drive is full".into(),
        PipelineError::Graph(GraphError::Http { status: 400, message, .. }) => {
            format!("refused by the target: {message}")
        }
        other => other.to_string(),
    }
}

/// What restoring one item came to: the line of its report.
struct Done {
    outcome: RestoreOutcome,
    /// The item that stands for it in the target, once there is one.
    target_item_id: Option<String>,
    /// Bytes uploaded to restore it.
    bytes: u64,
    /// Why, in a few words, for the report.
    detail: Option<String>,
}

impl Done {
    /// Nothing uploaded and nothing to add.
    fn new(outcome: RestoreOutcome, target_item_id: Option<String>) -> Self {
        Self { outcome, target_item_id, bytes: 0, detail: None }
    }

    fn with_bytes(self, bytes: u64) -> Self {
        Self { bytes, ..self }
    }

    fn with_detail(self, detail: impl Into<String>) -> Self {
        Self { detail: Some(detail.into()), ..self }
    }

    /// Placeholder for an item whose upload paused (`Context::paused`): never recorded.
    fn paused() -> Self {
        Self::new(RestoreOutcome::Failed, None).with_detail("upload paused")
    }
}

/// An item as the restore sees it: its version at the restore time (None if it did not
/// exist then), its version now (None if deleted since), and the path its report shows.
struct ItemStates {
    at: Option<ItemVersion>,
    now: Option<ItemVersion>,
    path: String,
}
