//! Turns "this container changed" into per-item copy jobs. Coalesces storms (a job enqueued
//! before the last enumeration started is already covered), pages delta with a checkpoint
//! after every page, sends itself a continuation before its deadline, stores the delta link
//! only after the last page, and on 410 (or a reconcile) runs a full enumeration that
//! re-queues whatever lacks a verified version and records deletions Graph did not report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::state::removed;
use super::throttle::paced_within;
use super::{DriveReader, MailReader, PipelineError, item_state};
use crate::graph::{DeltaCursor, DeltaLink, GraphError};
use crate::model::{
    ChangeJob, ChangeReason, ContainerId, FullScan, ItemHead, ItemJob, ItemKind, ItemState, SCHEMA_VERSION, SyncState,
    Verification,
};
use crate::store::{EnumeratorCatalog, MessageSink, OutMessage, QueueName};

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
    /// Graph refused the whole container (a mailbox deleted or unlicensed): nothing recorded.
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
    let resuming = state.next_link.is_some();
    let coalescible = matches!(job.reason, ChangeReason::Notification | ChangeReason::Sweep);
    if coalescible && !resuming && state.enumeration_started_at.is_some_and(|started| started > job.enqueued_at) {
        out.coalesced = true;
        return Ok(out);
    }

    let now = Utc::now();
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
        let delta = paced_within(deps.catalog.as_ref(), c, deadline, deps.reserve, || deps.graph.delta(&cursor)).await;
        let page = match delta {
            Ok(Some(page)) => page,
            Ok(None) => return continue_later(deps, c, &mut out).await,
            Err(PipelineError::Graph(GraphError::ResyncRequired { restart })) => {
                warn!(container = %c.scoped_id(), "delta token expired; running a full enumeration");
                state.full_scan = Some(new_scan(Utc::now(), true));
                state.next_link = None;
                deps.catalog.put_sync_state(c, &state).await?;
                cursor = match restart {
                    Some(link) => DeltaCursor::Link(link),
                    None => DeltaCursor::Start { drive_id: c.graph_id.clone() },
                };
                continue;
            }
            Err(e) => return Err(e),
        };
        out.pages += 1;
        out.full_scan |= state.full_scan.is_some();
        if let Some(root) = page.items.iter().find(|i| i.kind == crate::graph::ItemKind::Root) {
            state.root_id = Some(root.id.clone());
        }
        let states = page.items.iter().map(item_state).collect();
        out.jobs += enqueue_page(deps, c, state.full_scan.as_ref(), states).await?;
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
                    out.tombstones = tombstone_unseen(deps, c, &scan).await?;
                }
                state.delta_link = delta.map(|d| d.as_str().to_owned()).or(state.delta_link.take());
                state.next_link = None;
                state.last_synced_at = Some(Utc::now());
                deps.catalog.put_sync_state(c, &state).await?;
                info!(container = %c.scoped_id(), pages = out.pages, jobs = out.jobs, tombstones = out.tombstones, full = out.full_scan, "enumeration complete");
                return Ok(out);
            }
        }
    }
}

pub(super) fn new_scan(now: DateTime<Utc>, reconcile_deletions: bool) -> FullScan {
    FullScan { epoch: uuid::Uuid::new_v4().to_string(), started_at: now, reconcile_deletions }
}

pub(super) async fn continue_later(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    out: &mut Enumeration,
) -> Result<Enumeration, PipelineError> {
    let job = ChangeJob::new(c.clone(), ChangeReason::Continuation, Utc::now());
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

/// Queues a job for every item of the page whose state the catalog lacks. The last
/// occurrence of an item in a page wins; later pages are handled the same way.
pub(super) async fn enqueue_page(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    scan: Option<&FullScan>,
    items: Vec<ItemState>,
) -> Result<usize, PipelineError> {
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
    let ids: Vec<String> = order.clone();
    let heads = deps.catalog.heads(c, &ids).await?;
    if let Some(scan) = scan {
        let seen: Vec<String> =
            ids.iter().filter(|id| heads.contains_key(*id) && !latest[id.as_str()].deleted).cloned().collect();
        deps.catalog.mark_seen(c, &seen, &scan.epoch).await?;
    }
    let observed_at = Utc::now();
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
        };
        let message = OutMessage { body: serde_json::to_string(&job).unwrap_or_default(), group_id: None, delay: None };
        if big { large.push(message) } else { small.push(message) }
    }
    let count = small.len() + large.len();
    send(deps.sink.as_ref(), QueueName::Items, small).await?;
    send(deps.sink.as_ref(), QueueName::ItemsLarge, large).await?;
    Ok(count)
}

/// After a full enumeration: items the catalog holds as alive that the scan did not see,
/// and that were committed before it began, are gone from Microsoft 365.
pub(super) async fn tombstone_unseen(
    deps: &EnumeratorDeps,
    c: &ContainerId,
    scan: &FullScan,
) -> Result<usize, PipelineError> {
    if !scan.reconcile_deletions {
        return Ok(0);
    }
    let observed_at = Utc::now();
    let mut seen_ids = HashSet::new();
    let mut messages = Vec::new();
    for head in deps.catalog.list_heads(c).await? {
        let current = &head.current;
        let unseen = head.seen_epoch.as_deref() != Some(scan.epoch.as_str());
        if current.deleted
            || !unseen
            || current.captured_at >= scan.started_at
            || !seen_ids.insert(current.key.item_id.clone())
        {
            continue;
        }
        messages.push(tombstone_job(c, current, None, observed_at, Some(scan.epoch.clone())));
    }
    let count = messages.len();
    if count > 0 {
        warn!(container = %c.scoped_id(), count, "recording deletions found by a full enumeration");
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

/// A job recording that a held item is gone.
pub(super) fn tombstone_job(
    c: &ContainerId,
    held: &crate::model::ItemVersion,
    parent_id: Option<String>,
    observed_at: chrono::DateTime<Utc>,
    scan_epoch: Option<String>,
) -> OutMessage {
    let item = removed(held.key.item_id.clone(), held.kind, parent_id.as_deref());
    let job = ItemJob { v: SCHEMA_VERSION, container: c.clone(), item, observed_at, scan_epoch, deferrals: 0 };
    OutMessage { body: serde_json::to_string(&job).unwrap_or_default(), group_id: None, delay: None }
}
