//! Backs up one item state. Skips what the catalog already holds; records renames, moves
//! and deletions without downloading; otherwise streams the content from Graph, hashing it
//! (SHA-256 and quickXorHash) as it flows, into the vault under Object Lock, then writes the
//! immutable record, then commits the catalog row. Bytes that do not match a state Graph
//! vouches for are never recorded as that state.

mod mail;
mod slots;

pub use slots::BatchSlots;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::order;
use super::part_buffer::PartBuffer;
use super::retention::Policy;
use super::throttle::{Paced, paced};
use super::{DriveReader, MailReader, PipelineError, item_state};
use crate::graph::GraphError;
use crate::graph::quickxor::QuickXorHasher;
use crate::keys;
use crate::model::{
    ContentRef, ItemHead, ItemJob, ItemKey, ItemState, ItemVersion, ObjectRef, SCHEMA_VERSION, Verification,
};
use crate::store::{CopierCatalog, Lock, LockMode, MessageSink, Multipart, OutMessage, QueueName, StoreError, Vault};

/// Content up to this size is buffered, addressed by SHA-256 and stored once per tenant.
pub const SMALL_CONTENT_MAX: u64 = 8 * 1024 * 1024;
/// Download attempts (resuming with Range) before the job is handed back to the queue.
const DOWNLOAD_ATTEMPTS: u32 = 4;

pub struct CopierDeps {
    pub graph: Arc<dyn DriveReader>,
    pub mail: Arc<dyn MailReader>,
    pub vault: Arc<dyn Vault>,
    pub catalog: Arc<dyn CopierCatalog>,
    pub sink: Arc<dyn MessageSink>,
    pub lock_mode: LockMode,
    pub retention_days: u32,
    pub large_item_bytes: u64,
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    /// A new version was committed; `bytes` were downloaded for it (0 for metadata-only).
    Committed { bytes: u64 },
    /// The catalog already held this state.
    AlreadyHeld,
    /// Graph no longer has the item; the delta feed will report the deletion.
    Gone,
    /// The item changed since the job and, without a hash, the bytes downloaded cannot be told
    /// apart from the new state's: nothing recorded; the delta feed brings the new state.
    Superseded,
    /// Graph throttles us: the job was re-sent with a delay (no receive count burnt).
    Deferred(Duration),
    /// The item cannot be backed up (e.g. 403); reported in the catalog with the reason.
    Failed(String),
}

/// Concurrent copies per mailbox, across every copier instance.
pub const MAILBOX_COPY_SLOTS: u32 = 3;
/// A single job's slot lease (a batch's leases run to its deadline): longer than a copy, short
/// enough that a crashed worker's slot comes back soon.
const MAILBOX_SLOT_LEASE: chrono::Duration = chrono::Duration::minutes(10);
/// How long a job whose mailbox's slots are all held elsewhere waits in the queue before it
/// asks again.
pub(super) const MAILBOX_SLOT_WAIT: Duration = Duration::from_secs(2);
/// How long a batch holding no slot of a mailbox keeps asking before its jobs of that mailbox
/// wait in the queue instead: about what a busy batch's copies take to give one back.
pub const MAILBOX_SLOT_PATIENCE: Duration = Duration::from_secs(2);

/// Handles one `items` message, including throttling and per-item failures, as a batch of
/// one: a mailbox slot it needs is taken for it alone, and not waited for.
pub async fn copy(deps: &CopierDeps, job: &ItemJob) -> Result<Copied, PipelineError> {
    let slots = BatchSlots::new([&job.container], deps.clock.now() + MAILBOX_SLOT_LEASE, Duration::ZERO);
    let copied = copy_in_batch(deps, job, &slots).await;
    slots.release_all(deps).await;
    copied
}

