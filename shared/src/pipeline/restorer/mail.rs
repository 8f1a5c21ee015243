//! Restores a mailbox, a mail folder (with its subfolders) or a message as of a moment, into
//! the original mailbox or under a folder of another one.
//!
//! The plan reads the mailbox's outline (as the drive plan does) and fans out folder chunks,
//! parents before children, then message chunks grouped by folder. A folder that still
//! exists is used as it is, a missing one is recreated on its path (found by name first, so a
//! re-run reuses it); a message whose folder has no outcome yet waits (its chunk comes back). A message still in its folder is left alone; any other is
//! created in its target folder from its backed-up MIME (`mime::rebuild`: a JSON create, so it
//! is not a draft unless it was one, with its dates, read and flag state, threading headers and
//! attachments), unless the folder already holds a message with the same internet message id, which makes a
//! restore re-runnable without duplicates. Messages created after the restore time are left
//! where they are: a restore adds, it never deletes. Every create is verified: a message with
//! attachments is read back (its MIME) and every attachment's bytes compared (SHA-256) with
//! the backup's, and its Message-ID; one without attachments is verified from the create's
//! answer (its internet message id, no attachments, its draft flag), which is all a read-back
//! would check, for one request instead of two (Exchange allows 10,000 per mailbox in ten
//! minutes: two per message would cap a restore at 500 messages a minute).
//!
//! Each chunk holds one of the restorer's slots on the target mailbox while it writes: four,
//! as Exchange serves an app four concurrent requests per mailbox, and counts the restorer
//! (its own app) apart from the backup's reader, so the slots are apart from the copiers'.
//! Without a slot the chunk waits in the queue.

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::drive::{FOLDER_FAILED, fan_out_order};
use super::job::{fan_out, finish_if_done, restore_items};
use super::outline::{Outline, Side};
use super::{Context, Done, RestorerDeps};
use crate::graph::{GraphError, MailFolder, Message};
use crate::mime::{INLINE_ATTACHMENT_MAX, Part, rebuild};
use crate::model::{
    ItemKind, ItemVersion, RestoreJob, RestoreOutcome, RestorePlan, RestoreScope, RestoreStatus, RestoreTarget,
    RestoreTask,
};
use crate::pipeline::{PipelineError, throttle_resource};
use crate::store::SlotLease;

/// Concurrent restore chunks per target mailbox: Exchange's four concurrent requests per app
/// and mailbox, all the restorer's (the backup's reader is another app with its own four).
pub const MAILBOX_RESTORE_SLOTS: u32 = 4;
/// A chunk's hold on its slot: longer than a chunk of messages takes.
const SLOT_LEASE: chrono::Duration = chrono::Duration::minutes(15);
/// How long a chunk without a slot waits in the queue.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The user whose mailbox receives the restore.
pub(super) fn target_user(job: &RestoreJob) -> &str {
    match &job.target {
        RestoreTarget::InPlace | RestoreTarget::Export => &job.container.graph_id,
        RestoreTarget::Alternate { drive_id, .. } => drive_id,
    }
}

pub(super) async fn plan(deps: &RestorerDeps, job: &RestoreJob, dry_run: bool) -> Result<(), PipelineError> {
    if !matches!(job.status, RestoreStatus::Queued | RestoreStatus::Running) {
        return Ok(());
    }
    let outline = Outline::load(deps.catalog.as_ref(), job, false).await?;
    let scope = outline.in_scope(Side::At, &job.scope);
    let moved_or_gone = |i: u32| {
        let now = outline.state(Side::Now, i).map(|s| s.parent);
        job.target != RestoreTarget::InPlace || now != outline.state(Side::At, i).map(|s| s.parent)
    };
    let plan = RestorePlan {
        items: scope.len() as u64,
        bytes: scope
            .iter()
            .filter_map(|i| outline.state(Side::At, *i).map(|s| (*i, s)))
            .filter(|(i, s)| s.kind == ItemKind::Message && moved_or_gone(*i))
            .map(|(_, s)| s.size)
            .sum(),
        conflicts: 0,
    };
    info!(job = %job.id, items = plan.items, bytes = plan.bytes, pages = outline.pages, dry_run, "mail restore planned");
    if dry_run {
        deps.catalog.set_restore_status(&job.id, RestoreStatus::Planned, Some(plan)).await?;
        return Ok(());
    }
    deps.catalog.set_restore_status(&job.id, RestoreStatus::Running, Some(plan)).await?;
    let (folders, messages) = fan_out_order(&outline, scope, Vec::new());
    drop(outline);
    fan_out(deps, job, &folders, &messages).await
}

