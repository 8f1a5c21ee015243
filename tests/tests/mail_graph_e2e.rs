//! End-to-end mail as Graph really sends it (issue 13), on the local stack without sweeps:
//! every variant of an expired mail delta token is a resync and no folder is let go while
//! Graph still has it; a message moved out of its folder and back without either delta
//! reporting it (the immutable-id miss) is caught by reconcile; a file attached to a received
//! message gets its new MIME backed up, while a read costs no download.

mod common;

use anyhow::{Context, Result};
use common::{IDLE, start_mail_stack};
use local_stack::mail_story::{self, mail_user, mailbox, user_id};
use local_stack::stack::Stack;
use serde_json::{Value, json};
use shared::pipeline::scheduler::Task;
use shared::store::{ItemHistory, SyncStates};

const MEGAN: &str = "megan@contoso.test";

async fn start(prefix: &str) -> Result<(Stack, String)> {
    let mail = json!({"messages": 12, "folders": 2, "seed": 13});
    let stack = start_mail_stack(prefix, vec![mail_user(MEGAN, "Megan", mail)]).await?;
    stack.idle(IDLE).await?;
    let user = user_id(&stack, MEGAN).await?;
    Ok((stack, user))
}

async fn assert_backed_up(stack: &Stack, user: &str) -> Result<()> {
    let (messages, problems) = mail_story::verify(stack, user).await?;
    assert!(messages > 0 && problems.is_empty(), "{problems:#?}");
    Ok(())
}

/// Graph requests by route since `before` (the simulator's statistics).
fn requests(before: &Value, after: &Value, route: &str) -> u64 {
    let n = |v: &Value| v["by_route"][route].as_u64().unwrap_or(0);
    n(after) - n(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn every_variant_of_an_expired_mail_delta_token_resyncs_and_keeps_every_folder() -> Result<()> {
    // Given a backed-up mailbox with a folder of our own
    let (stack, user) = start("expiry").await?;
    let projects = stack.admin.create_mail_folder(&user, None, "Projects").await?;
    stack.idle(IDLE).await?;
    let c = mailbox(&stack, &user);
    for (status, code) in [
        (410, "SyncStateNotFound"),
        (404, "ErrorSyncStateNotFound"),
        (400, "ErrorInvalidSyncStateData"),
        (400, "invalidDeltaToken"),
        (404, "SyncStateNotFound"),
        (410, "ErrorInvalidSyncStateData"),
    ] {
        // When every mail delta token expires with this variant and mail arrives in both folders
        let fault = json!({"kind": "expire_mail_delta_tokens", "user": user, "status": status, "code": code});
        stack.admin.fault(fault).await?;
        for folder in ["inbox", projects.as_str()] {
            let message = json!({"subject": format!("{code} {status}"), "text": "hi", "folder": folder});
            stack.admin.deliver(&user, message).await?;
        }
        stack.idle(IDLE).await?;

        // Then the notifications' enumeration resynced: both messages are backed up, the
        // folder is still tracked, and nothing went to a dead-letter queue
        assert_backed_up(&stack, &user).await.with_context(|| format!("{status} {code}"))?;
        let state = stack.catalog.sync_state(&c).await?;
        assert!(state.mail_folders.contains_key(&projects), "{status} {code}: the folder is still tracked");
        assert_eq!(stack.dead_letters().await?, 0, "{status} {code}");
    }
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_message_moved_out_and_back_unreported_is_caught_by_reconcile() -> Result<()> {
    // Given a backed-up mailbox
    let (stack, user) = start("roundtrip").await?;
    let c = mailbox(&stack, &user);
    let truth = stack.admin.mailbox(&user).await?;
    let inbox = truth.folder("inbox").context("inbox")?.id.clone();
    let m = truth.messages.iter().find(|m| m.folder_id == inbox).context("a message in the Inbox")?;
    let held = stack.catalog.head(&c.item(m.immutable_id.clone())).await?.context("held")?.current;

    // When it moves to the Archive, is read there and moves back, and neither folder's delta
    // reports it (graph-facts §13.4); then other mail arrives and a sweep runs
    let round_trip = json!({"unreported_round_trip": "archive", "is_read": !m.is_read});
    stack.admin.change_message(&user, &m.immutable_id, round_trip).await?;
    stack.admin.deliver(&user, json!({"subject": "later", "text": "hi"})).await?;
    stack.idle(IDLE).await?;
    stack.run_task(Task::Sweep).await?;
    stack.idle(IDLE).await?;

    // Then the feeds missed it: the catalog still has its old state
    let missed = stack.catalog.head(&c.item(m.immutable_id.clone())).await?.context("held")?.current;
    assert_eq!(missed.version, held.version, "the simulator hid the round trip from delta");
    let (_, problems) = mail_story::verify(&stack, &user).await?;
    assert_eq!(problems.len(), 1, "{problems:#?}");

    // When the daily reconcile runs
    stack.run_task(Task::Reconcile).await?;
    stack.idle(IDLE).await?;

    // Then the message's state is Graph's again, in its folder, with its MIME
    assert_backed_up(&stack, &user).await?;
    let now = stack.catalog.head(&c.item(m.immutable_id.clone())).await?.context("held")?.current;
    assert_ne!(now.version, held.version);
    assert_eq!(now.parent_id.as_deref(), Some(inbox.as_str()));
    assert_eq!(now.mail.map(|m| m.is_read), Some(!m.is_read));
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_file_attached_to_a_received_message_is_backed_up_and_a_read_downloads_nothing() -> Result<()> {
    // Given a received message with a file attachment, and one without, backed up
    let (stack, user) = start("attach").await?;
    let with_file =
        stack.admin.deliver(&user, json!({"subject": "report", "text": "hi", "attachments": [3000]})).await?;
    let plain = stack.admin.deliver(&user, json!({"subject": "plain", "text": "hi"})).await?;
    stack.idle(IDLE).await?;
    assert_backed_up(&stack, &user).await?;

    // When each is read, one at a time
    let mut per_read = Vec::new();
    for id in [&plain, &with_file] {
        let before = stack.admin.stats().await?;
        stack.admin.change_message(&user, id, json!({"is_read": true})).await?;
        stack.idle(IDLE).await?;
        let after = stack.admin.stats().await?;
        per_read.push((requests(&before, &after, "message_mime"), requests(&before, &after, "mail_attachments")));
    }

    // Then neither downloads its MIME; only the one with a file has its attachments listed
    assert_backed_up(&stack, &user).await?;
    assert_eq!(per_read, vec![(0, 0), (0, 1)], "($value, attachment listings) per read");

    // When Dynamic Delivery attaches another file to the received message
    let before = stack.admin.stats().await?;
    stack.admin.add_attachment(&user, &with_file, "scanned.pdf", 5000).await?;
    stack.idle(IDLE).await?;
    let after = stack.admin.stats().await?;

    // Then its new MIME is backed up (one listing, one download), the old one kept in history
    assert_backed_up(&stack, &user).await?;
    let per_attachment = (requests(&before, &after, "message_mime"), requests(&before, &after, "mail_attachments"));
    assert_eq!(per_attachment, (1, 1), "($value, attachment listings) per attachment change");
    let c = mailbox(&stack, &user);
    let contents: std::collections::BTreeSet<_> = stack
        .catalog
        .versions(&c.item(with_file.clone()), 100)
        .await?
        .into_iter()
        .filter_map(|v| v.content.map(|c| c.sha256))
        .collect();
    assert_eq!(contents.len(), 2, "both MIMEs are in the history");
    println!("per read: {per_read:?}; per attachment change: {per_attachment:?}");
    stack.stop().await;
    Ok(())
}
