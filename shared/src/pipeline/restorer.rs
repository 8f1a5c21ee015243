//! Restores a drive, folder or file as of a moment. The default is an in-place rollback:
//! an item that still exists gets the old bytes as a new version of the same item (its id
//! and sharing stay) and its name and parent put back; a missing item is recreated on its
//! path; an item created after that moment is reported (and quarantined if asked), never
//! deleted. Every restored file is read back from Graph and hashed against the backup.
//!
//! A job runs as a plan step (tree, folders, counts) that fans the files out in chunks to
//! the same queue; each chunk records per-item outcomes idempotently, so a redelivered or
//! re-run chunk changes nothing that is already restored.
//!
//! Mailboxes are restored by `mail`; export jobs (target `export`) never write to Microsoft
//! 365 and are `export`'s: zips of `.eml` files in the exports bucket.

mod conflicts;
mod export;
#[cfg(test)]
mod export_tests;
mod mail;

pub use export::{PART_BYTES, PART_MESSAGES, UPLOAD_PART, WHOLE_READ_MAX};
pub use mail::MAILBOX_RESTORE_SLOTS;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::PipelineError;
use crate::api::{RestoreStep, RestoreTask};
use crate::graph::{ConflictBehavior, DriveItem, GraphClient, GraphError, UploadTarget};
use crate::model::{
    ConflictPolicy, ItemKind, ItemVersion, RestoreItemReport, RestoreJob, RestoreOutcome, RestorePlan, RestoreScope,
    RestoreStatus, RestoreTarget, SCHEMA_VERSION,
};
use crate::store::{Catalog, ExportStore, MessageSink, OutMessage, OutcomeCounts, QueueName, Vault};

/// Files up to this size go in one PUT; larger ones through an upload session.
pub const SMALL_UPLOAD_MAX: u64 = 4 * 1024 * 1024;
/// Upload-session fragment: a multiple of 320 KiB, as Graph requires.
pub const FRAGMENT: usize = 16 * 320 * 1024;
/// Where items created after the restore time are moved, at the drive's root.
pub const QUARANTINE_FOLDER: &str = "Restore quarantine";
/// Files per fan-out task.
pub const CHUNK: usize = 50;
/// A dry run lists at most this many conflicts in its report (it counts them all).
pub const CONFLICTS_LISTED: usize = 1_000;

pub struct RestorerDeps {
    /// The restore app identity: the only one with write scopes.
    pub graph: GraphClient,
    pub vault: Arc<dyn Vault>,
    pub catalog: Arc<dyn Catalog>,
    pub sink: Arc<dyn MessageSink>,
    /// Export jobs write their zips here (write-only: never the vault).
    pub exports: Arc<dyn ExportStore>,
}

pub async fn handle(deps: &RestorerDeps, task: &RestoreTask) -> Result<(), PipelineError> {
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
            RestoreStep::Items { item_ids } => mail::restore_chunk(deps, &job, task, item_ids).await,
            RestoreStep::ExportPart { .. } => Err(not_an_export()),
        };
    }
    match &task.step {
        RestoreStep::Plan { dry_run } => plan(deps, &job, *dry_run).await,
        RestoreStep::Items { item_ids } => {
            let mut ctx = Context::new(deps, &job);
            for id in item_ids {
                restore_item(&mut ctx, id).await?;
            }
            finish_if_done(deps, &job.id).await
        }
        RestoreStep::ExportPart { .. } => Err(not_an_export()),
    }
}

fn not_an_export() -> PipelineError {
    PipelineError::BadMessage("an export step for a job that is not an export".into())
}

/// The restore's view of a container: versions at T and heads now.
struct Tree {
    at: HashMap<String, ItemVersion>,
    now: HashMap<String, ItemVersion>,
}

impl Tree {
    async fn load(catalog: &dyn Catalog, job: &RestoreJob) -> Result<Tree, PipelineError> {
        let at = catalog
            .container_as_of(&job.container, job.as_of)
            .await?
            .into_iter()
            .filter(|v| !v.deleted && v.kind != ItemKind::Root)
            .map(|v| (v.key.item_id.clone(), v))
            .collect();
        let now = catalog
            .list_heads(&job.container)
            .await?
            .into_iter()
            .filter(|h| !h.current.deleted)
            .map(|h| (h.current.key.item_id.clone(), h.current))
            .collect();
        Ok(Tree { at, now })
    }

