//! Admin routes on mailboxes: ground truth for tests, and the changes users
//! and senders make (delivery, read/unread, flags, moves, deletes, folder
//! edits, emptying, purging). Every change goes through the mailbox change
//! log, so delta and notifications see it like any other.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::parse;
use crate::Inner;
use crate::error::{GraphError, GraphResult};
use crate::mime_gen::{Mailbox as Addr, MessageSpec};
use crate::notify::{MailChange, mail_changed};
use crate::seed_mail::{filler, with_attachment_ids};
use crate::store::ids::IdRng;
use crate::store::mail::{Mailbox, NewMessage};

fn no_mailbox() -> GraphError {
    GraphError::not_found("No such user or the user has no mailbox.")
}

/// Runs `f` on the mailbox of `user` (id or UPN), then sends the
/// notifications for the changes it reports.
fn mutate<T>(
    sim: &Arc<Inner>,
    user: &str,
    f: impl FnOnce(&mut Mailbox, &mut IdRng) -> GraphResult<(T, Vec<MailChange>)>,
) -> GraphResult<T> {
    let (out, changes, user_id) = {
        let mut st = sim.lock();
        let id = st.user(user).map(|u| u.id.clone()).ok_or_else(no_mailbox)?;
        let mb = st.mailboxes.get_mut(&id).ok_or_else(no_mailbox)?;
        let (out, changes) = f(mb, &mut IdRng::random())?;
        (out, changes, id)
    };
    mail_changed(sim, &user_id, changes);
    Ok(out)
}

pub async fn ground_truth(State(sim): State<Arc<Inner>>, Path(user): Path<String>) -> GraphResult<Json<Value>> {
    let st = sim.lock();
    let u = st.user(&user).ok_or_else(no_mailbox)?;
    let mb = st.mailboxes.get(&u.id).ok_or_else(no_mailbox)?;
    let folders: Vec<Value> = mb
        .folders
        .iter()
        .filter(|f| !f.deleted && f.parent_id.is_some())
        .map(|f| {
            let (total, unread) = mb.counts(&f.id);
            json!({"id": f.id, "name": f.display_name, "path": mb.path(&f.id), "parent_id": f.parent_id,
                   "well_known": f.well_known, "hidden": f.hidden, "total": total, "unread": unread})
        })
        .collect();
    let messages: Vec<Value> = mb
        .messages
        .iter()
        .filter_map(|m| {
            let folder = m.folder()?;
            let attachments: Vec<Value> = m
                .spec
                .attachments
                .iter()
                .map(|a| {
                    json!({"id": a.id, "name": a.name, "size": a.bytes.len(), "inline": a.inline,
                               "sha256": hex::encode(Sha256::digest(&a.bytes))})
                })
                .collect();
            Some(json!({
                "id": m.immutable_id, "immutable_id": m.immutable_id, "rest_id": m.rest_id(),
                "folder_id": folder, "folder_path": mb.path(folder),
                "internet_message_id": Some(&m.spec.message_id).filter(|id| !id.is_empty()), "subject": m.spec.subject,
                "is_read": m.is_read, "is_draft": m.is_draft, "flag": m.flag,
                "received": m.received.to_rfc3339(), "size": m.mime.len(),
                "sha256": hex::encode(Sha256::digest(&m.mime)), "attachments": attachments,
            }))
        })
        .collect();
    Ok(Json(json!({"user_id": u.id, "user_principal_name": u.upn, "folders": folders, "messages": messages})))
}

/// `POST /admin/mailboxes/{user}/messages`: raw MIME (`mime_b64`) or a
/// generated message.
#[derive(Deserialize)]
pub struct Deliver {
    folder: Option<String>,
    mime_b64: Option<String>,
    subject: Option<String>,
    from: Option<String>,
    from_name: Option<String>,
    text: Option<String>,
    in_reply_to: Option<String>,
    #[serde(default)]
    attachments: Vec<u64>,
    #[serde(default)]
    is_read: bool,
    received: Option<DateTime<Utc>>,
}

