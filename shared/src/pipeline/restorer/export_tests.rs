//! Export jobs in-process against the in-memory catalog, vault and exports bucket: the zips
//! are read back with an independent zip reader and compared byte for byte with the vault.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use super::export::split;
use super::{RestorerDeps, handle};
use crate::graph::test_server::{TestServer, graph_error};
use crate::model::{
    ContainerId, ContentRef, ItemKind, ItemVersion, MailMeta, ObjectRef, RestoreJob, RestoreOutcome, RestoreScope,
    RestoreStatus, RestoreStep, RestoreTarget, RestoreTask, SCHEMA_VERSION, Verification,
};
use crate::pipeline::part_buffer::PART_SIZE;
use crate::store::memory::{MemoryCatalog, MemoryExports, MemorySink, MemoryVault};
use crate::store::{ExportParts, ItemHistory, Lock, LockMode, QueueName, RestoreJobs, Vault};

const USER: &str = "user-1";

/// An invocation deadline no export reaches.
fn far() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(900)
}

fn mailbox() -> ContainerId {
    ContainerId::mailbox("t", USER)
}

struct World {
    catalog: Arc<MemoryCatalog>,
    vault: Arc<MemoryVault>,
    exports: Arc<MemoryExports>,
    sink: Arc<MemorySink>,
    deps: RestorerDeps,
    /// Graph must never be called by an export.
    graph: TestServer,
    base: DateTime<Utc>,
}

impl World {
    async fn new() -> Self {
        let graph = TestServer::start(3600, |_, _| graph_error(500, "an export never calls Graph")).await;
        let (catalog, vault) =
            (Arc::new(MemoryCatalog::with_index_lag(crate::pipeline::tests::INDEX_LAG)), Arc::new(MemoryVault::new()));
        let (exports, sink) = (Arc::new(MemoryExports::new()), Arc::new(MemorySink::new()));
        let deps = RestorerDeps {
            vault: vault.clone(),
            exports: exports.clone(),
            ..RestorerDeps::in_memory(graph.client(), catalog.clone(), sink.clone(), crate::clock::system())
        };
        let base = Utc::now() - TimeDelta::days(1);
        Self { catalog, vault, exports, sink, deps, graph, base }
    }

    fn at(&self, minutes: i64) -> DateTime<Utc> {
        self.base + TimeDelta::minutes(minutes)
    }

    async fn folder(&self, id: &str, name: &str, parent: &str) {
        let mut v = version(id, ItemKind::MailFolder, parent, self.at(0));
        v.name = Some(name.to_owned());
        self.commit(&v).await;
    }

    /// A message whose MIME is stored in the vault; `recorded` overrides the SHA-256 the
    /// catalog records (a corrupted backup).
    async fn message(&self, id: &str, folder: &str, subject: &str, minute: i64, mime: &[u8], recorded: Option<&str>) {
        let sha256 = hex::encode(Sha256::digest(mime));
        let lock = Lock { mode: LockMode::Governance, retain_until: Utc::now() + TimeDelta::days(1) };
        let stored = self.vault.put_if_absent(&format!("blobs/{sha256}"), Bytes::copy_from_slice(mime), &lock).await;
        let mut v = version(id, ItemKind::Message, folder, self.at(minute));
        v.verification = Verification::Sha256;
        v.content = Some(ContentRef {
            object: stored.expect("stored").object,
            size: mime.len() as u64,
            sha256: recorded.map_or(sha256, str::to_owned),
            quick_xor_hash: None,
        });
        v.mail = Some(MailMeta {
            subject: Some(subject.to_owned()),
            received: Some(self.at(minute)),
            internet_message_id: Some(format!("<{id}@example.test>")),
            ..MailMeta::default()
        });
        self.commit(&v).await;
    }

    async fn delete(&self, id: &str, minute: i64) {
        let head = self.catalog.head(&mailbox().item(id)).await.expect("head").expect("exists");
        let mut v = head.current;
        v.version = ItemVersion::tombstone_version(self.at(minute));
        (v.modified, v.deleted, v.content) = (self.at(minute), true, None);
        self.commit(&v).await;
    }

    async fn commit(&self, v: &ItemVersion) {
        let record = ObjectRef { key: format!("records/{}", v.version), version_id: "r".into() };
        self.catalog.commit_version(v, &record).await.expect("commit");
    }

    /// Creates an export job, then delivers every task it queues until none is left.
    async fn export(&self, scope: RestoreScope, as_of: DateTime<Utc>) -> RestoreJob {
        let job = RestoreJob::new(
            format!("job-{}", uuid::Uuid::new_v4()),
            mailbox(),
            scope,
            as_of,
            RestoreTarget::Export,
            Utc::now(),
        );
        self.catalog.create_restore_job(&job).await.expect("create");
        handle(&self.deps, &RestoreTask::plan(job.id.clone(), false), far()).await.expect("plan");
        self.drain().await;
        self.catalog.restore_job(&job.id).await.expect("read").expect("job")
    }

