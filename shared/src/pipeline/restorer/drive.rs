//! Drive restores: the plan (the tree as of T, counts, conflicts, folders parents first, then
//! the files fanned out in chunks), and each item: a folder put back or recreated, a file's
//! bytes uploaded as a new version or a new file, read back and hashed against the backup, an
//! item created after T left or quarantined.

use std::collections::HashSet;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tracing::info;

use super::job::fan_out;
use super::tree::Tree;
use super::{Context, Done, RestorerDeps, conflicts, restore_item};
use crate::graph::{ConflictBehavior, DriveItem, GraphError, UploadTarget};
use crate::model::{
    ConflictPolicy, ItemKind, ItemVersion, RestoreJob, RestoreOutcome, RestorePlan, RestoreScope, RestoreStatus,
    RestoreTarget,
};
use crate::pipeline::PipelineError;

/// Files up to this size go in one PUT; larger ones through an upload session.
pub const SMALL_UPLOAD_MAX: u64 = 4 * 1024 * 1024;
/// Upload-session fragment: a multiple of 320 KiB, as Graph requires; 10 MiB, the top of
/// Graph's recommended 5–10 MiB, because every fragment costs SharePoint resource units (2 in
/// the simulator) whatever its size: at 5 MiB a large file spends the per-app budget of 1,250
/// units a minute at about 190 GB/h, at 10 MiB at about 380, near the 400 GB/h ingress limit.
pub const FRAGMENT: usize = 32 * 320 * 1024;
/// Where items created after the restore time are moved, at the drive's root.
pub const QUARANTINE_FOLDER: &str = "Restore quarantine";
/// A dry run lists at most this many conflicts in its report (it counts them all).
pub const CONFLICTS_LISTED: usize = 1_000;

fn differs(at: &ItemVersion, now: Option<&ItemVersion>) -> bool {
    let Some(now) = now else { return true };
    let content = |v: &ItemVersion| v.content.as_ref().map(|c| c.sha256.clone());
    content(at) != content(now) || at.name != now.name || at.parent_id != now.parent_id
}

pub(super) async fn plan(deps: &RestorerDeps, job: &RestoreJob, dry_run: bool) -> Result<(), PipelineError> {
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