/// In place, a message needs writing unless it is still in the folder it was in at T.
fn moved_or_gone(at: &ItemVersion, now: Option<&ItemVersion>, job: &RestoreJob) -> bool {
    job.target != RestoreTarget::InPlace || now.is_none_or(|now| now.parent_id != at.parent_id)
}

/// One chunk of messages, holding a slot of the target mailbox.
pub(super) async fn restore_chunk(
    deps: &RestorerDeps,
    job: &RestoreJob,
    task: &RestoreTask,
    item_ids: &[String],
) -> Result<(), PipelineError> {
    let target = crate::model::ContainerId::mailbox(job.container.tenant_id.clone(), target_user(job));
    let now = deps.clock.now();
    let resource = restore_slots(&target);
    let Some(lease) =
        deps.catalog.acquire_slot(&target.tenant_id, &resource, MAILBOX_RESTORE_SLOTS, now, now + SLOT_LEASE).await?
    else {
        // Not a deferral: the chunks holding the slots bound the wait (their leases end), and
        // the watchdog a job that stops; a growing delay would idle the slots they give back.
        return super::job::send_again(deps, task, SLOT_WAIT).await;
    };
    let mut ctx = Context::new(deps, job);
    let result = restore_items(&mut ctx, task, item_ids).await;
    release(deps, &lease).await;
    if result? {
        finish_if_done(deps, &job.id).await?;
    }
    Ok(())
}

/// The coordination resource of the restorer's slots on a mailbox: apart from the copiers'
/// (`throttle_resource`), as Exchange counts each app's requests apart.
pub(super) fn restore_slots(mailbox: &crate::model::ContainerId) -> String {
    format!("restore.{}", throttle_resource(mailbox))
}

async fn release(deps: &RestorerDeps, lease: &SlotLease) {
    if let Err(e) = deps.catalog.release_slot(lease).await {
        warn!(error = %e, "could not release a mailbox slot; it frees itself when its lease ends");
    }
}

/// Restores one folder or message: what it was at T (one created after is left in place).
pub(super) async fn restore(
    ctx: &mut Context<'_>,
    at: Option<ItemVersion>,
    now: Option<ItemVersion>,
) -> Result<Done, PipelineError> {
    match at {
        None => {
            Ok(Done::new(RestoreOutcome::CreatedAfter, None)
                .with_detail("created after the restore time; left in place"))
        }
        Some(v) if v.kind == ItemKind::MailFolder => restore_folder(ctx, &v).await,
        Some(v) => restore_message(ctx, &v, now.as_ref()).await,
    }
}

