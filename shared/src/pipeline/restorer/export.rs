//! Export jobs: the messages of a mailbox or mail folder as they were at T, as `.eml` files in
//! zip archives in the exports bucket.
//!
//! The plan step lists the messages in scope (one read of the mailbox as of T), splits them in
//! item order into parts of at most [`PART_MESSAGES`] messages and [`PART_BYTES`] bytes, and
//! queues one task per part. Each part task reads the same listing, keeps the messages of its
//! id range, and streams one zip into a multipart upload: every message is read from the vault
//! by its recorded S3 version and checked against its recorded SHA-256 and size before a byte
//! of it goes in (a mismatch is a `failed` report and a manifest line, never an entry). Then
//! the part's reports are written and, last, its row (the commit point); the job finishes when
//! every part has a row. A part that fails part-way aborts its upload and is retried whole
//! (reports and rows are idempotent, and a part is written the same way every time).

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::tree::Tree;
use super::{Context, Done, RestorerDeps};
use crate::export::manifest::{MANIFEST_VERSION, Manifest, ManifestEntry, ManifestFailure};
use crate::export::names::{EntryNames, MANIFEST};
use crate::export::zip::{ZipError, ZipWriter};
use crate::model::{
    ExportPart, ItemKind, ItemVersion, ObjectRef, RestoreJob, RestoreOutcome, RestorePlan, RestoreStatus, RestoreStep,
    RestoreTask,
};
use crate::pipeline::PipelineError;
use crate::pipeline::part_buffer::{PartBuffer, UploadPart};
use crate::store::{ExportStore, Multipart, OutMessage, QueueName, StoreError, Vault, item_order};

/// Messages per zip: with the reports it writes, a part takes a few minutes of a Lambda's
/// fifteen even when every message is small (latency-bound reads).
pub const PART_MESSAGES: usize = 5_000;
/// Message bytes per zip: well inside what a zip without ZIP64 holds (4 GiB), and a few
/// minutes of reading and uploading. A single larger message gets a part of its own.
pub const PART_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Messages up to this size are read whole and checked, then written; larger ones are read
/// twice (check, then write) so memory stays bounded whatever their size.
pub const WHOLE_READ_MAX: u64 = 16 * 1024 * 1024;
/// Room kept in an archive for its central directory's growth and the manifest.
const MANIFEST_RESERVE: u64 = 64 * 1024 * 1024;

pub(super) async fn handle(deps: &RestorerDeps, job: &RestoreJob, task: &RestoreTask) -> Result<(), PipelineError> {
    match &task.step {
        RestoreStep::Plan { dry_run } => plan(deps, job, *dry_run).await,
        RestoreStep::ExportPart { part, of, from, to } => {
            let range = Range { part: *part, of: *of, from: from.clone(), to: to.clone() };
            export_part(deps, job, &range).await
        }
        RestoreStep::Items { .. } => Err(PipelineError::BadMessage("an export job has no item chunks".into())),
    }
}

/// One part's share of the messages: ids in `[from, to)` in item order.
struct Range {
    part: u32,
    of: u32,
    from: Option<String>,
    to: Option<String>,
}

impl Range {
    fn holds(&self, item_id: &str) -> bool {
        let key = item_order(item_id);
        self.from.as_deref().is_none_or(|f| key >= item_order(f))
            && self.to.as_deref().is_none_or(|t| key < item_order(t))
    }
}

/// The mailbox as of T and the ids of the messages in scope, in item order.
async fn load(deps: &RestorerDeps, job: &RestoreJob) -> Result<(Tree, Vec<String>), PipelineError> {
    let tree = Tree::load_as_of(deps.catalog.as_ref(), job).await?;
    let mut ids: Vec<String> = Tree::in_scope(&tree.at, &job.scope)
        .into_iter()
        .filter(|v| v.kind == ItemKind::Message)
        .map(|v| v.key.item_id.clone())
        .collect();
    ids.sort_by_cached_key(|id| item_order(id));
    Ok((tree, ids))
}

fn size_of(v: &ItemVersion) -> u64 {
    v.content.as_ref().map_or(0, |c| c.size)
}

