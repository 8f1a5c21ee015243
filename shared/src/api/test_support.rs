//! A tenant with one protected user and drive, a little history, and helpers to call the
//! router in-process with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tower::ServiceExt;

use super::{ApiDeps, MemoryPresigner, router};
use crate::model::{
    ContainerId, ContainerRecord, ContentRef, ItemKind, ItemVersion, MailMeta, ObjectRef, SCHEMA_VERSION, SyncState,
    Verification,
};
use crate::store::memory::{MemoryCatalog, MemorySink};
use crate::store::{Containers, ItemHistory, SyncStates};

pub const TENANT: &str = "tenant-1";
pub const DRIVE: &str = "drive-a";
pub const ROOT: &str = "root-a";
pub const DOCS: &str = "folder-docs";

pub struct Fixture {
    pub catalog: Arc<MemoryCatalog>,
    pub sink: Arc<MemorySink>,
    pub presigner: Arc<MemoryPresigner>,
    pub router: Router,
    /// When the drive was first discovered: the earliest answerable "as of".
    pub discovered: DateTime<Utc>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: serde_json::Value,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts a problem document with this status and type slug.
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(self.content_type(), "application/problem+json");
        assert_eq!(self.json["status"], status);
        assert_eq!(self.json["type"], format!("urn:m365-backup:problem:{slug}"), "{}", self.json);
        assert!(self.json["title"].is_string() && self.json["detail"].is_string(), "{}", self.json);
    }
}

pub fn t(offset_minutes: i64, base: DateTime<Utc>) -> DateTime<Utc> {
    base + TimeDelta::minutes(offset_minutes)
}

pub fn file(item_id: &str, name: &str, parent: &str, modified: DateTime<Utc>, etag: &str) -> ItemVersion {
    let sha256 = format!("{:0>64}", hex::encode(format!("{item_id}:{etag}")));
    ItemVersion {
        created: None,
        v: SCHEMA_VERSION,
        key: ContainerId::new(TENANT, DRIVE).item(item_id),
        version: etag.to_owned(),
        kind: ItemKind::File,
        name: Some(name.to_owned()),
        parent_id: Some(parent.to_owned()),
        ctag: None,
        modified,
        captured_at: modified + TimeDelta::seconds(5),
        deleted: false,
        content: Some(ContentRef {
            object: ObjectRef { key: format!("blobs/{sha256}"), version_id: format!("s3v-{etag}") },
            size: 1000 + etag.len() as u64,
            sha256,
            quick_xor_hash: None,
        }),
        verification: Verification::QuickXor,
        mail: None,
        observed_at: None,
        current_from: None,
        note: None,
    }
}

pub fn folder(item_id: &str, name: &str, parent: &str, modified: DateTime<Utc>, etag: &str) -> ItemVersion {
    ItemVersion {
        kind: ItemKind::Folder,
        content: None,
        verification: Verification::NoContent,
        ..file(item_id, name, parent, modified, etag)
    }
}

pub fn tombstone(of: &ItemVersion, at: DateTime<Utc>) -> ItemVersion {
    ItemVersion {
        version: ItemVersion::tombstone_version(at),
        modified: at,
        captured_at: at,
        deleted: true,
        content: None,
        verification: Verification::NoContent,
        ..of.clone()
    }
}

pub async fn commit(catalog: &MemoryCatalog, version: &ItemVersion) {
    let record = ObjectRef { key: format!("records/{}", version.version), version_id: "r".into() };
    catalog.commit_version(version, &record).await.expect("commit");
}

pub async fn protect(catalog: &MemoryCatalog, drive: &str, user: &str, discovered: DateTime<Utc>, root: &str) {
    let container = ContainerId::new(TENANT, drive);
    catalog
        .put_container(&ContainerRecord {
            container: container.clone(),
            user_id: user.to_owned(),
            user_principal_name: Some(format!("{user}@contoso.test")),
            discovered_at: discovered,
            subscription_id: Some(format!("sub-{drive}")),
            subscription_expires: Some(discovered + TimeDelta::days(29)),
            problem: None,
            site: None,
        })
        .await
        .expect("container");
    let sync = SyncState {
        delta_link: Some("https://graph.test/delta?token=secret".into()),
        last_synced_at: Some(discovered + TimeDelta::hours(1)),
        root_id: Some(root.to_owned()),
        ..SyncState::default()
    };
    catalog.put_sync_state(&container, &sync).await.expect("sync");
}

