//! How a restored message is verified, in-process against the in-memory catalog and vault and
//! a scripted Graph: from the create's answer when it has no attachments, by reading its MIME
//! back when it has.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::{RestorerDeps, handle};
use crate::graph::test_server::{Seen, TestServer, graph_error, json as reply_json, reply};
use crate::model::{
    ContainerId, ContentRef, ItemKind, ItemVersion, MailMeta, ObjectRef, RestoreJob, RestoreOutcome, RestoreScope,
    RestoreStatus, RestoreTarget, RestoreTask, SCHEMA_VERSION, Verification,
};
use crate::store::memory::{MemoryCatalog, MemorySink, MemoryVault};
use crate::store::{ItemHistory, Lock, LockMode, QueueName, RestoreJobs, Vault};

const USER: &str = "user-1";
const INBOX: &str = "inbox-id";

fn mailbox() -> ContainerId {
    ContainerId::mailbox("t", USER)
}

fn plain(id: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@example.test>\r\nFrom: a@example.test\r\nTo: b@example.test\r\nSubject: {id}\r\n\
         Date: Mon, 1 Apr 2024 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nHello {id}.\r\n"
    )
    .into_bytes()
}

fn with_attachment(id: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@example.test>\r\nFrom: a@example.test\r\nTo: b@example.test\r\nSubject: {id}\r\n\
         Date: Mon, 1 Apr 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b1--\r\n"
    )
    .into_bytes()
}

/// Graph as the restorer meets it: the Inbox is there and empty; a create answers the
/// message with the internet message id it was given (another one for `tampered`), and its
/// MIME reads back as `read_back`.
fn graph(seen: &Seen, read_back: &[u8]) -> axum::response::Response {
    let path = seen.path.as_str();
    match seen.method.as_str() {
        "GET" if path.ends_with(&format!("/mailFolders/{INBOX}")) => {
            reply_json(200, &json!({"id": INBOX, "displayName": "Inbox", "parentFolderId": "root"}))
        }
        "GET" if path.ends_with(&format!("/mailFolders/{INBOX}/messages")) => reply_json(200, &json!({"value": []})),
        "GET" if path.ends_with("/$value") => reply(200, &[("content-type", "message/rfc822")], read_back.to_vec()),
        "POST" if path.ends_with(&format!("/mailFolders/{INBOX}/messages")) => {
            let body: Value = serde_json::from_str(&seen.body).unwrap_or_default();
            let mut id = body["internetMessageId"].clone();
            if body["subject"] == "tampered" {
                id = json!("<someone-else@example.test>");
            }
            let attached = body["attachments"].as_array().is_some_and(|a| !a.is_empty());
            reply_json(
                201,
                &json!({"id": format!("new-{}", seen.nth), "internetMessageId": id, "isDraft": false,
                    "hasAttachments": attached, "parentFolderId": INBOX}),
            )
        }
        _ => graph_error(404, "itemNotFound"),
    }
}

struct World {
    catalog: Arc<MemoryCatalog>,
    vault: Arc<MemoryVault>,
    sink: Arc<MemorySink>,
    deps: RestorerDeps,
    graph: TestServer,
    base: DateTime<Utc>,
}

impl World {
    async fn new(read_back: Vec<u8>) -> Self {
        let graph = TestServer::start(3600, move |seen, _| graph(seen, &read_back)).await;
        let (catalog, vault, sink) =
            (Arc::new(MemoryCatalog::new()), Arc::new(MemoryVault::new()), Arc::new(MemorySink::new()));
        let deps = RestorerDeps {
            vault: vault.clone(),
            ..RestorerDeps::in_memory(graph.client(), catalog.clone(), sink.clone(), crate::clock::system())
        };
        Self { catalog, vault, sink, deps, graph, base: Utc::now() - TimeDelta::days(1) }
    }

    fn at(&self, minutes: i64) -> DateTime<Utc> {
        self.base + TimeDelta::minutes(minutes)
    }

