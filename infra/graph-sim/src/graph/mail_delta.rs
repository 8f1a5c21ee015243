//! Mail delta (graph-facts §7): `GET /users/{u}/mailFolders/delta` (every
//! folder, nested ones included, parents first) and
//! `GET /users/{u}/mailFolders/{f}/messages/delta` (one folder). Pages follow
//! `@odata.nextLink` (`$skiptoken`) to an `@odata.deltaLink`
//! (`$deltatoken`); a delta link later reports only what changed since.
//! Messages that left the folder (moved or deleted) and deleted folders come
//! as `{"id", "@removed": {"reason": "deleted"}}`, under the id the client
//! knew: the immutable one, or the REST id the message had back then.
//!
//! Tokens are signed and stateless:
//! `kind|user|folder|incarnation|epoch|from|upto|offset|select`. The page
//! list is recomputed from the mailbox's change log for `(from, upto]` on
//! every page, so paging needs no session; `$select` from the first request
//! is baked in. A token from before the `expire_mail_delta_tokens` fault
//! answers as that fault says (`410 SyncStateNotFound` unless told another
//! of Exchange's variants); a garbled one `400 SyncStateInvalid`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::mail::MailCtx;
use super::mail_render::{check_message_select, folder_json, message_json, removed_json, select_fields};
use crate::error::{GraphError, GraphResult};
use crate::store::mail::{FolderDelta, Mailbox, MessageDelta};

const MESSAGE_TYPE: &str = "#microsoft.graph.message";
const FOLDER_TYPE: &str = "#microsoft.graph.mailFolder";

/// Where a delta request resumes.
struct Cursor {
    from: u64,
    upto: Option<u64>,
    offset: usize,
    select: String,
}

fn invalid() -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "SyncStateInvalid", "The sync state is invalid or corrupt.")
}

/// The cursor of the request: a fresh start, a nextLink or a deltaLink.
fn cursor(ctx: &MailCtx<'_>, kind: &str, folder: &str, mb: &Mailbox) -> GraphResult<Cursor> {
    let (token, page) = match (ctx.q.get("$skiptoken"), ctx.q.get("$deltatoken")) {
        (Some(t), _) => (t, true),
        (None, Some(t)) => (t, false),
        (None, None) => {
            let select = ctx.q.get("$select").cloned().unwrap_or_default();
            if kind == "m" {
                check_message_select(Some(&select))?;
            }
            return Ok(Cursor { from: 0, upto: None, offset: 0, select: select.replace('|', "") });
        }
    };
    let f = ctx.sim.signer.verify(token).ok_or_else(invalid)?;
    let expected_kind = format!("{kind}{}", if page { "p" } else { "d" });
    if f.len() != 9 || f[0] != expected_kind || f[1] != mb.user_id || f[2] != folder {
        return Err(invalid());
    }
    if f[3] != mb.incarnation || f[4] != mb.token_epoch.to_string() {
        return Err(mb.expiry.error());
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| invalid());
    Ok(Cursor {
        from: num(&f[5])?,
        upto: page.then(|| num(&f[6])).transpose()?,
        offset: num(&f[7])? as usize,
        select: f[8].clone(),
    })
}

fn token(ctx: &MailCtx<'_>, kind: &str, folder: &str, mb: &Mailbox, c: &Cursor) -> String {
    let upto = c.upto.unwrap_or(0).to_string();
    ctx.sim.signer.sign(&[
        kind,
        &mb.user_id,
        folder,
        &mb.incarnation,
        &mb.token_epoch.to_string(),
        &c.from.to_string(),
        &upto,
        &c.offset.to_string(),
        &c.select,
    ])
}

