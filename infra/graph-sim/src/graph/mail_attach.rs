//! Message attachments (graph-facts §7). `GET .../attachments` lists file
//! attachments with their `contentBytes`; `POST .../attachments` adds a
//! `#microsoft.graph.fileAttachment` under 3 MB (`413` from 3 MB on);
//! `POST .../attachments/createUploadSession` with
//! `{"AttachmentItem":{"attachmentType":"file","name","size"}}` (up to 150 MB)
//! answers `201 {uploadUrl}` on this host, `/outlook/upload/{token}`. That URL
//! is pre-authenticated (a bearer token → `401`); it takes sequential `PUT`s
//! with `Content-Range`, each at most 4 MB (`413`), starting at the next
//! expected byte (`416`), with the declared total (`400`): `200` with
//! `nextExpectedRanges` until the last one, which adds the attachment and
//! answers `201` with a `Location`. The message's MIME is rendered again
//! with the new attachment.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::mail::MailCtx;
use super::render::ts;
use super::write::{parse_json, read_body};
use crate::error::{GraphError, GraphResult};
use crate::mime_gen::Attachment;
use crate::notify::{MailChange, mail_changed};
use crate::signer::nonce;
use crate::store::mail::{MailUpload, Mailbox, Message};
use crate::store::upload::ContentRange;
use crate::{Inner, base_url};

/// Attachments from this size on need an upload session.
const INLINE_MAX: u64 = 3 * 1024 * 1024;
/// Largest attachment an upload session takes.
const SESSION_MAX: u64 = 150 * 1024 * 1024;
/// Largest `PUT` to an attachment upload URL.
const CHUNK_MAX: u64 = 4 * 1024 * 1024;

pub fn upload_router() -> Router<Arc<Inner>> {
    Router::new().route("/outlook/upload/{token}", put(put_chunk).delete(cancel))
}

fn attachment_json(m: &Message, a: &Attachment) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": a.id,
        "lastModifiedDateTime": ts(m.modified),
        "name": a.name,
        "contentType": a.content_type,
        "size": a.bytes.len(),
        "isInline": a.inline,
        "contentId": a.content_id,
        "contentBytes": STANDARD.encode(&a.bytes),
    })
}

fn invalid(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", message)
}

/// `$select` keeps only the fields named (and `@odata.type`, `id`), as Graph does: a
/// listing of `id,name,size,isInline` carries no `contentBytes`.
pub fn list(ctx: &MailCtx<'_>, id: &str) -> GraphResult<Response> {
    let select: Option<Vec<String>> =
        ctx.q.get("$select").map(|s| s.split(',').map(|f| f.trim().to_string()).collect());
    let value = ctx.read(|mb| {
        let m = mb.message_or_404(id)?;
        Ok(m.spec
            .attachments
            .iter()
            .map(|a| {
                let mut json = attachment_json(m, a);
                if let (Some(fields), Some(o)) = (&select, json.as_object_mut()) {
                    o.retain(|k, _| k == "@odata.type" || k == "id" || fields.iter().any(|f| f == k));
                }
                json
            })
            .collect::<Vec<_>>())
    })?;
    Ok(Json(json!({"value": value})).into_response())
}

pub fn get_one(ctx: &MailCtx<'_>, id: &str, attachment: &str) -> GraphResult<Response> {
    let json = ctx.read(|mb| {
        let m = mb.message_or_404(id)?;
        let a =
            m.spec.attachments.iter().find(|a| a.id == attachment).ok_or_else(crate::store::mail::item_not_found)?;
        Ok(attachment_json(m, a))
    })?;
    Ok(Json(json).into_response())
}

/// Adds `a` to the message and reports the change; returns the attachment JSON.
fn attach(sim: &Arc<Inner>, user_id: &str, message: &str, mut a: Attachment) -> GraphResult<Value> {
    let (json, change) = {
        let mut st = sim.lock();
        let mb: &mut Mailbox = st.mailboxes.get_mut(user_id).ok_or_else(super::mail::mailbox_not_enabled)?;
        let imm = mb.message_or_404(message)?.immutable_id.clone();
        a.id = crate::store::mail::attachment_id();
        let added = a.clone();
        mb.edit_spec(&imm, |spec| spec.attachments.push(a))?;
        let m = mb.message_or_404(&imm)?;
        let folder = m.folder().unwrap_or_default().to_string();
        (attachment_json(m, &added), MailChange::Updated { id: imm, folder })
    };
    mail_changed(sim, user_id, vec![change]);
    Ok(json)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileAttachment {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    name: Option<String>,
    content_type: Option<String>,
    content_bytes: Option<String>,
    #[serde(default)]
    is_inline: bool,
    content_id: Option<String>,
}

pub async fn add(ctx: &MailCtx<'_>, id: &str, body: Body) -> GraphResult<Response> {
    let raw = read_body(ctx.headers, body, ctx.sim.cfg.mail_request_max).await?;
    let req: FileAttachment = parse_json(&raw)?;
    if !req.odata_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("#microsoft.graph.fileAttachment")) {
        return Err(invalid("Only #microsoft.graph.fileAttachment is supported here."));
    }
    let name = req.name.filter(|n| !n.is_empty()).ok_or_else(|| invalid("The name property is required."))?;
    let bytes = STANDARD
        .decode(req.content_bytes.as_deref().unwrap_or("").trim())
        .map_err(|_| invalid("contentBytes is not valid base64."))?;
    if bytes.len() as u64 >= INLINE_MAX {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ErrorRequestEntityTooLarge",
            "Attachments of 3 MB or more must be uploaded with an upload session.",
        ));
    }
    let a = Attachment {
        id: String::new(),
        name,
        content_type: req.content_type.unwrap_or_else(|| "application/octet-stream".into()),
        bytes: Bytes::from(bytes),
        content_id: req.content_id,
        inline: req.is_inline,
    };
    let json = attach(ctx.sim, &ctx.user_id, id, a)?;
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionItem {
    attachment_type: Option<String>,
    name: Option<String>,
    size: Option<u64>,
    content_type: Option<String>,
    #[serde(default)]
    is_inline: bool,
    content_id: Option<String>,
}