/// Handles one message of a batch whose mailbox slots `slots` holds (made for the batch's
/// jobs, this one included).
pub async fn copy_in_batch(deps: &CopierDeps, job: &ItemJob, slots: &BatchSlots) -> Result<Copied, PipelineError> {
    let copied = copy_job(deps, job, slots).await;
    slots.finished(deps, &job.container).await;
    copied
}

async fn copy_job(deps: &CopierDeps, job: &ItemJob, slots: &BatchSlots) -> Result<Copied, PipelineError> {
    if job.v != SCHEMA_VERSION {
        return Err(PipelineError::BadMessage(format!("unknown schema version {}", job.v)));
    }
    let key = job.container.item(job.item.id.clone());
    let copying = copy_state(deps, job, &key, slots);
    // SharePoint's budget paces drives only; Exchange throttles each mailbox on its own.
    let budget = (!key.container.is_mailbox()).then_some(deps.graph.as_ref());
    match paced(deps.catalog.as_ref(), deps.clock.as_ref(), &key.container, budget, copying).await {
        Ok(Paced::Answered(copied)) => Ok(copied),
        Ok(Paced::Throttled(wait)) => defer(deps, job, wait).await,
        Err(PipelineError::Graph(e)) if refusal(&key, &e).is_some() => {
            let reason = refusal(&key, &e).unwrap_or_default();
            warn!(item = %key.item_id, %reason, "item cannot be backed up");
            deps.catalog.record_failure(&key, &reason, deps.clock.now()).await?;
            Ok(Copied::Failed(reason))
        }
        Err(e) => Err(e),
    }
}

/// Why Graph's answer means this item cannot be copied now, whatever we retry: it is recorded
/// as the item's failure (never silently skipped; reconcile tries again) instead of burning
/// the message's receives. A mailbox that is gone or refused takes nothing with it: no
/// tombstone is written, what was backed up stays current. A message Exchange refuses to
/// serve (another 4xx) is one item, not the mailbox.
fn refusal(key: &ItemKey, e: &GraphError) -> Option<String> {
    match e {
        GraphError::Forbidden { code } => Some(format!("Graph refused access to the content ({code})")),
        GraphError::MailboxUnavailable { code } => {
            Some(format!("mailbox unavailable ({code}); versions already backed up are kept"))
        }
        GraphError::Http { status, code, .. } if key.container.is_mailbox() && (400..500).contains(status) => {
            Some(format!("Graph refused the message (HTTP {status}, {code})"))
        }
        _ => None,
    }
}

/// Sends the job back to its queue, to be tried again after `wait` (plus jitter).
pub(super) async fn defer(deps: &CopierDeps, job: &ItemJob, wait: Duration) -> Result<Copied, PipelineError> {
    // SQS caps DelaySeconds at 15 minutes; jitter spreads a storm's retries.
    let jitter = Duration::from_millis(u64::from(job.deferrals % 7) * 150);
    let delay = (wait + jitter).min(Duration::from_secs(900));
    let mut again = job.clone();
    again.deferrals += 1;
    let queue =
        if job.item.size.unwrap_or(0) >= deps.large_item_bytes { QueueName::ItemsLarge } else { QueueName::Items };
    let message =
        OutMessage { body: serde_json::to_string(&again).unwrap_or_default(), group_id: None, delay: Some(delay) };
    deps.sink.send(queue, vec![message]).await?;
    Ok(Copied::Deferred(delay))
}

fn policy(deps: &CopierDeps) -> Policy {
    Policy::new(deps.lock_mode, deps.retention_days)
}

/// The lock of what a new version writes (ARCHITECTURE.md, Retention).
fn lock(deps: &CopierDeps) -> Lock {
    policy(deps).new_version(deps.clock.now())
}