/// Protects `user`'s mailbox since `discovered`, its top folder being `root`; returns its id.
pub async fn protect_mailbox(
    catalog: &MemoryCatalog,
    user: &str,
    discovered: DateTime<Utc>,
    root: &str,
) -> ContainerId {
    let mailbox = ContainerId::mailbox(TENANT, user);
    catalog
        .put_container(&ContainerRecord {
            container: mailbox.clone(),
            user_id: user.to_owned(),
            user_principal_name: Some(format!("{user}@contoso.test")),
            discovered_at: discovered,
            subscription_id: Some(format!("sub-mail-{user}")),
            subscription_expires: None,
            problem: None,
            site: None,
        })
        .await
        .expect("container");
    let sync = SyncState { root_id: Some(root.to_owned()), ..SyncState::default() };
    catalog.put_sync_state(&mailbox, &sync).await.expect("sync");
    mailbox
}

/// A message of `mailbox` in `folder`, its MIME stored under `change_key`.
pub fn message(
    mailbox: &ContainerId,
    id: &str,
    subject: &str,
    folder: &str,
    at: DateTime<Utc>,
    change_key: &str,
) -> ItemVersion {
    ItemVersion {
        key: mailbox.item(id),
        kind: ItemKind::Message,
        name: Some(subject.to_owned()),
        verification: Verification::Sha256,
        mail: Some(MailMeta {
            subject: Some(subject.to_owned()),
            internet_message_id: Some(format!("<{id}@contoso.test>")),
            received: Some(at),
            ..MailMeta::default()
        }),
        ..file(id, subject, folder, at, change_key)
    }
}

/// A mail folder of `mailbox`.
pub fn mail_folder(mailbox: &ContainerId, id: &str, name: &str, parent: &str, at: DateTime<Utc>) -> ItemVersion {
    ItemVersion { key: mailbox.item(id), kind: ItemKind::MailFolder, ..folder(id, name, parent, at, "folder.1") }
}

/// Drive `drive-a` of user `ada`, discovered ten days ago, with:
/// - `folder-docs` ("Docs") under the root since discovery,
/// - `file-report` ("report.docx") in Docs, edited a day after discovery (`e1` → `e2`),
/// - `file-notes` ("notes.txt") at the root, deleted two days after discovery,
/// - `file-plan` ("plan.xlsx") in Docs.
pub async fn fixture() -> Fixture {
    let catalog = Arc::new(MemoryCatalog::new());
    let sink = Arc::new(MemorySink::new());
    let presigner = Arc::new(MemoryPresigner::new());
    // Minute-aligned, so that tests can reason about per-minute buckets.
    let discovered = (Utc::now() - TimeDelta::days(10)).duration_trunc(TimeDelta::minutes(1)).expect("minute");
    protect(&catalog, DRIVE, "ada", discovered, ROOT).await;
    commit(&catalog, &folder(DOCS, "Docs", ROOT, t(1, discovered), "f1")).await;
    commit(&catalog, &file("file-report", "report.docx", DOCS, t(2, discovered), "e1")).await;
    commit(&catalog, &file("file-report", "report.docx", DOCS, t(24 * 60, discovered), "e2")).await;
    let notes = file("file-notes", "notes.txt", ROOT, t(3, discovered), "n1");
    commit(&catalog, &notes).await;
    commit(&catalog, &tombstone(&notes, t(2 * 24 * 60, discovered))).await;
    commit(&catalog, &file("file-plan", "plan.xlsx", DOCS, t(4, discovered), "p1")).await;
    let deps = ApiDeps {
        tenant_id: TENANT.into(),
        catalog: catalog.clone(),
        sink: sink.clone(),
        presigner: presigner.clone(),
        exports: presigner.clone(),
        clock: crate::clock::system(),
    };
    Fixture { router: router(Arc::new(deps)), catalog, sink, presigner, discovered }
}

pub fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Fixture {
    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Request::get(uri).body(Body::empty()).expect("request")).await
    }

    pub async fn post_json(&self, uri: &str, body: &serde_json::Value) -> Reply {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.call(request).await
    }

    pub async fn call(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Reply { status, headers, json }
    }
}
