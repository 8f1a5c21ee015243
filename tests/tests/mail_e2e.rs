//! End-to-end mail: the real handlers against moto and the Graph simulator's Exchange, through
//! real queues. A mailbox is backed up with every message's MIME, its moves and deletions are
//! versioned, and after an emptied folder and a purged mailbox a restore as of a moment brings
//! every message back (not a draft, attachments byte for byte), and its re-run adds nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use local_stack::mail_story::{self, count, view};
use local_stack::stack::{Stack, StackOptions};
use serde_json::json;
use shared::model::ContainerId;
use shared::store::Catalog;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const IDLE: Duration = Duration::from_secs(300);
const UPN: &str = "megan@contoso.test";

async fn start() -> Result<Stack> {
    let mut opts = StackOptions::new(repo_root());
    let mail = json!({"messages": 40, "folders": 3, "seed": 5, "large_attachments": [4_500_000]});
    opts.seed = Some(mail_story::one_mailbox_tenant(UPN, mail));
    opts.sweep_every = None;
    opts.stack_name = format!("mail-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    Stack::start(opts).await
}

async fn assert_backed_up(stack: &Stack, user: &str) -> Result<()> {
    let (messages, problems) = mail_story::verify(stack, user).await?;
    assert!(messages > 0 && problems.is_empty(), "{problems:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
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
    let before = view(&stack.admin.mailbox(&user).await?);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let emptied = stack.admin.empty_folder(&user, &inbox).await?;
    let purged = stack.admin.purge_mailbox(&user).await?;
    assert!(emptied > 0 && purged > 0);
    stack.idle(IDLE).await?;
    assert!(stack.admin.mailbox(&user).await?.messages.is_empty());

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