async fn copy_state(
    deps: &CopierDeps,
    job: &ItemJob,
    key: &ItemKey,
    slots: &BatchSlots,
) -> Result<Copied, PipelineError> {
    if key.container.is_mailbox() {
        return mail::copy_state(deps, job, key, slots).await;
    }
    let head = deps.catalog.head(key).await?;
    let (mut item, mut observed_at) = (job.item.clone(), job.observed_at);
    if item.deleted && job.confirm_gone {
        // A deletion we inferred is recorded only if Graph agrees.
        let asked = deps.clock.now();
        if let Some(live) = deps.graph.get_item(&key.container.graph_id, &key.item_id).await?
            && !live.deleted
        {
            info!(item = %key.item_id, "Graph still has an item thought gone: recording its state instead");
            (item, observed_at) = (item_state(&live), asked);
        }
    }
    if item.deleted {
        if head.as_ref().is_some_and(|h| h.current.deleted) {
            return Ok(Copied::AlreadyHeld);
        }
        let version = tombstone(key, head.as_ref(), &item, (observed_at, deps.clock.now()));
        return commit(deps, head.as_ref(), version).await.map(|_| Copied::Committed { bytes: 0 });
    }
    let Some(etag) = item.etag.clone() else {
        return Err(PipelineError::MissingData("live item without an eTag".into()));
    };
    // Held: the same state, verified, or unverified while Graph still gives no hash to check.
    if let Some(h) = &head
        && h.current.version == etag
        && !h.current.deleted
        && (h.current.verification != Verification::Unverified || item.quick_xor_hash.is_none())
    {
        return Ok(Copied::AlreadyHeld);
    }
    if !item.kind.has_content() {
        let version = version_of(key, &item, &etag, None, Verification::NoContent, (observed_at, deps.clock.now()));
        return commit(deps, head.as_ref(), version).await.map(|_| Copied::Committed { bytes: 0 });
    }
    if let Some(content) = reusable_content(deps, key, head.as_ref(), &item).await? {
        // Same bytes as a version we hold (rename, move, back from the recycle bin, or a hash
        // that arrived later). Bytes of an older version may be locked for less than a current
        // version needs: lengthened before they become current again.
        if head.as_ref().and_then(|h| h.current.content.as_ref()).is_none_or(|c| c.object != content.object) {
            deps.vault.ensure_locked(&content.object, &lock(deps)).await?;
        }
        let verification = verification(&item, &content);
        let mut version = version_of(key, &item, &etag, Some(content), verification, (observed_at, deps.clock.now()));
        if verification == Verification::QuickXor
            && head.as_ref().is_some_and(|h| h.current.version == etag && !h.current.deleted)
        {
            version.note = Some("verified: Graph's quickXorHash now matches the bytes held".to_owned());
        }
        return commit(deps, head.as_ref(), version).await.map(|_| Copied::Committed { bytes: 0 });
    }
    let fetched = match fetch(deps, key, &item, observed_at).await? {
        Fetch::Stored(f) => *f,
        Fetch::Gone => return Ok(Copied::Gone),
        Fetch::Superseded => return Ok(Copied::Superseded),
    };
    let bytes = fetched.content.size;
    let as_served = fetched.matched.verification == Verification::AsServed;
    let Matched { state, verification, note, observed_at } = fetched.matched;
    let mut version = version_of(
        key,
        &state,
        state.etag.as_deref().unwrap_or(&etag),
        Some(fetched.content),
        verification,
        (observed_at, deps.clock.now()),
    );
    version.note = note;
    if as_served {
        // Kept, counted and alarmed: the failure row says why in the health report; the
        // metric feeds the alarm.
        warn!(item = %key.item_id, bytes, "recording the bytes Graph serves, which differ from what it reports");
        crate::metrics::count(crate::metrics::AS_SERVED, 1);
        let reason = version.note.clone().unwrap_or_default();
        commit(deps, head.as_ref(), version).await?;
        deps.catalog.record_failure(key, &format!("recorded as served: {reason}"), deps.clock.now()).await?;
        return Ok(Copied::Committed { bytes });
    }
    commit(deps, head.as_ref(), version).await?;
    info!(item = %key.item_id, bytes, "copied");
    Ok(Copied::Committed { bytes })
}

