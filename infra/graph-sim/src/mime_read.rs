//! A small, lenient MIME reader for messages the simulator is handed (admin
//! delivery, `POST .../messages` in MIME form): unfolded headers with RFC 2047
//! words decoded, address lists, and a walk of the multipart tree that finds
//! the text and HTML bodies and every file part. Exchange accepts nearly any
//! MIME, so does this: what it cannot understand becomes an attachment or is
//! left out of the metadata, never an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::mime_gen::{Attachment, Mailbox, MessageSpec};

/// Unfolded `(name, raw value)` pairs and the body after the blank line.
fn split_entity(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    let text = String::from_utf8_lossy(head);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim_start());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    (headers, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Whether `raw` starts with something shaped like a header block.
pub fn looks_like_mime(raw: &[u8]) -> bool {
    let (headers, _) = split_entity(raw);
    !headers.is_empty() && headers.iter().all(|(n, _)| !n.is_empty() && !n.contains(' '))
}

/// Reads a whole message into a spec (attachments get ids `att-1`, ...).
pub fn parse(raw: &[u8]) -> MessageSpec {
    let (headers, body) = split_entity(raw);
    let h = |n| get(&headers, n);
    let mailbox = |n| h(n).map(addresses).and_then(|mut l| (!l.is_empty()).then(|| l.remove(0)));
    let importance = match h("Importance").map(str::to_ascii_lowercase).as_deref() {
        Some("high") => "high",
        Some("low") => "low",
        _ => match h("X-Priority").and_then(|p| p.trim().chars().next()) {
            Some('1') | Some('2') => "high",
            Some('4') | Some('5') => "low",
            _ => "normal",
        },
    };
    let mut spec = MessageSpec {
        subject: h("Subject").map(decode_words).unwrap_or_default(),
        from: mailbox("From"),
        sender: mailbox("Sender"),
        to: h("To").map(addresses).unwrap_or_default(),
        cc: h("Cc").map(addresses).unwrap_or_default(),
        bcc: h("Bcc").map(addresses).unwrap_or_default(),
        reply_to: h("Reply-To").map(addresses).unwrap_or_default(),
        date: h("Date").and_then(|d| DateTime::parse_from_rfc2822(d.trim()).ok()).map(|d| d.with_timezone(&Utc)),
        message_id: h("Message-ID").map(str::trim).unwrap_or_default().to_string(),
        in_reply_to: h("In-Reply-To").map(str::to_string),
        references: h("References").map(str::to_string),
        importance: importance.to_string(),
        ..MessageSpec::default()
    };
    walk(&headers, body, &mut spec, 0);
    for (i, a) in spec.attachments.iter_mut().enumerate() {
        a.id = format!("att-{}", i + 1);
    }
    spec
}

/// Adds the entity's text, HTML or file to `spec`, recursing into multiparts.
fn walk(headers: &[(String, String)], body: &[u8], spec: &mut MessageSpec, depth: usize) {
    let ctype = get(headers, "Content-Type").unwrap_or("text/plain");
    let (mime, params) = split_params(ctype);
    let (disposition, dparams) = get(headers, "Content-Disposition").map(split_params).unwrap_or_default();
    if mime.starts_with("multipart/") && depth < 16 {
        let Some(boundary) = param(&params, "boundary") else {
            return;
        };
        for part in multipart_parts(body, &boundary) {
            let (h, b) = split_entity(part);
            walk(&h, b, spec, depth + 1);
        }
        return;
    }
    let decoded = decode_transfer(get(headers, "Content-Transfer-Encoding"), body);
    let filename = param(&dparams, "filename").or_else(|| param(&params, "name")).map(|n| decode_words(&n));
    let is_file = disposition == "attachment" || filename.is_some() || !mime.starts_with("text/");
    if !is_file && mime == "text/plain" && spec.text.is_none() {
        spec.text = Some(String::from_utf8_lossy(&decoded).replace("\r\n", "\n"));
    } else if !is_file && mime == "text/html" && spec.html.is_none() {
        spec.html = Some(String::from_utf8_lossy(&decoded).replace("\r\n", "\n"));
    } else {
        let cid =
            get(headers, "Content-ID").map(|c| c.trim().trim_start_matches('<').trim_end_matches('>').to_string());
        spec.attachments.push(Attachment {
            id: String::new(),
            name: filename.unwrap_or_else(|| "attachment".to_string()),
            content_type: mime,
            bytes: Bytes::from(decoded),
            inline: disposition == "inline" && cid.is_some(),
            content_id: cid,
        });
    }
}

fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let Some(first) = find(rest, delim.as_bytes()) else {
        return parts;
    };
    rest = &rest[first + delim.len()..];
    while !rest.starts_with(b"--") {
        let start = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
        rest = &rest[start..];
        let Some(end) = find(rest, delim.as_bytes()) else {
            parts.push(rest);
            break;
        };
        let mut part = &rest[..end];
        part = part.strip_suffix(b"\n").unwrap_or(part);
        part = part.strip_suffix(b"\r").unwrap_or(part);
        parts.push(part);
        rest = &rest[end + delim.len()..];
    }
    parts
}