pub async fn deliver(
    State(sim): State<Arc<Inner>>,
    Path(user): Path<String>,
    body: Bytes,
) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: Deliver = parse(&body)?;
    let received = req.received.unwrap_or_else(Utc::now);
    let max = sim.cfg.mail_max_message_bytes;
    let (spec, raw) = match &req.mime_b64 {
        Some(b64) => {
            // Kept byte for byte, whatever they are (malformed, 8-bit, empty): Graph serves
            // a message's `$value` as the store holds it.
            let raw = STANDARD.decode(b64.trim()).map_err(|_| GraphError::bad_request("mime_b64 is not base64."))?;
            check_size(raw.len() as u64, max)?;
            (crate::mime_read::parse(&raw), Some(Bytes::from(raw)))
        }
        None => {
            check_size(encoded_size(&req.attachments), max)?;
            let mut rng = IdRng::random();
            let attachments = req
                .attachments
                .iter()
                .enumerate()
                .map(|(i, size)| crate::mime_gen::Attachment {
                    id: String::new(),
                    name: format!("file-{}.bin", i + 1),
                    content_type: "application/octet-stream".into(),
                    bytes: filler(rng.next_u64(), *size),
                    content_id: None,
                    inline: false,
                })
                .collect();
            let spec = MessageSpec {
                subject: req.subject.clone().unwrap_or_else(|| "Delivered message".into()),
                from: Some(Addr::new(
                    req.from_name.as_deref().unwrap_or(""),
                    req.from.as_deref().unwrap_or("sender@fabrikam.test"),
                )),
                date: Some(received),
                message_id: format!("<{}@sim.fabrikam.test>", uuid::Uuid::new_v4().simple()),
                in_reply_to: req.in_reply_to.clone(),
                references: req.in_reply_to.clone(),
                importance: "normal".into(),
                text: Some(req.text.clone().unwrap_or_else(|| "Hello.".into())),
                attachments,
                ..MessageSpec::default()
            };
            (spec, None)
        }
    };
    let folder = req.folder.unwrap_or_else(|| "inbox".into());
    let out = mutate(&sim, &user, |mb, rng| {
        let new = NewMessage {
            spec,
            raw_mime: raw,
            is_read: req.is_read,
            is_draft: false,
            flag: "notFlagged".into(),
            received,
            sent: Some(received),
            conversation_id: None,
        };
        let id = mb.add_message(&folder, with_attachment_ids(new), rng)?;
        let m = mb.message_or_404(&id)?;
        let folder_id = m.folder().unwrap_or_default().to_string();
        let out = json!({"id": id, "immutable_id": id, "rest_id": m.rest_id(), "folder_id": folder_id,
                         "internet_message_id": m.spec.message_id});
        Ok((out, vec![MailChange::Created { id, folder: folder_id }]))
    })?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Exchange refuses a message over its size limit at delivery (SMTP `552 5.3.4`), so a
/// mailbox never holds one; the admin API answers with the EWS code for it.
fn check_size(bytes: u64, max: u64) -> GraphResult<()> {
    if bytes <= max {
        return Ok(());
    }
    Err(GraphError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ErrorMessageSizeExceeded",
        format!("The message is {bytes} bytes; the limit is {max}."),
    ))
}

/// What a generated message weighs once its attachments are base64 (76-char lines): an
/// upper bound decided before anything is generated.
fn encoded_size(attachments: &[u64]) -> u64 {
    attachments.iter().map(|n| n.div_ceil(57) * 78).sum::<u64>() + 4096
}

#[derive(Deserialize)]
pub struct MessageEdit {
    is_read: Option<bool>,
    flag: Option<String>,
    /// Move to this folder (id or well-known name).
    folder: Option<String>,
    /// The immutable-id miss (graph-facts §13.4, microsoft-graph-docs-contrib
    /// `concepts/includes/known-issues/mail.md`): the message moves to this folder, takes
    /// the read and flag change there, and moves back, and neither folder's message delta
    /// reports any of it (nor does a notification). Its changeKey and
    /// lastModifiedDateTime move as for any change.
    unreported_round_trip: Option<String>,
}

