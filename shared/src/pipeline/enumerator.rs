//! Turns "this container changed" into per-item copy jobs. Coalesces storms (a job enqueued
//! before the start of an enumeration that has since completed is already covered), pages
//! delta with a checkpoint after every page, sends itself a continuation before its deadline,
//! stores the delta link only after the last page, and on 410 (or a reconcile) runs a full
//! enumeration that re-queues whatever lacks a verified version and records deletions Graph
//! did not report. A folder reported deleted takes its descendants with it, whether or not
//! Graph lists their deletions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::state::removed;
use super::throttle::paced_within;
use super::{DriveReader, MailReader, PipelineError, item_state};
use crate::graph::{DeltaCursor, DeltaLink, GraphError, UnusableItem};
use crate::model::{
    ChangeJob, ChangeReason, ContainerId, FullScan, ItemHead, ItemJob, ItemKind, ItemState, ItemVersion, Problem,
    SCHEMA_VERSION, SyncState, Verification,
};
use crate::store::{EnumeratorCatalog, MessageSink, OutMessage, QueueName, seen_mark};

pub struct EnumeratorDeps {
    pub graph: Arc<dyn DriveReader>,
    pub mail: Arc<dyn MailReader>,
    pub catalog: Arc<dyn EnumeratorCatalog>,
    pub sink: Arc<dyn MessageSink>,
    pub large_item_bytes: u64,
    /// Stop paging and continue in a new invocation when less than this is left.
    pub reserve: Duration,
    pub clock: Arc<dyn crate::clock::Clock>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Enumeration {
    /// The job was covered by an enumeration that started after it was enqueued.
    pub coalesced: bool,
    pub pages: usize,
    pub jobs: usize,
    pub tombstones: usize,
    /// Paging stopped before the end; a continuation was sent.
    pub continued: bool,
    /// A full enumeration ran (first crawl, resync or reconcile).
    pub full_scan: bool,
    /// Graph refused the whole container (a mailbox deleted or unlicensed, a library deleted,
    /// a site archived): nothing recorded.
    pub unavailable: bool,
}

/// Handles one `changes` message.
pub async fn enumerate(
    deps: &EnumeratorDeps,
    job: &ChangeJob,
    deadline: Instant,
) -> Result<Enumeration, PipelineError> {
    if job.v != SCHEMA_VERSION {
        return Err(PipelineError::BadMessage(format!("unknown schema version {}", job.v)));
    }
    if job.container.is_mailbox() {
        return super::mailbox::enumerate(deps, job, deadline).await;
    }
    let c = &job.container;
    let mut state = deps.catalog.sync_state(c).await?;
    let mut out = Enumeration::default();
    if covered(&state, job) {
        out.coalesced = true;
        return Ok(out);
    }
    if state.next_link.is_some() && needs_own_full_scan(&state, job) {
        // A reconcile compares in full: an incremental pass (or a full one that began before
        // it was asked for) in progress is dropped and a full one starts over.
        info!(container = %c.scoped_id(), "reconcile asked during a pass: starting a full enumeration");
        state.next_link = None;
    }

    let now = deps.clock.now();
    let mut cursor = if let Some(next) = state.next_link.clone() {
        DeltaCursor::Link(DeltaLink::new(next))
    } else {
        state.enumeration_started_at = Some(now);
        match (&state.delta_link, job.reason) {
            (Some(link), r) if r != ChangeReason::Reconcile => DeltaCursor::Link(DeltaLink::new(link.clone())),
            (link, _) => {
                state.full_scan = Some(new_scan(now, link.is_some()));
                DeltaCursor::Start { drive_id: c.graph_id.clone() }
            }
        }
    };
    deps.catalog.put_sync_state(c, &state).await?;

    loop {
        // Graph served this page's states at or after this moment.
        let observed_at = deps.clock.now();
        let budget = Some(deps.graph.as_ref());
        let delta = paced_within(deps.catalog.as_ref(), deps.clock.as_ref(), c, budget, deadline, deps.reserve, || {
            deps.graph.delta(&cursor)
        })
        .await;
        let page = match delta {
            Ok(Some(page)) => page,
            Ok(None) => return continue_later(deps, c, &mut out).await,
            Err(PipelineError::Graph(GraphError::ResyncRequired { restart })) => {
                warn!(container = %c.scoped_id(), "delta token expired; running a full enumeration");
                state.full_scan = Some(new_scan(deps.clock.now(), true));
                state.next_link = None;
                deps.catalog.put_sync_state(c, &state).await?;
                cursor = match restart {
                    Some(link) => DeltaCursor::Link(link),
                    None => DeltaCursor::Start { drive_id: c.graph_id.clone() },
                };
                continue;
            }
            Err(PipelineError::Graph(e)) if e.refuses_resource() => {
                return drive_unavailable(deps, c, &mut state, &cursor, &e, out).await;
            }
            Err(e) => return Err(e),
        };
        out.pages += 1;
        out.full_scan |= state.full_scan.is_some();
        if let Some(root) = page.items.iter().find(|i| i.kind == crate::graph::ItemKind::Root) {
            state.root_id = Some(root.id.clone());
        }
        record_unusable(deps, c, state.full_scan.as_ref(), &page.unusable).await?;
        let states = page.items.iter().map(item_state).collect();
        let (jobs, tombstones) = enqueue_page(deps, c, state.full_scan.as_ref(), states, observed_at).await?;
        out.jobs += jobs;
        out.tombstones += tombstones;
        state.items_enqueued += page.items.len() as u64;

        match (page.next, page.delta) {
            (Some(next), _) => {
                state.next_link = Some(next.as_str().to_owned());
                deps.catalog.put_sync_state(c, &state).await?;
                cursor = DeltaCursor::Link(next);
                if deadline.saturating_duration_since(Instant::now()) < deps.reserve {
                    return continue_later(deps, c, &mut out).await;
                }
            }
            (None, delta) => {
                if let Some(scan) = state.full_scan.take() {
                    out.tombstones += tombstone_unseen(deps, c, &scan).await?;
                }
                state.delta_link = delta.map(|d| d.as_str().to_owned()).or(state.delta_link.take());
                state.next_link = None;
                state.unavailable = None;
                state.last_synced_at = Some(deps.clock.now());
                deps.catalog.put_sync_state(c, &state).await?;
                info!(container = %c.scoped_id(), pages = out.pages, jobs = out.jobs, tombstones = out.tombstones, full = out.full_scan, "enumeration complete");
                return Ok(out);
            }
        }
    }
}

/// Graph refuses the whole drive: a library deleted (404), a site archived or locked (423),
/// access withdrawn (403). Like an unavailable mailbox, the pass stops with nothing
/// tombstoned (nobody deleted its files), its links kept so that it resumes if the drive
/// comes back, and the refusal recorded for `/v1/resources`. A full scan refused on its first
/// page has seen nothing: it is dropped rather than left to judge a later incremental pass.
async fn drive_unavailable(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    state: &mut SyncState,
    cursor: &DeltaCursor,
    error: &GraphError,
    mut out: Enumeration,
) -> Result<Enumeration, PipelineError> {
    let reason = error.to_string();
    warn!(container = %c.scoped_id(), %reason, "drive unavailable; its backup is kept as it is");
    if matches!(cursor, DeltaCursor::Start { .. }) {
        state.full_scan = None;
    }
    let since = state.unavailable.as_ref().map_or_else(|| deps.clock.now(), |u| u.since);
    state.unavailable = Some(Problem { reason, since });
    deps.catalog.put_sync_state(c, state).await?;
    out.unavailable = true;
    Ok(out)
}

/// Whether an enumeration that began after this job was enqueued has completed: the job's
/// change is in it. Reconciles and continuations are never covered this way. An enumeration
/// that began but failed covers nothing, so its retry runs (and one that keeps failing reaches
/// the dead-letter queue and its alarm, instead of being acknowledged unprocessed).
pub(super) fn covered(state: &SyncState, job: &ChangeJob) -> bool {
    let coalescible = matches!(job.reason, ChangeReason::Notification | ChangeReason::Sweep);
    let completed_after = match (state.enumeration_started_at, state.last_synced_at) {
        (Some(started), Some(done)) => started > job.enqueued_at && done >= started,
        _ => false,
    };
    coalescible && completed_after
}

/// A reconcile is absorbed only by a full scan that began after it was asked for.
pub(super) fn needs_own_full_scan(state: &SyncState, job: &ChangeJob) -> bool {
    job.reason == ChangeReason::Reconcile
        && state.full_scan.as_ref().is_none_or(|scan| scan.started_at < job.enqueued_at)
}

/// Items of a page whose JSON Graph sent malformed or unusable: each becomes that item's
/// failure (the rest of the page goes on; the next full scan tries it again), and a full scan
/// counts it as seen, so what we hold of it is never taken for deleted.
async fn record_unusable(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    scan: Option<&FullScan>,
    unusable: &[UnusableItem],
) -> Result<(), PipelineError> {
    if unusable.is_empty() {
        return Ok(());
    }
    let now = deps.clock.now();
    for bad in unusable {
        let id = bad.id.as_deref().unwrap_or(UNREADABLE_ITEM);
        warn!(container = %c.scoped_id(), item = %id, reason = %bad.reason, "an item of a delta page is unusable");
        deps.catalog
            .record_failure(&c.item(id), &format!("Graph sent this item unusable: {}", bad.reason), now)
            .await?;
    }
    if let Some(scan) = scan {
        let ids: Vec<String> = unusable.iter().filter_map(|bad| bad.id.clone()).collect();
        deps.catalog.record_seen(c, &scan.epoch, &ids).await?;
    }
    Ok(())
}

/// The failure row of a delta item whose id itself could not be read.
const UNREADABLE_ITEM: &str = "(item without a readable id)";

pub(super) fn new_scan(now: DateTime<Utc>, reconcile_deletions: bool) -> FullScan {
    FullScan { epoch: uuid::Uuid::new_v4().to_string(), started_at: now, reconcile_deletions }
}

pub(super) async fn continue_later(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    out: &mut Enumeration,
) -> Result<Enumeration, PipelineError> {
    let job = ChangeJob::new(c.clone(), ChangeReason::Continuation, deps.clock.now());
    send(deps.sink.as_ref(), QueueName::Changes, vec![change_message(&job)]).await?;
    out.continued = true;
    Ok(out.clone())
}

pub fn change_message(job: &ChangeJob) -> OutMessage {
    OutMessage {
        body: serde_json::to_string(job).unwrap_or_default(),
        group_id: Some(job.container.group_id()),
        delay: None,
    }
}

pub(super) async fn send(
    sink: &dyn MessageSink,
    queue: QueueName,
    messages: Vec<OutMessage>,
) -> Result<(), PipelineError> {
    if !messages.is_empty() {
        sink.send(queue, messages).await?;
    }
    Ok(())
}

/// A head that already holds this state, verified: no job needed.
fn holds(head: &ItemHead, item: &ItemState) -> bool {
    let current = &head.current;
    if item.deleted {
        // A message that left a folder it is no longer recorded in has been recorded in the
        // folder it moved to: nothing left to record for this removal.
        let moved_on =
            item.kind == ItemKind::Message && item.parent_id.is_some() && item.parent_id != current.parent_id;
        return current.deleted || moved_on;
    }
    !current.deleted
        && item.etag.as_deref() == Some(current.version.as_str())
        && (current.verification != Verification::Unverified || item.quick_xor_hash.is_none())
}

/// Queues a job for every item of the page whose state the catalog lacks, and for every
/// descendant the catalog holds alive of a folder the page reports deleted (Graph does not
/// always list those deletions). The last occurrence of an item in a page wins; later pages
/// are handled the same way. During a full scan, records what the page saw (one write per
/// page). Returns (item jobs, inferred deletions).
pub(super) async fn enqueue_page(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    scan: Option<&FullScan>,
    items: Vec<ItemState>,
    observed_at: DateTime<Utc>,
) -> Result<(usize, usize), PipelineError> {
    let mut latest: HashMap<String, ItemState> = HashMap::new();
    let mut order = Vec::new();
    for state in items {
        if state.kind == ItemKind::Root {
            continue;
        }
        let id = state.id.clone();
        if latest.insert(id.clone(), state).is_none() {
            order.push(id);
        }
    }
    if let Some(scan) = scan {
        let seen: Vec<String> = order.iter().filter(|id| !latest[id.as_str()].deleted).cloned().collect();
        deps.catalog.record_seen(c, &scan.epoch, &seen).await?;
    }
    let heads = deps.catalog.heads(c, &order).await?;
    let deleted_folders: Vec<&str> = order
        .iter()
        .filter(|id| {
            let state = &latest[id.as_str()];
            // A removed item's kind is what the feed says, or what we hold.
            let held_kind = heads.get(*id).map(|h| h.current.kind);
            state.deleted && [Some(state.kind), held_kind].iter().any(|k| k.is_some_and(|k| k.is_container()))
        })
        .map(String::as_str)
        .collect();
    let cascade = if deleted_folders.is_empty() {
        Vec::new()
    } else {
        // What the page lists gets its own job: one it reports alive (moved out first) keeps its
        // descendants; one it reports deleted still has its descendants walked.
        let listed_here: HashMap<&str, bool> =
            order.iter().map(|id| (id.as_str(), latest[id.as_str()].deleted)).collect();
        descendants_to_tombstone(deps, c, &deleted_folders, &listed_here, observed_at).await?
    };
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for id in &order {
        let state = latest.remove(id).unwrap_or_else(|| unreachable!());
        // An item deleted before we ever held it still gets a tombstone job, so a late copy
        // of its creation can never become its current state.
        if heads.get(id).is_some_and(|head| holds(head, &state)) {
            continue;
        }
        let big = state.size.unwrap_or(0) >= deps.large_item_bytes;
        let job = ItemJob {
            v: SCHEMA_VERSION,
            container: c.clone(),
            item: state,
            observed_at,
            scan_epoch: scan.map(|s| s.epoch.clone()),
            deferrals: 0,
            confirm_gone: false,
        };
        let message = OutMessage { body: serde_json::to_string(&job).unwrap_or_default(), group_id: None, delay: None };
        if big { large.push(message) } else { small.push(message) }
    }
    let (jobs, inferred) = (small.len() + large.len(), cascade.len());
    if inferred > 0 {
        warn!(container = %c.scoped_id(), count = inferred, "a deleted folder takes descendants Graph did not list");
    }
    small.extend(cascade);
    send(deps.sink.as_ref(), QueueName::Items, small).await?;
    send(deps.sink.as_ref(), QueueName::ItemsLarge, large).await?;
    Ok((jobs, inferred))
}

/// Tombstone jobs, to be confirmed with Graph, for every item the catalog holds alive under
/// the deleted folders (at any depth), except those the same page lists (by id: whether it
/// reports them deleted). Reads the
/// container's heads from the index, which may lag: a descendant committed moments ago can be
/// missed here, and is then found by the next full scan.
pub(super) async fn descendants_to_tombstone(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    deleted_folders: &[&str],
    listed_here: &HashMap<&str, bool>,
    observed_at: DateTime<Utc>,
) -> Result<Vec<OutMessage>, PipelineError> {
    let heads = deps.catalog.list_heads(c).await?;
    let mut children: HashMap<&str, Vec<&ItemVersion>> = HashMap::new();
    for head in heads.iter().filter(|h| !h.current.deleted) {
        if let Some(parent) = head.current.parent_id.as_deref() {
            children.entry(parent).or_default().push(&head.current);
        }
    }
    let mut doomed: Vec<&str> = deleted_folders.to_vec();
    let mut visited: HashSet<&str> = doomed.iter().copied().collect();
    let mut messages = Vec::new();
    while let Some(parent) = doomed.pop() {
        for v in children.get(parent).into_iter().flatten() {
            let id = v.key.item_id.as_str();
            let listed = listed_here.get(id).copied();
            if listed == Some(false) || !visited.insert(id) {
                continue;
            }
            doomed.push(id);
            if listed == Some(true) {
                continue;
            }
            messages.push(tombstone_job(c, v, v.parent_id.clone(), observed_at, None, true));
        }
    }
    Ok(messages)
}

/// After a full enumeration: items the catalog holds as alive that the scan did not see,
/// and that were committed before it began, may be gone from Microsoft 365. Which items the
/// scan saw is read strongly consistently (its marks), and each candidate's head is read
/// again strongly consistently (the list of heads comes from an index that may lag); each
/// resulting deletion is confirmed with Graph by the copier before it is recorded.
pub(super) async fn tombstone_unseen(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    scan: &FullScan,
) -> Result<usize, PipelineError> {
    if !scan.reconcile_deletions {
        return Ok(0);
    }
    let observed_at = deps.clock.now();
    let seen = deps.catalog.seen_in_scan(c, &scan.epoch).await?;
    let candidates: Vec<String> = deps
        .catalog
        .list_heads(c)
        .await?
        .into_iter()
        .filter(|h| !h.current.deleted && !seen.contains(&seen_mark(&h.current.key.item_id)))
        .map(|h| h.current.key.item_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut messages = Vec::new();
    for head in deps.catalog.heads(c, &candidates).await?.into_values() {
        let current = &head.current;
        if current.deleted || current.captured_at >= scan.started_at {
            continue;
        }
        messages.push(tombstone_job(c, current, None, observed_at, Some(scan.epoch.clone()), true));
    }
    let count = messages.len();
    if count > 0 {
        warn!(container = %c.scoped_id(), count, "a full enumeration did not see items held alive; confirming each");
    }
    send(deps.sink.as_ref(), QueueName::Items, messages).await?;
    Ok(count)
}

/// For the state of an in-progress or finished enumeration (health reporting).
pub fn describe(state: &SyncState) -> &'static str {
    if state.unavailable.is_some() {
        return "unavailable";
    }
    match (state.full_scan.is_some(), state.next_link.is_some(), state.delta_link.is_some()) {
        (true, _, _) => "full enumeration in progress",
        (false, true, _) => "incremental enumeration in progress",
        (false, false, true) => "in sync",
        (false, false, false) => "never enumerated",
    }
}

/// A job recording that a held item is gone; `confirm_gone` when we inferred it.
pub(super) fn tombstone_job(
    c: &ContainerId,
    held: &ItemVersion,
    parent_id: Option<String>,
    observed_at: DateTime<Utc>,
    scan_epoch: Option<String>,
    confirm_gone: bool,
) -> OutMessage {
    let item = removed(held.key.item_id.clone(), held.kind, parent_id.as_deref());
    let job =
        ItemJob { v: SCHEMA_VERSION, container: c.clone(), item, observed_at, scan_epoch, deferrals: 0, confirm_gone };
    OutMessage { body: serde_json::to_string(&job).unwrap_or_default(), group_id: None, delay: None }
}