#[derive(Deserialize)]
struct SessionReq {
    #[serde(rename = "AttachmentItem")]
    item: Option<SessionItem>,
}

pub async fn create_session(ctx: &MailCtx<'_>, id: &str, body: Body) -> GraphResult<Response> {
    let req: SessionReq = parse_json(&read_body(ctx.headers, body, super::write::JSON_BODY_MAX).await?)?;
    let item = req.item.ok_or_else(|| invalid("AttachmentItem is required."))?;
    if !item.attachment_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("file")) {
        return Err(invalid("attachmentType must be 'file'."));
    }
    let name = item.name.filter(|n| !n.is_empty()).ok_or_else(|| invalid("The name property is required."))?;
    let size = item.size.filter(|s| *s > 0).ok_or_else(|| invalid("The size property is required."))?;
    if size > SESSION_MAX {
        return Err(invalid("Attachments can be at most 150 MB."));
    }
    let message = ctx.read(|mb| Ok(mb.message_or_404(id)?.immutable_id.clone()))?;
    let expires = Utc::now() + ctx.sim.cfg.upload_session_lifetime;
    let session = nonce();
    {
        let mut st = ctx.sim.lock();
        let now = Utc::now();
        st.mail_uploads.retain(|_, u| u.expires > now);
        st.mail_uploads.insert(
            session.clone(),
            MailUpload {
                message_id: message,
                name,
                content_type: item.content_type.unwrap_or_else(|| "application/octet-stream".into()),
                size,
                inline: item.is_inline,
                content_id: item.content_id,
                data: BytesMut::new(),
                expires,
            },
        );
    }
    // The app that opened the session is charged for its fragments (Exchange counts per app).
    let token = ctx.sim.signer.sign(&["mup", &ctx.user_id, &session, &crate::throttle::current_client()]);
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#microsoft.graph.uploadSession", ctx.base),
        "uploadUrl": format!("{}/outlook/upload/{token}", ctx.base),
        "expirationDateTime": ts(expires),
        "nextExpectedRanges": ["0-"],
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn session_gone() -> GraphError {
    GraphError::new(StatusCode::NOT_FOUND, "ErrorItemNotFound", "The upload session was not found or has expired.")
}

/// `(user id, session id)` behind an upload URL; bearer tokens are refused.
pub fn session_of(sim: &Inner, token: &str, headers: &HeaderMap) -> GraphResult<(String, String)> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The upload URL is pre-authenticated; do not send an Authorization header.",
        ));
    }
    match sim.signer.verify(token).ok_or_else(session_gone)?.as_slice() {
        [kind, user, id, _app] if kind == "mup" => Ok((user.clone(), id.clone())),
        _ => Err(session_gone()),
    }
}

async fn put_chunk(
    State(sim): State<Arc<Inner>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(&sim, &token, &headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn receive(sim: &Arc<Inner>, token: &str, headers: &HeaderMap, body: Body) -> GraphResult<Response> {
    let bytes = read_body(headers, body, CHUNK_MAX).await;
    let (user_id, id) = session_of(sim, token, headers)?;
    let bytes = bytes?;
    let range = ContentRange::parse(headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()))?;
    let finished = {
        let mut st = sim.lock();
        let now = Utc::now();
        st.mail_uploads.retain(|_, u| u.expires > now);
        let u = st.mail_uploads.get_mut(&id).ok_or_else(session_gone)?;
        if range.total != u.size {
            return Err(invalid(format!("The total size {} differs from the declared size {}.", range.total, u.size)));
        }
        if range.len() != bytes.len() as u64 {
            return Err(invalid("The body length does not match the Content-Range."));
        }
        if range.start != u.data.len() as u64 {
            return Err(GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "ErrorInvalidRange",
                format!("The next expected byte is {}.", u.data.len()),
            ));
        }
        u.data.extend_from_slice(&bytes);
        u.expires = now + sim.cfg.upload_session_lifetime;
        if (u.data.len() as u64) < u.size {
            let body =
                json!({"expirationDateTime": ts(u.expires), "nextExpectedRanges": [format!("{}-", u.data.len())]});
            return Ok((StatusCode::OK, Json(body)).into_response());
        }
        st.mail_uploads.remove(&id).ok_or_else(session_gone)?
    };
    let a = Attachment {
        id: String::new(),
        name: finished.name,
        content_type: finished.content_type,
        bytes: finished.data.freeze(),
        content_id: finished.content_id,
        inline: finished.inline,
    };
    let json = attach(sim, &user_id, &finished.message_id, a)?;
    let location = format!(
        "{}/v1.0/users/{user_id}/messages/{}/attachments/{}",
        base_url(headers),
        finished.message_id,
        json["id"].as_str().unwrap_or_default()
    );
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

async fn cancel(State(sim): State<Arc<Inner>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let result = session_of(&sim, &token, &headers).and_then(|(_, id)| {
        sim.lock().mail_uploads.remove(&id).ok_or_else(session_gone)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    });
    result.unwrap_or_else(IntoResponse::into_response)
}