pub async fn edit_message(
    State(sim): State<Arc<Inner>>,
    Path((user, id)): Path<(String, String)>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: MessageEdit = parse(&body)?;
    let out = mutate(&sim, &user, |mb, rng| {
        let imm = mb.message_or_404(&id)?.immutable_id.clone();
        let mut changes = Vec::new();
        let folder = |mb: &Mailbox| mb.message(&imm).and_then(|m| m.folder()).unwrap_or_default().to_string();
        if let Some(via) = &req.unreported_round_trip {
            let (home, logged) = (folder(mb), mb.message_log.len());
            mb.move_message(&imm, via, rng)?;
            if let Some(read) = req.is_read {
                mb.set_read(&imm, read)?;
            }
            if let Some(flag) = &req.flag {
                mb.set_flag(&imm, flag)?;
            }
            mb.move_message(&imm, &home, rng)?;
            mb.message_log.truncate(logged);
            let m = mb.message_or_404(&imm)?;
            return Ok((json!({"id": imm, "rest_id": m.rest_id(), "folder_id": m.folder()}), Vec::new()));
        }
        if let Some(read) = req.is_read {
            mb.set_read(&imm, read)?;
        }
        if let Some(flag) = &req.flag {
            mb.set_flag(&imm, flag)?;
        }
        if req.is_read.is_some() || req.flag.is_some() {
            changes.push(MailChange::Updated { id: imm.clone(), folder: folder(mb) });
        }
        if let Some(target) = &req.folder {
            let from = folder(mb);
            mb.move_message(&imm, target, rng)?;
            let to = folder(mb);
            if from != to {
                changes.push(MailChange::Moved { id: imm.clone(), from, to });
            }
        }
        let m = mb.message_or_404(&imm)?;
        Ok((json!({"id": imm, "rest_id": m.rest_id(), "folder_id": m.folder()}), changes))
    })?;
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    hard: bool,
}

