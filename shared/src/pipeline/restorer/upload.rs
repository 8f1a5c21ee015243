//! A file's backed-up bytes put back through an upload session, never unverified: the
//! session is opened with `deferCommit` and the version's dates (`fileSystemInfo`), the bytes
//! read from the vault are hashed as they are sent, and only bytes that hash to the version's
//! recorded SHA-256 are committed; otherwise the session is cancelled and nothing becomes
//! visible. An upload that would outlive the invocation, or that Graph throttles, stops
//! between fragments and hands back the session to resume ([`UploadResume`]); the next
//! delivery carries on from the session's `nextExpectedRanges`, or starts over if the session
//! is gone.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::debug;

use super::Context;
use crate::graph::{
    ConflictBehavior, DriveItem, FragmentResult, GraphError, SessionOptions, UPLOAD_FRAGMENT_UNIT, UploadTarget,
    UploadUrl,
};
use crate::model::{ContentRef, UploadResume};
use crate::pipeline::PipelineError;

/// Upload-session fragment: a multiple of 320 KiB, as Graph requires; 10 MiB, the top of
/// Graph's recommended 5–10 MiB, because every fragment costs SharePoint resource units (2)
/// whatever its size: at 5 MiB a large file spends the per-app budget of 1,250 units a minute
/// at about 190 GB/h, at 10 MiB at about 380, near the 400 GB/h ingress limit.
pub const FRAGMENT: usize = 32 * UPLOAD_FRAGMENT_UNIT;
/// Time kept before the invocation's deadline: one more fragment at the slowest rate the
/// client tolerates, the commit and the read-back fit in it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(60);
/// New sessions opened for one file after the first is gone (expired, cancelled).
const MAX_SESSION_RESTARTS: u32 = 3;
/// Attempts at a fragment that make no progress before the error is raised.
const MAX_STALLS: u32 = 3;

/// What sending a file came to.
pub(super) enum Sent {
    /// Every byte checked and committed: the file as Graph holds it.
    Committed(DriveItem),
    /// Stopped between fragments: carry on from `resume` after `delay`.
    Paused { resume: UploadResume, delay: Option<Duration> },
}

/// The file `target` is to become.
pub(super) struct FileUpload<'a> {
    pub item_id: &'a str,
    pub drive: &'a str,
    pub target: UploadTarget<'a>,
    pub conflict: ConflictBehavior,
    pub content: &'a ContentRef,
    pub options: SessionOptions,
}

/// Where a session stands: its URL, the next byte it expects, and the hash of the bytes
/// before it.
struct Progress {
    url: UploadUrl,
    next: u64,
    sha: Sha256,
}

/// Sends the file's bytes (see the module documentation). Takes `ctx.resume` if it is this
/// item's.
pub(super) async fn send(ctx: &mut Context<'_>, file: &FileUpload<'_>) -> Result<Sent, PipelineError> {
    let size = file.content.size;
    let resume = ctx.resume.take().filter(|r| r.item_id == file.item_id);
    let mut progress = match resume {
        Some(r) => resumed(ctx, file, &r.upload_url).await?,
        None => None,
    };
    let mut restarts = 0;
    let mut stalls = 0;
    // One fragment at least per invocation, so a chunk re-sent for time always moves on.
    let mut sent_here = false;
    loop {
        let mut p = match progress.take() {
            Some(p) => p,
            None => open(ctx, file).await?,
        };
        while p.next < size {
            if sent_here && Instant::now() + DEADLINE_MARGIN > ctx.deadline {
                debug!(item = file.item_id, offset = p.next, size, "upload paused for the next invocation");
                return Ok(paused(file, p, None));
            }
            let len = (size - p.next).min(FRAGMENT as u64);
            let body = read(ctx, file.content, p.next, len).await?;
            let answer = ctx.deps.graph.upload_fragment(&p.url, p.next, size, body.clone()).await;
            sent_here = true;
            match answer {
                Ok(FragmentResult::Accepted { next_expected }) => {
                    let at = next_expected.iter().map(|(start, _)| *start).min().unwrap_or(size);
                    if at == p.next + len {
                        p.sha.update(&body);
                        p.next = at;
                        stalls = 0;
                    } else {
                        p = rehash(ctx, file.content, p.url, at).await?;
                    }
                }
                Ok(FragmentResult::Completed(_)) => {
                    // Graph committed without waiting: what it holds is checked by the
                    // read-back, but the check before the commit could not happen.
                    return Err(PipelineError::Graph(GraphError::protocol(
                        "an upload session opened with deferCommit committed on its own",
                    )));
                }
                Err(GraphError::Throttled { retry_after, .. }) => {
                    return Ok(paused(file, p, Some(retry_after)));
                }
                Err(GraphError::UploadSessionGone) => {
                    restart(file, &mut restarts)?;
                    break;
                }
                Err(e @ (GraphError::Transient { .. } | GraphError::RangeNotSatisfiable)) if stalls < MAX_STALLS => {
                    stalls += 1;
                    match ctx.deps.graph.upload_session_status(&p.url).await? {
                        Some(status) => {
                            let at = status.next_expected.iter().map(|(start, _)| *start).min().unwrap_or(size);
                            debug!(item = file.item_id, offset = at, error = %e, "resuming upload session");
                            p = rehash(ctx, file.content, p.url, at).await?;
                        }
                        None => {
                            restart(file, &mut restarts)?;
                            break;
                        }
                    }
                }
                Err(e) => {
                    cancel(ctx, &p.url).await;
                    return Err(e.into());
                }
            }
        }
        if p.next < size {
            continue; // the session was gone: a new one starts over
        }
        let got = hex::encode(p.sha.clone().finalize());
        if got != file.content.sha256 {
            cancel(ctx, &p.url).await;
            return Err(PipelineError::ContentMismatch(format!(
                "the backed-up bytes of {} do not match their recorded SHA-256: not committed",
                file.item_id
            )));
        }
        match ctx.deps.graph.commit_upload(&p.url, file.drive).await {
            Ok(item) => return Ok(Sent::Committed(item)),
            Err(GraphError::Throttled { retry_after, .. }) => return Ok(paused(file, p, Some(retry_after))),
            // Expired before the commit: nothing was written; start over.
            Err(GraphError::UploadSessionGone) => restart(file, &mut restarts)?,
            Err(e) => return Err(e.into()),
        }
    }
}

