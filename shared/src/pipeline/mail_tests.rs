//! In-process tests of mailbox backup (enumerator and copier) against the in-memory fakes and
//! a fake mailbox: every folder and message kept, moves and deletions versioned, metadata-only
//! changes recorded without downloading again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::copier::{self, Copied, CopierDeps};
use super::enumerator::{self, EnumeratorDeps};
use super::{MailPage, MailReader};
use crate::graph::{Download, GraphError};
use crate::model::{
    ChangeJob, ChangeReason, ContainerId, ItemJob, ItemKind, ItemState, MailMeta, SCHEMA_VERSION, Verification,
};
use crate::store::memory::{MemoryCatalog, MemorySink, MemoryVault};
use crate::store::{Coordination, ItemHistory, LockMode, QueueName, SyncStates};

const USER: &str = "user-1";

#[derive(Clone)]
struct FakeMessage {
    folder: String,
    change_key: u32,
    is_read: bool,
    mime: Bytes,
}

/// A mailbox whose delta feeds return everything present plus what left since the link was
/// handed out, in pages of `page_size`.
#[derive(Default)]
pub(super) struct FakeMailbox {
    folders: Mutex<BTreeMap<String, (String, String)>>,
    messages: Mutex<BTreeMap<String, FakeMessage>>,
    /// Ids each handed-out link had seen (per feed).
    links: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Pages still to serve: link → (items, delta link to end with).
    pending: Mutex<HashMap<String, (Vec<ItemState>, String)>>,
    next_id: AtomicU32,
    page_size: AtomicU32,
    downloads: AtomicU32,
    /// Attachment listings asked for (`attachments?$select=...`).
    listings: AtomicU32,
    expire_links: AtomicBool,
    /// Set: Graph refuses the whole mailbox with this error (deleted, unlicensed).
    refused: Mutex<Option<GraphError>>,
    /// Set: this folder's message delta answers 404 though the folder is there.
    delta_not_found: Mutex<Option<String>>,
}

fn mime(subject: &str, attachment: bool) -> Bytes {
    let mut m = format!(
        "From: A <a@x.test>\r\nTo: b@x.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x.test>\r\nMIME-Version: 1.0\r\n"
    );
    if attachment {
        m.push_str(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
        );
        m.push_str("--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"q.pdf\"\r\n");
        m.push_str("Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n");
    } else {
        m.push_str("Content-Type: text/plain\r\n\r\nbody\r\n");
    }
    Bytes::from(m)
}

impl FakeMailbox {
    fn folder(&self, id: &str, name: &str, parent: &str) {
        self.folders.lock().expect("lock").insert(id.into(), (name.into(), parent.into()));
    }

    /// Graph answers every call on the mailbox with `error` (None: serves it again).
    pub(super) fn refuse(&self, error: Option<GraphError>) {
        *self.refused.lock().expect("lock") = error;
    }

    fn check(&self) -> Result<(), GraphError> {
        self.refused.lock().expect("lock").clone().map_or(Ok(()), Err)
    }

    /// A message whose MIME is `raw`, exactly.
    pub(super) fn deliver_raw(&self, id: &str, folder: &str, raw: &[u8]) {
        let m = FakeMessage { folder: folder.into(), change_key: 1, is_read: false, mime: Bytes::copy_from_slice(raw) };
        self.messages.lock().expect("lock").insert(id.into(), m);
    }

    /// `$value` downloads served so far.
    pub(super) fn download_count(&self) -> u32 {
        self.downloads.load(Ordering::SeqCst)
    }

    pub(super) fn deliver(&self, id: &str, folder: &str, attachment: bool) -> Bytes {
        let body = mime(id, attachment);
        let m = FakeMessage { folder: folder.into(), change_key: 1, is_read: false, mime: body.clone() };
        self.messages.lock().expect("lock").insert(id.into(), m);
        body
    }

    fn change(&self, id: &str, f: impl FnOnce(&mut FakeMessage)) {
        let mut messages = self.messages.lock().expect("lock");
        let m = messages.get_mut(id).expect("message");
        f(m);
        m.change_key += 1;
    }