    async fn drain(&self) {
        loop {
            let queued = self.sink.take(QueueName::Restores);
            if queued.is_empty() {
                return;
            }
            for m in queued {
                let task: RestoreTask = serde_json::from_str(&m.body).expect("task");
                handle(&self.deps, &task, far()).await.expect("part");
            }
        }
    }

    /// The job's zips read back: entry name → bytes, in part order.
    async fn entries(&self, job: &RestoreJob) -> Vec<BTreeMap<String, Vec<u8>>> {
        let parts = self.catalog.export_parts(&job.id).await.expect("parts");
        parts
            .iter()
            .map(|p| {
                let zip = self.exports.object(&p.key).expect("the part's zip");
                assert_eq!((zip.len() as u64, hex::encode(Sha256::digest(&zip))), (p.bytes, p.sha256.clone()));
                read_zip(&zip)
            })
            .collect()
    }
}

fn version(id: &str, kind: ItemKind, parent: &str, modified: DateTime<Utc>) -> ItemVersion {
    ItemVersion {
        created: None,
        v: SCHEMA_VERSION,
        key: mailbox().item(id),
        version: format!("ck-{id}-{}", modified.timestamp_millis()),
        kind,
        name: None,
        parent_id: Some(parent.to_owned()),
        ctag: None,
        modified,
        captured_at: modified,
        deleted: false,
        content: None,
        verification: Verification::NoContent,
        mail: None,
        observed_at: None,
        current_from: None,
        note: None,
    }
}

fn read_zip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut zip = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid zip");
    (0..zip.len())
        .map(|i| {
            let mut file = zip.by_index(i).expect("entry");
            let mut body = Vec::new();
            file.read_to_end(&mut body).expect("entry bytes, CRC checked");
            (file.name().to_owned(), body)
        })
        .collect()
}

fn mime(id: &str) -> Vec<u8> {
    format!("Message-ID: <{id}@example.test>\r\nSubject: {id}\r\n\r\nBody of {id}\r\n").into_bytes()
}

/// The entry whose name ends with the message's short id.
fn entry<'a>(entries: &'a BTreeMap<String, Vec<u8>>, id: &str) -> Option<(&'a String, &'a Vec<u8>)> {
    let short = crate::export::names::short_id(id);
    entries.iter().find(|(name, _)| name.ends_with(&format!("_{short}.eml")))
}

/// Inbox (with Projects inside) and Archive; five messages, one created after T and one
/// deleted after T.
async fn seeded() -> (World, DateTime<Utc>) {
    let w = World::new().await;
    w.folder("inbox", "Inbox", "msgroot").await;
    w.folder("projects", "Projects", "inbox").await;
    w.folder("archive", "Archive", "msgroot").await;
    w.message("m1", "inbox", "Hello", 1, &mime("m1"), None).await;
    w.message("m2", "projects", "../../etc/passwd / Q3", 2, &mime("m2"), None).await;
    w.message("m3", "archive", "Old", 3, &mime("m3"), None).await;
    w.message("m5", "inbox", "Deleted later", 4, &mime("m5"), None).await;
    let as_of = w.at(10);
    w.message("m4", "inbox", "Created later", 20, &mime("m4"), None).await;
    w.delete("m5", 21).await;
    (w, as_of)
}

#[tokio::test]
async fn a_mailbox_export_holds_every_message_as_of_t_byte_for_byte_with_its_manifest() {
    // Given a mailbox where, after T, one message arrived and one was deleted
    let (w, as_of) = seeded().await;

    // When the whole mailbox is exported as of T
    let job = w.export(RestoreScope::Container, as_of).await;

    // Then the job succeeded with one zip holding the four messages of T under their folders
    assert_eq!(job.status, RestoreStatus::Succeeded);
    assert_eq!((job.planned_items, job.restored, job.failed), (4, 4, 0));
    let parts = w.entries(&job).await;
    assert_eq!(parts.len(), 1);
    let entries = &parts[0];
    for (id, folder) in [("m1", "Inbox/"), ("m2", "Inbox/Projects/"), ("m3", "Archive/"), ("m5", "Inbox/")] {
        let (name, bytes) = entry(entries, id).unwrap_or_else(|| panic!("{id} exported"));
        assert!(name.starts_with(folder), "{name}");
        assert_eq!(*bytes, mime(id), "{id} byte for byte");
    }
    assert!(entry(entries, "m4").is_none(), "created after T");
    let (hostile, _) = entry(entries, "m2").expect("m2");
    assert!(hostile.split('/').all(|s| s != ".." && !s.is_empty()), "{hostile}");
    assert_eq!(hostile.matches('/').count(), 2, "the subject's `/` is not a directory: {hostile}");

    // And the manifest lists each entry with its ids, folder, size and SHA-256
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).expect("manifest");
    let listed = manifest["entries"].as_array().expect("entries");
    assert_eq!(listed.len(), 4);
    for e in listed {
        let bytes = &entries[e["path"].as_str().expect("path")];
        assert_eq!(e["sha256"], hex::encode(Sha256::digest(bytes)));
        assert_eq!(e["size"], bytes.len());
        let id = e["item_id"].as_str().expect("id");
        assert_eq!(e["internet_message_id"], format!("<{id}@example.test>"));
    }
    let m2 = listed.iter().find(|e| e["item_id"] == "m2").expect("m2 listed");
    assert_eq!(m2["folder"], "Inbox/Projects");
    assert_eq!(manifest["failed"], serde_json::json!([]));
    assert!(w.graph.graph_requests().is_empty());
    assert_eq!(w.exports.open_uploads(), 0);
}