/// Content we already hold for this item that matches the job's state: the head's, or, for
/// an item back from the recycle bin or given an older time, an earlier version's.
async fn reusable_content(
    deps: &CopierDeps,
    key: &ItemKey,
    head: Option<&ItemHead>,
    item: &ItemState,
) -> Result<Option<ContentRef>, PipelineError> {
    let Some(head) = head else { return Ok(None) };
    if let Some(content) = same_content(&head.current, item) {
        return Ok(Some(content));
    }
    let back_in_time = head.current.deleted || item.modified.is_some_and(|m| m <= head.current.order_time());
    if !back_in_time {
        return Ok(None);
    }
    let history = deps.catalog.versions(key, HISTORY_LOOKBACK).await?;
    Ok(history.iter().find_map(|v| same_content(v, item)))
}

/// Versions an item back from the recycle bin is looked for among, newest first.
const HISTORY_LOOKBACK: usize = 20;

fn same_content(held: &ItemVersion, item: &ItemState) -> Option<ContentRef> {
    let content = held.content.clone()?;
    if held.verification == Verification::AsServed {
        return None;
    }
    let same_size = Some(content.size) == item.size;
    let same_hash = item.quick_xor_hash.is_some() && item.quick_xor_hash == content.quick_xor_hash;
    let same_ctag = item.quick_xor_hash.is_none() && item.ctag.is_some() && item.ctag == held.ctag;
    (same_size && (same_hash || same_ctag)).then_some(content)
}

fn verification(item: &ItemState, content: &ContentRef) -> Verification {
    match (&item.quick_xor_hash, &content.quick_xor_hash) {
        (Some(graph), Some(ours)) if graph == ours => Verification::QuickXor,
        _ => Verification::Unverified,
    }
}

fn version_of(
    key: &ItemKey,
    item: &ItemState,
    etag: &str,
    content: Option<ContentRef>,
    verification: Verification,
    (observed_at, now): (DateTime<Utc>, DateTime<Utc>),
) -> ItemVersion {
    ItemVersion {
        v: SCHEMA_VERSION,
        key: key.clone(),
        version: etag.to_owned(),
        kind: item.kind,
        name: item.name.clone(),
        parent_id: item.parent_id.clone(),
        ctag: item.ctag.clone(),
        modified: item.modified.unwrap_or(now),
        created: item.created,
        captured_at: now,
        deleted: false,
        content,
        verification,
        mail: item.mail.clone(),
        observed_at: Some(observed_at),
        current_from: None,
        note: None,
    }
}

fn tombstone(
    key: &ItemKey,
    head: Option<&ItemHead>,
    item: &ItemState,
    (observed_at, now): (DateTime<Utc>, DateTime<Utc>),
) -> ItemVersion {
    // Keep the last known name and parent so a restore knows where the item lived.
    let last = head.map(|h| &h.current);
    ItemVersion {
        v: SCHEMA_VERSION,
        key: key.clone(),
        version: ItemVersion::tombstone_version(observed_at),
        kind: last.map_or(item.kind, |l| l.kind),
        name: last.and_then(|l| l.name.clone()).or_else(|| item.name.clone()),
        parent_id: last.and_then(|l| l.parent_id.clone()).or_else(|| item.parent_id.clone()),
        ctag: None,
        modified: observed_at,
        created: last.and_then(|l| l.created),
        captured_at: now,
        deleted: true,
        content: None,
        verification: Verification::NoContent,
        mail: last.and_then(|l| l.mail.clone()),
        observed_at: Some(observed_at),
        current_from: None,
        note: None,
    }
}