/// Where an item of the backed-up tree goes: `None` is the target mailbox's top level.
async fn target_folder(ctx: &mut Context<'_>, v: &ItemVersion) -> Result<Option<String>, PipelineError> {
    let parent = v.parent_id.clone().ok_or_else(|| PipelineError::MissingData("mail item without a folder".into()))?;
    if let Some(t) = ctx.targets.get(&parent) {
        return Ok(Some(t.clone()));
    }
    let is_scope_root = matches!(&ctx.job.scope, RestoreScope::Item { item_id } if *item_id == v.key.item_id);
    let key = ctx.job.container.item(parent.clone());
    let parent_at = ctx.deps.catalog.version_at(&key, ctx.job.as_of).await?.filter(|p| !p.deleted);
    // Above the restored tree: the mailbox root, or the scope item's own folder.
    if is_scope_root || parent_at.is_none() {
        return match &ctx.job.target {
            RestoreTarget::Alternate { folder_id, .. } => Ok(Some(folder_id.clone())),
            RestoreTarget::InPlace | RestoreTarget::Export if parent_at.is_none() => Ok(None),
            RestoreTarget::InPlace | RestoreTarget::Export => {
                let user = ctx.job.container.graph_id.clone();
                match ctx.deps.graph.mail_folder(&user, &parent).await? {
                    Some(f) => Ok(Some(f.id)),
                    None => Err(PipelineError::MissingData(format!(
                        "the folder of {} is gone: restore the folder instead",
                        v.key.item_id
                    ))),
                }
            }
        };
    }
    match ctx.deps.catalog.restore_report(&ctx.job.id, &parent).await? {
        Some(r) if r.target_item_id.is_some() => {
            let t = r.target_item_id.unwrap_or_default();
            ctx.targets.insert(parent, t.clone());
            Ok(Some(t))
        }
        Some(_) => Err(PipelineError::MissingData(FOLDER_FAILED.into())),
        None => Err(PipelineError::NotReady(format!("folder of {} is not restored yet", v.key.item_id))),
    }
}

async fn restore_folder(ctx: &mut Context<'_>, v: &ItemVersion) -> Result<Done, PipelineError> {
    let name = v.name.clone().unwrap_or_default();
    let user = target_user(ctx.job).to_owned();
    if ctx.job.target == RestoreTarget::InPlace
        && let Some(current) = ctx.deps.graph.mail_folder(&user, &v.key.item_id).await?
    {
        return Ok(Done::new(RestoreOutcome::Unchanged, Some(current.id)));
    }
    let parent = target_folder(ctx, v).await?;
    if let Some(existing) = child_named(ctx, &user, parent.as_deref(), &name).await? {
        return Ok(
            Done::new(RestoreOutcome::Unchanged, Some(existing.id)).with_detail("a folder of that name is there")
        );
    }
    match ctx.deps.graph.create_mail_folder(&user, parent.as_deref(), &name).await {
        Ok(folder) => Ok(Done::new(RestoreOutcome::Restored, Some(folder.id)).with_detail("recreated")),
        Err(GraphError::Conflict { .. }) => {
            let found = child_named(ctx, &user, parent.as_deref(), &name).await?;
            let id = found
                .map(|f| f.id)
                .ok_or_else(|| PipelineError::NotReady(format!("folder {name} exists but cannot be found")))?;
            Ok(Done::new(RestoreOutcome::Unchanged, Some(id)).with_detail("a folder of that name is there"))
        }
        Err(e) => Err(e.into()),
    }
}

async fn child_named(
    ctx: &Context<'_>,
    user: &str,
    parent: Option<&str>,
    name: &str,
) -> Result<Option<MailFolder>, PipelineError> {
    let siblings = match parent {
        Some(p) => ctx.deps.graph.child_mail_folders(user, p).await?,
        None => ctx.deps.graph.mail_folders(user).await?,
    };
    Ok(siblings.into_iter().find(|f| f.display_name.eq_ignore_ascii_case(name)))
}

