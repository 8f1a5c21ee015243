//! SharePoint on the local stack: the demo's sites, and its SharePoint chapter (a team site's
//! library loses a folder by accident; the loss is backed up as tombstones; the folder is
//! browsed as of the moment before, restored in place as of then, and every restored file is
//! compared with its bytes before the deletion, in Microsoft 365 and in the vault).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::store::ItemHistory;

use crate::admin::SimItem;
use crate::ransomware::{api, start_restore, wait_job};
use crate::stack::Stack;

/// The demo tenant's sites, small so the demo stays fast: a group-connected team site with
/// two libraries and a subsite, a communication site, and a site with a hidden system library
/// beside its documents (every site also has the hidden `Site Pages` and `Style Library`).
pub fn demo_sites() -> Value {
    json!([
        {"name": "Finance", "template": "team", "group": true, "libraries": [
            {"name": "Documents", "files": 40, "folders": 6, "max_depth": 3, "min_size": 1, "max_size": 200_000},
            {"name": "Contracts", "files": 8, "folders": 2, "max_depth": 2, "min_size": 1, "max_size": 80_000}],
         "subsites": [{"name": "Audit", "libraries": [
            {"name": "Documents", "files": 10, "folders": 2, "max_depth": 2, "min_size": 1, "max_size": 60_000}]}]},
        {"name": "Communications", "template": "communication", "libraries": [
            {"name": "Documents", "files": 30, "folders": 4, "max_depth": 2, "min_size": 1, "max_size": 150_000}]},
        {"name": "Projects", "template": "team", "libraries": [
            {"name": "Documents", "files": 8, "folders": 1, "max_depth": 1, "min_size": 1, "max_size": 50_000},
            {"name": "Form Templates", "system": true, "files": 3, "folders": 0, "min_size": 1, "max_size": 20_000}]}
    ])
}

/// The drive id of library `library` of the live site `site`.
pub async fn library_drive(stack: &Stack, site: &str, library: &str) -> Result<String> {
    let site = stack.admin.site(site).await?;
    Ok(site
        .library(library)
        .with_context(|| format!("{} has no library {library:?}", site.display_name))?
        .drive_id
        .clone())
}

/// What a folder held: path relative to the folder → SHA-256 for files, `None` for folders.
pub type Subtree = BTreeMap<String, Option<String>>;

/// The folder `folder`'s subtree in `items` (the simulator's ground truth), itself excluded.
pub fn subtree(items: &[SimItem], folder_path: &str) -> Subtree {
    let prefix = format!("{folder_path}/");
    items
        .iter()
        .filter_map(|i| i.path.strip_prefix(&prefix).map(|rel| (rel.to_owned(), i)))
        .map(|(rel, i)| (rel, (i.kind == "file").then(|| i.sha256.clone().unwrap_or_default())))
        .collect()
}

/// What happened to a folder deleted by accident and restored as of the moment before.
pub struct FolderRestore {
    pub drive_id: String,
    pub folder: String,
    pub as_of: DateTime<Utc>,
    /// The folder's subtree before the deletion and after the restore (ground truth).
    pub before: Subtree,
    pub after: Subtree,
    /// Each file's SHA-256 read back from the vault through the API's presigned download of
    /// the version it had before the deletion.
    pub vault: BTreeMap<String, String>,
    /// Items of the subtree the catalog records as deleted once the deletion was backed up.
    pub tombstones: usize,
    /// Names the restore API lists in the folder as of `as_of`, and the names it held then.
    pub browsed: Vec<String>,
    pub direct_children: Vec<String>,
    /// Whether the folder is listed at the root now (after the deletion, before the restore).
    pub listed_after_deletion: bool,
    pub job: Value,
    pub seconds: f64,
}

impl FolderRestore {
    pub fn files(subtree: &Subtree) -> usize {
        subtree.values().filter(|v| v.is_some()).count()
    }

    /// Files restored with the bytes they had before the deletion, in Microsoft 365 and in
    /// the vault.
    pub fn equal_files(&self) -> usize {
        self.before
            .iter()
            .filter(|(path, sha)| {
                sha.is_some() && self.after.get(*path) == Some(*sha) && self.vault.get(*path) == sha.as_ref()
            })
            .count()
    }

    /// Everything that would make the restore untrue, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let what = format!("library folder {}", self.folder);
        if self.job["status"] != "succeeded" {
            problems.push(format!("{what}: restore ended {}", self.job["status"]));
        }
        for (path, sha) in &self.before {
            match (sha, self.after.get(path)) {
                (_, None) => problems.push(format!("{what}/{path}: not restored")),
                (Some(old), Some(Some(new))) if old != new => {
                    problems.push(format!("{what}/{path}: restored bytes differ from the bytes before the deletion"))
                }
                (Some(old), _) if self.vault.get(path) != Some(old) => {
                    problems.push(format!("{what}/{path}: the vault's bytes differ from the bytes before the deletion"))
                }
                _ => {}
            }
        }
        for path in self.after.keys().filter(|p| !self.before.contains_key(*p)) {
            problems.push(format!("{what}/{path}: restored but not there before"));
        }
        if self.tombstones < self.before.len() + 1 {
            problems.push(format!("{what}: {} of {} deletions backed up", self.tombstones, self.before.len() + 1));
        }
        if self.browsed != self.direct_children {
            problems.push(format!("{what}: browsed as of {} shows {:?}", self.as_of, self.browsed));
        }
        if self.listed_after_deletion {
            problems.push(format!("{what}: still listed at the root after its deletion was backed up"));
        }
        problems
    }
}