pub async fn delete_message(
    State(sim): State<Arc<Inner>>,
    Path((user, id)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> GraphResult<StatusCode> {
    mutate(&sim, &user, |mb, rng| {
        let m = mb.message_or_404(&id)?;
        let (imm, from) = (m.immutable_id.clone(), m.folder().unwrap_or_default().to_string());
        let deleted_items = mb.folder_or_404("deleteditems")?.id.clone();
        if q.hard || from == deleted_items {
            mb.hard_delete(&imm)?;
            return Ok(((), vec![MailChange::Deleted { id: imm, folder: from }]));
        }
        mb.delete_message(&imm, rng)?;
        Ok(((), vec![MailChange::Moved { id: imm, from, to: deleted_items }]))
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct FolderReq {
    parent: Option<String>,
    name: Option<String>,
    #[serde(default)]
    hidden: bool,
}

pub async fn create_folder(
    State(sim): State<Arc<Inner>>,
    Path(user): Path<String>,
    body: Bytes,
) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: FolderReq = parse(&body)?;
    let name = req.name.ok_or_else(|| GraphError::bad_request("name is required."))?;
    let parent = req.parent.unwrap_or_else(|| "msgfolderroot".into());
    let out = mutate(&sim, &user, |mb, rng| {
        let id = mb.create_folder(&parent, &name, req.hidden, rng)?;
        Ok((json!({"id": id, "path": mb.path(&id)}), Vec::new()))
    })?;
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn edit_folder(
    State(sim): State<Arc<Inner>>,
    Path((user, id)): Path<(String, String)>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: FolderReq = parse(&body)?;
    let out = mutate(&sim, &user, |mb, _| {
        let id = mb.folder_or_404(&id)?.id.clone();
        if let Some(name) = &req.name {
            mb.rename_folder(&id, name)?;
        }
        if let Some(parent) = &req.parent {
            mb.move_folder(&id, parent)?;
        }
        Ok((json!({"id": id, "path": mb.path(&id)}), Vec::new()))
    })?;
    Ok(Json(out))
}

/// Hard-deletes the messages of `folders` (ids) and reports them.
fn drop_messages(mb: &mut Mailbox, folders: &[String]) -> GraphResult<Vec<MailChange>> {
    let doomed: Vec<(String, String)> = mb
        .messages
        .iter()
        .filter_map(|m| {
            m.folder().filter(|f| folders.iter().any(|x| x == f)).map(|f| (m.immutable_id.clone(), f.to_string()))
        })
        .collect();
    let mut changes = Vec::new();
    for (id, folder) in doomed {
        mb.hard_delete(&id)?;
        changes.push(MailChange::Deleted { id, folder });
    }
    Ok(changes)
}

/// The folder and every folder below it.
fn subtree(mb: &Mailbox, id: &str) -> Vec<String> {
    let mut all = vec![id.to_string()];
    let mut at = 0;
    while at < all.len() {
        let kids: Vec<String> = mb.children(&all[at]).iter().map(|f| f.id.clone()).collect();
        all.extend(kids);
        at += 1;
    }
    all
}

pub async fn delete_folder(
    State(sim): State<Arc<Inner>>,
    Path((user, id)): Path<(String, String)>,
) -> GraphResult<StatusCode> {
    mutate(&sim, &user, |mb, _| {
        let id = mb.folder_or_404(&id)?.id.clone();
        if mb.folder_or_404(&id)?.well_known.is_some() {
            return mb.delete_folder(&id).map(|_| ((), Vec::new()));
        }
        let changes = drop_messages(mb, &subtree(mb, &id))?;
        mb.delete_folder(&id)?;
        Ok(((), changes))
    })?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn empty_folder(
    State(sim): State<Arc<Inner>>,
    Path((user, id)): Path<(String, String)>,
) -> GraphResult<Json<Value>> {
    let n = mutate(&sim, &user, |mb, _| {
        let id = mb.folder_or_404(&id)?.id.clone();
        let changes = drop_messages(mb, &[id])?;
        Ok((changes.len(), changes))
    })?;
    Ok(Json(json!({"deleted": n})))
}

pub async fn purge(State(sim): State<Arc<Inner>>, Path(user): Path<String>) -> GraphResult<Json<Value>> {
    let n = mutate(&sim, &user, |mb, _| {
        let all: Vec<String> = mb.folders.iter().filter(|f| !f.deleted).map(|f| f.id.clone()).collect();
        let changes = drop_messages(mb, &all)?;
        mb.purge()?;
        Ok((changes.len(), changes))
    })?;
    Ok(Json(json!({"deleted": n})))
}

#[derive(Deserialize)]
pub struct NewAttachment {
    name: String,
    size: u64,
}

/// What Defender's Dynamic Delivery does to a received message: a file attached afterwards
/// (and, with `DELETE`, one taken away). The MIME is rendered again; the changeKey and
/// lastModifiedDateTime move; the message delta and notifications report an update.
pub async fn add_attachment(
    State(sim): State<Arc<Inner>>,
    Path((user, id)): Path<(String, String)>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: NewAttachment = parse(&body)?;
    let out = mutate(&sim, &user, |mb, _| {
        let imm = mb.message_or_404(&id)?.immutable_id.clone();
        let attachment = crate::mime_gen::Attachment {
            id: crate::store::mail::attachment_id(),
            name: req.name.clone(),
            content_type: "application/octet-stream".into(),
            bytes: filler(IdRng::random().next_u64(), req.size),
            content_id: None,
            inline: false,
        };
        let added = attachment.id.clone();
        mb.edit_spec(&imm, |spec| spec.attachments.push(attachment))?;
        let folder = mb.message_or_404(&imm)?.folder().unwrap_or_default().to_string();
        Ok((json!({"id": added}), vec![MailChange::Updated { id: imm, folder }]))
    })?;
    Ok(Json(out))
}

pub async fn delete_attachment(
    State(sim): State<Arc<Inner>>,
    Path((user, id, attachment)): Path<(String, String, String)>,
) -> GraphResult<StatusCode> {
    mutate(&sim, &user, |mb, _| {
        let m = mb.message_or_404(&id)?;
        let imm = m.immutable_id.clone();
        if !m.spec.attachments.iter().any(|a| a.id == attachment) {
            return Err(crate::store::mail::item_not_found());
        }
        mb.edit_spec(&imm, |spec| spec.attachments.retain(|a| a.id != attachment))?;
        let folder = mb.message_or_404(&imm)?.folder().unwrap_or_default().to_string();
        Ok(((), vec![MailChange::Updated { id: imm, folder }]))
    })?;
    Ok(StatusCode::NO_CONTENT)
}