async fn restore_message(
    ctx: &mut Context<'_>,
    v: &ItemVersion,
    now: Option<&ItemVersion>,
) -> Result<Done, PipelineError> {
    if !moved_or_gone(v, now, ctx.job) {
        return Ok(Done::new(RestoreOutcome::Unchanged, Some(v.key.item_id.clone())));
    }
    let content = v.content.clone().ok_or_else(|| PipelineError::MissingData("message version without MIME".into()))?;
    let meta = v.mail.clone().unwrap_or_default();
    let user = target_user(ctx.job).to_owned();
    let folder = target_folder(ctx, v)
        .await?
        .ok_or_else(|| PipelineError::MissingData("a message at the mailbox root".into()))?;
    let existing = match &meta.internet_message_id {
        Some(id) => present(ctx, &user, &folder).await?.get(id).cloned(),
        None => None,
    };
    if let Some(existing) = &existing
        && meta.attachments.is_empty()
        && !meta.has_attachments
    {
        return Ok(
            Done::new(RestoreOutcome::Unchanged, Some(existing.clone())).with_detail("already in the target folder")
        );
    }
    let mime = ctx.deps.vault.get(&content.object).await?;
    if let Some(existing) = existing {
        // Already there: complete it if an earlier attempt was cut between its create and
        // its last attachment.
        let missing = missing_attachments(ctx, &user, &existing, &mime).await?;
        if missing.is_empty() {
            return Ok(Done::new(RestoreOutcome::Unchanged, Some(existing)).with_detail("already in the target folder"));
        }
        let added = missing.len();
        attach(ctx, &user, &existing, missing).await?;
        verify(ctx, &user, &existing, &mime).await?;
        let detail = format!("already in the target folder; {added} missing attachments added");
        return Ok(Done::new(RestoreOutcome::Restored, Some(existing)).with_bytes(content.size).with_detail(detail));
    }
    let rebuilt = rebuild(&mime, &meta);
    let (small, large): (Vec<_>, Vec<_>) =
        rebuilt.attachments.iter().partition(|p| p.bytes.len() < INLINE_ATTACHMENT_MAX);
    // Small attachments ride in the create while the request stays under Graph's limit, so a
    // message and its attachments appear together; the rest follow one by one.
    let mut create = rebuilt.create.clone();
    let mut in_create = 0;
    let mut later = Vec::new();
    let mut budget = INLINE_ATTACHMENT_MAX;
    let mut inline = Vec::new();
    for part in small {
        if part.bytes.len() * 4 / 3 + 1024 < budget {
            budget -= part.bytes.len() * 4 / 3 + 1024;
            inline.push(part.file_attachment());
            in_create += 1;
        } else {
            later.push(part);
        }
    }
    if !inline.is_empty() {
        create["attachments"] = inline.into();
    }
    let created = ctx.deps.graph.create_message(&user, &folder, &create).await?;
    if let Some(id) = &meta.internet_message_id {
        ctx.present.entry(folder.clone()).or_default().insert(id.clone(), created.id.clone());
    }
    attach(ctx, &user, &created.id, later.into_iter().chain(large).cloned().collect()).await?;
    if created.is_draft != meta.is_draft {
        let what = if created.is_draft { "a draft" } else { "a sent message, not the draft it was" };
        return Err(PipelineError::ContentMismatch(format!("message {} came back as {what}", created.id)));
    }
    if rebuilt.attachments.is_empty() {
        verify_created(&created, &mime)?;
    } else {
        verify(ctx, &user, &created.id, &mime).await?;
    }
    info!(job = %ctx.job.id, item = %v.key.item_id, target_item = %created.id, attachments = rebuilt.attachments.len(), in_create, "message restored");
    Ok(Done::new(RestoreOutcome::Restored, Some(created.id)).with_bytes(content.size).with_detail("created"))
}

/// Adds attachments one request each: small ones inline, large ones through upload sessions.
async fn attach(ctx: &Context<'_>, user: &str, message_id: &str, parts: Vec<Part>) -> Result<(), PipelineError> {
    for part in parts {
        if part.bytes.len() < INLINE_ATTACHMENT_MAX {
            ctx.deps.graph.add_attachment(user, message_id, &part.file_attachment()).await?;
        } else {
            let item = part.attachment_item();
            ctx.deps.graph.upload_attachment(user, message_id, &item, Bytes::from(part.bytes)).await?;
        }
    }
    Ok(())
}

/// The internet message ids a target folder holds, listed once per invocation.
async fn present<'c>(
    ctx: &'c mut Context<'_>,
    user: &str,
    folder: &str,
) -> Result<&'c HashMap<String, String>, PipelineError> {
    if !ctx.present.contains_key(folder) {
        let listed = ctx.deps.graph.folder_messages(user, folder).await?;
        let ids = listed.into_iter().filter_map(|m| Some((m.internet_message_id?, m.id))).collect();
        ctx.present.insert(folder.to_owned(), ids);
    }
    Ok(&ctx.present[folder])
}

