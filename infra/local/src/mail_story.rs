//! Mail on the local stack: verification of a backed-up mailbox against the simulator's
//! ground truth, and the demo's mail chapter (an emptied folder and a purged mailbox,
//! restored as of a moment and compared message by message, attachments byte for byte).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::model::{ContainerId, ItemKind};
use shared::store::ItemHistory;

use crate::admin_mail::SimMailbox;
use crate::ransomware::{start_restore, wait_job};
use crate::stack::Stack;

/// A seeded user with a mailbox only: `mail` is the simulator's mail seed section.
pub fn mail_user(upn: &str, name: &str, mail: serde_json::Value) -> serde_json::Value {
    json!({"user_principal_name": upn, "display_name": name, "has_drive": false,
           "files": 0, "folders": 0, "max_depth": 0, "min_size": 0, "max_size": 0, "hostile_names": false,
           "onenote_packages": 0, "large_files": [], "mail": mail})
}

/// The simulator's id of the user `upn`.
pub async fn user_id(stack: &Stack, upn: &str) -> Result<String> {
    let users = stack.admin.users().await?;
    Ok(users.into_iter().find(|u| u.user_principal_name == upn).context("no such user")?.id)
}

/// The user's mailbox container on this stack.
pub fn mailbox(stack: &Stack, user_id: &str) -> ContainerId {
    ContainerId::mailbox(stack.info.graph.tenant_id.clone(), user_id)
}

/// Every message the simulator holds now has a current catalog version in the same folder
/// whose MIME hashes like the simulator's, with the same internet message id and read state.
/// Returns the messages checked and the problems found.
pub async fn verify(stack: &Stack, user_id: &str) -> Result<(usize, Vec<String>)> {
    let truth = stack.admin.mailbox(user_id).await?;
    let container = mailbox(stack, user_id);
    let mut problems = Vec::new();
    for m in &truth.messages {
        let what = format!("{user_id}: message {:?} in {}", m.subject.as_deref().unwrap_or(""), m.folder_path);
        let Some(head) = stack.catalog.head(&container.item(m.immutable_id.clone())).await? else {
            problems.push(format!("{what} is not backed up"));
            continue;
        };
        let v = head.current;
        let meta = v.mail.clone().unwrap_or_default();
        if v.deleted || v.kind != ItemKind::Message {
            problems.push(format!("{what} is recorded as deleted"));
        } else if v.parent_id.as_deref() != Some(m.folder_id.as_str()) {
            problems.push(format!("{what} is recorded in another folder"));
        } else if v.content.as_ref().map(|c| c.sha256.as_str()) != Some(m.sha256.as_str()) {
            problems.push(format!("{what}: the vault's MIME differs"));
        } else if meta.internet_message_id != m.internet_message_id || meta.is_read != m.is_read {
            problems.push(format!("{what}: metadata differs"));
        }
    }
    Ok((truth.messages.len(), problems))
}

/// What a person sees in a mailbox: per folder path, its messages' internet ids, read state,
/// draft flag and attachments (name, size, SHA-256).
pub type View = BTreeMap<String, BTreeSet<(String, bool, bool, Vec<(String, u64, String)>)>>;

pub fn view(truth: &SimMailbox) -> View {
    let mut out = View::new();
    for m in &truth.messages {
        let mut attachments: Vec<_> =
            m.attachments.iter().map(|a| (a.name.clone(), a.size, a.sha256.clone())).collect();
        attachments.sort();
        let id = m.internet_message_id.clone().unwrap_or_default();
        out.entry(m.folder_path.clone()).or_default().insert((id, m.is_read, m.is_draft, attachments));
    }
    out
}

/// Messages in a view.
pub fn count(view: &View) -> usize {
    view.values().map(BTreeSet::len).sum()
}

/// How `now` differs from `then`, message by message (folder, internet id, read, draft,
/// attachment count), at most `limit` lines: what a person needs to see why a check failed.
pub fn differences(then: &View, now: &View, limit: usize) -> Vec<String> {
    let empty = BTreeSet::new();
    let folders: BTreeSet<&String> = then.keys().chain(now.keys()).collect();
    let mut out = Vec::new();
    for folder in folders {
        let (a, b) = (then.get(folder).unwrap_or(&empty), now.get(folder).unwrap_or(&empty));
        for (sign, m) in a.difference(b).map(|m| ("missing", m)).chain(b.difference(a).map(|m| ("unexpected", m))) {
            out.push(format!("{sign} in {folder}: {} (read {}, draft {}, {} attachments)", m.0, m.1, m.2, m.3.len()));
        }
    }
    out.truncate(limit);
    out
}

pub struct MailFigures {
    pub emptied: u64,
    pub purged: u64,
    pub messages_restored: u64,
    pub folders_restored: u64,
    pub seconds: f64,
    pub rerun_restored: u64,
    pub problems: Vec<String>,
}