    fn state(&self, id: &str, m: &FakeMessage) -> ItemState {
        ItemState {
            created: None,
            id: id.into(),
            kind: ItemKind::Message,
            name: Some(id.into()),
            parent_id: Some(m.folder.clone()),
            etag: Some(format!("ck-{}", m.change_key)),
            ctag: None,
            size: None,
            quick_xor_hash: None,
            modified: Some(Utc::now()),
            deleted: false,
            mail: Some(MailMeta {
                subject: Some(id.into()),
                is_read: m.is_read,
                has_attachments: Self::has_files(&m.mime),
                internet_message_id: Some(format!("<{id}@x.test>")),
                ..MailMeta::default()
            }),
        }
    }

    fn has_files(mime: &[u8]) -> bool {
        mime.windows(11).any(|w| w == b"attachment;")
    }

    fn removed(id: &str, kind: ItemKind) -> ItemState {
        crate::pipeline::state::removed(id.into(), kind, None)
    }

    /// Serves a page of a feed whose current content is `now` (id → state).
    fn serve(&self, feed: &str, link: Option<&str>, now: BTreeMap<String, ItemState>) -> Result<MailPage, GraphError> {
        if let Some(link) = link
            && let Some((items, delta)) = self.pending.lock().expect("lock").remove(link)
        {
            return Ok(self.page(items, delta));
        }
        if link.is_some() && self.expire_links.load(Ordering::SeqCst) {
            return Err(GraphError::ResyncRequired { restart: None });
        }
        let seen = link.and_then(|l| self.links.lock().expect("lock").get(l).cloned()).unwrap_or_default();
        let mut items: Vec<ItemState> = now.values().cloned().collect();
        let kind = if feed == "folders" { ItemKind::MailFolder } else { ItemKind::Message };
        items.extend(seen.iter().filter(|id| !now.contains_key(*id)).map(|id| Self::removed(id, kind)));
        let delta = format!("fake://{feed}/delta/{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        self.links.lock().expect("lock").insert(delta.clone(), now.keys().cloned().collect());
        Ok(self.page(items, delta))
    }

    fn page(&self, mut items: Vec<ItemState>, delta: String) -> MailPage {
        let size = match self.page_size.load(Ordering::SeqCst) {
            0 => usize::MAX,
            n => n as usize,
        };
        if items.len() <= size {
            return MailPage { items, next: None, delta: Some(delta) };
        }
        let rest = items.split_off(size);
        let next = format!("fake://next/{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        self.pending.lock().expect("lock").insert(next.clone(), (rest, delta));
        MailPage { items, next: Some(next), delta: None }
    }
}

#[async_trait]
impl MailReader for FakeMailbox {
    async fn root_folder_id(&self, _user: &str) -> Result<Option<String>, GraphError> {
        Ok(Some("root".to_owned()))
    }

    async fn folder_delta(&self, _user: &str, link: Option<&str>) -> Result<MailPage, GraphError> {
        self.check()?;
        let now = self
            .folders
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, (name, parent))| {
                let state = ItemState {
                    id: id.clone(),
                    kind: ItemKind::MailFolder,
                    name: Some(name.clone()),
                    parent_id: Some(parent.clone()),
                    ..Self::removed(id, ItemKind::MailFolder)
                };
                (id.clone(), ItemState { deleted: false, ..state })
            })
            .collect();
        self.serve("folders", link, now)
    }