/// The restored message's MIME, as Graph serves it now.
async fn restored_mime(ctx: &Context<'_>, user: &str, message_id: &str) -> Result<Vec<u8>, PipelineError> {
    let download = ctx.deps.graph.message_mime(user, message_id).await?;
    let mut stream = download.stream;
    let mut restored = Vec::new();
    while let Some(chunk) = stream.next().await {
        restored.extend_from_slice(&chunk?);
    }
    Ok(restored)
}

/// The backed-up message's attachments that the message in Graph lacks (by SHA-256).
fn lacking(restored: &[u8], original: &[u8]) -> Vec<Part> {
    let digest = |p: &Part| hex::encode(Sha256::digest(&p.bytes));
    let mut have: Vec<String> = rebuild(restored, &Default::default()).attachments.iter().map(digest).collect();
    let mut missing = Vec::new();
    for part in rebuild(original, &Default::default()).attachments {
        match have.iter().position(|d| *d == digest(&part)) {
            Some(i) => {
                have.swap_remove(i);
            }
            None => missing.push(part),
        }
    }
    missing
}

async fn missing_attachments(
    ctx: &Context<'_>,
    user: &str,
    message_id: &str,
    original: &[u8],
) -> Result<Vec<Part>, PipelineError> {
    Ok(lacking(&restored_mime(ctx, user, message_id).await?, original))
}

/// The Message-ID of a MIME message, without its angle brackets.
fn mime_message_id(mime: &[u8]) -> Option<String> {
    mail_parser::MessageParser::default().parse(mime).and_then(|m| m.message_id().map(str::to_owned))
}

/// Verifies a message created without attachments from the create's answer: the backup's
/// Message-ID and no attachments. (Its draft flag is checked by the caller.)
fn verify_created(created: &Message, original: &[u8]) -> Result<(), PipelineError> {
    if created.has_attachments {
        return Err(PipelineError::ContentMismatch(format!(
            "restored message {} has attachments the backup does not",
            created.id
        )));
    }
    let got = created.internet_message_id.as_deref().map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'));
    if let Some(want) = mime_message_id(original)
        && got != Some(want.as_str())
    {
        return Err(PipelineError::ContentMismatch(format!("restored message {} lost its Message-ID", created.id)));
    }
    Ok(())
}

/// Reads the new message's MIME back: every attachment of the backup must be there with the
/// same bytes (SHA-256), and so must the Message-ID.
async fn verify(ctx: &Context<'_>, user: &str, message_id: &str, original: &[u8]) -> Result<(), PipelineError> {
    let restored = restored_mime(ctx, user, message_id).await?;
    let missing = lacking(&restored, original);
    if !missing.is_empty() {
        return Err(PipelineError::ContentMismatch(format!(
            "restored message {message_id} lacks {} of its attachments",
            missing.len()
        )));
    }
    if let Some(want) = mime_message_id(original)
        && mime_message_id(&restored).as_deref() != Some(want.as_str())
    {
        return Err(PipelineError::ContentMismatch(format!("restored message {message_id} lost its Message-ID")));
    }
    Ok(())
}