/// Starts an in-place restore of a whole mailbox as of `as_of` and waits for it.
pub async fn restore_mailbox(stack: &Stack, user_id: &str, as_of: DateTime<Utc>) -> Result<serde_json::Value> {
    let body = json!({"mailbox_id": user_id, "scope": {"kind": "container"}, "as_of": as_of.to_rfc3339()});
    let id = start_restore(stack, body).await?;
    wait_job(stack, &id, &["succeeded", "completed_with_errors"], Duration::from_secs(1800)).await
}

/// Starts an export of `scope` of a mailbox as of `as_of` and waits for it to finish.
pub async fn export_mailbox(
    stack: &Stack,
    user_id: &str,
    scope: serde_json::Value,
    as_of: DateTime<Utc>,
) -> Result<serde_json::Value> {
    let body =
        json!({"mailbox_id": user_id, "scope": scope, "as_of": as_of.to_rfc3339(), "target": {"kind": "export"}});
    let id = start_restore(stack, body).await?;
    wait_job(stack, &id, &["succeeded", "completed_with_errors"], Duration::from_secs(1800)).await
}

/// A message delivered now, backed up through a notification: the seconds it took and the
/// mailbox's `changes` jobs in that time by reason. Sweeps run on a timer beside it, so the
/// proof is that the enumerations in that window were asked for by notifications only; when
/// a sweep fell in the window, another message is tried.
pub async fn arrives_by_notification(stack: &Stack, user_id: &str) -> Result<(f64, BTreeMap<String, u64>)> {
    let container = mailbox(stack, user_id);
    let mut last = BTreeMap::new();
    for attempt in 0..3 {
        let before = stack.stats.change_jobs_of(&container);
        let started = Instant::now();
        let subject = format!("Arrived live {attempt}");
        let id =
            stack.admin.deliver(user_id, json!({"subject": subject, "text": "hello", "attachments": [2048]})).await?;
        while stack.catalog.head(&container.item(id.clone())).await?.is_none() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "a delivered message was not backed up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let after = stack.stats.change_jobs_of(&container);
        last = after
            .iter()
            .map(|(reason, n)| (reason.clone(), n - before.get(reason).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if last.keys().all(|r| r == "notification" || r == "continuation") && last.contains_key("notification") {
            return Ok((seconds, last));
        }
    }
    anyhow::bail!("no message could be shown backed up by notification alone (jobs by reason: {last:?})")
}

/// The demo's chapter: `folder_owner`'s Inbox is emptied and `purged_user`'s mailbox purged;
/// both are restored in place as of the moment before, compared with what they held then,
/// and the first restore is run again to show it creates nothing.
pub async fn chapter(stack: &Stack, folder_owner: &str, purged_user: &str) -> Result<MailFigures> {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = Utc::now();
    let before = [view(&stack.admin.mailbox(folder_owner).await?), view(&stack.admin.mailbox(purged_user).await?)];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let owner = stack.admin.mailbox(folder_owner).await?;
    let inbox = owner.folder("inbox").context("no inbox")?.id.clone();
    let emptied = stack.admin.empty_folder(folder_owner, &inbox).await?;
    let purged = stack.admin.purge_mailbox(purged_user).await?;
    println!(
        "   emptied {emptied} messages from one Inbox, purged {purged} messages and every folder of another mailbox"
    );
    stack.idle(Duration::from_secs(600)).await?;

    let started = Instant::now();
    let mut jobs = Vec::new();
    for user in [folder_owner, purged_user] {
        jobs.push(restore_mailbox(stack, user, as_of).await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    stack.idle(Duration::from_secs(600)).await?;

    let mut problems = Vec::new();
    let mut restored = 0;
    for ((user, before), job) in [folder_owner, purged_user].iter().zip(&before).zip(&jobs) {
        if job["status"] != "succeeded" {
            problems.push(format!("mail restore of {user} ended {}", job["status"]));
        }
        let after = view(&stack.admin.mailbox(user).await?);
        if after != *before {
            let diff = differences(before, &after, 10).join("; ");
            problems.push(format!("{user}'s mailbox differs from its state before the loss: {diff}"));
        }
        restored += job["restored"].as_u64().unwrap_or_default();
    }
    // Every lost message was created again (the views are equal); the rest are folders.
    let messages_restored = emptied + purged;
    let rerun = restore_mailbox(stack, folder_owner, as_of).await?;
    let rerun_restored = rerun["restored"].as_u64().unwrap_or_default();
    if rerun_restored > 0 {
        problems.push(format!("a re-run restore created {rerun_restored} messages again"));
    }
    Ok(MailFigures {
        emptied,
        purged,
        messages_restored,
        folders_restored: restored.saturating_sub(messages_restored),
        seconds,
        rerun_restored,
        problems,
    })
}