    async fn message_delta(&self, _user: &str, folder: &str, link: Option<&str>) -> Result<MailPage, GraphError> {
        self.check()?;
        let refused = self.delta_not_found.lock().expect("lock").as_deref() == Some(folder);
        if refused || !self.folders.lock().expect("lock").contains_key(folder) {
            return Err(GraphError::NotFound);
        }
        let now = self
            .messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, m)| m.folder == folder)
            .map(|(id, m)| (id.clone(), self.state(id, m)))
            .collect();
        self.serve(&format!("messages/{folder}"), link, now)
    }

    async fn message(&self, _user: &str, id: &str) -> Result<Option<ItemState>, GraphError> {
        self.check()?;
        Ok(self.messages.lock().expect("lock").get(id).map(|m| self.state(id, m)))
    }

    async fn attachment_fingerprint(&self, _user: &str, id: &str) -> Result<Option<String>, GraphError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        // The MIME's attachments stand for Graph's listing of them.
        Ok(self.messages.lock().expect("lock").get(id).map(|m| {
            let files = if Self::has_files(&m.mime) { hex::encode(Sha256::digest(&m.mime)) } else { String::new() };
            format!("fp-{files}")
        }))
    }

    async fn mail_folder(&self, _user: &str, id: &str) -> Result<Option<ItemState>, GraphError> {
        self.check()?;
        let folders = self.folders.lock().expect("lock");
        Ok(folders.get(id).map(|(name, parent)| ItemState {
            name: Some(name.clone()),
            parent_id: Some(parent.clone()),
            deleted: false,
            ..Self::removed(id, ItemKind::MailFolder)
        }))
    }

    async fn mime(&self, _user: &str, id: &str) -> Result<Download, GraphError> {
        self.downloads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let body = self.messages.lock().expect("lock").get(id).map(|m| m.mime.clone()).ok_or(GraphError::NotFound)?;
        Ok(Download {
            total_len: Some(body.len() as u64),
            offset: 0,
            stream: Box::pin(futures::stream::iter(vec![Ok(body)])),
        })
    }
}

pub(super) struct World {
    pub(super) mailbox: Arc<FakeMailbox>,
    pub(super) catalog: Arc<MemoryCatalog>,
    vault: Arc<MemoryVault>,
    pub(super) sink: Arc<MemorySink>,
    pub(super) copier: CopierDeps,
    enumerator: EnumeratorDeps,
}

pub(super) fn world() -> World {
    let mailbox = Arc::new(FakeMailbox::default());
    let drive = Arc::new(super::tests::FakeDrive::default());
    let vault = Arc::new(MemoryVault::new());
    let catalog = Arc::new(MemoryCatalog::with_index_lag(super::tests::INDEX_LAG));
    let sink = Arc::new(MemorySink::new());
    mailbox.folder("inbox", "Inbox", "root");
    mailbox.folder("archive", "Archive", "root");
    World {
        copier: CopierDeps {
            graph: drive.clone(),
            mail: mailbox.clone(),
            vault: vault.clone(),
            catalog: catalog.clone(),
            sink: sink.clone(),
            lock_mode: LockMode::Governance,
            retention_days: 30,
            large_item_bytes: 100 << 20,
            clock: crate::clock::system(),
        },
        enumerator: EnumeratorDeps {
            graph: drive,
            mail: mailbox.clone(),
            catalog: catalog.clone(),
            sink: sink.clone(),
            large_item_bytes: 100 << 20,
            reserve: Duration::from_secs(1),
            clock: crate::clock::system(),
        },
        mailbox,
        catalog,
        vault,
        sink,
    }
}

pub(super) fn mailbox() -> ContainerId {
    ContainerId::mailbox("tenant", USER)
}

impl World {
    /// One enumeration (with its continuations) and every job it queued, until quiet.
    pub(super) async fn sync(&self, reason: ChangeReason) {
        let mut changes = vec![ChangeJob::new(mailbox(), reason, Utc::now())];
        while let Some(job) = changes.pop() {
            let deadline = Instant::now() + Duration::from_secs(60);
            enumerator::enumerate(&self.enumerator, &job, deadline).await.expect("enumerate");
            for m in self.sink.take(QueueName::Changes) {
                changes.push(serde_json::from_str(&m.body).expect("change job"));
            }
            for round in 0.. {
                let jobs = self.sink.take(QueueName::Items);
                if jobs.is_empty() {
                    break;
                }
                assert!(round < 100, "item jobs keep coming back: deferred for ever?");
                for m in jobs {
                    let job: ItemJob = serde_json::from_str(&m.body).expect("item job");
                    copier::copy(&self.copier, &job).await.expect("copy");
                }
            }
        }
    }

    async fn history(&self, id: &str) -> Vec<crate::model::ItemVersion> {
        self.catalog.versions(&mailbox().item(id), 100).await.expect("history")
    }

    pub(super) async fn current(&self, id: &str) -> crate::model::ItemVersion {
        self.catalog.head(&mailbox().item(id)).await.expect("head").expect("held").current
    }
}

