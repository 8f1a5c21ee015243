//! End-to-end export: a backed-up mailbox is exported as of a moment through the restore API
//! (real handlers, moto's S3 and SQS, the Graph simulator), the zip is downloaded through its
//! presigned link, and every `.eml` is compared with the simulator's ground truth at that
//! moment: messages deleted since are in it, messages that arrived since are not.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use common::IDLE;
use local_stack::admin_mail::SimMailbox;
use local_stack::mail_story;
use local_stack::stack::Stack;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const UPN: &str = "exports@contoso.test";

async fn start() -> Result<Stack> {
    let mail = json!({"messages": 30, "folders": 3, "seed": 8, "large_attachments": [3_000_000]});
    common::start_mail_stack("export", vec![mail_story::mail_user(UPN, "Exports", mail)]).await
}

/// A finished export's single zip, downloaded through its link and checked against the
/// size and SHA-256 the job reports: entry name → bytes.
async fn download(job: &Value) -> Result<BTreeMap<String, Vec<u8>>> {
    let parts = job["export"]["parts"].as_array().context("an export without parts")?;
    ensure!(parts.len() == 1, "one zip expected: {job}");
    let url = parts[0]["url"].as_str().context("no link")?;
    let zip = reqwest::get(url).await?.error_for_status()?.bytes().await?;
    ensure!(parts[0]["bytes"] == zip.len(), "size differs from the job's: {job}");
    ensure!(parts[0]["sha256"] == hex::encode(Sha256::digest(&zip)), "SHA-256 differs from the job's");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))?;
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        entries.insert(file.name().to_owned(), bytes);
    }
    Ok(entries)
}

/// Checks the zip against the simulator's messages at T: exactly `expected` are in it, each
/// `.eml` with the simulator's SHA-256 under its folder path, each listed by the manifest.
fn check_zip(entries: &BTreeMap<String, Vec<u8>>, expected: &[&local_stack::admin_mail::SimMessage]) -> Result<()> {
    let manifest: Value = serde_json::from_slice(entries.get("manifest.json").context("no manifest")?)?;
    let listed: BTreeMap<&str, &Value> = manifest["entries"]
        .as_array()
        .context("manifest without entries")?
        .iter()
        .filter_map(|e| Some((e["item_id"].as_str()?, e)))
        .collect();
    let emls = entries.keys().filter(|name| name.ends_with(".eml")).count();
    ensure!(emls == expected.len() && listed.len() == expected.len(), "{emls} files, {} listed", listed.len());
    ensure!(manifest["failed"] == json!([]), "failures: {}", manifest["failed"]);
    for m in expected {
        let entry = listed.get(m.immutable_id.as_str()).with_context(|| format!("{:?} not listed", m.subject))?;
        let path = entry["path"].as_str().context("no path")?;
        let bytes = entries.get(path).with_context(|| format!("{path} listed but not in the zip"))?;
        ensure!(hex::encode(Sha256::digest(bytes)) == m.sha256, "{path}: bytes differ from the simulator's");
        ensure!(entry["sha256"] == m.sha256 && entry["size"] == bytes.len(), "{path}: manifest differs");
        ensure!(entry["internet_message_id"].as_str() == m.internet_message_id.as_deref(), "{path}: message id");
        ensure!(format!("/{}", entry["folder"].as_str().unwrap_or_default()) == m.folder_path, "{path}: folder");
        let top = m.folder_path.trim_start_matches('/').split('/').next().unwrap_or_default();
        ensure!(path.starts_with(&format!("{top}/")), "{path} is not under its folder {}", m.folder_path);
    }
    Ok(())
}

/// The messages of a folder and its subfolders.
fn under<'a>(truth: &'a SimMailbox, folder_path: &str) -> Vec<&'a local_stack::admin_mail::SimMessage> {
    let prefix = format!("{folder_path}/");
    truth.messages.iter().filter(|m| m.folder_path == folder_path || m.folder_path.starts_with(&prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_mailbox_and_a_folder_are_exported_as_of_a_moment_byte_for_byte_through_a_presigned_link() -> Result<()> {
    // Given a backed-up mailbox of 30 messages in nested folders, one with a 3 MB attachment
    let stack = start().await?;
    stack.idle(IDLE).await?;
    let user = mail_story::user_id(&stack, UPN).await?;

    // And a moment T, after which three Inbox messages are deleted and two arrive
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = Utc::now();
    let at_t = stack.admin.mailbox(&user).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let inbox = at_t.folder("inbox").context("inbox")?.clone();
    let deleted: Vec<String> =
        at_t.messages.iter().filter(|m| m.folder_id == inbox.id).take(3).map(|m| m.immutable_id.clone()).collect();
    ensure!(deleted.len() == 3, "the seed has fewer than three Inbox messages");
    for id in &deleted {
        stack.admin.delete_message(&user, id, true).await?;
    }
    let mut arrived = BTreeSet::new();
    for subject in ["Arrived after T", "Also after T"] {
        arrived.insert(stack.admin.deliver(&user, json!({"subject": subject, "text": "late"})).await?);
    }
    stack.idle(IDLE).await?;

    // When the whole mailbox is exported as of T
    let started = Instant::now();
    let job = mail_story::export_mailbox(&stack, &user, json!({"kind": "container"}), as_of).await?;
    let seconds = started.elapsed().as_secs_f64();

    // Then the job succeeded and its zip holds every message of T, the deleted ones included,
    // byte for byte with the simulator, and none that arrived later
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["restored"].as_u64(), Some(at_t.messages.len() as u64), "{job}");
    let entries = download(&job).await?;
    let all: Vec<_> = at_t.messages.iter().collect();
    check_zip(&entries, &all)?;
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"])?;
    let ids: BTreeSet<&str> =
        manifest["entries"].as_array().into_iter().flatten().filter_map(|e| e["item_id"].as_str()).collect();
    assert!(deleted.iter().all(|id| ids.contains(id.as_str())), "deleted after T, present at T");
    assert!(arrived.iter().all(|id| !ids.contains(id.as_str())), "arrived after T");
    let bytes = job["export"]["bytes"].as_u64().unwrap_or_default();
    println!(
        "exported {} messages, {bytes} bytes in {seconds:.1} s ({:.2} MB/s, moto and the local runner included)",
        all.len(),
        bytes as f64 / 1e6 / seconds
    );

    // And an export of the Inbox (with its subfolders) as of T holds exactly its messages
    let job = mail_story::export_mailbox(&stack, &user, json!({"kind": "item", "item_id": inbox.id}), as_of).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let inbox_at_t = under(&at_t, &inbox.path);
    assert!(inbox_at_t.len() > 3);
    check_zip(&download(&job).await?, &inbox_at_t)?;

    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}
