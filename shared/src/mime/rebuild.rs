//! A backed-up message rebuilt for Graph's JSON create, the only form that yields a message
//! that is not a draft (a MIME create always makes a draft, and the draft flag cannot be
//! changed afterwards; graph-facts §7). The MIME is the source of truth for what it carries
//! (subject, addresses, body, attachments, threading headers); the catalog's metadata adds what
//! the MIME does not (read and flag state, received time, categories).
//!
//! What survives the round trip: subject, From/Sender, To, Cc, Bcc, Reply-To, the HTML or text
//! body, importance, categories, read and flag state, sent and received times (extended
//! properties 0x0039 and 0x0E06), `Message-ID` (0x1035 and `internetMessageId`),
//! `In-Reply-To` (0x1042) and `References` (0x1039), and every attachment's bytes, name,
//! type and Content-ID. What does not: other headers (Graph only lets `x-` headers be set),
//! the exact MIME structure and transfer encodings, and the alternative text body of an HTML
//! message.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};

use crate::model::MailMeta;

/// Graph accepts a file attachment inside a request up to this size; larger ones go through
/// an attachment upload session.
pub const INLINE_ATTACHMENT_MAX: usize = 3 * 1024 * 1024;

/// The JSON create body, and the attachments that follow it one request each.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebuilt {
    pub create: Value,
    pub attachments: Vec<Part>,
}

/// One attachment of the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub content_type: String,
    pub content_id: Option<String>,
    pub inline: bool,
    pub bytes: Vec<u8>,
}

impl Part {
    /// The `AttachmentItem` of an attachment upload session (large parts).
    pub fn attachment_item(&self) -> Value {
        let mut v = json!({"name": self.name, "contentType": self.content_type, "isInline": self.inline});
        if let Some(id) = &self.content_id {
            v["contentId"] = id.clone().into();
        }
        v
    }

    /// The `fileAttachment` for `POST .../attachments` (small parts only).
    pub fn file_attachment(&self) -> Value {
        let mut v = json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "isInline": self.inline,
            "contentBytes": STANDARD.encode(&self.bytes),
        });
        if let Some(id) = &self.content_id {
            v["contentId"] = id.clone().into();
        }
        v
    }
}

