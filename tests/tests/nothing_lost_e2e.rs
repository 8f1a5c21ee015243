//! End-to-end, where Microsoft 365 is less kind than a tidy emulator (issue 12): items back
//! from the recycle bin or given older times, bytes unlike their hash, download URLs that
//! ignore `Range`, deletions delta does not list, items delta sends unusable, delta tokens
//! answered with a resync code. The real handlers against moto and the Graph simulator,
//! through real queues; each test is named for its scenario and reads as Given / When / Then.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use local_stack::admin::SimItem;
use local_stack::ransomware::api;
use local_stack::stack::{Stack, StackOptions};
use local_stack::verify;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::model::{ItemHead, ItemVersion, Verification};
use shared::pipeline::scheduler::Task;
use shared::store::ItemHistory;

const IDLE: Duration = Duration::from_secs(240);

/// One user with a small drive and no mailbox; `large` adds files of those sizes.
fn tenant(files: usize, large: &[u64]) -> Value {
    let large: Vec<Value> =
        large.iter().enumerate().map(|(i, size)| json!({"name": format!("large-{i}.bin"), "size": size})).collect();
    json!({"seed": 12, "users": [
        {"user_principal_name": "adele@contoso.test", "display_name": "Adele", "has_drive": true, "has_mailbox": false,
         "files": files, "folders": 3, "max_depth": 2, "min_size": 1, "max_size": 40_000,
         "hostile_names": false, "onenote_packages": 0, "large_files": large}
    ]})
}

