//! End-to-end mail with bad input (issue 5): malformed MIME, 8-bit headers, broken base64, a
//! wrong charset, bytes that are not MIME, a 0-byte message, a large message, folders named
//! like well-known ones, a message Exchange refuses to serve, and mailboxes deleted or
//! unlicensed midway. What can be backed up is, byte for byte; the rest is reported per item;
//! nothing already backed up is lost, and the other mailboxes carry on.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use common::{IDLE, start_mail_stack};
use graph_sim::bad_mail::samples;
use local_stack::admin_mail::SimMailbox;
use local_stack::mail_story::{self, mail_user, mailbox, user_id};
use local_stack::ransomware::api;
use local_stack::stack::Stack;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::model::ContainerId;
use shared::pipeline::scheduler::Task;
use shared::store::{Failures, ItemHistory, Vault};

const MEGAN: &str = "megan@contoso.test";
const ALEX: &str = "alex@contoso.test";
const LEE: &str = "lee@contoso.test";
/// A realistically large message: a 40 MB attachment, about 54 MB of MIME. Exchange takes up to
/// 150 MB and refuses more at delivery (the simulator's `mail_max_message_bytes`, tested there).
const LARGE_ATTACHMENT: u64 = 40_000_000;

/// The vault's bytes of the message's current version, and the catalog's SHA-256 of them.
async fn vault_sha256(stack: &Stack, c: &ContainerId, message: &str) -> Result<(String, String)> {
    let head = stack.catalog.head(&c.item(message.to_owned())).await?.context("not backed up")?;
    let content = head.current.content.context("no content")?;
    let bytes = stack.vault.get(&content.object).await?;
    Ok((hex::encode(Sha256::digest(&bytes)), content.sha256))
}

/// Every live message of `c` the catalog holds: none tombstoned.
async fn live_versions(stack: &Stack, c: &ContainerId) -> Result<(usize, usize)> {
    let heads = stack.catalog.list_heads(c).await?;
    let messages: Vec<_> = heads.iter().filter(|h| h.current.kind == shared::model::ItemKind::Message).collect();
    Ok((messages.len(), messages.iter().filter(|h| h.current.deleted).count()))
}

