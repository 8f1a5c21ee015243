//! RFC 5322 / MIME rendering of a message: `multipart/alternative` text and
//! HTML, `multipart/related` for inline images (`Content-ID`),
//! `multipart/mixed` for attachments, RFC 2047 encoded words for non-ASCII
//! headers, quoted-printable text and base64 attachments, CRLF line ends.
//! Rendering is a pure function of the [`MessageSpec`], so a seeded mailbox
//! gets byte-identical MIME (and SHA-256) every time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// A name and address (`"Ann" <ann@example.com>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    pub fn new(name: &str, address: &str) -> Self {
        Self { name: (!name.is_empty()).then(|| name.to_string()), address: address.to_string() }
    }
}

/// A file carried by a message; `content_id` set means an inline image
/// referenced from the HTML as `cid:`.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: Bytes,
    pub content_id: Option<String>,
    pub inline: bool,
}

/// Everything the MIME of a message is rendered from.
#[derive(Debug, Clone, Default)]
pub struct MessageSpec {
    pub subject: String,
    pub from: Option<Mailbox>,
    pub sender: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub date: Option<DateTime<Utc>>,
    /// With angle brackets: `<id@host>`.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    /// `low`, `normal` or `high`.
    pub importance: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// Renders the whole message. `tag` makes the multipart boundaries unique
/// per message (and deterministic).
pub fn render(spec: &MessageSpec, tag: u64) -> Bytes {
    let mut out = String::new();
    if let Some(from) = &spec.from {
        header(&mut out, "From", &address_list(std::slice::from_ref(from)));
    }
    if let Some(sender) = spec.sender.as_ref().filter(|s| Some(*s) != spec.from.as_ref()) {
        header(&mut out, "Sender", &address_list(std::slice::from_ref(sender)));
    }
    for (name, list) in [("To", &spec.to), ("Cc", &spec.cc), ("Bcc", &spec.bcc), ("Reply-To", &spec.reply_to)] {
        if !list.is_empty() {
            header(&mut out, name, &address_list(list));
        }
    }
    header(&mut out, "Subject", &encode_word_if_needed(&spec.subject));
    if let Some(date) = spec.date {
        header(&mut out, "Date", &date.to_rfc2822());
    }
    header(&mut out, "Message-ID", &spec.message_id);
    if let Some(v) = &spec.in_reply_to {
        header(&mut out, "In-Reply-To", v);
    }
    if let Some(v) = &spec.references {
        header(&mut out, "References", v);
    }
    if spec.importance != "normal" && !spec.importance.is_empty() {
        header(&mut out, "Importance", &spec.importance);
    }
    header(&mut out, "MIME-Version", "1.0");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body(spec, tag));
    Bytes::from(bytes)
}

/// Content headers plus body of the top-level entity.
fn body(spec: &MessageSpec, tag: u64) -> Vec<u8> {
    let mut n = 0;
    let mut boundary = || {
        n += 1;
        format!("----=_Part_{n}_{tag:016x}")
    };
    let text = spec.text.as_deref().map(|t| text_part("text/plain", t));
    let html = spec.html.as_deref().map(|h| text_part("text/html", h));
    let mut entity = match (text, html) {
        (Some(t), Some(h)) => multipart("alternative", &boundary(), &[t, h]),
        (Some(t), None) => t,
        (None, Some(h)) => h,
        (None, None) => text_part("text/plain", ""),
    };
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) =
        spec.attachments.iter().partition(|a| a.inline && a.content_id.is_some());
    if !inline.is_empty() {
        let mut parts = vec![entity];
        parts.extend(inline.iter().map(|a| file_part(a)));
        entity = multipart("related", &boundary(), &parts);
    }
    if !attached.is_empty() {
        let mut parts = vec![entity];
        parts.extend(attached.iter().map(|a| file_part(a)));
        entity = multipart("mixed", &boundary(), &parts);
    }
    entity
}

fn multipart(subtype: &str, boundary: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("Content-Type: multipart/{subtype};\r\n\tboundary=\"{boundary}\"\r\n\r\n").into_bytes();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn text_part(content_type: &str, text: &str) -> Vec<u8> {
    let mut out = format!(
        "Content-Type: {content_type}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(quoted_printable(text).as_bytes());
    out
}

fn file_part(a: &Attachment) -> Vec<u8> {
    let name = encode_word_if_needed(&a.name);
    let disposition = if a.inline { "inline" } else { "attachment" };
    let mut head = format!(
        "Content-Type: {}; name=\"{name}\"\r\nContent-Disposition: {disposition}; filename=\"{name}\"; size={}\r\n",
        a.content_type,
        a.bytes.len()
    );
    if let Some(cid) = &a.content_id {
        head.push_str(&format!("Content-ID: <{cid}>\r\n"));
    }
    head.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let mut out = head.into_bytes();
    let encoded = STANDARD.encode(&a.bytes);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `Name: value` folded before 78 columns where the value has spaces.
fn header(out: &mut String, name: &str, value: &str) {
    let mut line_len = name.len() + 2;
    out.push_str(name);
    out.push_str(": ");
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 {
            if line_len + 1 + word.len() > 76 {
                out.push_str("\r\n ");
                line_len = 1;
            } else {
                out.push(' ');
                line_len += 1;
            }
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push_str("\r\n");
}

fn address_list(list: &[Mailbox]) -> String {
    list.iter()
        .map(|m| match &m.name {
            None => m.address.clone(),
            Some(n) if n.is_ascii() => {
                let quoted = n.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{quoted}\" <{}>", m.address)
            }
            Some(n) => format!("{} <{}>", encode_words(n), m.address),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn encode_word_if_needed(s: &str) -> String {
    if s.is_ascii() && !s.contains("=?") { s.to_string() } else { encode_words(s) }
}

/// RFC 2047 `=?UTF-8?B?...?=` words of at most 75 characters, never
/// splitting a UTF-8 sequence, separated by spaces (folding points).
pub fn encode_words(s: &str) -> String {
    const MAX_RAW: usize = 45; // 60 base64 chars + 12 of framing
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > MAX_RAW {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words.join(" ")
}

/// Quoted-printable (RFC 2045 §6.7) with CRLF line breaks and soft breaks
/// keeping lines at most 76 characters.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let normalized = text.replace("\r\n", "\n");
    for (i, line) in normalized.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let bytes = line.as_bytes();
        let mut col = 0;
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let literal = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let token = if literal { (b as char).to_string() } else { format!("={b:02X}") };
            if col + token.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            out.push_str(&token);
            col += token.len();
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_stay_short_and_whole() {
        let s = "Réunion d'équipe — 会议纪要 🎉 ".repeat(4);
        let enc = encode_words(&s);
        for w in enc.split(' ') {
            assert!(w.len() <= 75, "{w}");
            let b64 = w.trim_start_matches("=?UTF-8?B?").trim_end_matches("?=");
            let raw = STANDARD.decode(b64).expect("base64");
            assert!(String::from_utf8(raw).is_ok(), "a word splits a character");
        }
    }

    #[test]
    fn quoted_printable_escapes_and_wraps() {
        let qp = quoted_printable(&format!("café = ok \n{}", "x".repeat(100)));
        assert!(qp.starts_with("caf=C3=A9 =3D ok=20\r\n"), "{qp}");
        assert!(qp.lines().all(|l| l.len() <= 76));
    }
}