#[tokio::test]
async fn a_mailbox_is_backed_up_folder_by_folder_with_mime_and_metadata() {
    // Given a mailbox of two folders and three messages, one with an attachment
    let w = world();
    let with_pdf = w.mailbox.deliver("m1", "inbox", true);
    w.mailbox.deliver("m2", "inbox", false);
    w.mailbox.deliver("m3", "archive", false);

    // When it is enumerated and copied
    w.sync(ChangeReason::Notification).await;

    // Then every folder and message has a version, the MIME is stored byte for byte
    for folder in ["inbox", "archive"] {
        assert_eq!(w.current(folder).await.kind, ItemKind::MailFolder);
    }
    let m1 = w.current("m1").await;
    assert_eq!(
        (m1.kind, m1.parent_id.as_deref(), m1.verification),
        (ItemKind::Message, Some("inbox"), Verification::Sha256)
    );
    let content = m1.content.clone().expect("content");
    assert_eq!(content.sha256, hex::encode(Sha256::digest(&with_pdf)));
    assert_eq!(w.vault_bytes(&content.object).await, with_pdf);
    // and its metadata, attachments included, is in the catalog
    let meta = m1.mail.expect("metadata");
    assert_eq!(meta.internet_message_id.as_deref(), Some("<m1@x.test>"));
    assert_eq!(meta.attachments.iter().map(|a| (a.name.as_str(), a.size)).collect::<Vec<_>>(), [("q.pdf", 4)]);
    assert_eq!(w.current("m3").await.parent_id.as_deref(), Some("archive"));
    // and the mailbox's top folder, which no folder delta lists, is its root for browsing
    assert_eq!(w.catalog.sync_state(&mailbox()).await.expect("sync").root_id.as_deref(), Some("root"));
}

impl World {
    pub(super) async fn vault_bytes(&self, object: &crate::model::ObjectRef) -> Bytes {
        crate::store::Vault::get(self.vault.as_ref(), object).await.expect("vault")
    }
}

#[tokio::test]
async fn read_flags_and_moves_are_new_versions_without_a_new_download_and_deletions_tombstones() {
    // Given a backed-up mailbox
    let w = world();
    w.mailbox.deliver("m1", "inbox", false);
    w.mailbox.deliver("m2", "inbox", false);
    w.sync(ChangeReason::Notification).await;
    let downloads = w.mailbox.downloads.load(Ordering::SeqCst);

    // When m1 is read, then moved to the archive, and m2 deleted for good
    w.mailbox.change("m1", |m| m.is_read = true);
    w.sync(ChangeReason::Notification).await;
    w.mailbox.change("m1", |m| m.folder = "archive".into());
    w.mailbox.messages.lock().expect("lock").remove("m2");
    w.sync(ChangeReason::Notification).await;

    // Then m1's history holds its three states, the same MIME for all, downloaded once
    let history = w.history("m1").await;
    let states: Vec<(bool, Option<&str>, bool)> = history
        .iter()
        .map(|v| (v.mail.as_ref().is_some_and(|m| m.is_read), v.parent_id.as_deref(), v.deleted))
        .collect();
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(states.contains(&(false, Some("inbox"), false)));
    assert!(states.contains(&(true, Some("inbox"), false)));
    assert!(states.contains(&(true, Some("archive"), false)));
    let shas: BTreeSet<_> = history.iter().filter_map(|v| v.content.as_ref().map(|c| c.sha256.clone())).collect();
    assert_eq!(shas.len(), 1);
    assert_eq!(w.mailbox.downloads.load(Ordering::SeqCst), downloads, "metadata changes download nothing");
    // and the move left no tombstone, while the deletion did
    let m1 = w.current("m1").await;
    assert!(!m1.deleted && m1.parent_id.as_deref() == Some("archive"));
    let m2 = w.current("m2").await;
    assert!(m2.deleted, "{m2:?}");
    assert_eq!(m2.parent_id.as_deref(), Some("inbox"), "a tombstone keeps where the message lived");
}