    fn version(&self, id: &str, kind: ItemKind, parent: &str) -> ItemVersion {
        ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: mailbox().item(id),
            version: format!("ck-{id}"),
            kind,
            name: Some(id.to_owned()),
            parent_id: Some(parent.to_owned()),
            ctag: None,
            modified: self.at(0),
            captured_at: self.at(0),
            deleted: false,
            content: None,
            verification: Verification::NoContent,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        }
    }

    async fn commit(&self, v: &ItemVersion) {
        let record = ObjectRef { key: format!("records/{}", v.version), version_id: "r".into() };
        self.catalog.commit_version(v, &record).await.expect("commit");
    }

    /// A message of the Inbox backed up at minute 0 and deleted at minute 10.
    async fn lost_message(&self, id: &str, mime: &[u8]) {
        let sha256 = hex::encode(Sha256::digest(mime));
        let lock = Lock { mode: LockMode::Governance, retain_until: Utc::now() + TimeDelta::days(1) };
        let stored = self.vault.put_if_absent(&format!("blobs/{sha256}"), Bytes::copy_from_slice(mime), &lock).await;
        let mut v = self.version(id, ItemKind::Message, INBOX);
        v.verification = Verification::Sha256;
        v.content = Some(ContentRef {
            object: stored.expect("stored").object,
            size: mime.len() as u64,
            sha256,
            quick_xor_hash: None,
        });
        v.mail = Some(MailMeta {
            subject: Some(id.to_owned()),
            internet_message_id: Some(format!("<{id}@example.test>")),
            has_attachments: mime.windows(10).any(|w| w == b"attachment"),
            ..MailMeta::default()
        });
        self.commit(&v).await;
        let mut gone = v.clone();
        gone.version = ItemVersion::tombstone_version(self.at(10));
        (gone.modified, gone.captured_at, gone.deleted, gone.content) = (self.at(10), self.at(10), true, None);
        self.commit(&gone).await;
    }

    /// An in-place restore of the mailbox as of minute 5, run to the end.
    async fn restore(&self) -> RestoreJob {
        self.commit(&self.version(INBOX, ItemKind::MailFolder, "root")).await;
        let job =
            RestoreJob::new("job", mailbox(), RestoreScope::Container, self.at(5), RestoreTarget::InPlace, Utc::now());
        self.catalog.create_restore_job(&job).await.expect("create");
        handle(&self.deps, &RestoreTask::plan(job.id.clone(), false), far()).await.expect("plan");
        loop {
            let queued = self.sink.take(QueueName::Restores);
            if queued.is_empty() {
                break;
            }
            for m in queued {
                let task: RestoreTask = serde_json::from_str(&m.body).expect("task");
                handle(&self.deps, &task, far()).await.expect("chunk");
            }
        }
        self.catalog.restore_job(&job.id).await.expect("read").expect("job")
    }

    async fn outcome(&self, item: &str) -> (RestoreOutcome, Option<String>) {
        let report = self.catalog.restore_report("job", item).await.expect("read").expect("reported");
        (report.outcome, report.detail)
    }

    fn read_backs(&self) -> usize {
        self.graph.graph_requests().iter().filter(|s| s.path.ends_with("/$value")).count()
    }
}

#[tokio::test]
async fn a_message_without_attachments_is_verified_from_the_creates_answer_alone() {
    // Given a lost message without attachments
    let world = World::new(Vec::new()).await;
    world.lost_message("plain", &plain("plain")).await;

    // When the mailbox is restored in place
    let job = world.restore().await;

    // Then it is restored and verified with one request: its create, never read back
    assert_eq!(job.status, RestoreStatus::Succeeded);
    assert_eq!(world.outcome("plain").await.0, RestoreOutcome::Restored);
    let creates = world.graph.graph_requests().iter().filter(|s| s.method == "POST").count();
    assert_eq!((creates, world.read_backs()), (1, 0));
}

#[tokio::test]
async fn a_create_that_answers_another_message_id_is_a_failure_not_a_restore() {
    // Given a lost message without attachments whose create Exchange answers with another
    // internet message id
    let world = World::new(Vec::new()).await;
    world.lost_message("tampered", &plain("tampered")).await;

    // When the mailbox is restored in place
    let job = world.restore().await;

    // Then the message is reported failed for its lost Message-ID
    assert_eq!(job.status, RestoreStatus::CompletedWithErrors);
    let (outcome, detail) = world.outcome("tampered").await;
    assert_eq!(outcome, RestoreOutcome::Failed);
    assert!(detail.unwrap_or_default().contains("Message-ID"));
}

#[tokio::test]
async fn a_message_with_attachments_is_read_back_and_its_attachment_bytes_compared() {
    // Given a lost message with an attachment, which Graph serves back without it
    let world = World::new(plain("attached")).await;
    world.lost_message("attached", &with_attachment("attached")).await;

    // When the mailbox is restored in place
    let job = world.restore().await;

    // Then its MIME was read back, and the missing attachment makes it a failure
    assert_eq!(world.read_backs(), 1);
    assert_eq!(job.status, RestoreStatus::CompletedWithErrors);
    let (outcome, detail) = world.outcome("attached").await;
    assert_eq!(outcome, RestoreOutcome::Failed);
    assert!(detail.unwrap_or_default().contains("attachments"));
}

#[tokio::test]
async fn a_message_with_attachments_that_read_back_whole_is_restored() {
    // Given a lost message with an attachment, which Graph serves back whole
    let world = World::new(with_attachment("whole")).await;
    world.lost_message("whole", &with_attachment("whole")).await;

    // When the mailbox is restored in place, then it is restored after one read-back
    let job = world.restore().await;
    assert_eq!(job.status, RestoreStatus::Succeeded);
    assert_eq!(world.outcome("whole").await.0, RestoreOutcome::Restored);
    assert_eq!(world.read_backs(), 1);
}

/// A deadline no test reaches.
fn far() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(3600)
}