/// A top-level folder of `drive` holding at least two files, then the whole story: deleted by
/// accident, the deletion backed up, browsed as of the moment before, restored in place as of
/// then, compared. The restore goes through the restore API over HTTP.
pub async fn lose_and_restore_folder(stack: &Stack, drive: &str) -> Result<FolderRestore> {
    let items = stack.admin.items(drive).await?;
    // The ground truth lists no root: a top-level item's parent is not listed.
    let listed: std::collections::HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let folder = items
        .iter()
        .filter(|i| i.kind == "folder" && i.parent_id.as_deref().is_none_or(|p| !listed.contains(p)))
        .max_by_key(|f| FolderRestore::files(&subtree(&items, &f.path)))
        .context("library without a folder")?
        .clone();
    let before = subtree(&items, &folder.path);
    if FolderRestore::files(&before) < 2 {
        bail!("no folder of the library holds two files");
    }
    let mut direct_children: Vec<String> =
        items.iter().filter(|i| i.parent_id.as_deref() == Some(folder.id.as_str())).map(|i| i.name.clone()).collect();
    direct_children.sort();
    let doomed: Vec<&SimItem> =
        items.iter().filter(|i| i.id == folder.id || i.path.starts_with(&format!("{}/", folder.path))).collect();

    // A quiet moment, then the accident.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stack.admin.delete(drive, &folder.id).await?;
    stack.idle(Duration::from_secs(300)).await?;
    let container = stack.container(drive);
    let mut tombstones = 0;
    for item in &doomed {
        if stack.catalog.head(&container.item(item.id.clone())).await?.is_some_and(|h| h.current.deleted) {
            tombstones += 1;
        }
    }
    let listed_after_deletion = browse(stack, drive, "root", None).await?.iter().any(|c| c["id"] == folder.id);

    // Browsed as of the moment before: the folder and what it held.
    let mut browsed: Vec<String> = browse(stack, drive, &folder.id, Some(as_of))
        .await?
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    browsed.sort();

    // The vault holds each file's bytes as they were.
    let mut vault = BTreeMap::new();
    for item in doomed.iter().filter(|i| i.kind == "file") {
        let rel = item.path.strip_prefix(&format!("{}/", folder.path)).unwrap_or(&item.path).to_owned();
        vault.insert(rel, vault_sha256(stack, drive, &item.id, &item.etag).await?);
    }

    let started = Instant::now();
    let body = json!({"drive_id": drive, "scope": {"kind": "item", "item_id": folder.id}, "as_of": as_of.to_rfc3339(),
                      "target": {"kind": "in_place"}, "conflict": "rename", "quarantine_new_items": false,
                      "dry_run": false});
    let id = start_restore(stack, body).await?;
    let job = wait_job(stack, &id, &["succeeded", "completed_with_errors"], Duration::from_secs(600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let after = subtree(&stack.admin.items(drive).await?, &folder.path);
    Ok(FolderRestore {
        drive_id: drive.to_owned(),
        folder: folder.path.clone(),
        as_of,
        before,
        after,
        vault,
        tombstones,
        browsed,
        direct_children,
        listed_after_deletion,
        job,
        seconds,
    })
}

/// Every child of `parent` the restore API lists (as of `at`, or now), following pages.
pub async fn browse(stack: &Stack, drive: &str, parent: &str, at: Option<DateTime<Utc>>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut query = format!("parent={}&limit=1000", urlencode(parent));
    if let Some(at) = at {
        query.push_str(&format!("&at={}", urlencode(&at.to_rfc3339())));
    }
    loop {
        let page = api(stack, reqwest::Method::GET, &format!("/v1/drives/{drive}/children?{query}"), None).await?;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => query = format!("cursor={}&limit=1000", urlencode(next)),
            None => return Ok(out),
        }
    }
}

/// The SHA-256 of one backed-up version's bytes, downloaded through the restore API's
/// presigned link (and checked against the hash the API states for it).
pub async fn vault_sha256(stack: &Stack, drive: &str, item: &str, version: &str) -> Result<String> {
    let path = format!("/v1/drives/{drive}/items/{item}/download?version={}", urlencode(version));
    let link = api(stack, reqwest::Method::GET, &path, None).await?;
    let url = link["url"].as_str().context("download link without url")?;
    let bytes = reqwest::get(url).await?.error_for_status()?.bytes().await?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if link["sha256"].as_str() != Some(sha.as_str()) {
        bail!("{item}: downloaded bytes do not hash as the API says");
    }
    Ok(sha)
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