/// A stack holding `seed`, with `faults` injected before discovery, after its initial backup;
/// and the drive's id.
async fn start(seed: Value, faults: Vec<Value>) -> Result<(Stack, String)> {
    // `RUST_LOG=warn cargo test ... -- --nocapture` shows what the handlers log.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let mut opts = StackOptions::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    opts.seed = Some(seed);
    opts.faults = faults;
    opts.sweep_every = None;
    opts.large_item_bytes = 10_000_000;
    opts.stack_name = format!("lost-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let stack = Stack::start(opts).await?;
    stack.idle(IDLE).await?;
    let drive = stack.admin.users().await?.into_iter().find_map(|u| u.drive_id).context("a drive")?;
    Ok((stack, drive))
}

async fn head(stack: &Stack, drive: &str, item: &str) -> Result<Option<ItemHead>> {
    Ok(stack.catalog.head(&stack.container(drive).item(item.to_owned())).await?)
}

/// The item's catalog rows, newest first.
async fn history(stack: &Stack, drive: &str, item: &str) -> Result<Vec<ItemVersion>> {
    Ok(stack.catalog.versions(&stack.container(drive).item(item.to_owned()), 100).await?)
}

/// The drive verifies byte for byte against the simulator's ground truth.
async fn assert_verified(stack: &Stack, drive: &str) -> Result<verify::Check> {
    let check = verify::drive(stack, drive).await?;
    assert!(check.problems.is_empty(), "backup does not verify: {:#?}", check.problems);
    Ok(check)
}

fn files(items: &[SimItem]) -> Vec<SimItem> {
    items.iter().filter(|i| i.kind == "file" && i.size > 0).cloned().collect()
}

/// The drive root's id: the one parent that is not itself listed.
fn root_id(items: &[SimItem]) -> String {
    let ids: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    items.iter().find_map(|i| i.parent_id.clone().filter(|p| !ids.contains(p.as_str()))).expect("the root")
}

/// What the restore API lists under `parent` at `at` (now without one): item ids.
async fn children(stack: &Stack, drive: &str, parent: &str, at: Option<DateTime<Utc>>) -> Result<HashSet<String>> {
    let at = at.map(|t| format!("&at={}", t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
    let path = format!("/v1/drives/{drive}/children?parent={parent}&limit=1000{}", at.unwrap_or_default());
    let page = api(stack, reqwest::Method::GET, &path, None).await?;
    let items = page["items"].as_array().context("items")?;
    Ok(items.iter().filter_map(|c| c["id"].as_str().map(str::to_owned)).collect())
}

/// The bytes a user downloads through the restore API's link for an item's current version:
/// their SHA-256.
async fn downloaded_sha256(stack: &Stack, drive: &str, item: &str) -> Result<String> {
    let link = api(stack, reqwest::Method::GET, &format!("/v1/drives/{drive}/items/{item}/download"), None).await?;
    let url = link["url"].as_str().context("download url")?;
    let bytes = reqwest::get(url).await?.error_for_status()?.bytes().await?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The drive's entry in `GET /v1/resources`.
async fn protection(stack: &Stack, drive: &str) -> Result<Value> {
    let resources = api(stack, reqwest::Method::GET, "/v1/resources", None).await?;
    let drives = resources["users"].as_array().context("users")?.iter().flat_map(|u| u["drives"].as_array());
    drives.flatten().find(|d| d["drive_id"] == drive).cloned().context("drive not listed")
}

/// The item's entry in `GET /v1/drives/{drive}/failures`: its open item failure.
async fn open_failure(stack: &Stack, drive: &str, item: &str) -> Result<Value> {
    let page = api(stack, reqwest::Method::GET, &format!("/v1/drives/{drive}/failures?limit=1000"), None).await?;
    page["items"].as_array().context("items")?.iter().find(|f| f["item_id"] == item).cloned().context("no item failure")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_file_and_a_folder_restored_from_the_recycle_bin_become_current_again() -> Result<()> {
    // Given a backed-up drive
    let (stack, drive) = start(tenant(12, &[]), vec![]).await?;
    let items = stack.admin.items(&drive).await?;
    let file = files(&items)[0].clone();

    // When a file is deleted, the deletion is backed up
    stack.admin.delete(&drive, &file.id).await?;
    stack.idle(IDLE).await?;
    assert!(head(&stack, &drive, &file.id).await?.context("head")?.current.deleted);

    // When the recycle bin gives it back: same id, same eTag, old modification time
    let back = stack.admin.restore_from_recycle_bin(&drive, &file.id, false).await?;
    assert_eq!((&back.etag, &back.sha256), (&file.etag, &file.sha256), "the simulator restores the old identity");
    stack.idle(IDLE).await?;

    // Then its head is alive again with the old eTag and its bytes
    let now = head(&stack, &drive, &file.id).await?.context("head")?.current;
    assert!(!now.deleted, "{now:?}");
    assert_eq!(now.version, file.etag);
    assert_eq!(now.content.as_ref().map(|c| c.sha256.clone()), file.sha256);
    // and its history reads original, tombstone, current again (placed when we saw it back)
    let rows = history(&stack, &drive, &file.id).await?;
    let shape: Vec<_> = rows.iter().map(|v| (v.deleted, v.current_from.is_some())).collect();
    assert_eq!(shape, [(false, true), (true, false), (false, false)], "{rows:#?}");
    assert_eq!((&rows[0].version, &rows[2].version), (&file.etag, &file.etag));
    // and so says the restore API: its versions, its place as of now and its bytes
    let path = format!("/v1/drives/{drive}/items/{}/versions", file.id);
    let versions = api(&stack, reqwest::Method::GET, &path, None).await?;
    let deleted: Vec<_> = versions["versions"].as_array().context("versions")?.iter().map(|v| &v["deleted"]).collect();
    assert_eq!(deleted, [false, true, false], "{versions}");
    let parent = file.parent_id.clone().context("parent")?;
    assert!(children(&stack, &drive, &parent, None).await?.contains(&file.id));
    assert_eq!(Some(downloaded_sha256(&stack, &drive, &file.id).await?), file.sha256);
    assert_verified(&stack, &drive).await?;

    // When a folder with files is deleted, backed up as deleted, and restored from the bin
    let items = stack.admin.items(&drive).await?;
    let folder = items
        .iter()
        .find(|f| f.kind == "folder" && items.iter().any(|i| i.kind == "file" && i.parent_id.as_ref() == Some(&f.id)))
        .context("a folder with files")?
        .clone();
    let inside: Vec<SimItem> =
        items.iter().filter(|i| i.path.starts_with(&format!("{}/", folder.path))).cloned().collect();
    stack.admin.delete(&drive, &folder.id).await?;
    stack.idle(IDLE).await?;
    for item in inside.iter().chain([&folder]) {
        assert!(head(&stack, &drive, &item.id).await?.context("head")?.current.deleted, "{} deleted", item.path);
    }
    stack.admin.restore_from_recycle_bin(&drive, &folder.id, false).await?;
    stack.idle(IDLE).await?;

    // Then the folder and every file in it are current again, with their old eTags
    for item in inside.iter().chain([&folder]) {
        let now = head(&stack, &drive, &item.id).await?.context("head")?.current;
        assert!(!now.deleted && now.version == item.etag, "{}: {now:?}", item.path);
    }
    assert_verified(&stack, &drive).await?;
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_file_given_an_older_modification_time_becomes_current() -> Result<()> {
    // Given a backed-up drive
    let (stack, drive) = start(tenant(8, &[]), vec![]).await?;
    let file = files(&stack.admin.items(&drive).await?)[0].clone();

    // When an older file is copied over it, keeping its modification time of a year ago
    let older = stack.admin.edit_dated(&drive, &file.id, 7_777, 42, Utc::now() - TimeDelta::days(365)).await?;
    assert_ne!(older.etag, file.etag);
    stack.idle(IDLE).await?;

    // Then the older copy is the current state, placed at when we saw it
    let now = head(&stack, &drive, &file.id).await?.context("head")?.current;
    assert_eq!(now.version, older.etag);
    assert_eq!(now.content.as_ref().map(|c| c.sha256.clone()), older.sha256);
    assert!(now.current_from.is_some_and(|t| t > now.modified + TimeDelta::days(300)), "{now:?}");
    // and a user browsing now sees it, with its bytes
    let parent = file.parent_id.clone().context("parent")?;
    assert!(children(&stack, &drive, &parent, None).await?.contains(&file.id));
    assert_eq!(Some(downloaded_sha256(&stack, &drive, &file.id).await?), older.sha256);
    assert_verified(&stack, &drive).await?;
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn bytes_unlike_their_hash_are_recorded_once_as_served_and_varying_ones_never() -> Result<()> {
    // Given a backed-up drive, and a file whose download serves other bytes than its size and
    // hash describe, the same on every download (a sensitivity-labelled file)
    let (stack, drive) = start(tenant(8, &[]), vec![]).await?;
    let items = stack.admin.items(&drive).await?;
    let file = files(&items)[0].clone();
    let before = history(&stack, &drive, &file.id).await?.len();
    stack.admin.fault(json!({"kind": "serve_different_bytes", "item_id": file.id})).await?;

    // When it changes
    let edited = stack.admin.edit(&drive, &file.id, 9_000, 3).await?;
    stack.idle(IDLE).await?;

    // Then it is backed up once, as served: not as a verified copy, with the reason
    let rows = history(&stack, &drive, &file.id).await?;
    assert_eq!(rows.len(), before + 1, "{rows:#?}");
    let now = &rows[0];
    assert_eq!((now.version.as_str(), now.verification), (edited.etag.as_str(), Verification::AsServed));
    assert!(now.note.as_deref().is_some_and(|n| n.contains("serves")), "{now:?}");
    let content = now.content.as_ref().context("content")?;
    assert_eq!(content.size, 9_000 + 4_096, "the bytes as served, longer than Graph says");
    assert_ne!(Some(&content.sha256), edited.sha256.as_ref());
    // and listed as an item failure by the restore API, under the file's name, and counted
    // where it reports health
    let failure = open_failure(&stack, &drive, &file.id).await?;
    assert!(failure["reason"].as_str().is_some_and(|r| r.starts_with("recorded as served")), "{failure}");
    assert_eq!(failure["name"], file.name.as_str(), "{failure}");
    assert!(protection(&stack, &drive).await?["open_failures"].as_u64() >= Some(1));
    let path = format!("/v1/drives/{drive}/items/{}/versions", file.id);
    assert_eq!(api(&stack, reqwest::Method::GET, &path, None).await?["versions"][0]["verification"], "as_served");
    // and verification says its bytes are not Microsoft 365's, for that file only
    let check = verify::drive(&stack, &drive).await?;
    assert!(check.problems.len() == 1 && check.problems[0].starts_with(&edited.path), "{:?}", check.problems);
    assert_eq!((stack.stats.failed.load(Ordering::SeqCst), stack.dead_letters().await?), (0, 0), "never retried");

    // When a sweep runs afterwards, it queues no job for it and downloads nothing
    let (processed, downloaded) = (stack.stats.processed.load(Ordering::SeqCst), stack.admin.stats().await?);
    let report = stack.run_task(Task::Sweep).await?;
    stack.idle(IDLE).await?;
    let enumerations = report.enqueued as u64;
    assert_eq!(stack.stats.processed.load(Ordering::SeqCst), processed + enumerations, "only the sweep's own jobs");
    assert_eq!(stack.admin.stats().await?["download_bytes"], downloaded["download_bytes"]);
    assert_eq!(history(&stack, &drive, &file.id).await?.len(), before + 1);

    // Given a new file, not backed up yet (its notification lost), whose downloads differ
    // every time
    stack.admin.fault(json!({"kind": "drop_notifications", "count": 1})).await?;
    let parent = file.parent_id.clone().context("parent")?;
    let varying = stack.admin.create_file(&drive, &parent, "labelled-varying.docx", 5_000).await?;
    stack.idle(IDLE).await?;
    stack.admin.fault(json!({"kind": "serve_different_bytes", "item_id": varying.id, "varying": true})).await?;

    // When a sweep finds it
    let failed = stack.stats.failed.load(Ordering::SeqCst);
    stack.run_task(Task::Sweep).await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while stack.stats.failed.load(Ordering::SeqCst) == failed {
        if Instant::now() > deadline {
            bail!("the copy of a file served differently every time did not fail");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Then its copy fails and nothing is recorded for it
    assert!(head(&stack, &drive, &varying.id).await?.is_none(), "no state recorded from unstable bytes");
    // and the job is retried: once Graph serves the real bytes, the retry records them
    stack.admin.clear_faults().await?;
    stack.idle(IDLE).await?;
    let now = head(&stack, &drive, &varying.id).await?.context("the retry recorded it")?.current;
    assert_eq!((now.verification, now.content.map(|c| c.sha256)), (Verification::QuickXor, varying.sha256));
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_large_file_whose_download_url_ignores_range_is_resumed_with_the_right_bytes() -> Result<()> {
    // Given a drive holding a large file, download URLs that answer a ranged request with the
    // whole body, and a download cut half-way
    const SIZE: u64 = 12_000_000;
    let faults =
        vec![json!({"kind": "ignore_range"}), json!({"kind": "truncate", "count": 1, "path_contains": "/download/"})];

    // When the initial backup copies it
    let (stack, drive) = start(tenant(0, &[SIZE]), faults).await?;

    // Then the download was resumed (the half, then the whole body past it)
    let downloaded = stack.admin.stats().await?["download_bytes"].as_u64().unwrap_or(0);
    assert!(downloaded >= SIZE + SIZE / 2, "the download was cut and resumed: {downloaded} bytes");
    // and the vault holds the right bytes, verified
    let large = stack.admin.items(&drive).await?.into_iter().find(|i| i.size == SIZE).context("the large file")?;
    let now = head(&stack, &drive, &large.id).await?.context("head")?.current;
    assert_eq!(now.verification, Verification::QuickXor);
    assert_eq!(now.content.as_ref().map(|c| (c.size, Some(c.sha256.clone()))), Some((SIZE, large.sha256.clone())));
    let check = assert_verified(&stack, &drive).await?;
    assert!(check.bytes >= SIZE, "{check:?}");
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_deleted_folder_takes_its_descendants_even_when_delta_omits_them() -> Result<()> {
    // Given a backed-up folder tree: files, a subfolder, a sub-subfolder
    let (stack, drive) = start(tenant(6, &[]), vec![]).await?;
    let root = root_id(&stack.admin.items(&drive).await?);
    let top = stack.admin.create_folder(&drive, &root, "Projects").await?;
    let sub = stack.admin.create_folder(&drive, &top.id, "2024").await?;
    let deep = stack.admin.create_folder(&drive, &sub.id, "archive").await?;
    let mut tree = vec![top.clone(), sub.clone(), deep.clone()];
    for (parent, name) in [(&top, "a.txt"), (&top, "b.txt"), (&sub, "c.txt"), (&deep, "d.txt")] {
        tree.push(stack.admin.create_file(&drive, &parent.id, name, 3_000).await?);
    }
    stack.idle(IDLE).await?;
    for item in &tree {
        assert!(head(&stack, &drive, &item.id).await?.is_some_and(|h| !h.current.deleted), "{}", item.path);
    }
    let before = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // When the folder is deleted and delta reports the folder's deletion only
    stack.admin.fault(json!({"kind": "omit_descendant_deletions", "drive_id": drive, "enabled": true})).await?;
    stack.admin.delete(&drive, &top.id).await?;
    stack.idle(IDLE).await?;

    // Then every descendant is recorded deleted
    for item in &tree {
        let now = head(&stack, &drive, &item.id).await?.context("head")?.current;
        assert!(now.deleted, "{} should be a tombstone: {now:?}", item.path);
    }
    // and the restore API no longer shows the folder as of now, but still does as of before
    assert!(!children(&stack, &drive, &root, None).await?.contains(&top.id));
    assert!(children(&stack, &drive, &root, Some(before)).await?.contains(&top.id));
    let was = children(&stack, &drive, &sub.id, Some(before)).await?;
    assert!(was.contains(&deep.id) && was.len() == 2, "{was:?}");
    assert_verified(&stack, &drive).await?;
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn an_item_delta_sends_unusable_is_an_item_failure_and_its_page_is_backed_up() -> Result<()> {
    // Given a backed-up drive with a file whose name is nobody's business
    let (stack, drive) = start(tenant(8, &[]), vec![]).await?;
    let items = stack.admin.items(&drive).await?;
    let (parent, others) = (root_id(&items), files(&items));
    const SECRET: &str = "Layoffs 2025 - draft";
    let secret = stack.admin.create_file(&drive, &parent, &format!("{SECRET}.docx"), 2_000).await?;
    stack.idle(IDLE).await?;

    // When delta sends that file's JSON unusable, and a notification reports it and two other
    // changed files
    stack.admin.fault(json!({"kind": "malformed_in_delta", "item_id": secret.id})).await?;
    stack.admin.edit(&drive, &secret.id, 2_500, 8).await?;
    let edited = stack.admin.edit(&drive, &others[0].id, 4_000, 9).await?;
    let created = stack.admin.create_file(&drive, &parent, "minutes.txt", 1_200).await?;
    stack.idle(IDLE).await?;

    // Then the other changes are backed up
    for changed in [&edited, &created] {
        let now = head(&stack, &drive, &changed.id).await?.context("head")?.current;
        assert_eq!(now.version, changed.etag, "{}", changed.path);
    }
    // and the unusable one is an item failure whose reason does not quote its name (the
    // restore API names the item from its backed-up state)
    let failure = open_failure(&stack, &drive, &secret.id).await?;
    let reason = failure["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty() && !reason.contains("Layoffs"), "{failure}");
    assert_eq!(failure["name"], format!("{SECRET}.docx"), "{failure}");
    assert!(protection(&stack, &drive).await?["open_failures"].as_u64() >= Some(1));
    assert_eq!(stack.dead_letters().await?, 0);

    // When Graph sends it whole again, a reconcile backs it up
    stack.admin.clear_faults().await?;
    stack.run_task(Task::Reconcile).await?;
    stack.idle(IDLE).await?;
    assert_verified(&stack, &drive).await?;
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn an_expired_delta_token_answered_resync_changes_apply_differences_enumerates_in_full() -> Result<()> {
    // Given a backed-up drive
    let (stack, drive) = start(tenant(10, &[]), vec![]).await?;
    let files = files(&stack.admin.items(&drive).await?);
    for (round, location) in [true, false].into_iter().enumerate() {
        // Given a change and a deletion whose notifications are lost, and a delta token Graph
        // answers with 410 resyncChangesApplyDifferences (with, then without, a Location)
        let (changed, gone) = (&files[2 * round], &files[2 * round + 1]);
        stack.admin.fault(json!({"kind": "drop_notifications", "count": 100})).await?;
        let edited = stack.admin.edit(&drive, &changed.id, 6_000 + round as u64, 20 + round as u64).await?;
        stack.admin.delete(&drive, &gone.id).await?;
        let code = "resyncChangesApplyDifferences";
        stack
            .admin
            .fault(json!({"kind": "expire_delta_tokens", "drive_id": drive, "code": code, "location": location}))
            .await?;

        // When the sweep runs
        stack.run_task(Task::Sweep).await?;
        stack.idle(IDLE).await?;

        // Then the full enumeration backs up the change and records the deletion
        let now = head(&stack, &drive, &changed.id).await?.context("head")?.current;
        assert_eq!(now.version, edited.etag, "location {location}");
        assert!(head(&stack, &drive, &gone.id).await?.context("head")?.current.deleted, "location {location}");
        assert_verified(&stack, &drive).await?;
        stack.admin.clear_faults().await?;
    }
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}
