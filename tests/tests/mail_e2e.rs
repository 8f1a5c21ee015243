//! End-to-end mail: the real handlers against moto and the Graph simulator's Exchange, through
//! real queues. A mailbox is backed up with every message's MIME, its moves and deletions are
//! versioned, and after an emptied folder and a purged mailbox a restore as of a moment brings
//! every message back (not a draft, attachments byte for byte), and its re-run adds nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use common::IDLE;
use local_stack::admin_mail::SimMailbox;
use local_stack::mail_story::{self, count, view};
use local_stack::ransomware::api;
use local_stack::stack::Stack;
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::model::ContainerId;
use shared::store::ItemHistory;

const UPN: &str = "megan@contoso.test";

async fn start() -> Result<Stack> {
    let mail = json!({"messages": 40, "folders": 3, "seed": 5, "large_attachments": [4_500_000]});
    common::start_mail_stack("mail", vec![mail_story::mail_user(UPN, "Megan", mail)]).await
}

async fn assert_backed_up(stack: &Stack, user: &str) -> Result<()> {
    let (messages, problems) = mail_story::verify(stack, user).await?;
    assert!(messages > 0 && problems.is_empty(), "{problems:#?}");
    Ok(())
}

/// The restore API lists the mailbox's top folders and its Inbox as they were at `as_of`, and
/// hands out links to the exact MIME backed up.
async fn assert_browses_as_of(stack: &Stack, user: &str, at_t: &SimMailbox, as_of: DateTime<Utc>) -> Result<()> {
    let at = as_of.to_rfc3339_opts(SecondsFormat::Millis, true);
    let list = |parent: String| {
        let path = format!("/v1/mailboxes/{user}/children?parent={parent}&at={at}&limit=1000");
        async move { api(stack, Method::GET, &path, None).await }
    };
    let ids: BTreeSet<&str> = at_t.folders.iter().map(|f| f.id.as_str()).collect();
    let top: BTreeSet<String> = at_t
        .folders
        .iter()
        .filter(|f| f.parent_id.as_deref().is_none_or(|p| !ids.contains(p)))
        .map(|f| f.name.clone())
        .collect();
    let names = |page: &serde_json::Value| -> BTreeSet<String> {
        page["items"].as_array().into_iter().flatten().filter_map(|i| i["name"].as_str().map(str::to_owned)).collect()
    };
    assert_eq!(names(&list("root".into()).await?), top, "the mailbox's top folders at T");

    let inbox = at_t.folder("inbox").context("inbox")?;
    let page = list(inbox.id.clone()).await?;
    let listed: BTreeSet<&str> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["kind"] == "message")
        .filter_map(|i| i["id"].as_str())
        .collect();
    let held: BTreeSet<&str> =
        at_t.messages.iter().filter(|m| m.folder_id == inbox.id).map(|m| m.immutable_id.as_str()).collect();
    assert_eq!(listed, held, "the Inbox's messages at T (its subfolders are listed too)");

    let first = held.first().context("an empty Inbox at T")?;
    let link = api(stack, Method::GET, &format!("/v1/mailboxes/{user}/items/{first}/download"), None).await?;
    let bytes = reqwest::get(link["url"].as_str().context("url")?).await?.error_for_status()?.bytes().await?;
    assert_eq!(Some(hex::encode(Sha256::digest(&bytes)).as_str()), link["sha256"].as_str(), "{link}");
    assert_eq!(Some(bytes.len() as u64), link["size"].as_u64());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_mailbox_is_backed_up_its_changes_versioned_and_restored_as_of_a_moment_without_duplicates() -> Result<()> {
    // Given a mailbox of 40 messages in nested folders, one with a 4.5 MB attachment, backed up
    let stack = start().await?;
    stack.idle(IDLE).await?;
    let user = mail_story::user_id(&stack, UPN).await?;
    let mailbox = ContainerId::mailbox(stack.info.graph.tenant_id.clone(), &user);
    let truth = stack.admin.mailbox(&user).await?;
    assert!(truth.messages.len() >= 40);
    assert_backed_up(&stack, &user).await?;

    // When a message arrives, one is read, one moves and one is deleted for good
    let inbox = truth.folder("inbox").context("inbox")?.id.clone();
    let archive = truth.folder("archive").context("archive")?.id.clone();
    let arrived =
        stack.admin.deliver(&user, json!({"subject": "Arrived live", "text": "hello", "attachments": [2048]})).await?;
    let in_inbox: Vec<_> = truth.messages.iter().filter(|m| m.folder_id == inbox).collect();
    let (read, moved, deleted) = (&in_inbox[0], &in_inbox[1], &in_inbox[2]);
    stack.admin.change_message(&user, &read.immutable_id, json!({"is_read": !read.is_read})).await?;
    stack.admin.change_message(&user, &moved.immutable_id, json!({"folder": archive})).await?;
    stack.admin.delete_message(&user, &deleted.immutable_id, true).await?;
    stack.idle(IDLE).await?;

    // Then notifications alone bring the backup up to date, and history keeps every state
    let now = stack.admin.mailbox(&user).await?;
    assert_backed_up(&stack, &user).await?;
    assert!(now.messages.iter().any(|m| m.immutable_id == arrived));
    let history = stack.catalog.versions(&mailbox.item(moved.immutable_id.clone()), 100).await?;
    let folders: BTreeSet<_> = history.iter().filter_map(|v| v.parent_id.clone()).collect();
    assert_eq!(folders, BTreeSet::from([inbox.clone(), archive.clone()]), "a move keeps the old place in history");
    let gone = stack.catalog.head(&mailbox.item(deleted.immutable_id.clone())).await?.context("deleted")?;
    assert!(gone.current.deleted, "a deletion is a tombstone");
    assert!(stack.catalog.versions(&gone.current.key, 100).await?.iter().any(|v| v.content.is_some()));

    // Given a quiet moment T, and then an emptied Inbox and a purged mailbox
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = Utc::now();
    let at_t = stack.admin.mailbox(&user).await?;
    let before = view(&at_t);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let emptied = stack.admin.empty_folder(&user, &inbox).await?;
    let purged = stack.admin.purge_mailbox(&user).await?;
    assert!(emptied > 0 && purged > 0);
    stack.idle(IDLE).await?;
    assert!(stack.admin.mailbox(&user).await?.messages.is_empty());
    assert_browses_as_of(&stack, &user, &at_t, as_of).await?;

    // When the mailbox is restored in place as of T
    let job = mail_story::restore_mailbox(&stack, &user, as_of).await?;

    // Then every message is back in its folder, read state and attachments as at T, none a draft
    assert_eq!(job["status"], "succeeded", "{job}");
    stack.idle(IDLE).await?;
    let restored = stack.admin.mailbox(&user).await?;
    assert!(restored.messages.iter().all(|m| !m.is_draft), "restored messages are not drafts");
    assert_eq!(view(&restored), before);
    assert_backed_up(&stack, &user).await?;
    // (recreated folders count as restored too)
    let messages_at_t = count(&before) as u64;
    assert!(job["restored"].as_u64().is_some_and(|n| n >= messages_at_t), "{job}");
    assert_eq!(job["failed"].as_u64(), Some(0), "{job}");

    // And a re-run of the same restore creates nothing
    let planned = job["planned_items"].clone();
    let job = mail_story::restore_mailbox(&stack, &user, as_of).await?;
    assert_eq!((job["status"].as_str(), job["restored"].as_u64()), (Some("succeeded"), Some(0)), "{job}");
    // (the restored copies are new items, created after T: they are not part of T)
    assert_eq!(job["planned_items"], planned);
    assert_eq!(stack.admin.mailbox(&user).await?.messages.len(), restored.messages.len());
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}