    /// Items of `map` inside the scope (the scope item and its descendants).
    fn in_scope<'a>(map: &'a HashMap<String, ItemVersion>, scope: &RestoreScope) -> Vec<&'a ItemVersion> {
        match scope {
            RestoreScope::Container => map.values().collect(),
            RestoreScope::Item { item_id } => {
                map.values().filter(|v| Self::descends(map, &v.key.item_id, item_id)).collect()
            }
        }
    }

    fn descends(map: &HashMap<String, ItemVersion>, id: &str, ancestor: &str) -> bool {
        let mut cur = Some(id.to_owned());
        let mut hops = 0;
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            hops += 1;
            if hops > 10_000 {
                return false;
            }
            cur = map.get(&c).and_then(|v| v.parent_id.clone());
        }
        false
    }

    fn depth(&self, id: &str) -> usize {
        let mut depth = 0;
        let mut cur = self.at.get(id).and_then(|v| v.parent_id.clone());
        while let Some(c) = cur {
            depth += 1;
            if depth > 10_000 {
                break;
            }
            cur = self.at.get(&c).and_then(|v| v.parent_id.clone());
        }
        depth
    }

    fn path(&self, id: &str) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(id.to_owned());
        while let Some(c) = cur {
            let Some(v) = self.at.get(&c).or_else(|| self.now.get(&c)) else { break };
            parts.push(v.name.clone().unwrap_or_default());
            if parts.len() > 10_000 {
                break;
            }
            cur = v.parent_id.clone();
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}

fn differs(at: &ItemVersion, now: Option<&ItemVersion>) -> bool {
    let Some(now) = now else { return true };
    let content = |v: &ItemVersion| v.content.as_ref().map(|c| c.sha256.clone());
    content(at) != content(now) || at.name != now.name || at.parent_id != now.parent_id
}

async fn plan(deps: &RestorerDeps, job: &RestoreJob, dry_run: bool) -> Result<(), PipelineError> {
    // A redelivered plan of a job that already ran changes nothing; one that was cut off
    // while running resumes (folders and chunks are idempotent).
    if !matches!(job.status, RestoreStatus::Queued | RestoreStatus::Running) {
        return Ok(());
    }
    let tree = Tree::load(deps.catalog.as_ref(), job).await?;
    let scope = Tree::in_scope(&tree.at, &job.scope);
    let at_ids: HashSet<&str> = scope.iter().map(|v| v.key.item_id.as_str()).collect();
    let created_after: Vec<&ItemVersion> =
        Tree::in_scope(&tree.now, &job.scope).into_iter().filter(|v| !tree.at.contains_key(&v.key.item_id)).collect();
    let planned_bytes: u64 = scope
        .iter()
        .filter(|v| v.kind == ItemKind::File && differs(v, tree.now.get(&v.key.item_id)))
        .filter_map(|v| v.content.as_ref().map(|c| c.size))
        .sum();
    let mut ctx = Context::new(deps, job);
    let conflicts = match job.target {
        RestoreTarget::InPlace | RestoreTarget::Export => conflicts::in_place(&tree, job),
        RestoreTarget::Alternate { .. } => conflicts::alternate(&deps.graph, &tree, job, &ctx.root_id().await?).await?,
    };
    let plan = RestorePlan {
        items: (at_ids.len() + created_after.len()) as u64,
        bytes: planned_bytes,
        conflicts: conflicts.len() as u64,
    };
    info!(job = %job.id, items = plan.items, bytes = plan.bytes, conflicts = plan.conflicts, dry_run, "restore planned");
    if dry_run {
        // The listed conflicts are the dry run's report; the status comes last, so a client
        // that sees `planned` sees the whole list.
        for c in conflicts.into_iter().take(CONFLICTS_LISTED) {
            ctx.record(&c.item_id, c.path, Done::new(RestoreOutcome::Conflict, None).with_detail(c.detail)).await?;
        }
        deps.catalog.set_restore_status(&job.id, RestoreStatus::Planned, Some(plan)).await?;
        return Ok(());
    }
    deps.catalog.set_restore_status(&job.id, RestoreStatus::Running, Some(plan)).await?;

    // Folders first, parents before children, so files find their target parent.
    let mut folders: Vec<&ItemVersion> = scope.iter().copied().filter(|v| v.kind != ItemKind::File).collect();
    folders.sort_by_key(|v| tree.depth(&v.key.item_id));
    let folder_ids: Vec<String> = folders.iter().map(|v| v.key.item_id.clone()).collect();
    ctx.tree = Some(tree);
    for folder in folder_ids {
        restore_item(&mut ctx, &folder).await?;
    }
    let tree = ctx.tree.take().unwrap_or_else(|| unreachable!());
    let scope = Tree::in_scope(&tree.at, &job.scope);
    let created_after: Vec<&ItemVersion> =
        Tree::in_scope(&tree.now, &job.scope).into_iter().filter(|v| !tree.at.contains_key(&v.key.item_id)).collect();
    let mut files: Vec<String> =
        scope.iter().filter(|v| v.kind == ItemKind::File).map(|v| v.key.item_id.clone()).collect();
    files.extend(created_after.iter().map(|v| v.key.item_id.clone()));
    files.sort();
    fan_out(deps, job, &files).await
}

