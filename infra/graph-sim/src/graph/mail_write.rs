//! Mail writes, the restore side (graph-facts §7). `POST .../mailFolders`
//! and `.../childFolders` create folders (`409 ErrorFolderExists` on a name
//! taken under the parent). `POST .../mailFolders/{f}/messages` and
//! `POST .../messages` (into Drafts) create a message:
//! - JSON: Graph's message properties; without `Integer 0x0E07`
//!   (PidTagMessageFlags) it is a draft, with it `MSGFLAG_UNSENT` (0x8) says
//!   draft and `MSGFLAG_READ` (0x1) read; `SystemTime 0x0E06` / `0x0039` set
//!   received / sent; `String 0x1035` / `0x1042` / `0x1039` set Message-ID /
//!   In-Reply-To / References. The MIME is rendered from the result.
//! - MIME (`Content-Type: text/plain`): the body is the base64 of the whole
//!   message, kept byte for byte; the result is always a draft. Bad base64 →
//!   `400 ErrorMimeContentInvalidBase64String`.
//!
//! Bodies over `mail_request_max` (4 MB) answer `413`.

use axum::Json;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::mail::MailCtx;
use super::mail_render::{folder_json, message_json};
use super::write::{JSON_BODY_MAX, parse_json, read_body};
use crate::error::{GraphError, GraphResult};
use crate::mime_gen::{Attachment, Mailbox as Addr, MessageSpec};
use crate::mime_read;
use crate::notify::{MailChange, mail_changed};
use crate::seed_mail::with_attachment_ids;
use crate::store::ids::IdRng;
use crate::store::mail::NewMessage;

fn invalid(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", message)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FolderReq {
    display_name: Option<String>,
    #[serde(default)]
    is_hidden: bool,
}