/// Where each part starts (the first part at the beginning): parts of at most `max_messages`
/// messages and `max_bytes` bytes, except that one larger message is a part by itself.
pub(super) fn split(messages: &[&ItemVersion], max_messages: usize, max_bytes: u64) -> Vec<Option<String>> {
    let mut starts = vec![None];
    let (mut count, mut bytes) = (0usize, 0u64);
    for v in messages {
        if count > 0 && (count >= max_messages || bytes + size_of(v) > max_bytes) {
            starts.push(Some(v.key.item_id.clone()));
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += size_of(v);
    }
    starts
}

async fn plan(deps: &RestorerDeps, job: &RestoreJob, dry_run: bool) -> Result<(), PipelineError> {
    if !matches!(job.status, RestoreStatus::Queued | RestoreStatus::Running) {
        return Ok(());
    }
    let (tree, ids) = load(deps, job).await?;
    let messages: Vec<&ItemVersion> = ids.iter().filter_map(|id| tree.at.get(id)).collect();
    let starts = split(&messages, PART_MESSAGES, PART_BYTES);
    let plan =
        RestorePlan { items: messages.len() as u64, bytes: messages.iter().map(|v| size_of(v)).sum(), conflicts: 0 };
    info!(job = %job.id, messages = plan.items, bytes = plan.bytes, parts = starts.len(), dry_run, "export planned");
    if dry_run {
        deps.catalog.set_restore_status(&job.id, RestoreStatus::Planned, Some(plan)).await?;
        return Ok(());
    }
    deps.catalog.set_restore_status(&job.id, RestoreStatus::Running, Some(plan)).await?;
    let of = starts.len() as u32;
    let tasks: Vec<OutMessage> = starts
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let to = starts.get(i + 1).cloned().flatten();
            let step = RestoreStep::ExportPart { part: i as u32 + 1, of, from: from.clone(), to };
            let task = RestoreTask::new(job.id.clone(), step);
            OutMessage { body: serde_json::to_string(&task).unwrap_or_default(), group_id: None, delay: None }
        })
        .collect();
    deps.sink.send(QueueName::Restores, tasks).await?;
    Ok(())
}

async fn export_part(deps: &RestorerDeps, job: &RestoreJob, range: &Range) -> Result<(), PipelineError> {
    // A redelivered part that was recorded changes nothing.
    if deps.catalog.export_parts(&job.id).await?.iter().any(|p| p.part == range.part) {
        return finish(deps, &job.id).await;
    }
    if job.status != RestoreStatus::Running {
        return Ok(());
    }
    let (tree, ids) = load(deps, job).await?;
    let ids: Vec<&String> = ids.iter().filter(|id| range.holds(id)).collect();
    let key = crate::keys::export_key(&job.container.tenant_id, &job.id, range.part, range.of);
    let mut upload = PartUpload::start(deps.exports.as_ref(), &key).await?;
    let manifest = match write_part(deps, job, &tree, &ids, range, &mut upload).await {
        Ok(manifest) => manifest,
        Err(e) => {
            upload.abort().await;
            return Err(e);
        }
    };
    let (bytes, sha256) = upload.complete().await?;
    record(deps, job, range, &manifest, key, bytes, sha256).await?;
    finish(deps, &job.id).await
}

/// The part's reports, then its row (the commit point of the part).
async fn record(
    deps: &RestorerDeps,
    job: &RestoreJob,
    range: &Range,
    manifest: &Manifest,
    key: String,
    bytes: u64,
    sha256: String,
) -> Result<(), PipelineError> {
    let ctx = Context::new(deps, job);
    for e in &manifest.entries {
        let done = Done::new(RestoreOutcome::Restored, None)
            .with_bytes(e.size)
            .with_detail(format!("exported in part {} of {}", range.part, range.of));
        ctx.record(&e.item_id, e.path.clone(), done).await?;
    }
    for f in &manifest.failed {
        let done = Done::new(RestoreOutcome::Failed, None).with_detail(f.reason.clone());
        ctx.record(&f.item_id, f.folder.clone(), done).await?;
    }
    let part = ExportPart {
        part: range.part,
        of: range.of,
        key,
        bytes,
        sha256,
        messages: manifest.entries.len() as u64,
        failed: manifest.failed.len() as u64,
        completed_at: deps.clock.now(),
    };
    deps.catalog.record_export_part(&job.id, &part).await?;
    info!(job = %job.id, part = range.part, of = range.of, messages = part.messages, failed = part.failed, bytes, "export part written");
    Ok(())
}