/// Commit order: the immutable record in the vault, then the catalog row. The version is
/// first placed in the item's history relative to `head` ([`order::place`]).
///
/// A deletion first locks the version it supersedes (record and content) and its own record
/// for the recycle bins' reach plus the retention ([`Policy::deletion`]): once the tombstone
/// is the head, nothing extends that version any more.
async fn commit(deps: &CopierDeps, head: Option<&ItemHead>, mut version: ItemVersion) -> Result<(), PipelineError> {
    order::place(head.map(|h| &h.current), &mut version);
    let lock = if version.deleted {
        let lock = policy(deps).deletion(deps.clock.now());
        if let Some(h) = head.filter(|h| !h.current.deleted) {
            for object in h.objects() {
                match deps.vault.ensure_locked(object, &lock).await {
                    // Gone from the vault already: `verify` reports it; the deletion is still
                    // recorded.
                    Err(StoreError::NotFound { key }) => {
                        warn!(item = %version.key.item_id, %key, "the deleted version's object is missing from the vault");
                    }
                    other => other?,
                }
            }
        }
        lock
    } else {
        lock(deps)
    };
    let record_key = keys::record_key(&version.key, &version.row_id());
    let body = serde_json::to_vec(&version).map_err(|e| PipelineError::Internal(e.to_string()))?;
    let stored = deps.vault.put_if_absent(&record_key, Bytes::from(body), &lock).await?;
    // A crash between record and catalog leaves the record: it is the truth to commit.
    let version = if stored.created {
        version
    } else {
        let existing = deps.vault.get(&stored.object).await?;
        serde_json::from_slice(&existing).map_err(|e| StoreError::Malformed(format!("version record: {e}")))?
    };
    deps.catalog.commit_version(&version, &stored.object).await?;
    Ok(())
}

/// The state downloaded bytes belong to, how well, and since when we know it.
struct Matched {
    state: ItemState,
    verification: Verification,
    note: Option<String>,
    observed_at: DateTime<Utc>,
}

/// Bytes fetched and stored, with the state they belong to.
struct Fetched {
    matched: Matched,
    content: ContentRef,
}

enum Fetch {
    Stored(Box<Fetched>),
    /// Graph no longer has the item.
    Gone,
    /// The item changed since the job, and without a hash its bytes cannot be told apart from
    /// the new state's: nothing is recorded, and the delta feed brings the new state.
    Superseded,
}

/// Streams the item's current content into the vault. Returns the state the bytes match:
/// the job's, or (when the item changed since) the one Graph reports now.
async fn fetch(
    deps: &CopierDeps,
    key: &ItemKey,
    item: &ItemState,
    observed_at: DateTime<Utc>,
) -> Result<Fetch, PipelineError> {
    let size = item.size.unwrap_or(0);
    let mut sink = if size > SMALL_CONTENT_MAX {
        let upload = deps
            .vault
            .start_multipart(&keys::large_key(key, item.etag.as_deref().unwrap_or_default()), &lock(deps))
            .await?;
        ContentSink::Multipart { upload, parts: PartBuffer::new() }
    } else {
        ContentSink::Buffer(BytesMut::with_capacity(size as usize))
    };
    let fetched = async {
        let Some(got) = download_into(deps, key, &mut sink).await? else { return Ok(Fetch::Gone) };
        matching_state(deps, key, item, observed_at, got).await
    }
    .await;
    // Nothing half-uploaded outlives a download that is not recorded.
    let (matched, (len, sha256, quick_xor)) = match fetched {
        Ok(Fetch::Stored(fetched)) => {
            let Fetched { matched, content } = *fetched;
            (matched, (content.size, content.sha256, content.quick_xor_hash.unwrap_or_default()))
        }
        Ok(other) => {
            sink.abort(deps).await;
            return Ok(other);
        }
        Err(e) => {
            sink.abort(deps).await;
            return Err(e);
        }
    };
    let object = sink.finish(deps, key, &sha256).await?;
    Ok(Fetch::Stored(Box::new(Fetched {
        matched,
        content: ContentRef { object, size: len, sha256, quick_xor_hash: Some(quick_xor) },
    })))
}

