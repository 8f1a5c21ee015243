//! Drive restores: the plan (the outline as of T and now, counts, conflicts, then folder
//! chunks parents first and file chunks fanned out), and each item: a folder put back or
//! recreated, a file's bytes uploaded as a new version or a new file (through `upload`:
//! checked against the recorded SHA-256 before Graph commits them, with the version's dates),
//! read back and hashed against the backup, an item created after T left or quarantined.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::info;

use super::job::fan_out;
use super::outline::{Outline, Side};
use super::upload::{self, FileUpload, Sent};
use super::{Context, Done, Paused, RestorerDeps, conflicts};
use crate::graph::{ConflictBehavior, DriveItem, GraphError, SessionOptions, UploadTarget};
use crate::model::{
    ConflictPolicy, ItemKind, ItemVersion, RestoreJob, RestoreOutcome, RestorePlan, RestoreScope, RestoreStatus,
    RestoreTarget,
};
use crate::pipeline::PipelineError;

/// Where items created after the restore time are moved, at the drive's root.
pub const QUARANTINE_FOLDER: &str = "Restore quarantine";
/// The report of an item whose folder failed to restore.
pub(super) const FOLDER_FAILED: &str = "its folder could not be restored";
/// A dry run lists at most this many conflicts in its report (it counts them all).
pub const CONFLICTS_LISTED: usize = 1_000;

pub(super) async fn plan(deps: &RestorerDeps, job: &RestoreJob, dry_run: bool) -> Result<(), PipelineError> {
    // A redelivered plan of a job that already ran changes nothing; one that was cut off
    // while running resumes (chunks are idempotent).
    if !matches!(job.status, RestoreStatus::Queued | RestoreStatus::Running) {
        return Ok(());
    }
    let outline = Outline::load(deps.catalog.as_ref(), job, false).await?;
    let scope = outline.in_scope(Side::At, &job.scope);
    let created_after: Vec<u32> =
        outline.in_scope(Side::Now, &job.scope).into_iter().filter(|i| outline.state(Side::At, *i).is_none()).collect();
    let is_file = |i: u32| outline.state(Side::At, i).is_some_and(|s| s.kind == ItemKind::File);
    let planned_bytes: u64 = scope
        .iter()
        .filter(|i| is_file(**i) && outline.differs(**i))
        .filter_map(|i| outline.state(Side::At, *i).map(|s| s.size))
        .sum();
    let conflicts = match job.target {
        RestoreTarget::InPlace | RestoreTarget::Export => conflicts::in_place(&outline, job, CONFLICTS_LISTED),
        RestoreTarget::Alternate { .. } => {
            let root_id = Context::new(deps, job).root_id().await?;
            conflicts::alternate(&deps.graph, &outline, job, &root_id, CONFLICTS_LISTED).await?
        }
    };
    let plan = RestorePlan {
        items: (scope.len() + created_after.len()) as u64,
        bytes: planned_bytes,
        conflicts: conflicts.count,
    };
    info!(job = %job.id, items = plan.items, bytes = plan.bytes, conflicts = plan.conflicts, pages = outline.pages, dry_run, "restore planned");
    if dry_run {
        // The listed conflicts are the dry run's report; the status comes last, so a client
        // that sees `planned` sees the whole list.
        let ctx = Context::new(deps, job);
        for c in conflicts.listed() {
            ctx.record(&c.item_id, c.path, Done::new(RestoreOutcome::Conflict, None).with_detail(c.detail)).await?;
        }
        deps.catalog.set_restore_status(&job.id, RestoreStatus::Planned, Some(plan)).await?;
        return Ok(());
    }
    deps.catalog.set_restore_status(&job.id, RestoreStatus::Running, Some(plan)).await?;
    let (folders, files) = fan_out_order(&outline, scope, created_after);
    drop(outline);
    fan_out(deps, job, &folders, &files).await
}