fn decode_transfer(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("base64") => {
            let clean: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            STANDARD.decode(&clean).unwrap_or_else(|_| body.to_vec())
        }
        Some("quoted-printable") => decode_qp(body),
        _ => body.to_vec(),
    }
}

fn decode_qp(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'=' if body[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if body[i + 1..].starts_with(b"\n") => i += 2,
            b'=' if i + 2 < body.len() => {
                match std::str::from_utf8(&body[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(&body[i..i + 3]),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // A final line break belongs to the MIME structure, not the text.
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// `type/sub; a=b; c="d"` → (`type/sub` lowercased, params with lowercase names).
fn split_params(value: &str) -> (String, Vec<(String, String)>) {
    let mut it = value.split(';');
    let head = it.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
        .collect();
    (head, params)
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// `"Ann" <ann@x>, =?UTF-8?B?...?= <b@x>, c@x` → mailboxes.
pub fn addresses(value: &str) -> Vec<Mailbox> {
    let mut items = Vec::new();
    let (mut cur, mut quoted, mut angle) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .filter_map(|item| {
            let item = item.trim();
            let (name, address) = match (item.rfind('<'), item.rfind('>')) {
                (Some(a), Some(b)) if a < b => (item[..a].trim(), item[a + 1..b].trim()),
                _ => ("", item),
            };
            let name = decode_words(name.trim_matches('"')).replace("\\\"", "\"");
            (!address.is_empty()).then(|| Mailbox::new(name.trim(), address))
        })
        .collect()
}

/// Decodes RFC 2047 words (`B` and `Q`, UTF-8 and Latin-1); whitespace
/// between two adjacent words is dropped, as the RFC asks.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, after) = rest.split_at(start);
        let Some(word) = encoded_word(after) else {
            out.push_str(before);
            out.push_str("=?");
            rest = &after[2..];
            last_was_word = false;
            continue;
        };
        if !(last_was_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        out.push_str(&word.0);
        rest = &after[word.1..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

/// The decoded text of the word at the start of `s`, and its length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = &s[2..];
    let mut fields = inner.splitn(3, '?');
    let charset = fields.next()?.to_ascii_lowercase();
    let enc = fields.next()?.to_ascii_lowercase();
    let rest = fields.next()?;
    let end = rest.find("?=")?;
    let text = &rest[..end];
    let len = 2 + charset.len() + 1 + enc.len() + 1 + end + 2;
    let bytes = match enc.as_str() {
        "b" => STANDARD.decode(text.trim()).ok()?,
        "q" => decode_qp(text.replace('_', " ").as_bytes()),
        _ => return None,
    };
    let decoded = if charset.starts_with("iso-8859-1") || charset == "latin1" {
        bytes.iter().map(|&b| b as char).collect()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((decoded, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime_gen::render;

    #[test]
    fn words_decode_in_both_encodings() {
        assert_eq!(decode_words("=?UTF-8?B?Q2Fmw6k=?= =?UTF-8?Q?_cr=C3=A8me?= ok"), "Café crème ok");
        assert_eq!(decode_words("=?iso-8859-1?q?caf=E9?="), "café");
        assert_eq!(decode_words("plain =?broken"), "plain =?broken");
    }

    #[test]
    fn rendered_messages_read_back() {
        let spec = MessageSpec {
            subject: "Größe — 会议纪要 with a long tail to force folding of the encoded words".into(),
            from: Some(Mailbox::new("Zoë Ångström", "zoe@contoso.test")),
            to: vec![Mailbox::new("Bob, Jr.", "bob@contoso.test"), Mailbox::new("", "c@contoso.test")],
            message_id: "<m1@contoso.test>".into(),
            importance: "high".into(),
            text: Some("héllo\nworld".into()),
            html: Some("<p>héllo</p>".into()),
            attachments: vec![Attachment {
                id: String::new(),
                name: "résumé.pdf".into(),
                content_type: "application/pdf".into(),
                bytes: Bytes::from(vec![7u8; 1000]),
                content_id: None,
                inline: false,
            }],
            ..MessageSpec::default()
        };
        let back = parse(&render(&spec, 1));
        assert_eq!(back.subject, spec.subject);
        assert_eq!(back.from, spec.from);
        assert_eq!(back.to, spec.to);
        assert_eq!(back.importance, "high");
        assert_eq!(back.text.as_deref(), Some("héllo\nworld"));
        assert_eq!(back.html.as_deref(), Some("<p>héllo</p>"));
        assert_eq!(back.attachments.len(), 1);
        assert_eq!(back.attachments[0].name, "résumé.pdf");
        assert_eq!(back.attachments[0].bytes.len(), 1000);
    }
}