#[cfg(test)]
#[path = "mail_restore_tests.rs"]
mod restore_tests;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::clock::ManualClock;
    use crate::graph::test_server::{TestServer, graph_error};
    use crate::model::{ContainerId, RestoreStep};
    use crate::store::memory::{MemoryCatalog, MemorySink};
    use crate::store::{Coordination, QueueName, RestoreJobs};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
    }

    #[tokio::test]
    async fn a_restore_chunk_runs_while_the_backups_copiers_hold_every_slot_of_theirs() {
        // Given a running restore of a mailbox whose backup copiers hold all their slots
        // (Exchange counts the reader's requests apart from the restorer's)
        let start = at("2024-05-01T10:00:00Z");
        let graph = TestServer::start(3600, |_, _| graph_error(500, "no item to restore")).await;
        let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
        let deps =
            RestorerDeps::in_memory(graph.client(), catalog.clone(), sink.clone(), Arc::new(ManualClock::new(start)));
        let mailbox = ContainerId::mailbox("t", "ada");
        let job = RestoreJob {
            status: RestoreStatus::Running,
            ..RestoreJob::new("j", mailbox.clone(), RestoreScope::Container, start, RestoreTarget::InPlace, start)
        };
        catalog.create_restore_job(&job).await.expect("create");
        let copiers = throttle_resource(&mailbox);
        let copier_slots = crate::pipeline::copier::MAILBOX_COPY_SLOTS;
        for _ in 0..copier_slots {
            let held = catalog.acquire_slot("t", &copiers, copier_slots, start, start + SLOT_LEASE).await;
            assert!(held.expect("slot").is_some());
        }

        // When a chunk arrives, it takes one of the restorer's own slots and runs
        let chunk = RestoreTask::new("j", RestoreStep::Items { item_ids: vec![], resume: None });
        super::super::handle(&deps, &chunk, std::time::Instant::now() + std::time::Duration::from_secs(900))
            .await
            .expect("ran");
        assert!(sink.take(QueueName::Restores).is_empty());
        assert_eq!(catalog.restore_job("j").await.expect("read").expect("job").status, RestoreStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_chunk_waits_for_a_mailbox_slot_until_the_leases_holding_them_run_out() {
        // Given a running restore of a mailbox whose four restore slots were taken at 10:00
        // by chunks whose workers died (their leases run to 10:15, nobody gives them back)
        let start = at("2024-05-01T10:00:00Z");
        let clock = Arc::new(ManualClock::new(start));
        let graph = TestServer::start(3600, |_, _| graph_error(500, "no item to restore")).await;
        let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
        let deps = RestorerDeps::in_memory(graph.client(), catalog.clone(), sink.clone(), clock.clone());
        let mailbox = ContainerId::mailbox("t", "ada");
        let job = RestoreJob {
            status: RestoreStatus::Running,
            ..RestoreJob::new("j", mailbox.clone(), RestoreScope::Container, start, RestoreTarget::InPlace, start)
        };
        catalog.create_restore_job(&job).await.expect("create");
        let resource = restore_slots(&mailbox);
        for _ in 0..MAILBOX_RESTORE_SLOTS {
            let until = start + SLOT_LEASE;
            let held = catalog.acquire_slot("t", &resource, MAILBOX_RESTORE_SLOTS, start, until).await.expect("slot");
            assert!(held.is_some());
        }
        let chunk = RestoreTask::new("j", RestoreStep::Items { item_ids: vec!["m1".into()], resume: None });

        // When a chunk arrives a minute before the leases end, it goes back to the queue
        clock.set(start + SLOT_LEASE - chrono::Duration::minutes(1));
        super::super::handle(&deps, &chunk, std::time::Instant::now() + std::time::Duration::from_secs(900))
            .await
            .expect("deferred");
        let sent = sink.take(QueueName::Restores);
        assert_eq!(sent.len(), 1);
        let again: RestoreTask = serde_json::from_str(&sent[0].body).expect("task");
        assert_eq!((again.attempt, again.deferrals), (0, 0), "waiting for a slot is neither an attempt nor a deferral");
        assert_eq!(sent[0].delay, Some(SLOT_WAIT));
        assert_eq!(catalog.restore_job("j").await.expect("read").expect("job").status, RestoreStatus::Running);

        // And once the clock passes them (no sleeping), the chunk takes a slot and runs
        clock.advance(chrono::Duration::minutes(2));
        super::super::handle(&deps, &chunk, std::time::Instant::now() + std::time::Duration::from_secs(900))
            .await
            .expect("ran");
        assert!(sink.take(QueueName::Restores).is_empty());
        assert_eq!(catalog.restore_job("j").await.expect("read").expect("job").status, RestoreStatus::Succeeded);
    }
}