/// Rebuilds `mime` for a create. Bytes that do not parse as MIME still give a message: the
/// catalog's subject and addresses, the bytes as a text body.
pub fn rebuild(mime: &[u8], meta: &MailMeta) -> Rebuilt {
    let parsed = MessageParser::default().parse(mime);
    let mut create = serde_json::Map::new();
    let mut props = Vec::new();
    let mut attachments = Vec::new();
    let address = |name: Option<&str>, address: Option<&str>| json!({"emailAddress": {"name": name.unwrap_or_default(), "address": address.unwrap_or_default()}});
    let received = meta.received.or(meta.sent);
    let mut sent = meta.sent;
    let mut message_id = meta.internet_message_id.clone();

    if let Some(m) = &parsed {
        create.insert("subject".into(), m.subject().or(meta.subject.as_deref()).unwrap_or_default().into());
        let (content_type, content) = if m.html_body_count() > 0 {
            ("html", m.body_html(0).unwrap_or_default().into_owned())
        } else {
            ("text", m.body_text(0).unwrap_or_default().into_owned())
        };
        create.insert("body".into(), json!({"contentType": content_type, "content": content}));
        let list = |a: Option<&mail_parser::Address>| -> Value {
            a.map(|a| a.iter().map(|x| address(x.name(), x.address())).collect::<Vec<_>>()).unwrap_or_default().into()
        };
        if let Some(from) = m.from().and_then(|a| a.first()) {
            create.insert("from".into(), address(from.name(), from.address()));
        }
        if let Some(sender) = m.sender().and_then(|a| a.first()) {
            create.insert("sender".into(), address(sender.name(), sender.address()));
        }
        create.insert("toRecipients".into(), list(m.to()));
        create.insert("ccRecipients".into(), list(m.cc()));
        create.insert("bccRecipients".into(), list(m.bcc()));
        create.insert("replyTo".into(), list(m.reply_to()));
        sent = sent.or_else(|| m.date().and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)));
        message_id = message_id.or_else(|| m.message_id().map(|id| format!("<{id}>")));
        if let Some(ids) = m.in_reply_to().as_text_list() {
            props.push(prop("String 0x1042", angle_list(ids)));
        }
        if let Some(ids) = m.references().as_text_list() {
            props.push(prop("String 0x1039", angle_list(ids)));
        }
        for part in m.attachments() {
            let content_type = part
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")).to_lowercase())
                .unwrap_or_else(|| "application/octet-stream".into());
            let content_id = part.content_id().map(|id| id.trim_matches(['<', '>']).to_owned());
            let name = match (part.attachment_name(), &content_id) {
                (Some(name), _) => name.to_owned(),
                (None, _) if part.is_message() => "attached message.eml".into(),
                (None, Some(id)) => id.clone(),
                (None, None) => "attachment".into(),
            };
            attachments.push(Part {
                name,
                content_type,
                content_id,
                inline: part.content_disposition().is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"))
                    || part.content_id().is_some(),
                bytes: super::attachment_bytes(m.raw_message(), part),
            });
        }
    } else {
        create.insert("subject".into(), meta.subject.clone().unwrap_or_default().into());
        let text = String::from_utf8_lossy(mime).into_owned();
        create.insert("body".into(), json!({"contentType": "text", "content": text}));
        if let Some(from) = &meta.from {
            create.insert("from".into(), address(from.name.as_deref(), from.address.as_deref()));
        }
        let list = |a: &[crate::model::Address]| -> Value {
            a.iter().map(|x| address(x.name.as_deref(), x.address.as_deref())).collect::<Vec<_>>().into()
        };
        create.insert("toRecipients".into(), list(&meta.to));
        create.insert("ccRecipients".into(), list(&meta.cc));
    }

    create.insert("isRead".into(), meta.is_read.into());
    if let Some(importance) = &meta.importance {
        create.insert("importance".into(), importance.clone().into());
    }
    if let Some(flag) = &meta.flag {
        create.insert("flag".into(), json!({"flagStatus": flag}));
    }
    if !meta.categories.is_empty() {
        create.insert("categories".into(), meta.categories.clone().into());
    }
    if let Some(id) = &message_id {
        create.insert("internetMessageId".into(), id.clone().into());
        props.push(prop("String 0x1035", id.clone()));
    }
    // PidTagMessageFlags: MSGFLAG_READ (0x1) as it was; MSGFLAG_UNSENT (0x8) only for a message
    // that was a draft when backed up, so sent and received mail never comes back as a draft
    // and a draft comes back as one.
    let flags = u8::from(meta.is_read) | if meta.is_draft { 0x8 } else { 0 };
    props.push(prop("Integer 0x0E07", flags.to_string()));
    if let Some(at) = received {
        props.push(prop("SystemTime 0x0E06", timestamp(at)));
    }
    if let Some(at) = sent {
        props.push(prop("SystemTime 0x0039", timestamp(at)));
    }
    create.insert("singleValueExtendedProperties".into(), props.into());
    Rebuilt { create: create.into(), attachments }
}

fn prop(id: &str, value: String) -> Value {
    json!({"id": id, "value": value})
}