#[tokio::test]
async fn a_deleted_folder_takes_its_messages_and_an_expired_link_runs_a_full_pass() {
    // Given a backed-up mailbox with a subfolder
    let w = world();
    w.mailbox.folder("projects", "Projects", "inbox");
    w.mailbox.deliver("p1", "projects", false);
    w.mailbox.deliver("m1", "inbox", false);
    w.sync(ChangeReason::Notification).await;
    // A deleted folder's descendants are read from the heads index: one committed within the
    // index's lag is missed there (and found by the next full scan); this folder's were not.
    w.catalog.flush_index();

    // When the subfolder is deleted with its message
    w.mailbox.folders.lock().expect("lock").remove("projects");
    w.mailbox.messages.lock().expect("lock").remove("p1");
    w.sync(ChangeReason::Notification).await;

    // Then both are tombstoned
    assert!(w.current("projects").await.deleted);
    assert!(w.current("p1").await.deleted);

    // When every link has expired and a message vanished meanwhile without a trace
    w.mailbox.messages.lock().expect("lock").remove("m1");
    w.mailbox.deliver("m9", "archive", false);
    w.mailbox.links.lock().expect("lock").clear();
    w.mailbox.expire_links.store(true, Ordering::SeqCst);
    w.sync(ChangeReason::Notification).await;

    // Then the full pass recorded the new message and the deletion
    assert!(!w.current("m9").await.deleted);
    assert!(w.current("m1").await.deleted);
}

#[tokio::test]
async fn a_pass_cut_by_its_deadline_continues_where_it_stopped() {
    // Given a mailbox read two items per page, and an enumerator with no time to spare
    let w = world();
    for i in 0..7 {
        w.mailbox.deliver(&format!("m{i}"), if i % 2 == 0 { "inbox" } else { "archive" }, false);
    }
    w.mailbox.page_size.store(2, Ordering::SeqCst);
    let mut deps = world_enumerator(&w);
    deps.reserve = Duration::from_secs(3600);

    // When the first invocation runs out of time after every page
    let job = ChangeJob::new(mailbox(), ChangeReason::Notification, Utc::now());
    let first = enumerator::enumerate(&deps, &job, Instant::now() + Duration::from_secs(60)).await.expect("enumerate");
    assert!(first.continued);

    // Then the continuations finish the pass and every message is backed up once
    w.sync_continuations(&deps).await;
    for i in 0..7 {
        assert_eq!(w.history(&format!("m{i}")).await.len(), 1);
    }
    let state = w.catalog.sync_state(&mailbox()).await.expect("state");
    assert!(state.mail_folders.values().all(|f| f.delta_link.is_some() && f.next_link.is_none()));
}

fn world_enumerator(w: &World) -> EnumeratorDeps {
    EnumeratorDeps {
        graph: Arc::new(super::tests::FakeDrive::default()),
        mail: w.mailbox.clone(),
        catalog: w.catalog.clone(),
        sink: w.sink.clone(),
        large_item_bytes: 100 << 20,
        reserve: w.enumerator.reserve,
        clock: w.enumerator.clock.clone(),
    }
}

impl World {
    async fn sync_continuations(&self, deps: &EnumeratorDeps) {
        for _ in 0..100 {
            for m in self.sink.take(QueueName::Items) {
                let job: ItemJob = serde_json::from_str(&m.body).expect("item job");
                copier::copy(&self.copier, &job).await.expect("copy");
            }
            let changes = self.sink.take(QueueName::Changes);
            if changes.is_empty() {
                return;
            }
            for m in changes {
                let job: ChangeJob = serde_json::from_str(&m.body).expect("change job");
                assert_eq!(job.v, SCHEMA_VERSION);
                enumerator::enumerate(deps, &job, Instant::now() + Duration::from_secs(60)).await.expect("enumerate");
            }
        }
        panic!("the pass never finished");
    }
}

#[tokio::test]
async fn a_message_seen_leaving_its_folder_before_arriving_in_the_next_is_recorded_as_moved() {
    // Given a backed-up message
    let w = world();
    w.mailbox.deliver("m1", "inbox", false);
    w.sync(ChangeReason::Notification).await;

    // When it moves, and the copier gets the removal from the old folder first
    w.mailbox.change("m1", |m| m.folder = "archive".into());
    let mut removal = FakeMailbox::removed("m1", ItemKind::Message);
    removal.parent_id = Some("inbox".into());
    let job = ItemJob {
        v: SCHEMA_VERSION,
        container: mailbox(),
        item: removal,
        observed_at: Utc::now(),
        scan_epoch: None,
        deferrals: 0,
        confirm_gone: false,
    };
    let copied = copier::copy(&w.copier, &job).await.expect("copy");

    // Then the move is recorded, not a deletion
    assert_eq!(copied, Copied::Committed { bytes: 0 });
    let m1 = w.current("m1").await;
    assert!(!m1.deleted);
    assert_eq!(m1.parent_id.as_deref(), Some("archive"));
}