/// The mailbox entry of `user` in `GET /v1/resources`.
async fn protection(stack: &Stack, user: &str) -> Result<Value> {
    let resources = api(stack, reqwest::Method::GET, "/v1/resources", None).await?;
    let users = resources["users"].as_array().context("users")?;
    let entry = users.iter().find(|u| u["user_id"].as_str() == Some(user)).context("user not listed")?;
    Ok(entry["mailbox"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn bad_mail_is_kept_byte_for_byte_or_reported_and_a_lost_mailbox_keeps_its_backup() -> Result<()> {
    let started = Instant::now();
    // Given three backed-up mailboxes
    let small = |seed| json!({"messages": 8, "folders": 1, "seed": seed});
    let users =
        vec![mail_user(MEGAN, "Megan", small(1)), mail_user(ALEX, "Alex", small(2)), mail_user(LEE, "Lee", small(3))];
    let stack = start_mail_stack("badmail", users).await?;
    stack.idle(IDLE).await?;
    let (megan, alex, lee) = (user_id(&stack, MEGAN).await?, user_id(&stack, ALEX).await?, user_id(&stack, LEE).await?);

    // When Megan receives hostile MIME, a large message, mail in folders named like well-known
    // ones, and a message Exchange refuses to hand out
    let mut bad = HashMap::new();
    for sample in samples() {
        let id = stack.admin.deliver(&megan, json!({"mime_b64": STANDARD.encode(&sample.mime)})).await?;
        bad.insert(id, sample);
    }
    let refused = stack.admin.deliver(&megan, json!({"subject": "Refused", "text": "secret"})).await?;
    stack.admin.fault(json!({"kind": "forbid_content", "item_id": refused})).await?;
    let large = stack.admin.deliver(&megan, json!({"subject": "Large", "attachments": [LARGE_ATTACHMENT]})).await?;
    let nested_inbox = stack.admin.create_mail_folder(&megan, Some("inbox"), "Inbox").await?;
    let fake_deleted = stack.admin.create_mail_folder(&megan, Some("archive"), "Deleted Items").await?;
    for folder in [&nested_inbox, &fake_deleted] {
        stack.admin.deliver(&megan, json!({"subject": "In a look-alike", "folder": folder})).await?;
    }
    stack.idle(IDLE).await?;

    // Then every message Graph served is in the vault byte for byte, the bad ones included
    let c = mailbox(&stack, &megan);
    let truth = stack.admin.mailbox(&megan).await?;
    for m in truth.messages.iter().filter(|m| m.immutable_id != refused) {
        let (in_vault, recorded) = vault_sha256(&stack, &c, &m.immutable_id).await?;
        assert_eq!((in_vault.as_str(), recorded.as_str()), (m.sha256.as_str(), m.sha256.as_str()), "{:?}", m.subject);
    }
    let sizes: Vec<u64> = truth.messages.iter().map(|m| m.size).collect();
    assert!(sizes.contains(&0) && sizes.iter().any(|s| *s > LARGE_ATTACHMENT), "{sizes:?}");
    assert!(truth.messages.iter().any(|m| m.immutable_id == large));
    // and the look-alike folders hold their own messages, the real ones theirs
    let (_, problems) = mail_story::verify(&stack, &megan).await?;
    assert_eq!(problems.len(), 1, "only the refused message is missing: {problems:#?}");
    // and the refused message is reported per item, with Graph's reason
    let failures = stack.catalog.failures(&c).await?;
    let failure = failures.iter().find(|f| f.key.item_id == refused).context("refused message not reported")?;
    assert!(failure.reason.contains("ErrorAccessDenied"), "{}", failure.reason);
    assert_eq!(failures.len(), 1, "{failures:?}");

    // Given a quiet moment T after which Alex's mailbox is deleted and Lee loses the licence
    let (alex_c, lee_c) = (mailbox(&stack, &alex), mailbox(&stack, &lee));
    let before = (live_versions(&stack, &alex_c).await?, live_versions(&stack, &lee_c).await?);
    assert!(before.0.0 >= 8 && before.1.0 >= 8 && before.0.1 == 0 && before.1.1 == 0, "{before:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stack.admin.set_mailbox_state(&alex, json!({"has_mailbox": false})).await?;
    stack.admin.set_mailbox_state(&lee, json!({"licensed": false})).await?;

    // When a reconcile (a full enumeration, the one that records deletions) runs on every mailbox
    // and Megan's mail keeps arriving
    let arrived = stack.admin.deliver(&megan, json!({"subject": "After the losses"})).await?;
    stack.run_task(Task::Reconcile).await?;
    stack.idle(IDLE).await?;

    // Then the lost mailboxes keep every version, nothing tombstoned, and say why
    assert_eq!(live_versions(&stack, &alex_c).await?, before.0, "Alex's backup is intact");
    assert_eq!(live_versions(&stack, &lee_c).await?, before.1, "Lee's backup is intact");
    for (user, code) in [(&alex, "MailboxNotEnabledForRESTAPI"), (&lee, "ErrorAccessDenied")] {
        let p = protection(&stack, user).await?;
        assert_eq!(p["health"], "unavailable", "{p}");
        assert!(p["unavailable"]["reason"].as_str().is_some_and(|r| r.contains(code)), "{p}");
    }
    // and Megan's mailbox carried on
    assert_eq!(protection(&stack, &megan).await?["health"], "in sync");
    assert!(stack.catalog.head(&c.item(arrived.clone())).await?.is_some_and(|h| !h.current.deleted));

    // Given Megan's mailbox purged
    let at_purge = stack.admin.mailbox(&megan).await?;
    let before_restore = at_purge.messages.len();
    stack.admin.purge_mailbox(&megan).await?;
    stack.idle(IDLE).await?;

    // When it is restored in place as of T
    let job = mail_story::restore_mailbox(&stack, &megan, as_of).await?;

    // Then every message backed up comes back, the bad ones as best-effort messages, and only
    // the drafts as drafts
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["failed"].as_u64(), Some(0), "{job}");
    let restored = stack.admin.mailbox(&megan).await?;
    let drafts = |mb: &SimMailbox| -> BTreeSet<(String, Option<String>)> {
        mb.messages.iter().filter(|m| m.is_draft).map(|m| (m.folder_path.clone(), m.subject.clone())).collect()
    };
    assert_eq!(drafts(&restored), drafts(&at_purge));
    let count = |v: &mail_story::View, path: &str| v.get(path).map_or(0, |s| s.len());
    for path in ["/Inbox/Inbox", "/Archive/Deleted Items"] {
        assert_eq!(count(&mail_story::view(&restored), path), 1, "{path}");
    }
    // all but the refused one (never backed up) and the one that arrived after T
    let expected = before_restore - 2;
    assert_eq!(restored.messages.len(), expected, "{job}");
    for sample in bad.values().filter(|s| s.name == "8-bit headers") {
        let m =
            restored.messages.iter().find(|m| m.internet_message_id.as_deref() == Some("<eight-bit@fabrikam.test>"));
        assert!(m.is_some_and(|m| m.subject.as_deref().is_some_and(|s| s.contains("union"))), "{}", sample.name);
    }

    // And nothing went to a dead-letter queue
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    eprintln!("bad mail end to end took {:?}", started.elapsed());
    Ok(())
}