fn angle_list(ids: &[std::borrow::Cow<'_, str>]) -> String {
    ids.iter().map(|id| format!("<{}>", id.trim_matches(['<', '>']))).collect::<Vec<_>>().join(" ")
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MailMeta;

    const THREAD_REPLY: &[u8] = b"Message-ID: <r2@x.test>\r\nIn-Reply-To: <r1@x.test>\r\n\
References: <r0@x.test> <r1@x.test>\r\nDate: Tue, 2 Jan 2024 03:04:00 +0000\r\n\
From: =?UTF-8?B?w4lsb2TDqWU=?= <e@x.test>\r\nTo: A <a@x.test>, b@x.test\r\nCc: C <c@x.test>\r\n\
Subject: =?UTF-8?Q?R=C3=A9union?=\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Salut <img src=\"cid:img1\"></p>\r\n--b1\r\nContent-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"plan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n\
--b1\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\nContent-ID: <img1>\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n";

    fn props(v: &Value) -> Vec<(String, String)> {
        v["singleValueExtendedProperties"]
            .as_array()
            .expect("properties")
            .iter()
            .map(|p| {
                (p["id"].as_str().unwrap_or_default().to_owned(), p["value"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    fn prop_of(v: &Value, id: &str) -> Option<String> {
        props(v).into_iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }

    #[test]
    fn a_reply_keeps_its_thread_dates_addresses_body_and_attachments_and_is_not_a_draft() {
        // Given a backed-up reply, read and flagged, received a minute after it was sent
        let meta = MailMeta {
            is_read: true,
            flag: Some("flagged".into()),
            received: Some("2024-01-02T03:05:00Z".parse().expect("time")),
            ..MailMeta::default()
        };

        // When it is rebuilt for a create
        let r = rebuild(THREAD_REPLY, &meta);
        let c = &r.create;

        // Then what the MIME says and what the catalog knows are both there
        assert_eq!(c["subject"], "Réunion");
        assert_eq!(c["from"]["emailAddress"]["name"], "Élodée");
        assert_eq!(c["toRecipients"].as_array().map(Vec::len), Some(2));
        assert_eq!(c["ccRecipients"][0]["emailAddress"]["address"], "c@x.test");
        assert_eq!(c["body"]["contentType"], "html");
        assert!(c["body"]["content"].as_str().is_some_and(|b| b.contains("cid:img1")));
        assert_eq!((c["isRead"].as_bool(), c["flag"]["flagStatus"].as_str()), (Some(true), Some("flagged")));
        assert_eq!(c["internetMessageId"], "<r2@x.test>");
        assert_eq!(prop_of(c, "String 0x1035").as_deref(), Some("<r2@x.test>"));
        assert_eq!(prop_of(c, "String 0x1042").as_deref(), Some("<r1@x.test>"));
        assert_eq!(prop_of(c, "String 0x1039").as_deref(), Some("<r0@x.test> <r1@x.test>"));
        assert_eq!(prop_of(c, "SystemTime 0x0039").as_deref(), Some("2024-01-02T03:04:00Z"));
        assert_eq!(prop_of(c, "SystemTime 0x0E06").as_deref(), Some("2024-01-02T03:05:00Z"));
        // MSGFLAG_UNSENT (0x8) is never set: the message is not a draft
        assert_eq!(prop_of(c, "Integer 0x0E07").as_deref(), Some("1"));
        // and the attachments come out with their bytes, the inline one with its Content-ID
        let parts: Vec<_> = r.attachments.iter().map(|p| (p.name.as_str(), p.bytes.len(), p.inline)).collect();
        assert_eq!(parts, [("plan.pdf", 4, false), ("img1", 3, true)]);
        assert_eq!(r.attachments[1].content_id.as_deref(), Some("img1"));
        let small = r.attachments[0].file_attachment();
        assert_eq!(
            (small["contentBytes"].as_str(), small["contentType"].as_str()),
            (Some("AAECAw=="), Some("application/pdf"))
        );
    }

    #[test]
    fn a_draft_stays_a_draft_and_only_a_draft_does() {
        let draft = MailMeta { subject: Some("unsent".into()), is_read: true, is_draft: true, ..MailMeta::default() };
        assert_eq!(prop_of(&rebuild(THREAD_REPLY, &draft).create, "Integer 0x0E07").as_deref(), Some("9"));
        let sent = MailMeta { is_draft: false, ..draft };
        assert_eq!(prop_of(&rebuild(THREAD_REPLY, &sent).create, "Integer 0x0E07").as_deref(), Some("1"));
    }

    #[test]
    fn an_unread_message_stays_unread_and_bytes_that_are_not_mime_still_make_a_message() {
        let meta = MailMeta { subject: Some("kept".into()), is_read: false, ..MailMeta::default() };
        let r = rebuild(b"\xff\xfe not mime at all", &meta);
        assert_eq!(r.create["subject"], "kept");
        assert_eq!(r.create["body"]["contentType"], "text");
        assert_eq!(prop_of(&r.create, "Integer 0x0E07").as_deref(), Some("0"));
        assert!(r.attachments.is_empty());
    }
}
