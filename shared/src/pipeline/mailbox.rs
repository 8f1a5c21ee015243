//! Enumerates a mailbox: the container of its folders and messages. Exchange has no
//! mailbox-wide message delta, so one pass is the folder delta (folders created, renamed,
//! moved, deleted) and then every folder's own message delta, each with its link in the
//! mailbox's [`SyncState`]. Every page is checkpointed; a pass cut short by the deadline is
//! finished by a continuation, folder by folder, without repeating a folder it completed.
//! An expired link anywhere restarts the whole pass as a full enumeration that re-queues what
//! lacks a version and records deletions the feeds did not report.

use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::enumerator::{
    Enumeration, EnumeratorDeps, continue_later, covered, enqueue_page, needs_own_full_scan, new_scan, tombstone_unseen,
};
use super::throttle::paced_within;
use super::{MailPage, PipelineError};
use crate::graph::GraphError;
use crate::model::{ChangeJob, ChangeReason, ContainerId, FolderSync, ItemKind, ItemState, Problem, SyncState};

/// What a page request is about.
#[derive(Clone, Copy)]
enum Feed<'a> {
    Folders,
    Messages(&'a str),
}

pub async fn enumerate(
    deps: &EnumeratorDeps,
    job: &ChangeJob,
    deadline: Instant,
) -> Result<Enumeration, PipelineError> {
    let c = &job.container;
    let mut state = deps.catalog.sync_state(c).await?;
    let mut out = Enumeration::default();
    let in_progress =
        state.enumeration_started_at.is_some_and(|started| state.last_synced_at.is_none_or(|done| done < started));
    if covered(&state, job) {
        out.coalesced = true;
        return Ok(out);
    }
    if !in_progress || needs_own_full_scan(&state, job) {
        start_pass(&mut state, job.reason == ChangeReason::Reconcile, deps.clock.now());
        // Once per mailbox: browsing starts from the root, which no folder delta lists.
        if state.root_id.is_none() {
            match deps.mail.root_folder_id(&c.graph_id).await {
                Ok(root) => state.root_id = root,
                Err(e) if e.is_mailbox_unavailable() => return mark_unavailable(deps, c, &mut state, &e, out).await,
                Err(e) => return Err(e.into()),
            }
        }
        deps.catalog.put_sync_state(c, &state).await?;
    }

    loop {
        match run_pass(deps, c, &mut state, &mut out, deadline).await {
            Ok(true) => break,
            Ok(false) => return continue_later(deps, c, &mut out).await,
            Err(PipelineError::Graph(GraphError::ResyncRequired { .. })) => {
                warn!(container = %c.scoped_id(), "a mail delta token expired; running a full enumeration");
                start_pass(&mut state, true, deps.clock.now());
                deps.catalog.put_sync_state(c, &state).await?;
            }
            Err(PipelineError::Graph(e)) if e.is_mailbox_unavailable() => {
                return mark_unavailable(deps, c, &mut state, &e, out).await;
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(scan) = state.full_scan.take() {
        out.tombstones += tombstone_unseen(deps, c, &scan).await?;
    }
    state.unavailable = None;
    state.last_synced_at = Some(deps.clock.now());
    deps.catalog.put_sync_state(c, &state).await?;
    info!(container = %c.scoped_id(), pages = out.pages, jobs = out.jobs, tombstones = out.tombstones, full = out.full_scan, "mailbox enumeration complete");
    Ok(out)
}

/// Graph refused the whole mailbox (deleted, unlicensed, access denied): the pass stops where
/// it is, with nothing tombstoned (its owner deleted nothing), its links and any full scan kept
/// so that it resumes if the mailbox comes back, and the refusal recorded for the health
/// report. The job is done: retrying it would answer the same until someone acts.
async fn mark_unavailable(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    state: &mut SyncState,
    error: &GraphError,
    mut out: Enumeration,
) -> Result<Enumeration, PipelineError> {
    let reason = error.to_string();
    warn!(container = %c.scoped_id(), %reason, "mailbox unavailable; its backup is kept as it is");
    let since = state.unavailable.as_ref().map_or_else(|| deps.clock.now(), |u| u.since);
    state.unavailable = Some(Problem { reason, since });
    deps.catalog.put_sync_state(c, state).await?;
    out.unavailable = true;
    Ok(out)
}

/// Begins a pass; a full one forgets every link (each feed then starts from nothing).
fn start_pass(state: &mut SyncState, full: bool, now: DateTime<Utc>) {
    state.enumeration_started_at = Some(now);
    state.next_link = None;
    if full || state.delta_link.is_none() {
        state.full_scan = Some(new_scan(now, state.delta_link.is_some() || full));
        state.delta_link = None;
        for folder in state.mail_folders.values_mut() {
            *folder = FolderSync::default();
        }
    }
}

/// Runs the pass to its end (true) or until the deadline's reserve (false).
async fn run_pass(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    state: &mut SyncState,
    out: &mut Enumeration,
    deadline: Instant,
) -> Result<bool, PipelineError> {
    let started = state.enumeration_started_at.unwrap_or_else(Utc::now);
    out.full_scan |= state.full_scan.is_some();
    // The folder tree first: messages of a new folder are then read in this same pass.
    while state.folders_synced_at.is_none_or(|at| at < started) {
        let link = state.next_link.clone().or_else(|| state.delta_link.clone());
        let observed_at = deps.clock.now();
        let Some(page) = page(deps, c, Feed::Folders, link.as_deref(), deadline).await? else { return Ok(false) };
        out.pages += 1;
        for folder in &page.items {
            if folder.deleted {
                state.mail_folders.remove(&folder.id);
            } else {
                state.mail_folders.entry(folder.id.clone()).or_default();
            }
        }
        // A deleted folder's messages and subfolders are tombstoned with it (the copier
        // re-checks each message with Graph: one that moved out first is recorded where it went).
        let folders = page.items.into_iter().map(folder_state).collect();
        let (jobs, tombstones) = enqueue_page(deps, c, state.full_scan.as_ref(), folders, observed_at).await?;
        (out.jobs, out.tombstones) = (out.jobs + jobs, out.tombstones + tombstones);
        match (page.next, page.delta) {
            (Some(next), _) => state.next_link = Some(next),
            (None, delta) => {
                state.delta_link = delta.or(state.delta_link.take());
                state.next_link = None;
                state.folders_synced_at = Some(deps.clock.now());
            }
        }
        deps.catalog.put_sync_state(c, state).await?;
        if deadline.saturating_duration_since(Instant::now()) < deps.reserve {
            return Ok(false);
        }
    }

    let folders: Vec<String> = state.mail_folders.keys().cloned().collect();
    for folder_id in folders {
        while let Some(sync) = state.mail_folders.get(&folder_id).cloned() {
            if sync.synced_at.is_some_and(|at| at >= started) {
                break;
            }
            let link = sync.next_link.clone().or_else(|| sync.delta_link.clone());
            let observed_at = deps.clock.now();
            let page = match page(deps, c, Feed::Messages(&folder_id), link.as_deref(), deadline).await {
                Ok(Some(page)) => page,
                Ok(None) => return Ok(false),
                // Graph says no such folder (a refused stored link is a resync, never this): its
                // state goes only once Graph confirms the folder is gone; the folder delta
                // records its deletion.
                Err(PipelineError::Graph(GraphError::NotFound)) => {
                    if deps.mail.mail_folder(&c.graph_id, &folder_id).await?.is_some() {
                        return Err(GraphError::transient("a folder Graph still has refused its message delta").into());
                    }
                    state.mail_folders.remove(&folder_id);
                    deps.catalog.put_sync_state(c, state).await?;
                    break;
                }
                Err(e) => return Err(e),
            };
            out.pages += 1;
            let items = page
                .items
                .into_iter()
                .map(|mut m| {
                    if m.deleted {
                        m.parent_id = Some(folder_id.clone());
                    }
                    m.kind = ItemKind::Message;
                    m
                })
                .collect();
            let (jobs, tombstones) = enqueue_page(deps, c, state.full_scan.as_ref(), items, observed_at).await?;
            (out.jobs, out.tombstones) = (out.jobs + jobs, out.tombstones + tombstones);
            let entry = state.mail_folders.entry(folder_id.clone()).or_default();
            match (page.next, page.delta) {
                (Some(next), _) => entry.next_link = Some(next),
                (None, delta) => {
                    entry.delta_link = delta.or(entry.delta_link.take());
                    entry.next_link = None;
                    entry.synced_at = Some(deps.clock.now());
                }
            }
            deps.catalog.put_sync_state(c, state).await?;
            if deadline.saturating_duration_since(Instant::now()) < deps.reserve {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// One page of a feed, waiting out shared throttling while the deadline allows (None: it
/// does not; the caller continues in a new invocation).
async fn page(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    feed: Feed<'_>,
    link: Option<&str>,
    deadline: Instant,
) -> Result<Option<MailPage>, PipelineError> {
    let user = c.graph_id.as_str();
    // No SharePoint budget: Exchange throttles each mailbox on its own.
    paced_within(deps.catalog.as_ref(), deps.clock.as_ref(), c, None, deadline, deps.reserve, || match feed {
        Feed::Folders => deps.mail.folder_delta(user, link),
        Feed::Messages(folder) => deps.mail.message_delta(user, folder, link),
    })
    .await
}

/// A folder's state as a versioned item. Graph gives mail folders no version marker, so the
/// version is derived from what a restore needs of a folder: its name and its parent.
pub(super) fn folder_state(mut f: ItemState) -> ItemState {
    f.kind = ItemKind::MailFolder;
    if !f.deleted {
        let marker =
            format!("{}\u{0}{}", f.name.as_deref().unwrap_or_default(), f.parent_id.as_deref().unwrap_or_default());
        f.etag = Some(format!("folder.{}", crate::keys::opaque_id(&marker)));
    }
    f
}