fn paused(file: &FileUpload<'_>, p: Progress, delay: Option<Duration>) -> Sent {
    let resume = UploadResume { item_id: file.item_id.to_owned(), upload_url: p.url, next: p.next };
    Sent::Paused { resume, delay }
}

fn restart(file: &FileUpload<'_>, restarts: &mut u32) -> Result<(), PipelineError> {
    if *restarts >= MAX_SESSION_RESTARTS {
        return Err(GraphError::UploadSessionGone.into());
    }
    *restarts += 1;
    debug!(item = file.item_id, restarts = *restarts, "upload session gone, starting over");
    Ok(())
}

/// A new deferred session for the file, nothing sent yet.
async fn open(ctx: &Context<'_>, file: &FileUpload<'_>) -> Result<Progress, PipelineError> {
    let session = ctx
        .deps
        .graph
        .open_upload_session(file.drive, file.target, file.content.size, file.conflict, &file.options)
        .await?;
    Ok(Progress { url: session.upload_url, next: 0, sha: Sha256::new() })
}

/// The session an earlier invocation left, where it stands (the bytes before that hashed
/// again from the vault, not sent again); `None` if it is gone.
async fn resumed(ctx: &Context<'_>, file: &FileUpload<'_>, url: &UploadUrl) -> Result<Option<Progress>, PipelineError> {
    let Some(status) = ctx.deps.graph.upload_session_status(url).await? else {
        debug!(item = file.item_id, "the upload session to resume is gone, starting over");
        return Ok(None);
    };
    let at = status.next_expected.iter().map(|(start, _)| *start).min().unwrap_or(file.content.size);
    Ok(Some(rehash(ctx, file.content, url.clone(), at).await?))
}

/// Progress at byte `at` of the session, its hash carried over bytes `[0, at)` read again.
async fn rehash(ctx: &Context<'_>, content: &ContentRef, url: UploadUrl, at: u64) -> Result<Progress, PipelineError> {
    if at > content.size {
        return Err(GraphError::protocol("upload session expects bytes past the end of the file").into());
    }
    let mut sha = Sha256::new();
    let mut offset = 0;
    while offset < at {
        let len = (at - offset).min(FRAGMENT as u64);
        sha.update(&read(ctx, content, offset, len).await?);
        offset += len;
    }
    Ok(Progress { url, next: at, sha })
}

async fn read(ctx: &Context<'_>, content: &ContentRef, offset: u64, len: u64) -> Result<Bytes, PipelineError> {
    let body = ctx.deps.vault.get_range(&content.object, offset, len).await?;
    if body.len() as u64 != len {
        return Err(PipelineError::ContentMismatch(format!(
            "the vault gave {} bytes for a {len}-byte range of a backed-up file",
            body.len()
        )));
    }
    Ok(body)
}

/// Best effort: a session left behind expires uncommitted anyway.
async fn cancel(ctx: &Context<'_>, url: &UploadUrl) {
    if let Err(e) = ctx.deps.graph.cancel_upload(url).await {
        debug!(error = %e, "cancelling an upload session failed; it will expire uncommitted");
    }
}