/// Takes every copy slot of the test mailbox, as copies running elsewhere would.
async fn hold_every_slot(w: &World) -> Vec<crate::store::SlotLease> {
    let resource = super::throttle_resource(&mailbox());
    let (now, until) = (Utc::now(), Utc::now() + chrono::Duration::minutes(10));
    let mut held = Vec::new();
    for _ in 0..copier::MAILBOX_COPY_SLOTS {
        held.push(
            w.catalog
                .acquire_slot("tenant", &resource, copier::MAILBOX_COPY_SLOTS, now, until)
                .await
                .expect("acquire")
                .expect("free"),
        );
    }
    held
}

#[tokio::test]
async fn a_read_flag_or_folder_change_needs_no_mailbox_slot() {
    // Given a backed-up message and folder, and every slot of the mailbox held elsewhere
    let w = world();
    w.mailbox.deliver("m1", "inbox", false);
    w.sync(ChangeReason::Notification).await;
    let _held = hold_every_slot(&w).await;

    // When the message is read and a folder created
    w.mailbox.change("m1", |m| m.is_read = true);
    w.mailbox.folder("projects", "Projects", "inbox");
    w.sync(ChangeReason::Notification).await;

    // Then both are recorded at once: neither calls Graph, so neither waits for a slot
    assert!(w.current("m1").await.mail.is_some_and(|m| m.is_read));
    assert_eq!(w.current("projects").await.kind, ItemKind::MailFolder);
    assert!(w.sink.take(QueueName::Items).is_empty(), "nothing was deferred");
}

#[tokio::test]
async fn a_message_waits_in_the_queue_while_every_mailbox_slot_is_held() {
    // Given a new message and three copies of the same mailbox already running elsewhere
    let w = world();
    w.mailbox.deliver("m1", "inbox", false);
    let resource = super::throttle_resource(&mailbox());
    let (now, until) = (Utc::now(), Utc::now() + chrono::Duration::minutes(10));
    let held = hold_every_slot(&w).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    enumerator::enumerate(&w.enumerator, &ChangeJob::new(mailbox(), ChangeReason::Notification, Utc::now()), deadline)
        .await
        .expect("enumerate");
    let job = w.sink.take(QueueName::Items).into_iter().find(|m| m.body.contains("\"m1\"")).expect("a job for m1");
    let job: ItemJob = serde_json::from_str(&job.body).expect("item job");

    // When the copier gets the message, it neither calls Graph nor holds a Lambda waiting
    let copied = copier::copy(&w.copier, &job).await.expect("copy");
    assert!(matches!(copied, Copied::Deferred(_)), "{copied:?}");
    assert_eq!(w.mailbox.downloads.load(Ordering::SeqCst), 0);
    let again = w.sink.take(QueueName::Items);
    assert_eq!(again.len(), 1);
    assert!(again[0].delay.is_some_and(|d| d >= Duration::from_secs(1)));

    // Then, once one copy ends, the re-sent job copies the message and frees its slot
    w.catalog.release_slot(&held[0]).await.expect("release");
    let job: ItemJob = serde_json::from_str(&again[0].body).expect("item job");
    assert!(matches!(copier::copy(&w.copier, &job).await.expect("copy"), Copied::Committed { .. }));
    assert_eq!(w.mailbox.downloads.load(Ordering::SeqCst), 1);
    let freed =
        w.catalog.acquire_slot("tenant", &resource, copier::MAILBOX_COPY_SLOTS, now, until).await.expect("acquire");
    assert_eq!(freed.map(|l| l.slot), Some(held[0].slot));
}