/// The plan's items in the order they are sent: folders by depth (parents before children),
/// then files grouped by their folder in the folders' order, so the file chunks that come first
/// need the folders restored first, and a chunk needs few folders.
pub(super) fn fan_out_order(outline: &Outline, scope: Vec<u32>, extra_files: Vec<u32>) -> (Vec<String>, Vec<String>) {
    let depths = outline.depths();
    let kind = |i: u32| outline.state(Side::At, i).map(|s| s.kind);
    let (mut folders, mut files): (Vec<u32>, Vec<u32>) =
        scope.into_iter().partition(|i| !matches!(kind(*i), Some(ItemKind::File | ItemKind::Message)));
    folders
        .sort_by(|a, b| depths[*a as usize].cmp(&depths[*b as usize]).then_with(|| outline.id(*a).cmp(outline.id(*b))));
    // A folder's rank: its place in the folders' order (0 for a folder outside the plan).
    let mut rank = vec![0u32; outline.len()];
    for (r, f) in folders.iter().enumerate() {
        rank[*f as usize] = r as u32 + 1;
    }
    files.extend(extra_files);
    let parent_rank = |i: u32| {
        let side = if outline.state(Side::At, i).is_some() { Side::At } else { Side::Now };
        outline.state(side, i).and_then(|s| s.parent).map_or(0, |p| rank[p as usize])
    };
    files.sort_by_cached_key(|i| (parent_rank(*i), outline.id(*i).to_owned()));
    let ids = |items: Vec<u32>| items.into_iter().map(|i| outline.id(i).to_owned()).collect();
    (ids(folders), ids(files))
}

impl Context<'_> {
    /// The backed-up drive's root folder id.
    async fn root_id(&mut self) -> Result<String, PipelineError> {
        if self.root_id.is_none() {
            self.root_id = self.deps.catalog.sync_state(&self.job.container).await?.root_id;
        }
        self.root_id
            .clone()
            .ok_or_else(|| PipelineError::MissingData("the drive's root is unknown: never enumerated".into()))
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
                // Its folder has an outcome and no place in the target: it failed.
                Some(_) => return Err(PipelineError::MissingData(FOLDER_FAILED.into())),
                None => {
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
}

/// Restores one item of a drive: what it was at T, or what was created after.
pub(super) async fn restore(
    ctx: &mut Context<'_>,
    item_id: &str,
    at: Option<ItemVersion>,
    now: Option<ItemVersion>,
) -> Result<Done, PipelineError> {
    match at {
        None => created_after(ctx, item_id, now).await,
        Some(v) if v.kind == ItemKind::File => restore_file(ctx, &v).await,
        Some(v) => restore_folder(ctx, &v).await,
    }
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
                let target = UploadTarget::Existing { item_id: &current.id };
                let put =
                    put_file(ctx, &drive, v, target, ConflictBehavior::Replace, current.created.or(v.created)).await?;
                if put.is_none() {
                    return Ok(Done::paused());
                }
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
    let target = UploadTarget::New { parent_id: &parent, name: &name };
    let Some(item) = put_file(ctx, &drive, v, target, conflict, v.created).await? else {
        return Ok(Done::paused());
    };
    ctx.children.remove(&parent);
    verify(ctx, &drive, &item.id, &content.sha256).await?;
    Ok(Done::new(RestoreOutcome::Restored, Some(item.id)).with_bytes(content.size).with_detail("recreated"))
}

/// Puts the version's bytes into `target` (see `upload`): the committed file, or `None` when
/// the upload paused (`ctx.paused` says how to carry on). An empty file, which no session can
/// carry, goes as a simple upload once its recorded hash is checked; it keeps no dates.
async fn put_file(
    ctx: &mut Context<'_>,
    drive: &str,
    v: &ItemVersion,
    target: UploadTarget<'_>,
    conflict: ConflictBehavior,
    created: Option<DateTime<Utc>>,
) -> Result<Option<DriveItem>, PipelineError> {
    let content =
        v.content.as_ref().ok_or_else(|| PipelineError::MissingData("file version without content".into()))?;
    if content.size == 0 {
        if content.sha256 != hex::encode(Sha256::digest(b"")) {
            return Err(PipelineError::ContentMismatch(format!(
                "the backed-up bytes of {} do not match their recorded SHA-256: not uploaded",
                v.key.item_id
            )));
        }
        return Ok(Some(ctx.deps.graph.upload_small(drive, target, Bytes::new(), conflict).await?));
    }
    let options = SessionOptions { defer_commit: true, created, modified: Some(v.modified) };
    let file = FileUpload { item_id: &v.key.item_id, drive, target, conflict, content, options };
    match upload::send(ctx, &file).await? {
        Sent::Committed(item) => Ok(Some(item)),
        Sent::Paused { resume, delay } => {
            ctx.paused = Some(Paused { resume, delay });
            Ok(None)
        }
    }
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
