//! Restores a drive, folder or file as of a moment. The default is an in-place rollback:
//! an item that still exists gets the old bytes as a new version of the same item (its id
//! and sharing stay) and its name and parent put back; a missing item is recreated on its
//! path; an item created after that moment is reported (and quarantined if asked), never
//! deleted. A file's bytes are hashed as they are sent and Graph commits them only if they
//! match the backed-up SHA-256 (`upload`); every restored file is then read back from Graph
//! and hashed against the backup. An upload that would outlive the invocation (`deadline`) or
//! that Graph throttles pauses, and its chunk is sent again carrying the session to resume.
//!
//! A job runs as a plan step (tree, folders, counts) that fans the files out in chunks to
//! the same queue; each chunk records per-item outcomes idempotently, so a redelivered or
//! re-run chunk changes nothing that is already restored.
//!
//! This module dispatches a job's steps and keeps what every kind of restore shares: the
//! per-invocation `Context` and the per-item wrapper `restore_item`. Drives are restored
//! by `drive` over the as-of `tree`, mailboxes by `mail`; `job` fans chunks out and finishes
//! jobs. Export jobs (target `export`) never write to Microsoft 365 and are `export`'s: zips
//! of `.eml` files in the exports bucket.

mod conflicts;
mod drive;
mod export;
#[cfg(test)]
mod export_tests;
mod job;
mod mail;
mod tree;
mod upload;

pub use drive::{CONFLICTS_LISTED, QUARANTINE_FOLDER};
pub use export::{PART_BYTES, PART_MESSAGES, WHOLE_READ_MAX};
pub use job::CHUNK;
pub use mail::MAILBOX_RESTORE_SLOTS;
pub use upload::{DEADLINE_MARGIN, FRAGMENT};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::PipelineError;
use crate::clock::Clock;
use crate::graph::{DriveItem, GraphClient, GraphError};
use crate::model::{
    ItemKind, ItemVersion, RestoreItemReport, RestoreJob, RestoreOutcome, RestoreStep, RestoreTarget, RestoreTask,
    SCHEMA_VERSION, UploadResume,
};
use crate::store::{ExportStore, MessageSink, RestorerCatalog, Vault};
use job::{finish_if_done, send_again};
use tree::Tree;

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

/// Runs one step of a restore job. `deadline` is the invocation's: an upload that would
/// outlive it stops between fragments and its chunk is sent again to carry on.
pub async fn handle(deps: &RestorerDeps, task: &RestoreTask, deadline: Instant) -> Result<(), PipelineError> {
    if task.v != SCHEMA_VERSION {
        return Err(PipelineError::BadMessage(format!("unknown schema version {}", task.v)));
    }
    let job = deps
        .catalog
        .restore_job(&task.job_id)
        .await?
        .ok_or_else(|| PipelineError::MissingData(format!("no restore job {}", task.job_id)))?;
    if job.target == RestoreTarget::Export {
        return export::handle(deps, &job, task).await;
    }
    if job.container.is_mailbox() {
        return match &task.step {
            RestoreStep::Plan { dry_run } => mail::plan(deps, &job, *dry_run).await,
            RestoreStep::Items { item_ids, .. } => mail::restore_chunk(deps, &job, task, item_ids).await,
            RestoreStep::ExportPart { .. } => Err(not_an_export()),
        };
    }
    match &task.step {
        RestoreStep::Plan { dry_run } => drive::plan(deps, &job, *dry_run).await,
        RestoreStep::Items { item_ids, resume } => {
            let mut ctx = Context::new(deps, &job);
            ctx.deadline = deadline;
            ctx.resume = resume.clone();
            for (i, id) in item_ids.iter().enumerate() {
                restore_item(&mut ctx, id).await?;
                if let Some(Paused { resume, delay }) = ctx.paused.take() {
                    return send_again(deps, &job, &item_ids[i..], Some(resume), delay).await;
                }
            }
            finish_if_done(deps, &job.id).await
        }
        RestoreStep::ExportPart { .. } => Err(not_an_export()),
    }
}

fn not_an_export() -> PipelineError {
    PipelineError::BadMessage("an export step for a job that is not an export".into())
}

/// Per-invocation state: the job, the trees, and where restored folders went.
struct Context<'a> {
    deps: &'a RestorerDeps,
    job: &'a RestoreJob,
    /// Loaded by the plan step; item chunks read per item instead.
    tree: Option<Tree>,
    root_id: Option<String>,
    targets: HashMap<String, String>,
    children: HashMap<String, Vec<DriveItem>>,
    quarantine: Option<String>,
    /// Mail: per target folder, the internet message ids it holds and their message ids.
    present: HashMap<String, HashMap<String, String>>,
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
            tree: None,
            root_id: None,
            targets: HashMap::new(),
            children: HashMap::new(),
            quarantine: None,
            present: HashMap::new(),
            // A Lambda's longest run; the Items step sets the invocation's own.
            deadline: Instant::now() + Duration::from_secs(15 * 60),
            resume: None,
            paused: None,
        }
    }

    /// The item's version at the restore time and now, and its path.
    async fn states(&self, item_id: &str) -> Result<ItemStates, PipelineError> {
        if let Some(tree) = &self.tree {
            return Ok(ItemStates {
                at: tree.at.get(item_id).cloned(),
                now: tree.now.get(item_id).cloned(),
                path: tree.path(item_id),
            });
        }
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
/// the chunk is retried).
async fn restore_item(ctx: &mut Context<'_>, item_id: &str) -> Result<(), PipelineError> {
    if let Some(done) = ctx.deps.catalog.restore_report(&ctx.job.id, item_id).await?
        && is_final(done.outcome)
    {
        if let Some(t) = done.target_item_id {
            ctx.targets.insert(item_id.to_owned(), t);
        }
        return Ok(());
    }
    let ItemStates { at, now, path } = ctx.states(item_id).await?;
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
