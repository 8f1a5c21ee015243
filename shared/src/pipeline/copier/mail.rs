//! Backs up mail folders and messages. A message's content is its MIME exactly as Graph
//! serves it (`$value`), hashed with SHA-256 while it streams and stored once per tenant by
//! that hash (or multipart to a per-version key when large); its metadata (folder, subject,
//! addresses, dates, read and flag state, attachment names) rides on the catalog row.
//!
//! Exchange lets only drafts change their body (Graph: `body` is updatable only while
//! `isDraft`), so a new `changeKey` on a sent or received message is a metadata change (read,
//! flag, move, categories) unless its attachments changed (Defender's Dynamic Delivery adds
//! them to received mail): a message with file attachments, before or after, has them listed
//! (one small request, no content) and compared with the listing stored with its MIME. The
//! same listing is a new version over the content already held, another one downloads again. A message removed from a folder is looked up by its immutable id:
//! found elsewhere, the move is recorded; gone, a tombstone.

use bytes::BytesMut;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{
    BatchSlots, ContentSink, Copied, CopierDeps, DOWNLOAD_ATTEMPTS, MAILBOX_SLOT_WAIT, SMALL_CONTENT_MAX, commit,
    defer, lock, tombstone, version_of,
};
use crate::graph::GraphError;
use crate::keys;
use crate::model::{ContentRef, ItemHead, ItemJob, ItemKey, ItemKind, ItemState, Verification};
use crate::pipeline::PipelineError;
use crate::pipeline::part_buffer::PartBuffer;