/// What a download produced: (length, SHA-256 hex, quickXorHash).
type Downloaded = (u64, String, String);

/// The state the downloaded bytes belong to, or an error if Graph vouches for none. Returned
/// as a `Fetch::Stored` whose content carries the hashes (its object is filled by the caller).
async fn matching_state(
    deps: &CopierDeps,
    key: &ItemKey,
    item: &ItemState,
    observed_at: DateTime<Utc>,
    (len, sha256, quick_xor): Downloaded,
) -> Result<Fetch, PipelineError> {
    let stored = |state: ItemState, verification, note, observed_at| {
        let content = ContentRef {
            object: ObjectRef { key: String::new(), version_id: String::new() },
            size: len,
            sha256: sha256.clone(),
            quick_xor_hash: Some(quick_xor.clone()),
        };
        Fetch::Stored(Box::new(Fetched { matched: Matched { state, verification, note, observed_at }, content }))
    };
    let verified = |s: &ItemState| s.size == Some(len) && s.quick_xor_hash.as_deref() == Some(quick_xor.as_str());
    if verified(item) {
        return Ok(stored(item.clone(), Verification::QuickXor, None, observed_at));
    }
    // The job carries no hash, or the bytes do not match it: what is the item now?
    let asked = deps.clock.now();
    let Some(current) = deps.graph.get_item(&key.container.graph_id, &key.item_id).await? else {
        return Ok(Fetch::Gone);
    };
    let current = item_state(&current);
    if current.deleted {
        return Ok(Fetch::Gone);
    }
    if verified(&current) {
        return Ok(stored(current, Verification::QuickXor, None, asked));
    }
    let unchanged = current.etag == item.etag;
    if current.quick_xor_hash.is_none() {
        // No hash to check against: the bytes are this eTag's only if Graph reported the same
        // eTag before and after the download.
        return Ok(match unchanged && current.size == Some(len) {
            true => stored(current, Verification::Unverified, None, asked),
            false => Fetch::Superseded,
        });
    }
    if !unchanged {
        return Err(PipelineError::ContentMismatch(format!(
            "downloaded {len} bytes that match neither the job's state nor Graph's current state"
        )));
    }
    // Graph describes this eTag's content as other bytes than it serves. Recorded as served
    // only if a second download gives the same bytes and the eTag still has not moved.
    let again = hash_download(deps, key).await?;
    let after = deps.graph.get_item(&key.container.graph_id, &key.item_id).await?.map(|i| item_state(&i));
    let stable = again.as_ref().is_some_and(|(l, sha)| *l == len && *sha == sha256)
        && after.as_ref().is_some_and(|a| a.etag == current.etag && !a.deleted);
    if !stable {
        return Err(PipelineError::ContentMismatch(format!(
            "Graph serves {len} bytes that match neither its size nor its hash, and differ between downloads"
        )));
    }
    let note = format!(
        "Graph reports {} bytes with quickXorHash {}; it serves {len} bytes (SHA-256 {sha256}) on every download",
        current.size.map_or_else(|| "no".to_owned(), |s| s.to_string()),
        current.quick_xor_hash.as_deref().unwrap_or("none"),
    );
    Ok(stored(current, Verification::AsServed, Some(note), asked))
}