/// Queues the items in chunks of [`CHUNK`] to the restores queue, then finishes the job if
/// nothing was left to queue.
async fn fan_out(deps: &RestorerDeps, job: &RestoreJob, item_ids: &[String]) -> Result<(), PipelineError> {
    let messages: Vec<OutMessage> = item_ids
        .chunks(CHUNK)
        .map(|chunk| {
            let task = RestoreTask {
                v: SCHEMA_VERSION,
                job_id: job.id.clone(),
                step: RestoreStep::Items { item_ids: chunk.to_vec() },
            };
            OutMessage { body: serde_json::to_string(&task).unwrap_or_default(), group_id: None, delay: None }
        })
        .collect();
    if !messages.is_empty() {
        deps.sink.send(QueueName::Restores, messages).await?;
    }
    finish_if_done(deps, &job.id).await
}

/// Marks the job finished once every planned item has an outcome.
///
/// The counters move in the same transaction as each report, so on DynamoDB they never fall
/// behind the reports. An emulator that applies concurrent transactions non-atomically (moto
/// does, under load) can lose an increment, and the job would then wait forever on its last
/// chunk. So when the counters are within one chunk of the plan, the reports are counted
/// (one paged read of the job's report rows) and the job is settled from them.
async fn finish_if_done(deps: &RestorerDeps, job_id: &str) -> Result<(), PipelineError> {
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
async fn count_reports(catalog: &dyn Catalog, job_id: &str) -> Result<OutcomeCounts, PipelineError> {
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
        }
    }

    /// The backed-up drive's root folder id.
    async fn root_id(&mut self) -> Result<String, PipelineError> {
        if self.root_id.is_none() {
            self.root_id = self.deps.catalog.sync_state(&self.job.container).await?.root_id;
        }
        self.root_id
            .clone()
            .ok_or_else(|| PipelineError::MissingData("the drive's root is unknown: never enumerated".into()))
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

    fn target_drive(&self) -> &str {
        match &self.job.target {
            RestoreTarget::InPlace | RestoreTarget::Export => &self.job.container.graph_id,
            RestoreTarget::Alternate { drive_id, .. } => drive_id,
        }
    }

    /// The target folder that stands for `parent_id` (a folder of the backed-up tree).
    async fn target_parent(&mut self, version: &ItemVersion) -> Result<String, PipelineError> {
        let Some(parent) = version.parent_id.clone() else {
            return Err(PipelineError::MissingData("item without a parent".into()));
        };
        if let Some(t) = self.targets.get(&parent) {
            return Ok(t.clone());
        }
        // The restore's tree starts below the drive root, or below the scope item.
        let is_scope_root =
            matches!(&self.job.scope, RestoreScope::Item { item_id } if *item_id == version.key.item_id);
        let outside = is_scope_root || parent == self.root_id().await?;
        let target = match (&self.job.target, outside) {
            (RestoreTarget::Alternate { folder_id, .. }, true) => folder_id.clone(),
            (RestoreTarget::InPlace, true) => parent.clone(),
            _ => match self.deps.catalog.restore_report(&self.job.id, &parent).await? {
                Some(r) if r.target_item_id.is_some() => r.target_item_id.unwrap_or_default(),
                _ => {
                    return Err(PipelineError::NotReady(format!(
                        "parent folder of {} is not restored yet",
                        version.key.item_id
                    )));
                }
            },
        };
        self.targets.insert(parent, target.clone());
        Ok(target)
    }

    async fn child_named(&mut self, parent: &str, name: &str) -> Result<Option<DriveItem>, PipelineError> {
        if !self.children.contains_key(parent) {
            let drive = self.target_drive().to_owned();
            let list = self.deps.graph.children(&drive, parent).await?;
            self.children.insert(parent.to_owned(), list);
        }
        let lower = name.to_lowercase();
        Ok(self.children[parent]
            .iter()
            .find(|c| c.name.as_deref().map(str::to_lowercase) == Some(lower.clone()))
            .cloned())
    }

    async fn record(&self, item_id: &str, path: String, done: Done) -> Result<(), PipelineError> {
        let report = RestoreItemReport {
            job_id: self.job.id.clone(),
            item_id: item_id.to_owned(),
            path,
            outcome: done.outcome,
            detail: done.detail,
            target_item_id: done.target_item_id,
            at: Utc::now(),
        };
        self.deps.catalog.record_restore_outcome(&report, done.bytes).await?;
        Ok(())
    }
}