#[tokio::test]
async fn a_folder_whose_delta_answers_404_keeps_being_backed_up_while_graph_still_has_it() {
    // Given a backed-up mailbox
    let w = world();
    w.mailbox.deliver("m1", "archive", false);
    w.sync(ChangeReason::Notification).await;

    // When the Archive's message delta answers 404 for a while, though the folder is there
    *w.mailbox.delta_not_found.lock().expect("lock") = Some("archive".into());
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = ChangeJob::new(mailbox(), ChangeReason::Notification, Utc::now());
    let refused = enumerator::enumerate(&w.enumerator, &job, deadline).await;

    // Then the pass fails to be retried, and the folder's state is kept
    assert!(refused.is_err_and(|e| e.is_retryable()));
    let state = w.catalog.sync_state(&mailbox()).await.expect("state");
    assert!(state.mail_folders.contains_key("archive"), "the Archive is still tracked");

    // And once Graph serves it again, a message arriving there is backed up
    *w.mailbox.delta_not_found.lock().expect("lock") = None;
    w.mailbox.deliver("m2", "archive", false);
    w.sync(ChangeReason::Notification).await;
    assert_eq!(w.current("m2").await.parent_id.as_deref(), Some("archive"));
}

#[tokio::test]
async fn a_mail_folder_inferred_gone_that_graph_still_has_is_recorded_alive() {
    // Given a backed-up folder
    let w = world();
    w.sync(ChangeReason::Notification).await;
    let held = w.current("archive").await;

    // When a tombstone job inferred for it reaches the copier (a deleted parent's cascade)
    let item = crate::pipeline::state::removed("archive".into(), ItemKind::MailFolder, Some("root"));
    let job = ItemJob {
        v: SCHEMA_VERSION,
        container: mailbox(),
        item,
        observed_at: Utc::now(),
        scan_epoch: None,
        deferrals: 0,
        confirm_gone: true,
    };
    copier::copy(&w.copier, &job).await.expect("copy");

    // Then Graph was asked, and the folder is still alive in the catalog
    let now = w.current("archive").await;
    assert!(!now.deleted, "a folder Graph still has is not tombstoned");
    assert_eq!(now.version, held.version);
}

#[tokio::test]
async fn an_attachment_added_to_a_received_message_is_backed_up_and_a_read_downloads_nothing() {
    // Given a received message with a file attachment, and one without, backed up
    let w = world();
    w.mailbox.deliver("m1", "inbox", true);
    w.mailbox.deliver("m2", "inbox", false);
    w.sync(ChangeReason::Notification).await;
    let (downloads, listings) =
        (|| w.mailbox.downloads.load(Ordering::SeqCst), || w.mailbox.listings.load(Ordering::SeqCst));
    assert_eq!((downloads(), listings()), (2, 1), "the listing is asked once, for the message with a file");

    // When both are read (a new changeKey each, the same MIME)
    for id in ["m1", "m2"] {
        w.mailbox.change(id, |m| m.is_read = true);
    }
    w.sync(ChangeReason::Notification).await;

    // Then both are recorded read without a download; only the one with a file is listed
    assert!(w.current("m1").await.mail.is_some_and(|m| m.is_read));
    assert!(w.current("m2").await.mail.is_some_and(|m| m.is_read));
    assert_eq!((downloads(), listings()), (2, 2));

    // When Dynamic Delivery attaches another file to the received message
    let redelivered =
        Bytes::from(format!("X-MS-Exchange-Dynamic-Delivery: 1\r\n{}", String::from_utf8_lossy(&mime("m1", true))));
    w.mailbox.change("m1", |m| m.mime = redelivered.clone());
    w.sync(ChangeReason::Notification).await;

    // Then its new MIME is the backed-up content, and its old one stays in history
    let now = w.current("m1").await;
    assert_eq!(now.content.map(|c| c.sha256), Some(hex::encode(Sha256::digest(&redelivered))));
    assert_eq!(downloads(), 3);
    assert_eq!(
        w.history("m1")
            .await
            .iter()
            .filter_map(|v| v.content.as_ref().map(|c| c.sha256.clone()))
            .collect::<BTreeSet<_>>()
            .len(),
        2
    );

    // And a file taken away again is backed up too
    let stripped = mime("m1", false);
    w.mailbox.change("m1", |m| m.mime = stripped.clone());
    w.sync(ChangeReason::Notification).await;
    assert_eq!(w.current("m1").await.content.map(|c| c.sha256), Some(hex::encode(Sha256::digest(&stripped))));
}