/// Finishes the job once every part is recorded.
async fn finish(deps: &RestorerDeps, job_id: &str) -> Result<(), PipelineError> {
    let Some(job) = deps.catalog.restore_job(job_id).await? else { return Ok(()) };
    if job.status != RestoreStatus::Running {
        return Ok(());
    }
    let parts = deps.catalog.export_parts(job_id).await?;
    let Some(of) = parts.first().map(|p| p.of) else { return Ok(()) };
    if (parts.len() as u32) < of {
        return Ok(());
    }
    let failed: u64 = parts.iter().map(|p| p.failed).sum();
    let status = if failed > 0 { RestoreStatus::CompletedWithErrors } else { RestoreStatus::Succeeded };
    deps.catalog.set_restore_status(job_id, status, None).await?;
    info!(job = %job_id, parts = of, failed, "export finished");
    Ok(())
}

/// The folder names from the mailbox's top down to the message's folder, as of T.
fn folder_path(tree: &Tree, v: &ItemVersion) -> Vec<String> {
    let mut names = Vec::new();
    let mut cur = v.parent_id.clone();
    while let Some(id) = cur {
        let Some(folder) = tree.at.get(&id) else { break };
        names.push(folder.name.clone().unwrap_or_default());
        if names.len() > 10_000 {
            break;
        }
        cur = folder.parent_id.clone();
    }
    names.reverse();
    names
}

async fn write_part(
    deps: &RestorerDeps,
    job: &RestoreJob,
    tree: &Tree,
    ids: &[&String],
    range: &Range,
    upload: &mut PartUpload<'_>,
) -> Result<Manifest, PipelineError> {
    let mut names = EntryNames::new();
    let mut manifest = Manifest {
        v: MANIFEST_VERSION,
        job_id: job.id.clone(),
        mailbox_id: job.container.graph_id.clone(),
        as_of: job.as_of,
        part: range.part,
        parts: range.of,
        entries: Vec::new(),
        failed: Vec::new(),
    };
    for id in ids {
        let Some(v) = tree.at.get(id.as_str()) else { continue };
        let folder = folder_path(tree, v);
        let meta = v.mail.clone().unwrap_or_default();
        let path = names.message(&folder, meta.received, meta.subject.as_deref(), id);
        match add_message(deps.vault.as_ref(), upload, &path, v).await {
            Ok(()) => manifest.entries.push(ManifestEntry {
                path,
                item_id: v.key.item_id.clone(),
                internet_message_id: meta.internet_message_id,
                folder: folder.join("/"),
                subject: meta.subject,
                received: meta.received,
                size: size_of(v),
                sha256: v.content.as_ref().map(|c| c.sha256.clone()).unwrap_or_default(),
            }),
            Err(MessageError::Item(reason)) => {
                warn!(job = %job.id, item = %v.key.item_id, %reason, "message not exported");
                manifest.failed.push(ManifestFailure {
                    item_id: v.key.item_id.clone(),
                    folder: folder.join("/"),
                    subject: meta.subject,
                    reason,
                });
            }
            Err(MessageError::Part(e)) => return Err(e),
        }
        upload.flush().await?;
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| PipelineError::Internal(e.to_string()))?;
    upload.zip.add(MANIFEST, job.as_of, &json).map_err(zip_broken)?;
    upload.zip.finish().map_err(zip_broken)?;
    Ok(manifest)
}

/// Why a message did not go into its part.
enum MessageError {
    /// This message only: reported `failed`, listed in the manifest; the part goes on.
    Item(String),
    /// The part cannot go on (a transient read, a failed upload): it is retried whole.
    Part(PipelineError),
}

impl From<PipelineError> for MessageError {
    fn from(e: PipelineError) -> Self {
        MessageError::Part(e)
    }
}

fn zip_broken(e: ZipError) -> PipelineError {
    match e {
        // The bytes of the second pass differ from the first's: read them again.
        ZipError::EntryMismatch { .. } => PipelineError::ContentMismatch(format!("export archive: {e}")),
        // The plan keeps parts and names within a plain zip's limits: a breach is our bug.
        _ => PipelineError::Internal(format!("export archive: {e}")),
    }
}

/// A vault error reading a message: transient ones retry the part, the rest fail the message.
fn vault_error(e: StoreError) -> MessageError {
    if e.is_retryable() { MessageError::Part(e.into()) } else { MessageError::Item(format!("reading the vault: {e}")) }
}