fn is_final(outcome: RestoreOutcome) -> bool {
    outcome != RestoreOutcome::Failed
}

/// Restores one item; per-item failures are reported, not raised (only transient
/// infrastructure errors are, so the chunk is retried).
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
    let result = match at {
        None => created_after(ctx, item_id, now).await,
        Some(v) if v.kind == ItemKind::File => restore_file(ctx, &v).await,
        Some(v) => restore_folder(ctx, &v).await,
    };
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
            ctx.record(item_id, path, Done::new(RestoreOutcome::Failed, None).with_detail(e.to_string())).await
        }
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
}

/// An item as the restore sees it: its version at the restore time (None if it did not
/// exist then), its version now (None if deleted since), and the path its report shows.
struct ItemStates {
    at: Option<ItemVersion>,
    now: Option<ItemVersion>,
    path: String,
}

async fn created_after(ctx: &mut Context<'_>, item_id: &str, now: Option<ItemVersion>) -> Result<Done, PipelineError> {
    if !ctx.job.quarantine_new_items || ctx.job.target != RestoreTarget::InPlace {
        return Ok(
            Done::new(RestoreOutcome::CreatedAfter, None).with_detail("created after the restore time; left in place")
        );
    }
    let folder = quarantine(ctx).await?;
    let drive = ctx.job.container.graph_id.clone();
    if item_id == folder {
        return Ok(Done::new(RestoreOutcome::CreatedAfter, Some(folder)).with_detail("the quarantine folder"));
    }
    let parent = now.as_ref().and_then(|v| v.parent_id.clone());
    if let Some(parent) = &parent
        && *parent != folder
        && *parent != ctx.root_id().await?
    {
        let key = ctx.job.container.item(parent.clone());
        let parent_at = ctx.deps.catalog.version_at(&key, ctx.job.as_of).await?.filter(|v| !v.deleted);
        if parent_at.is_none() {
            return Ok(
                Done::new(RestoreOutcome::CreatedAfter, Some(item_id.to_owned())).with_detail("moved with its folder")
            );
        }
    }
    if parent.as_deref() == Some(folder.as_str()) {
        return Ok(
            Done::new(RestoreOutcome::CreatedAfter, Some(item_id.to_owned())).with_detail("already in quarantine")
        );
    }
    ctx.deps.graph.patch_item(&drive, item_id, None, Some(&folder)).await?;
    Ok(Done::new(RestoreOutcome::CreatedAfter, Some(item_id.to_owned())).with_detail("moved to the quarantine folder"))
}

async fn quarantine(ctx: &mut Context<'_>) -> Result<String, PipelineError> {
    if let Some(q) = &ctx.quarantine {
        return Ok(q.clone());
    }
    let drive = ctx.job.container.graph_id.clone();
    let root = ctx.deps.graph.root(&drive).await?.id;
    // One quarantine per drive: a re-run finds what an earlier run set aside already there.
    let name = QUARANTINE_FOLDER.to_owned();
    let (folder, _) = ensure_folder(ctx, &root, &name).await?;
    ctx.quarantine = Some(folder.clone());
    Ok(folder)
}