/// A Graph call (a moved message's lookup, the `$value` download) runs in one of the mailbox's
/// `slots`; a change that needs none (a read, a flag or a move of a message without file
/// attachments, a folder, a tombstone) takes none.
pub(super) async fn copy_state(
    deps: &CopierDeps,
    job: &ItemJob,
    key: &ItemKey,
    slots: &BatchSlots,
) -> Result<Copied, PipelineError> {
    let head = deps.catalog.head(key).await?;
    let user = key.container.graph_id.as_str();
    let (mut item, mut observed_at) = (job.item.clone(), job.observed_at);
    if item.deleted && item.kind == ItemKind::Message {
        // Left a folder: moved (its immutable id still answers) or deleted for good.
        let asked = deps.clock.now();
        let Some(found) = slots.run(deps, &key.container, deps.mail.message(user, &key.item_id)).await? else {
            return defer(deps, job, MAILBOX_SLOT_WAIT).await;
        };
        if let Some(now) = found? {
            (item, observed_at) = (now, asked);
        }
    }
    if item.deleted && item.kind == ItemKind::MailFolder && job.confirm_gone {
        // Inferred gone (a full scan missed it, or a deleted folder held it): Graph decides.
        let asked = deps.clock.now();
        let Some(found) = slots.run(deps, &key.container, deps.mail.mail_folder(user, &key.item_id)).await? else {
            return defer(deps, job, MAILBOX_SLOT_WAIT).await;
        };
        if let Some(now) = found? {
            info!(item = %key.item_id, "Graph still has a mail folder thought gone: recording its state instead");
            (item, observed_at) = (crate::pipeline::mailbox::folder_state(now), asked);
        }
    }
    if item.deleted {
        if head.as_ref().is_some_and(|h| h.current.deleted) {
            return Ok(Copied::AlreadyHeld);
        }
        let version = tombstone(key, head.as_ref(), &item, (observed_at, deps.clock.now()));
        return commit(deps, head.as_ref(), version).await.map(|_| Copied::Committed { bytes: 0 });
    }
    let Some(version) = item.etag.clone() else {
        return Err(PipelineError::MissingData("live mail item without a version marker".into()));
    };
    if head.as_ref().is_some_and(|h| h.current.version == version && !h.current.deleted) {
        return Ok(Copied::AlreadyHeld);
    }
    if item.kind != ItemKind::Message {
        let v = version_of(key, &item, &version, None, Verification::NoContent, (observed_at, deps.clock.now()));
        return commit(deps, head.as_ref(), v).await.map(|_| Copied::Committed { bytes: 0 });
    }
    let with_files = item.mail.as_ref().is_some_and(|m| m.has_attachments);
    let mut listed = None;
    if let Some(held) = reusable(head.as_ref(), &item) {
        // Not a draft: only its attachments can change its MIME. Without file attachments
        // before or after, nothing to ask; otherwise Graph's listing (no content) decides.
        if held.fingerprint.is_some() || with_files {
            let Some(now) =
                slots.run(deps, &key.container, deps.mail.attachment_fingerprint(user, &key.item_id)).await?
            else {
                return defer(deps, job, MAILBOX_SLOT_WAIT).await;
            };
            let Some(now) = now? else { return Ok(Copied::Gone) };
            listed = Some(now);
        }
        if listed == held.fingerprint {
            let at = (observed_at, deps.clock.now());
            let mut v = version_of(key, &item, &version, Some(held.content), Verification::Sha256, at);
            if let Some(meta) = v.mail.as_mut() {
                (meta.attachments, meta.attachment_fingerprint) = (held.attachments, listed);
            }
            return commit(deps, head.as_ref(), v).await.map(|_| Copied::Committed { bytes: 0 });
        }
        info!(item = %key.item_id, "a message's attachments changed: downloading its MIME again");
    }
    // The listing comes before the download: attachments changed in between make the stored
    // fingerprint older than the MIME, which costs a download later, never a missed change.
    let fetch = async {
        if listed.is_none() && with_files {
            match deps.mail.attachment_fingerprint(user, &key.item_id).await {
                Ok(Some(now)) => listed = Some(now),
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        download(deps, key, &version).await
    };
    let Some(downloaded) = slots.run(deps, &key.container, fetch).await? else {
        return defer(deps, job, MAILBOX_SLOT_WAIT).await;
    };
    let Some(downloaded) = downloaded? else { return Ok(Copied::Gone) };
    let (content, attachments) = downloaded.finish(deps, key).await?;
    let bytes = content.size;
    let mut v = version_of(key, &item, &version, Some(content), Verification::Sha256, (observed_at, deps.clock.now()));
    if let Some(meta) = v.mail.as_mut() {
        (meta.attachments, meta.attachment_fingerprint) = (attachments, listed);
    }
    commit(deps, head.as_ref(), v).await?;
    info!(item = %key.item_id, bytes, "message copied");
    Ok(Copied::Committed { bytes })
}

/// The MIME we hold for a message that is not a draft.
struct Held {
    content: ContentRef,
    attachments: Vec<crate::model::AttachmentMeta>,
    fingerprint: Option<String>,
}

/// The MIME we already hold for this message, if its body cannot have changed since: only
/// drafts change their body, and other messages only change their MIME when attachments are
/// added or removed (which the caller checks).
fn reusable(head: Option<&ItemHead>, item: &ItemState) -> Option<Held> {
    let current = &head?.current;
    let (held, now) = (current.mail.as_ref()?, item.mail.as_ref()?);
    if held.is_draft || now.is_draft || current.kind != ItemKind::Message {
        return None;
    }
    let fingerprint = held.attachment_fingerprint.clone();
    // A version stored before fingerprints were kept: a message with file attachments is
    // downloaded once more to get one.
    let fingerprint = if held.has_attachments && fingerprint.is_none() { Some(String::new()) } else { fingerprint };
    Some(Held { content: current.content.clone()?, attachments: held.attachments.clone(), fingerprint })
}

/// A message's MIME, read whole from Graph: buffered, or partly uploaded (multipart).
struct Downloaded {
    sink: ContentSink,
    sha256: String,
    len: u64,
}

impl Downloaded {
    /// Stores what was downloaded (the small-content put, or the multipart completion) and
    /// lists a buffered message's attachments.
    async fn finish(
        self,
        deps: &CopierDeps,
        key: &ItemKey,
    ) -> Result<(ContentRef, Vec<crate::model::AttachmentMeta>), PipelineError> {
        let attachments = match &self.sink {
            ContentSink::Buffer(buf) => crate::mime::attachments(buf),
            ContentSink::Multipart { .. } => Vec::new(),
        };
        let object = self.sink.finish(deps, key, &self.sha256).await?;
        Ok((ContentRef { object, size: self.len, sha256: self.sha256, quick_xor_hash: None }, attachments))
    }
}

/// Streams the message's MIME from Graph: buffered up to the small-content limit, into a
/// multipart upload beyond it. Graph serves `$value` without ranges, so an interrupted
/// download starts over. None if the message is gone.
async fn download(deps: &CopierDeps, key: &ItemKey, version: &str) -> Result<Option<Downloaded>, PipelineError> {
    let user = key.container.graph_id.as_str();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let download = match deps.mail.mime(user, &key.item_id).await {
            Ok(d) => d,
            Err(GraphError::NotFound) => return Ok(None),
            Err(e) if e.is_retryable() && !e.is_throttled() && attempt < DOWNLOAD_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        };
        let (total, mut stream) = (download.total_len, download.stream);
        let mut sink = ContentSink::Buffer(BytesMut::new());
        let mut sha = Sha256::new();
        let mut len = 0u64;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            if let ContentSink::Buffer(buf) = &sink
                && (buf.len() + chunk.len()) as u64 > SMALL_CONTENT_MAX
            {
                // Large: move what is buffered into a multipart upload to a per-version key.
                let upload = deps.vault.start_multipart(&keys::large_key(key, version), &lock(deps)).await?;
                let buffered = match std::mem::replace(&mut sink, ContentSink::Buffer(BytesMut::new())) {
                    ContentSink::Buffer(buf) => buf,
                    other => return Err(unreachable_sink(other)),
                };
                sink = ContentSink::Multipart { upload, parts: PartBuffer::new() };
                sink.write(deps, &buffered.freeze()).await?;
            }
            sha.update(&chunk);
            len += chunk.len() as u64;
            sink.write(deps, &chunk).await?;
        }
        let short = total.is_some_and(|t| t != len);
        if failed.is_some() || short {
            sink.abort(deps).await;
            let retryable = failed.as_ref().is_none_or(GraphError::is_retryable);
            if attempt >= DOWNLOAD_ATTEMPTS || !retryable {
                return Err(match failed {
                    Some(e) => e.into(),
                    None => {
                        PipelineError::ContentMismatch(format!("MIME download ended after {len} of {total:?} bytes"))
                    }
                });
            }
            warn!(item = %key.item_id, attempt, "MIME download interrupted; starting over");
            continue;
        }
        return Ok(Some(Downloaded { sink, sha256: hex::encode(sha.finalize()), len }));
    }
}

fn unreachable_sink(_: ContentSink) -> PipelineError {
    PipelineError::Internal("content sink in an impossible state".into())
}
