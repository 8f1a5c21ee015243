//! mailFolder and message JSON as Exchange returns them: recipients as
//! `{"emailAddress":{"name","address"}}` (the address stands in for a missing
//! name), `@odata.etag` = `W/"changeKey"`, `hasAttachments` false for inline
//! images only, and a loose `$select` that always keeps `id` and
//! `@odata.etag`.

use serde_json::{Map, Value, json};

use super::render::ts;
use crate::mime_gen::Mailbox as Addr;
use crate::store::mail::{MailFolder, Mailbox, Message};

pub fn folder_json(mb: &Mailbox, f: &MailFolder) -> Value {
    let (total, unread) = mb.counts(&f.id);
    json!({
        "id": f.id,
        "displayName": f.display_name,
        "parentFolderId": f.parent_id,
        "childFolderCount": mb.children(&f.id).len(),
        "unreadItemCount": unread,
        "totalItemCount": total,
        "isHidden": f.hidden,
    })
}

pub fn removed_json(id: &str, odata_type: &str) -> Value {
    json!({"@odata.type": odata_type, "id": id, "@removed": {"reason": "deleted"}})
}

fn recipient(a: &Addr) -> Value {
    json!({"emailAddress": {"name": a.name.clone().unwrap_or_else(|| a.address.clone()), "address": a.address}})
}

fn recipients(list: &[Addr]) -> Value {
    Value::Array(list.iter().map(recipient).collect())
}

/// The first 255 characters of the text body (or the HTML without tags),
/// whitespace collapsed.
pub fn body_preview(m: &Message) -> String {
    let source = match (&m.spec.text, &m.spec.html) {
        (Some(t), _) => t.clone(),
        (None, Some(h)) => strip_tags(h),
        (None, None) => String::new(),
    };
    source.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(255).collect()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

pub fn message_json(m: &Message, immutable: bool, select: Option<&str>) -> Value {
    let change_key = m.change_key();
    let sender = m.spec.sender.as_ref().or(m.spec.from.as_ref());
    let body = match (&m.spec.html, &m.spec.text) {
        (Some(h), _) => json!({"contentType": "html", "content": h}),
        (None, Some(t)) => json!({"contentType": "text", "content": t}),
        (None, None) => json!({"contentType": "text", "content": ""}),
    };
    let full = json!({
        "@odata.etag": format!("W/\"{change_key}\""),
        "id": m.id(immutable),
        "createdDateTime": ts(m.created),
        "lastModifiedDateTime": ts(m.modified),
        "changeKey": change_key,
        "categories": m.categories,
        "receivedDateTime": ts(m.received),
        "sentDateTime": m.sent.filter(|_| !m.is_draft).map(ts),
        "hasAttachments": m.spec.attachments.iter().any(|a| !a.inline),
        // A message whose MIME has no Message-ID has no internetMessageId either.
        "internetMessageId": Some(&m.spec.message_id).filter(|id| !id.is_empty()),
        "subject": m.spec.subject,
        "bodyPreview": body_preview(m),
        "importance": if m.spec.importance.is_empty() { "normal" } else { m.spec.importance.as_str() },
        "parentFolderId": m.folder(),
        "conversationId": m.conversation_id,
        "isDeliveryReceiptRequested": false,
        "isReadReceiptRequested": false,
        "isRead": m.is_read,
        "isDraft": m.is_draft,
        "inferenceClassification": "focused",
        "body": body,
        "sender": sender.map(recipient),
        "from": m.spec.from.as_ref().map(recipient),
        "toRecipients": recipients(&m.spec.to),
        "ccRecipients": recipients(&m.spec.cc),
        "bccRecipients": recipients(&m.spec.bcc),
        "replyTo": recipients(&m.spec.reply_to),
        "flag": {"flagStatus": m.flag},
    });
    select_fields(full, select)
}

/// Keeps the `$select`ed properties (any case) plus `id` and `@odata.etag`.
pub fn select_fields(full: Value, select: Option<&str>) -> Value {
    let Some(select) = select.filter(|s| !s.trim().is_empty()) else {
        return full;
    };
    let wanted: Vec<String> = select.split(',').map(|s| s.trim().to_lowercase()).collect();
    let mut out = Map::new();
    if let Value::Object(m) = full {
        for (k, v) in m {
            if k == "id" || k.starts_with('@') || wanted.contains(&k.to_lowercase()) {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out)
}

/// Properties `$select` may name on a message (Graph answers `400` for others).
const MESSAGE_PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "internetMessageHeaders",
    "attachments",
    "singleValueExtendedProperties",
];

/// `400` when `$select` names a property messages do not have.
pub fn check_message_select(select: Option<&str>) -> crate::error::GraphResult<()> {
    for name in select.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !MESSAGE_PROPERTIES.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            return Err(crate::error::GraphError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "RequestBroker--ParseUri",
                format!("Could not find a property named '{name}' on type 'microsoft.graph.message'."),
            ));
        }
    }
    Ok(())
}