/// Bytes whose size or SHA-256 differ from the backup's record are never exported.
fn check(v: &ItemVersion, size: u64, sha256: &str) -> Result<(), MessageError> {
    let content = v.content.as_ref().ok_or_else(|| MessageError::Item("no MIME recorded".into()))?;
    if size != content.size || sha256 != content.sha256 {
        return Err(MessageError::Item(format!(
            "the vault's bytes ({size} bytes) do not match the backup's record ({} bytes, SHA-256 {})",
            content.size, content.sha256
        )));
    }
    Ok(())
}

async fn add_message(
    vault: &dyn Vault,
    upload: &mut PartUpload<'_>,
    path: &str,
    v: &ItemVersion,
) -> Result<(), MessageError> {
    let content = v.content.as_ref().ok_or_else(|| MessageError::Item("no MIME recorded".into()))?;
    let modified = v.mail.as_ref().and_then(|m| m.received).unwrap_or(v.modified);
    if !upload.zip.fits(path, content.size, MANIFEST_RESERVE) {
        return Err(MessageError::Item("too large for this archive".into()));
    }
    if content.size <= WHOLE_READ_MAX {
        let body = vault.get(&content.object).await.map_err(vault_error)?;
        check(v, body.len() as u64, &hex::encode(Sha256::digest(&body)))?;
        upload.zip.add(path, modified, &body).map_err(|e| MessageError::Item(e.to_string()))?;
        return Ok(());
    }
    // Large: a first pass checks the bytes and learns their CRC-32, the second writes them
    // (an entry's header carries its CRC-32, and nothing can be taken back once written).
    let (size, sha256, crc) = digest(vault, &content.object).await?;
    check(v, size, &sha256)?;
    upload.zip.start_entry(path, modified, size, crc).map_err(|e| MessageError::Item(e.to_string()))?;
    let mut stream = vault.get_stream(&content.object).await.map_err(|e| MessageError::Part(e.into()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| MessageError::Part(e.into()))?;
        upload.zip.write(&chunk).map_err(zip_broken)?;
        upload.flush().await?;
    }
    upload.zip.finish_entry().map_err(zip_broken)?;
    Ok(())
}

/// Size, SHA-256 and CRC-32 of a vault object, streamed.
async fn digest(vault: &dyn Vault, object: &ObjectRef) -> Result<(u64, String, u32), MessageError> {
    let mut stream = vault.get_stream(object).await.map_err(vault_error)?;
    let (mut size, mut sha, mut crc) = (0u64, Sha256::new(), crc32fast::Hasher::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(vault_error)?;
        size += chunk.len() as u64;
        sha.update(&chunk);
        crc.update(&chunk);
    }
    Ok((size, hex::encode(sha.finalize()), crc.finalize()))
}

/// A zip being written straight into a multipart upload, hashed on the way out.
struct PartUpload<'a> {
    store: &'a dyn ExportStore,
    upload: Option<Multipart>,
    zip: ZipWriter,
    parts: PartBuffer,
    sha: Sha256,
}

impl<'a> PartUpload<'a> {
    async fn start(store: &'a dyn ExportStore, key: &str) -> Result<Self, PipelineError> {
        let upload = store.start_upload(key).await?;
        Ok(Self { store, upload: Some(upload), zip: ZipWriter::new(), parts: PartBuffer::new(), sha: Sha256::new() })
    }

    /// Uploads the parts that what the zip has produced so far fills.
    async fn flush(&mut self) -> Result<(), PipelineError> {
        for part in self.parts.push(self.zip.take()) {
            self.send(part).await?;
        }
        Ok(())
    }

    async fn send(&mut self, part: UploadPart) -> Result<(), PipelineError> {
        self.sha.update(&part.body);
        let upload = self.upload.as_mut().ok_or_else(|| PipelineError::Internal("upload already closed".into()))?;
        self.store.upload_part(upload, part.number, part.body).await?;
        Ok(())
    }

    /// The zip's size and SHA-256.
    async fn complete(mut self) -> Result<(u64, String), PipelineError> {
        self.flush().await?;
        if let Some(last) = self.parts.last_part() {
            self.send(last).await?;
        }
        let upload = self.upload.take().ok_or_else(|| PipelineError::Internal("upload already closed".into()))?;
        self.store.complete_upload(upload).await?;
        Ok((self.parts.pushed(), hex::encode(self.sha.finalize())))
    }

    async fn abort(mut self) {
        let Some(upload) = self.upload.take() else { return };
        if let Err(e) = self.store.abort_upload(upload).await {
            warn!(error = %e, "could not abort an export upload; the bucket's lifecycle rule removes it");
        }
    }
}