#[tokio::test]
async fn a_folder_export_holds_its_subtree_and_a_redelivered_part_changes_nothing() {
    // Given the same mailbox, and an export of Inbox (with Projects) as of T
    let (w, as_of) = seeded().await;
    let job = w.export(RestoreScope::Item { item_id: "inbox".into() }, as_of).await;
    assert_eq!(job.status, RestoreStatus::Succeeded);
    let parts = w.entries(&job).await;
    let names: Vec<&String> = parts[0].keys().filter(|n| n.ends_with(".eml")).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(entry(&parts[0], "m3").is_none(), "Archive is outside the scope");

    // When its part is delivered again
    let part = w.catalog.export_parts(&job.id).await.expect("parts")[0].clone();
    let step = RestoreStep::ExportPart { part: 1, of: 1, from: None, to: None };
    handle(&w.deps, &RestoreTask::new(job.id.clone(), step), far()).await.expect("again");

    // Then nothing is written or counted again
    let again = w.catalog.restore_job(&job.id).await.expect("read").expect("job");
    assert_eq!((again.restored, again.status), (3, RestoreStatus::Succeeded));
    assert_eq!(w.catalog.export_parts(&job.id).await.expect("parts"), vec![part]);
}

#[tokio::test]
async fn a_message_whose_vault_bytes_differ_from_its_record_is_reported_and_never_exported() {
    // Given a message whose recorded SHA-256 is not that of the bytes in the vault
    let (w, as_of) = seeded().await;
    w.message("bad", "archive", "Tampered", 5, b"Subject: tampered\r\n\r\n", Some(&"0".repeat(64))).await;

    // When the mailbox is exported
    let job = w.export(RestoreScope::Container, as_of).await;

    // Then the job completed with one failure, reported, listed, and absent from the zip
    assert_eq!(job.status, RestoreStatus::CompletedWithErrors);
    assert_eq!((job.restored, job.failed), (4, 1));
    let report = w.catalog.restore_report(&job.id, "bad").await.expect("read").expect("report");
    assert_eq!(report.outcome, RestoreOutcome::Failed);
    assert!(report.detail.as_deref().is_some_and(|d| d.contains("do not match")), "{report:?}");
    let parts = w.entries(&job).await;
    assert!(entry(&parts[0], "bad").is_none());
    let manifest: serde_json::Value = serde_json::from_slice(&parts[0]["manifest.json"]).expect("manifest");
    assert_eq!(manifest["failed"][0]["item_id"], "bad");
    assert_eq!(manifest["failed"][0]["folder"], "Archive");
}

#[tokio::test]
async fn a_message_larger_than_a_whole_read_streams_through_parts_of_bounded_size() {
    // Given a message of 20 MiB (read twice: check, then write) beside a small one
    let w = World::new().await;
    w.folder("inbox", "Inbox", "msgroot").await;
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    w.message("big", "inbox", "Video", 1, &big, None).await;
    w.message("small", "inbox", "Note", 2, &mime("small"), None).await;

    // When the mailbox is exported
    let job = w.export(RestoreScope::Container, w.at(5)).await;

    // Then both are in the zip byte for byte, uploaded in parts of S3's sizes, never the
    // whole archive at once
    assert_eq!(job.status, RestoreStatus::Succeeded);
    let parts = w.entries(&job).await;
    assert_eq!(entry(&parts[0], "big").expect("big").1, &big);
    assert_eq!(entry(&parts[0], "small").expect("small").1, &mime("small"));
    assert!(w.exports.largest_part() <= PART_SIZE, "{}", w.exports.largest_part());
}

#[test]
fn parts_hold_at_most_their_messages_and_bytes_and_a_larger_message_goes_alone() {
    // Given messages of 40, 40, 40, 500 and 10 bytes
    let sizes = [40u64, 40, 40, 500, 10];
    let versions: Vec<ItemVersion> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let mut v = version(&format!("m{i}"), ItemKind::Message, "inbox", Utc::now());
            v.content = Some(ContentRef {
                object: ObjectRef { key: "k".into(), version_id: "v".into() },
                size: *size,
                sha256: String::new(),
                quick_xor_hash: None,
            });
            v
        })
        .collect();
    let refs: Vec<&ItemVersion> = versions.iter().collect();

    // When they are split into parts of at most 2 messages and 100 bytes
    let starts = split(&refs, 2, 100);

    // Then parts start at m0, m2, m3 (alone: over the byte limit) and m4
    let starts: Vec<Option<&str>> = starts.iter().map(Option::as_deref).collect();
    assert_eq!(starts, [None, Some("m2"), Some("m3"), Some("m4")]);
}