pub async fn create_folder(ctx: &MailCtx<'_>, parent: &str, body: Body) -> GraphResult<Response> {
    let req: FolderReq = parse_json(&read_body(ctx.headers, body, JSON_BODY_MAX).await?)?;
    let name = req.display_name.ok_or_else(|| invalid("The displayName property is required."))?;
    let json = ctx.write(|mb| {
        let id = mb.create_folder(parent, &name, req.is_hidden, &mut IdRng::random())?;
        Ok(folder_json(mb, mb.folder_or_404(&id)?))
    })?;
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

#[derive(Deserialize, Default)]
struct EmailAddress {
    name: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: Option<EmailAddress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemBody {
    content_type: Option<String>,
    content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flag {
    flag_status: Option<String>,
}

#[derive(Deserialize)]
struct ExtendedProperty {
    id: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineAttachment {
    name: Option<String>,
    content_type: Option<String>,
    content_bytes: Option<String>,
    #[serde(default)]
    is_inline: bool,
    content_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MessageReq {
    subject: Option<String>,
    body: Option<ItemBody>,
    from: Option<Recipient>,
    sender: Option<Recipient>,
    #[serde(default)]
    to_recipients: Vec<Recipient>,
    #[serde(default)]
    cc_recipients: Vec<Recipient>,
    #[serde(default)]
    bcc_recipients: Vec<Recipient>,
    #[serde(default)]
    reply_to: Vec<Recipient>,
    importance: Option<String>,
    is_read: Option<bool>,
    flag: Option<Flag>,
    internet_message_id: Option<String>,
    #[serde(default)]
    single_value_extended_properties: Vec<ExtendedProperty>,
    #[serde(default)]
    attachments: Vec<InlineAttachment>,
}

fn addr(r: &Recipient) -> GraphResult<Addr> {
    let e = r.email_address.as_ref().ok_or_else(|| invalid("A recipient needs an emailAddress."))?;
    let address = e.address.as_deref().filter(|a| !a.is_empty()).ok_or_else(|| invalid("An address is required."))?;
    Ok(Addr::new(e.name.as_deref().unwrap_or(""), address))
}

fn addrs(list: &[Recipient]) -> GraphResult<Vec<Addr>> {
    list.iter().map(addr).collect()
}

fn bracketed(id: &str) -> String {
    let id = id.trim();
    if id.starts_with('<') { id.to_string() } else { format!("<{id}>") }
}

/// The extended properties the restore side sets, read and checked.
#[derive(Default)]
struct Mapi {
    flags: Option<u32>,
    received: Option<DateTime<Utc>>,
    sent: Option<DateTime<Utc>>,
    message_id: Option<String>,
    in_reply_to: Option<String>,
    references: Option<String>,
}

fn mapi(props: &[ExtendedProperty]) -> GraphResult<Mapi> {
    const TYPES: [&str; 8] = ["Integer", "String", "SystemTime", "Boolean", "Binary", "Long", "Double", "Short"];
    let mut m = Mapi::default();
    for p in props {
        let (kind, tag) = p.id.split_once(' ').unwrap_or((&p.id, ""));
        if !TYPES.iter().any(|t| t.eq_ignore_ascii_case(kind)) || tag.trim().is_empty() {
            return Err(invalid(format!("The extended property id '{}' is invalid.", p.id)));
        }
        let time = || {
            DateTime::parse_from_rfc3339(&p.value)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid(format!("'{}' is not a valid SystemTime.", p.value)))
        };
        match (kind.to_ascii_lowercase().as_str(), tag.trim().to_ascii_lowercase().as_str()) {
            ("integer", "0x0e07") => {
                m.flags = Some(p.value.trim().parse().map_err(|_| invalid("PidTagMessageFlags must be an integer."))?)
            }
            ("systemtime", "0x0e06") => m.received = Some(time()?),
            ("systemtime", "0x0039") => m.sent = Some(time()?),
            ("string", "0x1035") => m.message_id = Some(bracketed(&p.value)),
            ("string", "0x1042") => m.in_reply_to = Some(p.value.clone()),
            ("string", "0x1039") => m.references = Some(p.value.clone()),
            _ => {}
        }
    }
    Ok(m)
}

fn json_message(ctx: &MailCtx<'_>, raw: &[u8]) -> GraphResult<NewMessage> {
    let req: MessageReq = parse_json(raw)?;
    let props = mapi(&req.single_value_extended_properties)?;
    let (text, html) = match &req.body {
        Some(b) if b.content_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("html")) => {
            (None, b.content.clone())
        }
        Some(b) => (b.content.clone(), None),
        None => (Some(String::new()), None),
    };
    let mut attachments = Vec::new();
    for a in &req.attachments {
        let bytes = STANDARD
            .decode(a.content_bytes.as_deref().unwrap_or(""))
            .map_err(|_| invalid("contentBytes is not valid base64."))?;
        attachments.push(Attachment {
            id: String::new(),
            name: a.name.clone().ok_or_else(|| invalid("An attachment needs a name."))?,
            content_type: a.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
            bytes: Bytes::from(bytes),
            content_id: a.content_id.clone(),
            inline: a.is_inline,
        });
    }
    let domain = ctx.user.rsplit_once('@').map_or("sim.contoso.test", |(_, d)| d);
    let message_id = props
        .message_id
        .or_else(|| req.internet_message_id.as_deref().map(bracketed))
        .unwrap_or_else(|| format!("<{}@{domain}>", uuid::Uuid::new_v4().simple()));
    let importance = req.importance.as_deref().unwrap_or("normal").to_ascii_lowercase();
    if !matches!(importance.as_str(), "low" | "normal" | "high") {
        return Err(invalid(format!("'{importance}' is not a valid importance.")));
    }
    let is_draft = props.flags.is_none_or(|f| f & 0x8 != 0);
    let is_read = req.is_read.unwrap_or(props.flags.is_some_and(|f| f & 0x1 != 0) || is_draft);
    let now = Utc::now();
    let received = props.received.unwrap_or(now);
    let spec = MessageSpec {
        subject: req.subject.unwrap_or_default(),
        from: req.from.as_ref().map(addr).transpose()?,
        sender: req.sender.as_ref().map(addr).transpose()?,
        to: addrs(&req.to_recipients)?,
        cc: addrs(&req.cc_recipients)?,
        bcc: addrs(&req.bcc_recipients)?,
        reply_to: addrs(&req.reply_to)?,
        date: props.sent.or(Some(received)),
        message_id,
        in_reply_to: props.in_reply_to,
        references: props.references,
        importance,
        text,
        html,
        attachments,
    };
    let flag = req.flag.and_then(|f| f.flag_status).unwrap_or_else(|| "notFlagged".into());
    if !matches!(flag.as_str(), "notFlagged" | "flagged" | "complete") {
        return Err(invalid(format!("'{flag}' is not a valid flagStatus.")));
    }
    Ok(NewMessage {
        spec,
        raw_mime: None,
        is_read,
        is_draft,
        flag,
        received,
        sent: props.sent.or((!is_draft).then_some(received)),
        conversation_id: None,
    })
}

fn mime_message(raw: &[u8]) -> GraphResult<NewMessage> {
    let text: Vec<u8> = raw.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let mime = STANDARD.decode(&text).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        )
    })?;
    if !mime_read::looks_like_mime(&mime) {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalid",
            "The MIME content is invalid.",
        ));
    }
    let spec = mime_read::parse(&mime);
    let now = Utc::now();
    Ok(NewMessage {
        sent: spec.date,
        received: spec.date.unwrap_or(now).min(now),
        spec,
        raw_mime: Some(Bytes::from(mime)),
        is_read: true,
        is_draft: true,
        flag: "notFlagged".into(),
        conversation_id: None,
    })
}

pub async fn create_message(ctx: &MailCtx<'_>, folder: &str, body: Body) -> GraphResult<Response> {
    let raw = read_body(ctx.headers, body, ctx.sim.cfg.mail_request_max).await?;
    let content_type = ctx.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let new = if content_type.to_ascii_lowercase().starts_with("text/plain") {
        mime_message(&raw)?
    } else if content_type.to_ascii_lowercase().starts_with("application/json") {
        json_message(ctx, &raw)?
    } else {
        return Err(GraphError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ErrorInvalidRequest",
            "Send the message as application/json, or its MIME as base64 in text/plain.",
        ));
    };
    let immutable = ctx.prefer.immutable_ids;
    let (json, id, folder_id): (Value, String, String) = ctx.write(|mb| {
        let id = mb.add_message(folder, with_attachment_ids(new), &mut IdRng::random())?;
        mb.created_now(&id)?;
        let m = mb.message_or_404(&id)?;
        Ok((message_json(m, immutable, None), id, m.folder().unwrap_or_default().to_string()))
    })?;
    mail_changed(ctx.sim, &ctx.user_id, vec![MailChange::Created { id, folder: folder_id }]);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}