/// A folder named `name` under `parent`: the existing one (false), or a new one (true).
async fn ensure_folder(ctx: &mut Context<'_>, parent: &str, name: &str) -> Result<(String, bool), PipelineError> {
    if let Some(existing) = ctx.child_named(parent, name).await?
        && existing.kind != crate::graph::ItemKind::File
    {
        return Ok((existing.id, false));
    }
    let drive = ctx.target_drive().to_owned();
    match ctx.deps.graph.create_folder(&drive, parent, name, ConflictBehavior::Fail).await {
        Ok(item) => {
            ctx.children.remove(parent);
            Ok((item.id, true))
        }
        Err(GraphError::Conflict { .. }) => {
            ctx.children.remove(parent);
            let existing = ctx.child_named(parent, name).await?;
            existing
                .map(|i| (i.id, false))
                .ok_or_else(|| PipelineError::NotReady(format!("folder {name} conflicts but cannot be found")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn restore_folder(ctx: &mut Context<'_>, v: &ItemVersion) -> Result<Done, PipelineError> {
    let name = v.name.clone().unwrap_or_default();
    let parent = ctx.target_parent(v).await?;
    if ctx.job.target == RestoreTarget::InPlace {
        let drive = ctx.target_drive().to_owned();
        if let Some(current) = ctx.deps.graph.get_item(&drive, &v.key.item_id).await?
            && !current.deleted
        {
            if current.name.as_deref() == Some(name.as_str()) && current.parent_id.as_deref() == Some(parent.as_str()) {
                return Ok(Done::new(RestoreOutcome::Unchanged, Some(current.id)));
            }
            let item = ctx.deps.graph.patch_item(&drive, &current.id, Some(&name), Some(&parent)).await?;
            return Ok(Done::new(RestoreOutcome::Restored, Some(item.id)).with_detail("name and parent put back"));
        }
    }
    match ensure_folder(ctx, &parent, &name).await? {
        (id, true) => Ok(Done::new(RestoreOutcome::Restored, Some(id)).with_detail("recreated")),
        (id, false) => Ok(Done::new(RestoreOutcome::Unchanged, Some(id))),
    }
}

async fn restore_file(ctx: &mut Context<'_>, v: &ItemVersion) -> Result<Done, PipelineError> {
    let content = v.content.clone().ok_or_else(|| PipelineError::MissingData("file version without content".into()))?;
    let name = v.name.clone().unwrap_or_default();
    let parent = ctx.target_parent(v).await?;
    let drive = ctx.target_drive().to_owned();
    let same_bytes = |item: &DriveItem| {
        item.size == Some(content.size)
            && item.quick_xor_hash.is_some()
            && item.quick_xor_hash == content.quick_xor_hash
    };

    // In place: the same item gets the old bytes as a new version, then its name and parent.
    let existing = match ctx.job.target {
        RestoreTarget::InPlace | RestoreTarget::Export => {
            ctx.deps.graph.get_item(&drive, &v.key.item_id).await?.filter(|i| !i.deleted)
        }
        RestoreTarget::Alternate { .. } => ctx.child_named(&parent, &name).await?,
    };
    if let Some(current) = existing {
        let in_place = ctx.job.target == RestoreTarget::InPlace;
        let placed =
            current.name.as_deref() == Some(name.as_str()) && current.parent_id.as_deref() == Some(parent.as_str());
        if same_bytes(&current) && placed {
            return Ok(Done::new(RestoreOutcome::Unchanged, Some(current.id)));
        }
        if !in_place && ctx.job.conflict == ConflictPolicy::Skip {
            return Ok(Done::new(RestoreOutcome::Skipped, Some(current.id)).with_detail("a file of that name exists"));
        }
        if in_place || ctx.job.conflict == ConflictPolicy::Replace {
            let mut bytes = 0;
            if !same_bytes(&current) {
                upload(
                    ctx,
                    &drive,
                    UploadTarget::Existing { item_id: &current.id },
                    &content.object,
                    content.size,
                    ConflictBehavior::Replace,
                )
                .await?;
                bytes = content.size;
            }
            if !placed {
                ctx.deps.graph.patch_item(&drive, &current.id, Some(&name), Some(&parent)).await?;
            }
            verify(ctx, &drive, &current.id, &content.sha256).await?;
            return Ok(Done::new(RestoreOutcome::Restored, Some(current.id)).with_bytes(bytes));
        }
    }
    // Missing in place, or an alternate target: a new file on its path.
    let conflict = match ctx.job.conflict {
        ConflictPolicy::Replace => ConflictBehavior::Replace,
        _ => ConflictBehavior::Rename,
    };
    let item = upload(
        ctx,
        &drive,
        UploadTarget::New { parent_id: &parent, name: &name },
        &content.object,
        content.size,
        conflict,
    )
    .await?;
    ctx.children.remove(&parent);
    verify(ctx, &drive, &item.id, &content.sha256).await?;
    Ok(Done::new(RestoreOutcome::Restored, Some(item.id)).with_bytes(content.size).with_detail("recreated"))
}

async fn upload(
    ctx: &Context<'_>,
    drive: &str,
    target: UploadTarget<'_>,
    object: &crate::model::ObjectRef,
    size: u64,
    conflict: ConflictBehavior,
) -> Result<DriveItem, PipelineError> {
    if size <= SMALL_UPLOAD_MAX {
        let body = ctx.deps.vault.get(object).await?;
        return Ok(ctx.deps.graph.upload_small(drive, target, body, conflict).await?);
    }
    let vault = ctx.deps.vault.clone();
    let object = object.clone();
    let source = move |offset: u64, len: usize| -> BoxFuture<'static, Result<Bytes, GraphError>> {
        let vault = vault.clone();
        let object = object.clone();
        Box::pin(async move {
            vault
                .get_range(&object, offset, len as u64)
                .await
                .map_err(|e| GraphError::Transient { message: format!("reading the backup: {e}") })
        })
    };
    Ok(ctx.deps.graph.upload_large(drive, target, size, conflict, FRAGMENT, source).await?)
}

/// Reads the restored item back from Graph and compares its SHA-256 with the backup's.
async fn verify(ctx: &Context<'_>, drive: &str, item_id: &str, sha256: &str) -> Result<(), PipelineError> {
    let download = ctx.deps.graph.download(drive, item_id, 0).await?;
    let mut stream = download.stream;
    let mut sha = Sha256::new();
    while let Some(chunk) = stream.next().await {
        sha.update(&chunk?);
    }
    let got = hex::encode(sha.finalize());
    if got != sha256 {
        return Err(PipelineError::ContentMismatch(format!(
            "restored bytes of {item_id} hash differently from the backup"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::test_server::{TestServer, graph_error};
    use crate::model::{ConflictPolicy, ContainerId};
    use crate::store::RestoreJobs;
    use crate::store::memory::{MemoryCatalog, MemorySink, MemoryVault};

    /// A running in-place job of `planned` items, its catalog, and deps whose Graph answers
    /// nothing useful (finishing a job must not call Graph).
    async fn running(planned: u64) -> (Arc<MemoryCatalog>, RestorerDeps, TestServer) {
        let graph = TestServer::start(3600, |_, _| graph_error(500, "unused")).await;
        let catalog = Arc::new(MemoryCatalog::new());
        let job = RestoreJob {
            v: SCHEMA_VERSION,
            id: "j".into(),
            container: ContainerId::new("t", "d"),
            scope: RestoreScope::Container,
            as_of: Utc::now(),
            target: RestoreTarget::InPlace,
            conflict: ConflictPolicy::Rename,
            quarantine_new_items: false,
            status: RestoreStatus::Running,
            created_at: Utc::now(),
            planned_items: planned,
            planned_bytes: 0,
            conflicts: 0,
            restored: 0,
            unchanged: 0,
            skipped: 0,
            failed: 0,
            bytes_restored: 0,
        };
        catalog.create_restore_job(&job).await.expect("create");
        let deps = RestorerDeps {
            graph: graph.client(),
            vault: Arc::new(MemoryVault::new()),
            catalog: catalog.clone(),
            sink: Arc::new(MemorySink::new()),
            exports: Arc::new(crate::store::memory::MemoryExports::new()),
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