/// Slices `changes` into the page at `c`, and the link that follows it.
fn page_of<T: Clone>(
    ctx: &MailCtx<'_>,
    kind: &str,
    folder: &str,
    mb: &Mailbox,
    c: &Cursor,
    upto: u64,
    changes: &[T],
) -> (Vec<T>, &'static str, String) {
    let size = ctx.prefer.max_page_size.unwrap_or(ctx.sim.cfg.mail_page_size);
    let start = c.offset.min(changes.len());
    let end = (start + size).min(changes.len());
    let path = if kind == "m" {
        format!("mailFolders/{}/messages/delta", utf8_percent_encode(folder, NON_ALPHANUMERIC))
    } else {
        "mailFolders/delta".to_string()
    };
    let link = |param: &str, next: &Cursor, k: &str| {
        let t = token(ctx, k, folder, mb, next);
        ctx.link(&format!("{path}?{param}={}", utf8_percent_encode(&t, NON_ALPHANUMERIC)))
    };
    let link = if end < changes.len() {
        let next = Cursor { from: c.from, upto: Some(upto), offset: end, select: c.select.clone() };
        ("@odata.nextLink", link("$skiptoken", &next, &format!("{kind}p")))
    } else {
        let next = Cursor { from: upto, upto: None, offset: 0, select: c.select.clone() };
        ("@odata.deltaLink", link("$deltatoken", &next, &format!("{kind}d")))
    };
    (changes[start..end].to_vec(), link.0, link.1)
}

fn respond(ctx: &MailCtx<'_>, context: &str, value: Vec<Value>, link: (&str, String)) -> Response {
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#Collection({context})", ctx.base),
        "value": value,
    });
    body[link.0] = json!(link.1);
    Json(body).into_response()
}

pub fn messages(ctx: &MailCtx<'_>, folder: &str) -> GraphResult<Response> {
    let immutable = ctx.prefer.immutable_ids;
    let (value, link) = ctx.read(|mb| {
        let folder = mb.folder_or_404(folder)?.id.clone();
        let c = cursor(ctx, "m", &folder, mb)?;
        let upto = c.upto.unwrap_or(mb.seq);
        let changes = mb.message_changes(&folder, c.from, upto);
        let (page, rel, link) = page_of(ctx, "m", &folder, mb, &c, upto, &changes);
        let select = Some(c.select.as_str());
        let value = page
            .iter()
            .filter_map(|change| match change {
                MessageDelta::Upsert(imm) => {
                    let m = mb.any_message(imm)?;
                    if m.folder() == Some(folder.as_str()) {
                        let mut v = message_json(m, immutable, select);
                        v["@odata.type"] = json!(MESSAGE_TYPE);
                        return Some(v);
                    }
                    // Left the folder after `upto`: gone from the client's view too.
                    let known = if immutable { imm.clone() } else { m.at(upto)?.rest_id.clone() };
                    Some(removed_json(&known, MESSAGE_TYPE))
                }
                MessageDelta::Removed(imm, rest) => {
                    Some(removed_json(if immutable { imm } else { rest }, MESSAGE_TYPE))
                }
            })
            .collect();
        Ok((value, (rel, link)))
    })?;
    Ok(respond(ctx, "message", value, link))
}

pub fn folders(ctx: &MailCtx<'_>) -> GraphResult<Response> {
    let (value, link) = ctx.read(|mb| {
        let c = cursor(ctx, "f", "", mb)?;
        let upto = c.upto.unwrap_or(mb.seq);
        let changes = mb.folder_changes(c.from, upto);
        let (page, rel, link) = page_of(ctx, "f", "", mb, &c, upto, &changes);
        let select = (!c.select.is_empty()).then_some(c.select.as_str());
        let value = page
            .iter()
            .map(|change| match change {
                FolderDelta::Upsert(id) => match mb.folder(id) {
                    Some(f) => select_fields(folder_json(mb, f), select),
                    None => removed_json(id, FOLDER_TYPE),
                },
                FolderDelta::Removed(id) => removed_json(id, FOLDER_TYPE),
            })
            .collect();
        Ok((value, (rel, link)))
    })?;
    Ok(respond(ctx, "mailFolder", value, link))
}