/// Downloads the whole content again, only to hash it: (length, SHA-256 hex), or None if the
/// item is gone.
async fn hash_download(deps: &CopierDeps, key: &ItemKey) -> Result<Option<(u64, String)>, PipelineError> {
    let mut sha = Sha256::new();
    let mut len = 0u64;
    let download = match deps.graph.download(&key.container.graph_id, &key.item_id, 0).await {
        Ok(d) => d,
        Err(GraphError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut stream = download.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        sha.update(&chunk);
        len += chunk.len() as u64;
    }
    Ok(Some((len, hex::encode(sha.finalize()))))
}

enum ContentSink {
    Buffer(BytesMut),
    Multipart { upload: Multipart, parts: PartBuffer },
}

impl ContentSink {
    async fn write(&mut self, deps: &CopierDeps, chunk: &Bytes) -> Result<(), StoreError> {
        match self {
            ContentSink::Buffer(buf) => {
                // The job said small; an item that grew since is retried with its new size.
                if buf.len() as u64 + chunk.len() as u64 > 2 * SMALL_CONTENT_MAX {
                    return Err(StoreError::Malformed(
                        "item grew past the small-content limit since it was enumerated".into(),
                    ));
                }
                buf.extend_from_slice(chunk)
            }
            ContentSink::Multipart { upload, parts } => {
                for part in parts.push(chunk.clone()) {
                    deps.vault.upload_part(upload, part.number, part.body).await?;
                }
            }
        }
        Ok(())
    }

    /// Bytes written so far that a resumed download must not repeat.
    fn len(&self) -> u64 {
        match self {
            ContentSink::Buffer(buf) => buf.len() as u64,
            ContentSink::Multipart { parts, .. } => parts.pushed(),
        }
    }

    async fn finish(self, deps: &CopierDeps, key: &ItemKey, sha256: &str) -> Result<ObjectRef, PipelineError> {
        match self {
            ContentSink::Buffer(buf) => {
                let stored = deps
                    .vault
                    .put_if_absent(&keys::blob_key(&key.container.tenant_id, sha256), buf.freeze(), &lock(deps))
                    .await?;
                Ok(stored.object)
            }
            ContentSink::Multipart { mut upload, mut parts } => {
                if let Some(last) = parts.last_part() {
                    deps.vault.upload_part(&mut upload, last.number, last.body).await?;
                }
                Ok(deps.vault.complete_multipart(upload, &lock(deps)).await?)
            }
        }
    }

    async fn abort(self, deps: &CopierDeps) {
        if let ContentSink::Multipart { upload, .. } = self
            && let Err(e) = deps.vault.abort_multipart(upload).await
        {
            warn!(error = %e, "could not abort a multipart upload; the bucket lifecycle rule will");
        }
    }
}

/// Downloads the whole content into `sink`, resuming with Range after resets and
/// truncations. Returns (length, SHA-256 hex, quickXorHash), or None if the item is gone.
async fn download_into(
    deps: &CopierDeps,
    key: &ItemKey,
    sink: &mut ContentSink,
) -> Result<Option<(u64, String, String)>, PipelineError> {
    let mut sha = Sha256::new();
    let mut qx = QuickXorHasher::new();
    let mut attempt = 0;
    loop {
        let offset = sink.len();
        let download = match deps.graph.download(&key.container.graph_id, &key.item_id, offset).await {
            Ok(d) => d,
            Err(GraphError::NotFound) => return Ok(None),
            Err(e) if e.is_retryable() && !e.is_throttled() && attempt + 1 < DOWNLOAD_ATTEMPTS => {
                attempt += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let total = download.total_len;
        let mut stream = download.stream;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    sha.update(&chunk);
                    qx.update(&chunk);
                    sink.write(deps, &chunk).await?;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let got = sink.len();
        match (failed, total) {
            (None, Some(total)) if got == total => return Ok(Some((got, hex::encode(sha.finalize()), qx.finalize()))),
            (None, None) => return Ok(Some((got, hex::encode(sha.finalize()), qx.finalize()))),
            (failed, _) => {
                attempt += 1;
                if attempt >= DOWNLOAD_ATTEMPTS {
                    return Err(match failed {
                        Some(e) => e.into(),
                        None => {
                            PipelineError::ContentMismatch(format!("download ended after {got} of {total:?} bytes"))
                        }
                    });
                }
                warn!(item = %key.item_id, got, "download interrupted; resuming");
            }
        }
    }
}
